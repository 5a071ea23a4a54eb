//! The server: builder, worker threads, acceptor, idle sweep and stop.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use ringport::op;
use ringport::{BackendKind, Completion, CompletionPort, GetError, Handle};
use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

use crate::conn::{Action, CloseMode, ConnId, Connection, Event, Stream};
use crate::conn_cache::ConnCache;
use crate::handler::{DisconnectReason, Handler};
use crate::registry::Registry;
use crate::stats::{Counters, Hot, Stats};

// User values of the server's operations (the seeds' OPERATION_TYPE), in
// the low byte; a send's number (its place in its connection's post order)
// is above it.
pub(crate) const RECV: u64 = 1;
pub(crate) const SEND: u64 = 2;
/// A packet asking a worker to drain a connection's inbox.
pub(crate) const KICK: u64 = 3;
const ACCEPT: u64 = 4;
const ACCEPT_RETRY: u64 = 5;
const SWEEP: u64 = 6;
/// The seeds' EXIT_CODE packet.
const EXIT: u64 = 7;
/// Where a user value's operation type ends and a send's number starts.
pub(crate) const USER_SHIFT: u32 = 8;
const KIND_MASK: u64 = (1 << USER_SHIFT) - 1;

/// Completion key of the listener and of the server's timers and packets;
/// connection keys are all >= 2^32 (see the registry).
const SERVER_KEY: u64 = 0;
const FIRST_CONN_KEY: u64 = 1 << 32;

/// Completions one worker takes from the port at a time, when it shares
/// the port with other workers (a lone worker takes whatever its poll
/// reaped: nobody else could run it).
const BATCH: usize = 16;
const BATCH_ALONE: usize = 256;
const BACKOFF_START_MS: u64 = 10;
const BACKOFF_MAX_MS: u64 = 500;
/// How long a worker waits in `get`: for as long as it takes (an idle
/// worker uses no CPU). Timers (idle sweep, accept retries) and packets
/// (kicks, exit) wake it when there is something to do.
const WAIT: Option<Duration> = None;
/// How long stop waits for the workers to take their exit packets.
const EXIT_GRACE: Duration = Duration::from_millis(500);

thread_local! {
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
    /// Connections this worker holds the drain right of, to run after the
    /// completion at hand (never nested inside another callback).
    static PENDING: RefCell<Vec<Ready>> = const { RefCell::new(Vec::new()) };
}

/// A connection whose drain right a worker holds, with the callback of the
/// event it took the right with, if any.
type Ready = (Connection, Option<Action>);

/// Makes sure a connection whose drain right the caller took gets drained:
/// on a worker after its current completion, otherwise by a worker woken
/// with a packet.
pub(crate) fn schedule_drain(conn: &Connection) {
    if IN_WORKER.with(Cell::get) {
        PENDING.with(|p| p.borrow_mut().push((conn.clone(), None)));
    } else if conn
        .server()
        .port
        .post(op::Packet::new(0).key(conn.id().as_u64()).user(KICK))
        .is_err()
    {
        // The port is gone: nobody else will run the callbacks.
        conn.drain(None);
    }
}

fn run_pending() {
    while let Some((conn, first)) = PENDING.with(|p| p.borrow_mut().pop()) {
        conn.drain(first);
    }
}

