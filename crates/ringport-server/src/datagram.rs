//! Serving datagrams (UDP): the application side ([`DatagramHandler`]),
//! the socket it replies on ([`DatagramSocket`]), and what the workers do
//! with the socket's completions.
//!
//! One socket, bound next to the TCP listener, with one pooled receive
//! posted that stays posted (a multishot `recvmsg` into the provided-buffer
//! ring on io_uring, reads on readiness on epoll: the core chooses). Any
//! worker dequeues any datagram, as with `WSARecvFrom` on a completion
//! port: datagrams of the one socket are handled in parallel, in no
//! particular order. A datagram longer than a receive buffer's room is
//! reported as truncated, never handed over as if whole. Reply sends start
//! when they are posted; the memory of the sends in flight is bounded
//! ([`ServerBuilder::datagram_send_limit`](crate::ServerBuilder::datagram_send_limit)):
//! over it a reply is dropped and counted, as a UDP server drops what it
//! cannot send, and nothing queues without bound.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use ringport::{op, Address, Completion, Handle, IoBuf};

use crate::conn::{send_mem, ServerEnv};
use crate::id::DATAGRAM_KEY;
use crate::stats::Counters;
use crate::tag::Tag;

/// The application side of a UDP server (the seeds' `_DoRecv` for
/// `WSARecvFrom`): one handler per server's datagram socket, called by
/// every worker.
///
/// [`on_start`](Self::on_start) makes the socket's own state (its
/// per-socket context) before the first datagram; every datagram is then
/// handed to [`on_datagram`](Self::on_datagram) with the sender's address
/// and that state. Datagrams of the socket are handled by several workers
/// at once and in no particular order, so the state is shared (`&`): keep
/// what changes behind atomics or locks. Reply with
/// [`DatagramSocket::send_to`].
///
/// ```
/// use std::net::UdpSocket;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use ringport::Address;
/// use ringport_server::{Connection, DatagramHandler, DatagramSocket, Handler, Server};
///
/// /// Echoes every datagram to its sender and counts them.
/// struct Echo;
/// impl DatagramHandler for Echo {
///     type State = AtomicU64;
///     fn on_start(&self, _socket: &DatagramSocket) -> AtomicU64 {
///         AtomicU64::new(0)
///     }
///     fn on_datagram(&self, socket: &DatagramSocket, seen: &AtomicU64, from: &Address, data: Vec<u8>) {
///         seen.fetch_add(1, Ordering::Relaxed);
///         let _ = socket.send_to(data, from); // dropped and counted if too much is in flight
///     }
/// }
/// # struct NoTcp;
/// # impl Handler for NoTcp {
/// #     type State = ();
/// #     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
/// #     fn on_data(&self, _: &Connection, _: &mut (), _: Vec<u8>) {}
/// # }
///
/// let server = Server::builder()
///     .bind("127.0.0.1".parse()?)
///     .udp(Echo) // on the TCP listener's port number
///     .start(NoTcp)?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"ping", server.udp_addr().unwrap())?;
/// let mut back = [0; 16];
/// let (n, from) = client.recv_from(&mut back)?;
/// assert_eq!((&back[..n], from.port()), (&b"ping"[..], server.local_addr().port()));
/// assert_eq!(server.stop().datagrams_in, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait DatagramHandler: Send + Sync + 'static {
    /// The socket's state, shared by the workers: `()` for none.
    type State: Send + Sync + 'static;

    /// The socket is bound and about to receive: returns its state.
    fn on_start(&self, socket: &DatagramSocket) -> Self::State;

    /// A datagram arrived from `from`. The buffer is the handler's: pass it
    /// to [`DatagramSocket::send_to`] to echo it without a copy.
    fn on_datagram(
        &self,
        socket: &DatagramSocket,
        state: &Self::State,
        from: &Address,
        data: Vec<u8>,
    );

    /// A datagram from `from` was longer than a receive buffer's room
    /// ([`ServerBuilder::recv_buffer_size`](crate::ServerBuilder::recv_buffer_size)
    /// less 144 bytes): `part` is what fitted (`WSAEMSGSIZE`). Counted in
    /// [`Stats::datagrams_truncated`](crate::Stats::datagrams_truncated)
    /// either way; by default logged at debug level and dropped.
    ///
    /// ```
    /// use ringport::Address;
    /// use ringport_server::{DatagramHandler, DatagramSocket};
    ///
    /// struct Strict;
    /// impl DatagramHandler for Strict {
    ///     type State = ();
    ///     fn on_start(&self, _: &DatagramSocket) {}
    ///     fn on_datagram(&self, _: &DatagramSocket, _: &(), _: &Address, _: Vec<u8>) {}
    ///     fn on_truncated(&self, socket: &DatagramSocket, _: &(), from: &Address, _part: Vec<u8>) {
    ///         let _ = socket.send_to(b"too long".to_vec(), from);
    ///     }
    /// }
    /// ```
    fn on_truncated(
        &self,
        socket: &DatagramSocket,
        state: &Self::State,
        from: &Address,
        part: Vec<u8>,
    ) {
        let _ = (socket, state);
        tracing::debug!(
            "datagram from {from} truncated to {} bytes; dropped",
            part.len()
        );
    }
}

