//! Configuring and starting a server.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringport::{BackendKind, CompletionPort};
use socket2::{Domain, Socket, Type};

use crate::acceptor::Acceptor;
use crate::config::Config;
use crate::datagram::{self, DatagramHandler, Datagrams, MakeCallbacks};
use crate::env::Env;
use crate::handler::{Handler, HandlerCallbacks};
use crate::id::{DATAGRAM_KEY, SERVER_KEY};
use crate::listener::{self, ListenerKind};
use crate::server::Server;
use crate::shared::Shared;
use crate::{sweep, worker};

/// Configures and starts a [`Server`] (the seeds' `CIOCPModel` settings).
///
/// Defaults: address 0.0.0.0 (INADDR_ANY), port 0 (any free port; see
/// [`Server::local_addr`]), 2 × CPUs workers, concurrency = CPUs, 10 accepts
/// kept posted (MAX_POST_ACCEPT), 32 KiB receive buffers, no connection
/// limit, no idle timeout, 1 MiB send queue per connection, TCP_NODELAY on,
/// no keepalive, backlog 1024, 5 s stop deadline.
///
/// ```
/// use std::time::{Duration, Instant};
/// use ringport_server::{Connection, Handler, Server};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
///     fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
///         let _ = conn.send(data);
///     }
/// }
/// let server = Server::builder()
///     .bind("127.0.0.1".parse()?)
///     .port(0)
///     .workers(2)
///     .idle_timeout(Duration::from_secs(60))
///     .send_queue_limit(256 * 1024)
///     .start(Echo)?;
/// println!("listening on {}", server.local_addr());
/// let stats = server.stop();
/// assert_eq!(stats.connections, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ServerBuilder {
    cfg: Config,
    /// A Unix stream listener's path.
    unix: Option<PathBuf>,
    udp: Option<Udp>,
}

/// The datagram socket asked for: its address (`None`: the TCP listener's
/// IP and port number) and its handler.
#[derive(Clone)]
struct Udp {
    addr: Option<SocketAddr>,
    callbacks: MakeCallbacks,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("cfg", &self.cfg)
            .field("unix", &self.unix)
            .field("udp", &self.udp.as_ref().map(|u| u.addr))
            .finish()
    }
}

/// How long `start` waits for the workers to post the first accepts.
const ARM_WAIT: Duration = Duration::from_secs(5);

/// Tries of a TCP port and the same UDP port number, when any port will do.
const SAME_PORT_TRIES: usize = 16;

impl Default for ServerBuilder {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        ServerBuilder {
            cfg: Config {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                workers: 2 * cpus,
                concurrency: 0,
                accepts: 10,
                recv_buffer: 32 * 1024,
                pool_buffers: 256,
                max_connections: usize::MAX,
                idle_timeout: None,
                read_timeout: None,
                write_timeout: None,
                send_queue_limit: 1 << 20,
                nodelay: true,
                keepalive: None,
                backlog: 1024,
                first_data: false,
                backend: None,
                stop_deadline: Duration::from_secs(5),
                datagram_send_limit: 1 << 20,
            },
            unix: None,
            udp: None,
        }
    }
}

impl Server {
    /// A builder with the defaults listed at [`ServerBuilder`].
    ///
    /// ```
    /// let builder = ringport_server::Server::builder().workers(1);
    /// ```
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

impl ServerBuilder {
    /// The address to listen on (default 0.0.0.0).
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.cfg.addr.set_ip(ip);
        self
    }