/// Settings that do not change while the server runs.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub addr: SocketAddr,
    pub workers: usize,
    pub concurrency: usize,
    pub accepts: usize,
    pub recv_buffer: usize,
    pub pool_buffers: usize,
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    pub send_queue_limit: usize,
    pub nodelay: bool,
    pub keepalive: Option<Duration>,
    pub backlog: i32,
    pub first_data: bool,
    pub backend: Option<BackendKind>,
    pub stop_deadline: Duration,
}

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
///     fn on_data(&self, conn: &Connection, data: Vec<u8>) {
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
    /// this long, with [`DisconnectReason::IdleTimeout`]. Checked by a sweep
    /// every eighth of the timeout, so a connection is closed between the
    /// timeout and 1.25 × the timeout after its last activity. Default: none.
    pub fn idle_timeout(mut self, after: Duration) -> Self {
        self.cfg.idle_timeout = Some(after.max(Duration::from_millis(1)));
        self
    }

    /// Memory a connection may hold — the buffers of its queued sends and
    /// of data received and not yet handed to [`Handler::on_data`], counted
    /// by capacity ([`Connection::held`]) — before the server stops reading
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
    /// data to [`Handler::on_connect`] (AcceptEx with a receive buffer).
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

        let shared = Arc::new(Shared {
            port,
            handler: Box::new(handler),
            registry: Registry::new(),
            counters: Counters::new(cfg.workers),
            stopping: AtomicBool::new(false),
            epoch: Instant::now(),
            listener: Mutex::new(Some(listener)),
            parked_accepts: AtomicUsize::new(0),
            retry_pending: AtomicBool::new(false),
            backoff_ms: AtomicU64::new(BACKOFF_START_MS),
            workers_alive: AtomicUsize::new(cfg.workers),
            workers_running: AtomicUsize::new(cfg.workers),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
            config: cfg,
        });
        let posted = if shared.multishot_accept() {
            1
        } else {
            shared.config.accepts
        };
        for _ in 0..posted {
            shared.post_accept();
        }
        if let Some(idle) = shared.config.idle_timeout {
            shared.port.submit(
                op::Timeout::new(sweep_interval(idle))
                    .key(SERVER_KEY)
                    .user(SWEEP),
            )?;
        }
        let mut workers = Vec::with_capacity(shared.config.workers);
        for i in 0..shared.config.workers {
            let sh = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ringport-worker-{i}"))
                .spawn(move || worker(sh, i));
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => {
                    let missing = shared.config.workers - i;
                    shared.workers_alive.fetch_sub(missing, Ordering::SeqCst);
                    shared.workers_running.fetch_sub(missing, Ordering::SeqCst);
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
            shared.port.backend(),
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

/// The idle sweep's period. A connection active since the previous round
/// counts as active at this round, so it is closed between the timeout and
/// the timeout plus two periods after its last activity.
fn sweep_interval(idle: Duration) -> Duration {
    (idle / 8).max(Duration::from_millis(5))
}

/// State shared by the workers, the connections and the [`Server`] handle.
pub(crate) struct Shared {
    pub port: CompletionPort,
    pub handler: Box<dyn Handler>,
    pub registry: Registry,
    pub counters: Counters,
    pub config: Config,
    stopping: AtomicBool,
    epoch: Instant,
    listener: Mutex<Option<Handle>>,
    parked_accepts: AtomicUsize,
    retry_pending: AtomicBool,
    backoff_ms: AtomicU64,
    workers_alive: AtomicUsize,
    /// Workers still in their loop (for stop's wait).
    workers_running: AtomicUsize,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
}

impl Shared {
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The accept back-off for a snapshot: whether a retry timer runs, the
    /// accepts waiting for it, and the delay the next back-off would take.
    pub(crate) fn accept_backoff(&self) -> (bool, usize, u64) {
        (
            self.retry_pending.load(Ordering::Relaxed),
            self.parked_accepts.load(Ordering::Relaxed),
            self.backoff_ms.load(Ordering::Relaxed),
        )
    }

    /// A connection's Disconnect callback ran: forget it.
    pub(crate) fn removed(&self, id: ConnId) {
        self.registry.remove(id);
        if self.is_stopping() {
            let _g = self.stop_lock.lock();
            self.stop_cv.notify_all();
        }
    }

    /// Routes one completion: connection completions to their connection
    /// (which puts them in order; `ready` gets the connections whose drain
    /// right this worker took), the server's own into `control`.
    fn route(
        &self,
        mut c: Completion,
        cache: &mut ConnCache,
        control: &mut Vec<Completion>,
        ready: &mut Vec<(ConnId, Option<Action>)>,
    ) {
        if c.key() < FIRST_CONN_KEY {
            control.push(c);
            return;
        }
        let id = ConnId(c.key());
        let Some(conn) = cache.get(&self.registry, id) else {
            // A late completion of a connection already gone.
            if let Some(buf) = c.take_buf::<Vec<u8>>() {
                self.port.recycle(buf);
            }
            return;
        };
        // A pooled receive asked to stop may end with ENOBUFS (out of
        // buffers) instead of ECANCELED: the port only restarts it when
        // nobody asked it to stop. Either way it was stopped on request.
        let code = match c.error_code() {
            Some(libc::ENOBUFS) if c.user() == RECV => Some(libc::ECANCELED),
            other => other,
        };
        let result = match code {
            Some(e) => Err(e),
            None => Ok(c.result().unwrap_or(0)),
        };
        let user = c.user();
        let first = match user & KIND_MASK {
            RECV if c.more() => {
                let ev = Event::Data(c.take_buf::<Vec<u8>>().unwrap_or_default());
                conn.deliver(Stream::Recv(c.id()), c.seq(), ev)
            }
            RECV => conn.deliver(Stream::Recv(c.id()), c.seq(), Event::RecvEnd(result)),
            SEND => {
                let ev = Event::Sent(result, c.take_buf::<Vec<u8>>());
                conn.deliver(Stream::Send, user >> USER_SHIFT, ev)
            }
            KICK => {
                // The poster took the drain right for us.
                ready.push((id, None));
                return;
            }
            _ => None,
        };
        if first.is_some() {
            ready.push((id, first));
        }
    }

    /// Handles a completion of the server's own; false means "exit".
    fn control(self: &Arc<Self>, mut c: Completion) -> bool {
        match c.user() {
            ACCEPT => self.on_accept(&mut c),
            ACCEPT_RETRY => {
                self.retry_pending.store(false, Ordering::SeqCst);
                if !c.is_cancelled() && !self.is_stopping() {
                    let took =
                        self.parked_accepts
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                    if took.is_ok() {
                        self.post_accept();
                    }
                }
            }
            SWEEP if !c.is_cancelled() && !self.is_stopping() => self.sweep(),
            EXIT => {
                // Pass the exit on: a batch may have given this worker
                // several packets, and each worker must see one.
                if self.workers_alive.fetch_sub(1, Ordering::SeqCst) > 1 {
                    let _ = self
                        .port
                        .post(op::Packet::new(0).key(SERVER_KEY).user(EXIT));
                }
                return false;
            }
            _ => {}
        }
        true
    }

    /// One multishot accept instead of `accepts` single ones: where the
    /// backend has it (io_uring) and no accept waits for first data.
    fn multishot_accept(&self) -> bool {
        self.port.backend() == BackendKind::IoUring && !self.config.first_data
    }

    fn post_accept(&self) {
        if self.is_stopping() {
            return;
        }
        let posted = {
            let listener = self.listener.lock();
            let Some(l) = listener.as_ref() else {
                return;
            };
            if self.multishot_accept() {
                self.port
                    .submit(op::Accept::new(l).multishot().user(ACCEPT))
            } else if self.config.first_data {
                let buf = Vec::with_capacity(self.config.recv_buffer);
                self.port
                    .submit(op::Accept::new(l).first_data(buf).user(ACCEPT))
            } else {
                self.port.submit(op::Accept::new(l).user(ACCEPT))
            }
        };
        if posted.is_ok() {
            Counters::add(&self.counters.accepts_posted, 1);
        }
        if let Err(e) = posted {
            if !self.is_stopping() {
                tracing::warn!("posting an accept failed: {e}; retrying later");
                self.park_accept();
            }
        }
    }

    /// Puts a failed accept aside and makes sure a retry timer runs: at most
    /// one accept is retried per backoff period, so a lack of descriptors
    /// costs no CPU.
    fn park_accept(&self) {
        self.parked_accepts.fetch_add(1, Ordering::SeqCst);
        if self.retry_pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let ms = self.backoff_ms.load(Ordering::SeqCst);
        self.backoff_ms
            .store((ms * 2).min(BACKOFF_MAX_MS), Ordering::SeqCst);
        if let Err(e) = self.port.submit(
            op::Timeout::new(Duration::from_millis(ms))
                .key(SERVER_KEY)
                .user(ACCEPT_RETRY),
        ) {
            self.retry_pending.store(false, Ordering::SeqCst);
            tracing::debug!("accept retry timer: {e}");
        }
    }

    fn on_accept(self: &Arc<Self>, c: &mut Completion) {
        let Some(code) = c.error_code() else {
            if self.backoff_ms.swap(BACKOFF_START_MS, Ordering::SeqCst) != BACKOFF_START_MS {
                tracing::info!("accepting again");
            }
            let first = c.take_buf::<Vec<u8>>();
            let accepted = c.take_accepted().ok();
            // A multishot accept's results say `more`: it stays posted.
            if !c.more() {
                self.post_accept();
            }
            for _ in 0..self.parked_accepts.swap(0, Ordering::SeqCst) {
                self.post_accept();
            }
            if let Some(acc) = accepted {
                self.open(acc, first);
            }
            return;
        };
        if c.is_cancelled() {
            return;
        }
        match code {
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                Counters::add(&self.counters.accept_exhausted, 1);
                if !self.retry_pending.load(Ordering::SeqCst) {
                    tracing::warn!(
                        "accept failed: {}; backing off",
                        io::Error::from_raw_os_error(code)
                    );
                }
                self.park_accept();
            }
            libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO | libc::EPERM => {
                Counters::add(&self.counters.accept_errors, 1);
                self.post_accept();
            }
            _ => {
                Counters::add(&self.counters.accept_errors, 1);
                tracing::warn!("accept failed: {}", io::Error::from_raw_os_error(code));
                self.park_accept();
            }
        }
    }

    /// Sets up an accepted connection; this worker drains it first, so
    /// `on_connect` comes before anything else.
    fn open(self: &Arc<Self>, acc: ringport::Accepted, first: Option<Vec<u8>>) {
        if self.is_stopping() {
            return;
        }
        if self.registry.len() >= self.config.max_connections {
            Counters::add(&self.counters.rejected, 1);
            let _ = SockRef::from(&acc.socket).set_linger(Some(Duration::ZERO));
            return;
        }
        let sock = SockRef::from(&acc.socket);
        if self.config.nodelay {
            let _ = sock.set_tcp_nodelay(true);
        }
        if let Some(idle) = self.config.keepalive {
            let _ = sock.set_keepalive(true);
            let _ = sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle));
        }
        let conn = self
            .registry
            .insert(|id| Connection::new(id, acc.local, acc.peer, self.clone(), first));
        Counters::add(&self.counters.connections_total, 1);
        match self.port.associate(acc.socket, conn.id().as_u64()) {
            Ok(h) => conn.attach(h),
            Err(e) => conn.close_with(DisconnectReason::Error(e), CloseMode::Abortive),
        }
        if self.is_stopping() {
            conn.close_with(DisconnectReason::Shutdown, CloseMode::Graceful);
        }
        PENDING.with(|p| p.borrow_mut().push((conn, None)));
    }

    fn sweep(&self) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let now = self.now_ms();
        let limit = idle.as_millis() as u64;
        self.registry.for_each(|conn| {
            if conn.idle_ms(now) >= limit {
                conn.close_with(DisconnectReason::IdleTimeout, CloseMode::Idle);
            }
        });
        if let Err(e) = self.port.submit(
            op::Timeout::new(sweep_interval(idle))
                .key(SERVER_KEY)
                .user(SWEEP),
        ) {
            tracing::debug!("idle sweep timer: {e}");
        }
    }

    /// Waits until every worker has left its loop or `deadline` passes.
    fn wait_workers(&self, deadline: Instant) -> bool {
        let mut g = self.stop_lock.lock();
        while self.workers_running.load(Ordering::SeqCst) > 0 {
            if self.stop_cv.wait_until(&mut g, deadline).timed_out() {
                return self.workers_running.load(Ordering::SeqCst) == 0;
            }
        }
        true
    }

    /// Waits until every connection is gone or `deadline` passes.
    fn wait_empty(&self, deadline: Instant) -> bool {
        let mut g = self.stop_lock.lock();
        while self.registry.len() > 0 {
            if self.stop_cv.wait_until(&mut g, deadline).timed_out() {
                return self.registry.len() == 0;
            }
        }
        true
    }
}