/// The server's datagram socket, as a [`DatagramHandler`] sees it: reply
/// with [`send_to`](Self::send_to) (`WSASendTo`). Cheap to clone and usable
/// from any thread; get it from the callbacks or from
/// [`Server::datagram_socket`](crate::Server::datagram_socket).
///
/// ```
/// # fn f(socket: &ringport_server::DatagramSocket, peer: ringport::Address) {
/// if socket.send_to(b"hello".to_vec(), &peer).is_err() {
///     println!("dropped (over the send limit, or the server stopped)");
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct DatagramSocket {
    inner: Arc<Endpoint>,
}

struct Endpoint {
    /// `None` once the server stopped.
    handle: RwLock<Option<Handle>>,
    local: SocketAddr,
    env: Arc<ServerEnv>,
    /// Memory the reply sends in flight hold (a `Vec`'s capacity, the
    /// length of anything else).
    in_flight: AtomicUsize,
}

impl DatagramSocket {
    /// The socket's address (with the actual port).
    ///
    /// ```
    /// # fn f(socket: &ringport_server::DatagramSocket) {
    /// println!("serving datagrams on {}", socket.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Sends `data` as one datagram to `to` (`WSASendTo`); the send starts
    /// now. `data` is any buffer the port can send: a `Vec<u8>` (given
    /// back to the receive pool once sent, so a received datagram echoes
    /// without a copy), or a shared one (`Arc<[u8]>`, `bytes::Bytes`).
    /// When the reply sends in flight already hold the server's
    /// [datagram send limit](crate::ServerBuilder::datagram_send_limit),
    /// the datagram is dropped and counted
    /// ([`Stats::datagrams_dropped`](crate::Stats::datagrams_dropped)).
    ///
    /// ```
    /// # fn f(socket: &ringport_server::DatagramSocket, from: &ringport::Address) -> std::io::Result<()> {
    /// socket.send_to(b"pong".to_vec(), from)?;
    /// let shared: std::sync::Arc<[u8]> = b"state".as_slice().into();
    /// socket.send_to(shared, from)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `WouldBlock` when dropped over the limit; `NotConnected` once the
    /// server stopped; `InvalidInput` for an address the socket cannot
    /// send to; a port error.
    pub fn send_to(&self, data: impl IoBuf, to: &Address) -> io::Result<()> {
        let to = to.to_sock_addr()?;
        let ep = &self.inner;
        let env = &ep.env;
        let mem = send_mem(&data);
        let limit = env.config.datagram_send_limit;
        let before = ep.in_flight.fetch_add(mem, Ordering::SeqCst);
        // One datagram larger than the limit still goes when nothing else
        // is in flight.
        if before > 0 && before + mem > limit {
            ep.in_flight.fetch_sub(mem, Ordering::SeqCst);
            Counters::add(&env.counters.datagrams_dropped, 1);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the datagram send limit is reached: datagram dropped",
            ));
        }
        let posted = match ep.handle.read().as_ref() {
            Some(h) => env
                .port
                .submit(op::SendTo::new(h, data, to).user(Tag::DatagramSent(mem as u64).user()))
                .map(drop),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server stopped",
            )),
        };
        if posted.is_err() {
            ep.in_flight.fetch_sub(mem, Ordering::SeqCst);
        }
        posted
    }

    /// Memory the reply sends in flight hold now (what the
    /// [send limit](crate::ServerBuilder::datagram_send_limit) bounds).
    ///
    /// ```
    /// # fn f(socket: &ringport_server::DatagramSocket) {
    /// println!("{} bytes of replies in flight", socket.in_flight());
    /// # }
    /// ```
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for DatagramSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramSocket")
            .field("local_addr", &self.inner.local)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Runs a [`DatagramHandler`]'s callbacks with the socket's state.
