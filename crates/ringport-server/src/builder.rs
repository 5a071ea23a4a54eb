//! Configuring and starting a server.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use ringport::{BackendKind, CompletionPort};
use socket2::{Domain, Socket, Type};

use crate::acceptor::Acceptor;
use crate::config::Config;
use crate::env::Env;
use crate::handler::{Handler, HandlerCallbacks};
use crate::id::SERVER_KEY;
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
/// use std::time::Duration;
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
#[derive(Clone, Debug)]
pub struct ServerBuilder {
    cfg: Config,
}

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
            },
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

        let socket = Socket::new(Domain::for_address(cfg.addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&cfg.addr.into())?;
        socket.listen(cfg.backlog)?;
        let local_addr = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?;
        let listener = port.associate(OwnedFd::from(socket), SERVER_KEY)?;

        let workers_n = cfg.workers;
        let env = Arc::new(Env::new(port, cfg, Box::new(HandlerCallbacks(handler))));
        let shared = Arc::new(Shared {
            env,
            acceptor: Acceptor::new(listener),
            workers_alive: AtomicUsize::new(workers_n),
            workers_running: AtomicUsize::new(workers_n),
        });
        shared.acceptor.start(&shared.env);
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