fn worker(sh: Arc<Shared>, index: usize) {
    worker_loop(&sh, index);
    if sh.config.workers == 1 {
        // The only thread that may reap a single-thread ring: reap what is
        // still in flight before leaving (the port is done anyway).
        sh.port.shutdown();
    }
    sh.workers_running.fetch_sub(1, Ordering::SeqCst);
    let _g = sh.stop_lock.lock();
    sh.stop_cv.notify_all();
}

fn worker_loop(sh: &Arc<Shared>, index: usize) {
    IN_WORKER.with(|w| w.set(true));
    sh.counters.enter_worker(index);
    let batch_max = if sh.config.workers == 1 {
        BATCH_ALONE
    } else {
        BATCH
    };
    let mut batch = Vec::with_capacity(batch_max);
    let mut control = Vec::new();
    let mut ready = Vec::with_capacity(batch_max);
    let mut cache = ConnCache::default();
    loop {
        // No lock around the dequeue: connections put their completions
        // back in order themselves (see the `conn` module docs).
        match sh.port.get_many(&mut batch, batch_max, WAIT) {
            Ok(n) => sh.counters.add_hot(Hot::Completions, n as u64),
            Err(GetError::Closed) => return,
            Err(GetError::TimedOut) => continue,
            Err(GetError::Io(e)) => {
                tracing::error!("worker: the completion port failed: {e}");
                return;
            }
        }
        for c in batch.drain(..) {
            sh.route(c, &mut cache, &mut control, &mut ready);
        }
        let mut keep_going = true;
        for c in control.drain(..) {
            keep_going &= sh.control(c);
        }
        for (id, first) in ready.drain(..) {
            // This worker holds the connection's drain right, so nobody
            // else can have run its Disconnect and freed its slot: it is
            // still the cache's entry.
            match cache.peek(id) {
                Some(conn) => conn.drain(first),
                None => match sh.registry.get(id) {
                    Some(conn) => conn.drain(first),
                    None => tracing::error!("connection {id}: lost before its drain"),
                },
            }
            run_pending();
        }
        run_pending();
        if !keep_going {
            return;
        }
    }
}