pub(crate) trait DatagramCallbacks: Send + Sync {
    fn start(&self, socket: &DatagramSocket);
    fn datagram(&self, socket: &DatagramSocket, from: &Address, data: Vec<u8>, truncated: bool);
}

/// Makes a fresh [`DatagramCallbacks`] for each server a builder starts.
pub(crate) type MakeCallbacks = Arc<dyn Fn() -> Box<dyn DatagramCallbacks> + Send + Sync>;

/// The maker of `handler`'s callbacks.
pub(crate) fn callbacks_of<H: DatagramHandler>(handler: H) -> MakeCallbacks {
    let handler = Arc::new(handler);
    Arc::new(move || {
        Box::new(WithState {
            handler: handler.clone(),
            state: OnceLock::new(),
        }) as Box<dyn DatagramCallbacks>
    })
}

struct WithState<H: DatagramHandler> {
    handler: Arc<H>,
    state: OnceLock<H::State>,
}

impl<H: DatagramHandler> DatagramCallbacks for WithState<H> {
    fn start(&self, socket: &DatagramSocket) {
        let _ = self.state.set(self.handler.on_start(socket));
    }

    fn datagram(&self, socket: &DatagramSocket, from: &Address, data: Vec<u8>, truncated: bool) {
        let Some(state) = self.state.get() else {
            return;
        };
        if truncated {
            self.handler.on_truncated(socket, state, from, data);
        } else {
            self.handler.on_datagram(socket, state, from, data);
        }
    }
}

/// The server's datagram socket and its handler's callbacks.
pub(crate) struct Datagrams {
    socket: DatagramSocket,
    callbacks: Box<dyn DatagramCallbacks>,
}

impl Datagrams {
    /// The socket `handle` (bound at `local`), served by `callbacks`.
    pub(crate) fn new(
        handle: Handle,
        local: SocketAddr,
        env: Arc<ServerEnv>,
        callbacks: Box<dyn DatagramCallbacks>,
    ) -> Datagrams {
        Datagrams {
            socket: DatagramSocket {
                inner: Arc::new(Endpoint {
                    handle: RwLock::new(Some(handle)),
                    local,
                    env,
                    in_flight: AtomicUsize::new(0),
                }),
            },
            callbacks,
        }
    }

    pub(crate) fn socket(&self) -> &DatagramSocket {
        &self.socket
    }