    /// The port to listen on (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.cfg.addr.set_port(port);
        self
    }

    /// Address and port at once.
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.cfg.addr = addr;
        self
    }

    /// Worker threads (default 2 × CPUs; at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.cfg.workers = n.max(1);
        self
    }

    /// The port's concurrency value: workers running callbacks at once
    /// (default 0 = CPUs).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.cfg.concurrency = n;
        self
    }

    /// Accepts kept posted on the listener, each replenished when it
    /// completes (default 10, the seeds' MAX_POST_ACCEPT). On io_uring,
    /// unless [`first_data`](Self::first_data) is on, the server posts one
    /// multishot accept instead, which stays posted by itself and accepts
    /// every connection the backlog holds; this setting then does not apply.
    pub fn accepts(mut self, n: usize) -> Self {
        self.cfg.accepts = n.max(1);
        self
    }

    /// Size of each receive buffer (default 32 KiB). Buffers come from a
    /// pool shared by all connections and are taken only when data arrives,
    /// so their size does not grow with the number of connections; a larger
    /// buffer means fewer completions and sends per large message (with
    /// 32 KiB buffers a 16 KiB echo costs the server about 0.6× the CPU it
    /// does with 8 KiB ones).
    pub fn recv_buffer_size(mut self, n: usize) -> Self {
        self.cfg.recv_buffer = n;
        self
    }

    /// How many receive buffers the kernel may fill ahead of the workers
    /// (default 256).
    pub fn pool_buffers(mut self, n: usize) -> Self {
        self.cfg.pool_buffers = n;
        self
    }

    /// Connections beyond this many are accepted and closed at once
    /// (counted as `rejected`). Default: no limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.cfg.max_connections = n;
        self
    }

    /// Closes connections that neither received nor completed a send for
    /// this long, with [`DisconnectReason::IdleTimeout`](crate::DisconnectReason::IdleTimeout). Checked by a sweep
    /// every eighth of the timeout, so a connection is closed between the
    /// timeout and 1.25 × the timeout after its last activity. Default: none.
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.cfg.idle_timeout = Some(after.max(Duration::from_millis(1)));
        self
    }

    /// Closes connections that received nothing for this long (a read
    /// deadline: a client that stopped sending, whatever the server sends
    /// it), with [`DisconnectReason::ReadTimeout`](crate::DisconnectReason::ReadTimeout).
    /// Checked by the same sweep as the idle timeout. Default: none.
    ///
    /// ```
    /// let b = ringport_server::Server::builder().read_timeout(std::time::Duration::from_secs(30));
    /// ```
    pub fn read_timeout(mut self, after: Duration) -> Self {
        self.cfg.read_timeout = Some(after.max(Duration::from_millis(1)));
        self
    }

    /// Closes connections whose queued data made no progress for this
    /// long (a write deadline: a send not finished, a client that does not
    /// read), abortively, with
    /// [`DisconnectReason::WriteTimeout`](crate::DisconnectReason::WriteTimeout).
    /// Checked by the same sweep as the idle timeout. Default: none.
    ///
    /// ```
    /// let b = ringport_server::Server::builder().write_timeout(std::time::Duration::from_secs(10));
    /// ```
    pub fn write_timeout(mut self, after: Duration) -> Self {
        self.cfg.write_timeout = Some(after.max(Duration::from_millis(1)));
        self
    }

    /// Memory a connection may hold — the buffers of its queued sends and
    /// of data received and not yet handed to [`Handler::on_data`](crate::Handler::on_data), counted
    /// by capacity ([`Connection::held`](crate::Connection::held)) — before the server stops reading
    /// from it (flow control); reading resumes when it is down to half. Each
    /// receive is posted for the room left under the limit, so a connection
    /// holds at most the limit plus about one receive buffer, on either
    /// backend, unless its handler sends more than it is given. Default
    /// 1 MiB.
    pub fn send_queue_limit(mut self, bytes: usize) -> Self {
        self.cfg.send_queue_limit = bytes.max(1);
        self
    }

    /// TCP_NODELAY on accepted connections (default on).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.cfg.nodelay = on;
        self
    }

    /// TCP keepalive probes after this much idle time (default off).
    pub fn keepalive(mut self, idle: Option<Duration>) -> Self {
        self.cfg.keepalive = idle;
        self
    }

    /// The listen backlog (default 1024).
    pub fn backlog(mut self, n: i32) -> Self {
        self.cfg.backlog = n.max(1);
        self
    }

    /// Report a connection only once its first data arrived, and hand that
    /// data to [`Handler::on_connect`](crate::Handler::on_connect) (AcceptEx with a receive buffer).
    /// Default off: a client that connects and sends nothing is reported
    /// at once.
    pub fn first_data(mut self, on: bool) -> Self {
        self.cfg.first_data = on;
        self
    }

    /// Forces the port's backend (default: automatic, or `RINGPORT_BACKEND`).
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.cfg.backend = Some(kind);
        self
    }

    /// How long [`Server::stop`] takes at most (default 5 s): most of it is
    /// given to queued sends to flush, then what remains is cut off.
    pub fn stop_deadline(mut self, d: Duration) -> Self {
        self.cfg.stop_deadline = d;
        self
    }

    /// Also listens on a Unix stream socket at `path`, served by the same
    /// [`Handler`] as the TCP listener; the connections' addresses are
    /// then [`Connection::local_address`](crate::Connection::local_address)
    /// (the path) and [`Connection::peer_address`](crate::Connection::peer_address).
    /// A stale socket file (nobody accepts on it: a dead earlier run) is
    /// replaced; a live one, or a file that is not a socket, makes
    /// [`start`](Self::start) fail with `AddrInUse`. The file is removed
    /// when the server stops.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use ringport_server::{Connection, Handler, Server};
    ///
    /// struct Echo;
    /// impl Handler for Echo {
    ///     type State = ();
    ///     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
    ///     fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
    ///         let _ = conn.send(data);
    ///     }
    /// }
    /// let path = std::env::temp_dir().join(format!("ringport-doc-{}.sock", std::process::id()));
    /// let server = Server::builder()
    ///     .bind("127.0.0.1".parse()?)
    ///     .listen_unix(&path)
    ///     .start(Echo)?;
    /// assert_eq!(server.unix_path(), Some(path.as_path()));
    /// let mut client = std::os::unix::net::UnixStream::connect(&path)?;
    /// client.write_all(b"ping")?;
    /// let mut back = [0; 4];
    /// client.read_exact(&mut back)?;
    /// assert_eq!(&back, b"ping");
    /// server.stop();
    /// assert!(!path.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn listen_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix = Some(path.into());
        self
    }

    /// Also serves UDP, on the TCP listener's IP address and port number
    /// (with port 0, the port number the TCP listener got: should that
    /// number be taken for UDP, both are bound again on another free port
    /// a few times before [`start`](Self::start) gives up with
    /// `AddrInUse`). Each datagram goes to `handler` with its sender's
    /// address, on any worker (see [`DatagramHandler`]); the receive is
    /// pooled (multishot on io_uring), so an idle socket holds no buffer.
    /// Datagrams longer than the receive buffer size less 144 bytes are
    /// reported as truncated ([`DatagramHandler::on_truncated`]).
    ///
    /// ```
    /// use ringport::Address;
    /// use ringport_server::{Connection, DatagramHandler, DatagramSocket, Handler, Server};
    ///
    /// struct Pong;
    /// impl DatagramHandler for Pong {
    ///     type State = ();
    ///     fn on_start(&self, _: &DatagramSocket) {}
    ///     fn on_datagram(&self, socket: &DatagramSocket, _: &(), from: &Address, _: Vec<u8>) {
    ///         let _ = socket.send_to(b"pong".to_vec(), from);
    ///     }
    /// }
    /// # struct Tcp;
    /// # impl Handler for Tcp {
    /// #     type State = ();
    /// #     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
    /// #     fn on_data(&self, _: &Connection, _: &mut (), _: Vec<u8>) {}
    /// # }
    /// let server = Server::builder().bind("127.0.0.1".parse()?).udp(Pong).start(Tcp)?;
    /// assert_eq!(server.udp_addr(), Some(server.local_addr()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn udp<H: DatagramHandler>(mut self, handler: H) -> Self {
        self.udp = Some(Udp {
            addr: None,
            callbacks: datagram::callbacks_of(handler),
        });
        self
    }

    /// As [`udp`](Self::udp), on an address of its own (port 0: any free
    /// port).
    ///
    /// ```
    /// use ringport::Address;
    /// use ringport_server::{DatagramHandler, DatagramSocket, Server};
    ///
    /// struct Drop;
    /// impl DatagramHandler for Drop {
    ///     type State = ();
    ///     fn on_start(&self, _: &DatagramSocket) {}
    ///     fn on_datagram(&self, _: &DatagramSocket, _: &(), _: &Address, _: Vec<u8>) {}
    /// }
    /// let b = Server::builder().udp_at("[::1]:0".parse()?, Drop);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn udp_at<H: DatagramHandler>(mut self, addr: SocketAddr, handler: H) -> Self {
        self.udp = Some(Udp {
            addr: Some(addr),
            callbacks: datagram::callbacks_of(handler),
        });
        self
    }

    /// Memory the datagram socket's reply sends in flight may hold (a
    /// `Vec`'s capacity, the length of anything else); a reply over it is
    /// dropped and counted in
    /// [`Stats::datagrams_dropped`](crate::Stats::datagrams_dropped).
    /// Default 1 MiB.
    ///
    /// ```
    /// let b = ringport_server::Server::builder().datagram_send_limit(256 * 1024);
    /// ```
    pub fn datagram_send_limit(mut self, bytes: usize) -> Self {
        self.cfg.datagram_send_limit = bytes.max(1);
        self
    }

    /// Creates the port and the listening socket, posts the accepts and
    /// starts the workers.
    ///
    /// ```
    /// # use ringport_server::{Connection, Handler, Server};
    /// # struct Echo;
    /// # impl Handler for Echo {
    /// #     type State = ();
    /// #     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
    /// #     fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) { let _ = conn.send(data); }
    /// # }
    /// let server = Server::builder().bind("127.0.0.1".parse()?).start(Echo)?;
    /// assert_ne!(server.local_addr().port(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the port cannot be created, or the address cannot be bound
    /// (`AddrInUse`, `AddrNotAvailable`, `PermissionDenied`).
    pub fn start<H: Handler>(self, handler: H) -> io::Result<Server> {
        let cfg = self.cfg;
        // One worker: it is the only thread that dequeues (nothing else in
        // the server calls `get`), so the ring may run single-issuer with
        // deferred task work; the worker shuts the port down before it
        // exits. Other threads still post (sends, kicks, stop's packets).
        let mut pb = CompletionPort::builder()
            .concurrency(cfg.concurrency)
            .pool_buffer_size(cfg.recv_buffer)
            .pool_buffers(cfg.pool_buffers)
            .single_thread(cfg.workers == 1);
        if let Some(kind) = cfg.backend {
            pb = pb.backend(kind);
        }
        let port = pb.build()?;

        if self.udp.is_some() && cfg.recv_buffer <= DATAGRAM_HEADROOM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("serving UDP needs receive buffers over {DATAGRAM_HEADROOM} bytes"),
            ));
        }
        let (socket, local_addr, udp_socket) = bind_tcp_and_udp(&cfg, self.udp.as_ref())?;
        let listener = port.associate(OwnedFd::from(socket), SERVER_KEY)?;
        let mut listeners = vec![(listener, ListenerKind::Tcp)];
        if let Some(path) = &self.unix {
            let (socket, file) = listener::bind_unix(path, cfg.backlog)?;
            let h = port.associate(OwnedFd::from(socket), SERVER_KEY)?;
            listeners.push((h, ListenerKind::Unix(file)));
        }
        let udp_socket = match udp_socket {
            Some((s, addr)) => Some((port.associate(OwnedFd::from(s), DATAGRAM_KEY)?, addr)),
            None => None,
        };

        let workers_n = cfg.workers;
        let env = Arc::new(Env::new(port, cfg, Box::new(HandlerCallbacks(handler))));
        let datagrams = match (udp_socket, self.udp) {
            (Some((h, addr)), Some(udp)) => {
                Some(Datagrams::new(h, addr, env.clone(), (udp.callbacks)()))
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            env,
            acceptors: listeners
                .into_iter()
                .enumerate()
                .map(|(i, (h, kind))| Acceptor::new(h, i as u64, kind))
                .collect(),
            datagrams,
            workers_alive: AtomicUsize::new(workers_n),
            workers_running: AtomicUsize::new(workers_n),
        });
        for a in &shared.acceptors {
            a.start(&shared.env)?;
        }
        if let Some(d) = &shared.datagrams {
            d.start()?;
        }
        sweep::arm(&shared.env)?;
        let mut workers = Vec::with_capacity(workers_n);
        for i in 0..workers_n {
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ringport-worker-{i}"))
                .spawn(move || worker::run(sh, i));
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => {
                    shared.forget_workers(workers_n - i);
                    let mut partial = Server {
                        shared,
                        workers,
                        local_addr,
                        stopped: false,
                    };
                    partial.stop_inner(Duration::ZERO);
                    return Err(e);
                }
            }
        }
        // Return once the workers have posted the first accepts (a worker
        // posts them: see `Acceptor::start`), so that a started server has
        // its accepts outstanding, as when `start` posted them itself.
        let armed = || shared.acceptors.iter().all(Acceptor::is_armed);
        if !shared.env.wait_until(Instant::now() + ARM_WAIT, armed) {
            tracing::warn!(
                "start: the workers had not posted the first accepts after {ARM_WAIT:?}"
            );
        }
        tracing::debug!(
            "server listening on {local_addr} (backend: {}, {} workers)",
            shared.env.port.backend(),
            workers.len()
        );
        Ok(Server {
            shared,
            workers,
            local_addr,
            stopped: false,
        })
    }
}