/// A running server (the seeds' `CIOCPModel` after `Start`).
///
/// Dropping it stops it as [`stop`](Self::stop) does.
///
/// ```
/// use ringport_server::{Connection, Handler, Server};
/// use std::io::{Read, Write};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_data(&self, conn: &Connection, data: Vec<u8>) {
///         let _ = conn.send(data);
///     }
/// }
/// let server = Server::builder().bind("127.0.0.1".parse()?).start(Echo)?;
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"ping")?;
/// let mut back = [0; 4];
/// client.read_exact(&mut back)?;
/// assert_eq!(&back, b"ping");
/// drop(client);
/// let stats = server.stop();
/// assert_eq!(stats.bytes_out, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
    stopped: bool,
}

impl Server {
    /// A builder with the defaults listed at [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The address the server listens on (with the actual port when port 0
    /// was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The backend of the server's completion port.
    pub fn backend(&self) -> BackendKind {
        self.shared.port.backend()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot(self.shared.registry.len())
    }

    /// The registry of live connections.
    pub fn connections(&self) -> Connections {
        Connections {
            shared: self.shared.clone(),
        }
    }

    /// Stops the server within the builder's stop deadline and returns the
    /// final counters. See [`stop_within`](Self::stop_within).
    pub fn stop(self) -> Stats {
        let deadline = self.shared.config.stop_deadline;
        self.stop_within(deadline)
    }