    /// Makes the handler's state and asks a worker to post the receive.
    ///
    /// A worker, not the thread that starts the server, posts it: on
    /// io_uring the kernel runs a multishot receive's work for each
    /// datagram on the thread that submitted it, which would wake (and
    /// interrupt the blocking socket calls of) the application's thread.
    pub(crate) fn start(&self) -> io::Result<()> {
        self.callbacks.start(&self.socket);
        let env = &self.socket.inner.env;
        env.port.post(
            op::Packet::new(0)
                .key(DATAGRAM_KEY)
                .user(Tag::DatagramStart.user()),
        )
    }

    /// Posts the pooled receive (on a worker).
    pub(crate) fn post(&self) -> io::Result<()> {
        let ep = &self.socket.inner;
        match ep.handle.read().as_ref() {
            Some(h) => ep
                .env
                .port
                .submit(op::RecvFromPooled::new(h).user(Tag::Datagram.user()))
                .map(drop),
            None => Ok(()),
        }
    }

    /// Stops receiving and sending: cancels what is in flight and lets go
    /// of the socket (closed once its operations have completed).
    pub(crate) fn close(&self) {
        let ep = &self.socket.inner;
        if let Some(h) = ep.handle.write().take() {
            ep.env.port.cancel_handle(&h);
        }
    }

    /// The receive completed: a datagram for the handler (the receive
    /// stays posted), or its end (posted again unless the server stops or
    /// the error would come back at once).
    pub(crate) fn on_recv(&self, c: &mut Completion) {
        let env = &self.socket.inner.env;
        if c.more() {
            let truncated = c.error_code() == Some(libc::EMSGSIZE);
            let buf = c.take_buf::<Vec<u8>>().unwrap_or_default();
            let Some(from) = c.address().cloned() else {
                env.port.recycle(buf);
                return;
            };
            let counters = &env.counters;
            if truncated {
                Counters::add(&counters.datagrams_truncated, 1);
            } else {
                Counters::add(&counters.datagrams_in, 1);
                Counters::add(&counters.datagram_bytes_in, buf.len() as u64);
            }
            let data = right_sized(env, buf);
            self.callbacks
                .datagram(&self.socket, &from, data, truncated);
            return;
        }
        let Some(code) = c.error_code() else {
            return;
        };
        if c.is_cancelled() || env.is_stopping() {
            return;
        }
        Counters::add(&env.counters.datagram_errors, 1);
        let e = io::Error::from_raw_os_error(code);
        match code {
            libc::EMSGSIZE | libc::EBADF | libc::ENOTSOCK | libc::EINVAL | libc::EOPNOTSUPP => {
                tracing::error!("receiving datagrams failed: {e}; no more datagrams are received");
            }
            _ => {
                tracing::warn!("receiving datagrams: {e}; receiving again");
                if let Err(e) = self.post() {
                    tracing::error!("receiving datagrams again failed: {e}");
                }
            }
        }
    }

    /// A reply send completed: its memory is free again.
    pub(crate) fn on_sent(&self, c: &mut Completion, mem: u64) {
        let env = &self.socket.inner.env;
        self.socket
            .inner
            .in_flight
            .fetch_sub(mem as usize, Ordering::SeqCst);
        match c.result() {
            Ok(n) => {
                Counters::add(&env.counters.datagrams_out, 1);
                Counters::add(&env.counters.datagram_bytes_out, n as u64);
            }
            Err(_) if c.is_cancelled() => {}
            Err(e) => {
                Counters::add(&env.counters.datagram_errors, 1);
                tracing::debug!("a datagram send failed: {e}");
            }
        }
        if let Some(buf) = c.take_buf::<Vec<u8>>() {
            env.port.recycle(buf);
        }
    }
}

/// A datagram filling less than half its pooled buffer moves to a buffer
/// of its own size (the pooled one goes back at once), so that what the
/// handler keeps or sends holds about the bytes it carries.
fn right_sized(env: &ServerEnv, buf: Vec<u8>) -> Vec<u8> {
    if buf.len() >= buf.capacity() / 2 {
        return buf;
    }
    let small = buf.to_vec();
    env.port.recycle(buf);
    small
}