/// What a pooled datagram receive keeps of each buffer for the header and
/// the sender's address.
const DATAGRAM_HEADROOM: usize = 144;

/// A bound UDP socket and its address.
type BoundUdp = (Socket, SocketAddr);

/// Binds the TCP listener and, if asked for, the UDP socket: on the TCP
/// listener's port number unless it has an address of its own; with port
/// 0, tried again on another free port if that number is taken for UDP.
fn bind_tcp_and_udp(
    cfg: &Config,
    udp: Option<&Udp>,
) -> io::Result<(Socket, SocketAddr, Option<BoundUdp>)> {
    let Some(udp) = udp else {
        let (socket, local) = listener::bind_tcp(cfg.addr, cfg.backlog)?;
        return Ok((socket, local, None));
    };
    if let Some(addr) = udp.addr {
        let (socket, local) = listener::bind_tcp(cfg.addr, cfg.backlog)?;
        return Ok((socket, local, Some(bind_udp(addr)?)));
    }
    let mut tries = 0;
    loop {
        let (socket, local) = listener::bind_tcp(cfg.addr, cfg.backlog)?;
        match bind_udp(local) {
            Ok(u) => return Ok((socket, local, Some(u))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && cfg.addr.port() == 0 => {
                tries += 1;
                if tries == SAME_PORT_TRIES {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<BoundUdp> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.bind(&addr.into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?;
    Ok((socket, local))
}