    /// Stops the server (the seeds' `Stop`): stops accepting; stops reading
    /// and lets queued sends flush for most of `deadline`; then closes what
    /// remains abortively; every connection is reported with
    /// [`DisconnectReason::Shutdown`] (unless it ended otherwise first);
    /// the workers are told to exit with one packet each and joined; the
    /// port is shut down and every descriptor closed. Returns within
    /// `deadline` unless a callback blocks.
    pub fn stop_within(mut self, deadline: Duration) -> Stats {
        self.stop_inner(deadline)
    }

    fn stop_inner(&mut self, deadline: Duration) -> Stats {
        self.stopped = true;
        let sh = &self.shared;
        let start = Instant::now();
        sh.stopping.store(true, Ordering::SeqCst);
        if let Some(listener) = sh.listener.lock().take() {
            sh.port.cancel_handle(&listener);
        }
        sh.registry
            .for_each(|c| c.close_with(DisconnectReason::Shutdown, CloseMode::Graceful));
        if !sh.wait_empty(start + deadline.mul_f64(0.8)) {
            sh.registry
                .for_each(|c| c.close_with(DisconnectReason::Shutdown, CloseMode::Abortive));
            if !sh.wait_empty(start + deadline) {
                tracing::warn!(
                    "stop: {} connections still had callbacks running at the deadline",
                    sh.registry.len()
                );
            }
        }
        if !self.workers.is_empty()
            && sh
                .port
                .post(op::Packet::new(0).key(SERVER_KEY).user(EXIT))
                .is_err()
        {
            sh.port.shutdown();
        }
        // The exit packets normally end every worker at once; should one
        // not come out of `get` (a lost wake-up), shutting the port down
        // makes `get` fail in every thread.
        if !sh.wait_workers(Instant::now() + EXIT_GRACE) {
            tracing::warn!("stop: workers did not take their exit packets; shutting the port down");
            sh.port.shutdown();
        }
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::error!("stop: a worker panicked");
            }
        }
        // Nobody runs callbacks any more: let go of what is left.
        for conn in sh.registry.snapshot() {
            conn.release();
            sh.registry.remove(conn.id());
        }
        sh.port.shutdown();
        sh.counters.snapshot(sh.registry.len())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let deadline = self.shared.config.stop_deadline;
            self.stop_inner(deadline);
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.backend())
            .field("connections", &self.shared.registry.len())
            .finish()
    }
}

/// The registry of a server's live connections (the seeds' client context
/// list), sharded so that no lock is shared by every packet. Cheap to clone;
/// usable from any thread.
///
/// ```
/// # fn f(server: &ringport_server::Server) {
/// let conns = server.connections();
/// println!("{} clients", conns.len());
/// let reached = conns.broadcast(b"server going down in 5 s\n");
/// # }
/// ```
#[derive(Clone)]
pub struct Connections {
    pub(crate) shared: Arc<Shared>,
}

impl Connections {
    /// Connections open now.
    pub fn len(&self) -> usize {
        self.shared.registry.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection with this id, if it is still registered.
    pub fn get(&self, id: ConnId) -> Option<Connection> {
        self.shared.registry.get(id)
    }

    /// Every live connection (a copy of the list).
    pub fn snapshot(&self) -> Vec<Connection> {
        self.shared.registry.snapshot()
    }

    /// Calls `f` for each live connection, holding no lock while `f` runs.
    pub fn for_each(&self, f: impl FnMut(&Connection)) {
        self.shared.registry.for_each(f);
    }

    /// Sends a copy of `data` to every open connection with
    /// [`Connection::try_send`], skipping clients whose send queue is full;
    /// returns how many it was queued for.
    pub fn broadcast(&self, data: &[u8]) -> usize {
        let mut n = 0;
        self.for_each(|c| n += usize::from(c.try_send(data).is_ok()));
        n
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("len", &self.len())
            .finish()
    }
}
