//! One connection: the public handle ([`Connection`]: send, close, its
//! addresses), the hand-over of its completions, and the inbox that runs its
//! callbacks one at a time, in order.
//!
//! # Why an inbox
//!
//! Any worker may dequeue any completion, so completions of one connection
//! can be in two workers' hands at once. Workers dequeue without any shared
//! lock and hand each completion to its connection ([`Connection::deliver`]),
//! which puts it back in order ([`reorder`](crate::reorder)) before it
//! enters the inbox. A connection's inbox is drained by one worker at a
//! time: the one holding its drain right. So callbacks of one connection
//! never overlap, see bytes in the order they arrived and sends in the
//! order they were posted.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use ringport::op;
use ringport::{Address, Blocking, Handle, IoBuf, OpId};

use crate::activity::Activity;
use crate::conn_meter::ConnMeter;
use crate::conn_state::{CloseMode, State};
use crate::env::{AppState, Env};
use crate::event::{Action, Event};
use crate::id::ConnId;
use crate::reason::DisconnectReason;
use crate::reorder::Stream;
use crate::stats::Hot;
use crate::tag::Tag;
use crate::timer::TimerId;

/// What [`Connection::local_addr`] and [`Connection::peer_addr`] say for an
/// address that is not an IP one.
const UNSPECIFIED: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The server's shared state as a connection sees it.
pub(crate) type ServerEnv = Env<Connection>;

thread_local! {
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
    /// Connections this worker holds the drain right of, to run after the
    /// completion at hand (never nested inside another callback).
    static PENDING: RefCell<Vec<Connection>> = const { RefCell::new(Vec::new()) };
}

/// Marks the calling thread as a worker: drains it schedules run on it,
/// after the completion at hand.
pub(crate) fn enter_worker() {
    IN_WORKER.with(|w| w.set(true));
}

/// Drains the connections this worker took the drain right of.
pub(crate) fn run_pending() {
    while let Some(conn) = PENDING.with(|p| p.borrow_mut().pop()) {
        conn.drain(None);
    }
}

pub(crate) struct Inner {
    id: ConnId,
    /// Known once the connection is established.
    local: OnceLock<Address>,
    peer: Address,
    env: Arc<ServerEnv>,
    /// For the deadline sweep.
    activity: Activity,
    /// Removed from the registry (its last callback ran).
    gone: AtomicBool,
    queued: AtomicUsize,
    /// Bytes in and out and age, for snapshots (`Server::monitor`).
    pub(crate) meter: ConnMeter,
    state: Mutex<State>,
    /// The handler's state of this connection: locked by the worker that
    /// holds the drain right, for the callbacks it runs (so never
    /// contended).
    app: Mutex<AppState>,
}

/// A client connection (the seeds' per-handle `PER_SOCKET_CONTEXT`).
///
/// Cheap to clone and usable from any thread: keep clones to send to a
/// client later or from elsewhere (a broadcast). Sends are queued in order
/// and partial sends are finished by the port. After the connection ended,
/// sends fail with `NotConnected`.
///
/// ```no_run
/// use ringport_server::{Connection, Handler, Server};
///
/// struct Greeter;
/// impl Handler for Greeter {
///     type State = ();
///     fn on_connect(&self, conn: &Connection, _first: Option<Vec<u8>>) {
///         let _ = conn.send(format!("hello {}\n", conn.peer_addr()).into_bytes());
///     }
///     fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
///         if data.starts_with(b"quit") {
///             conn.close(); // after what is queued has been sent
///         }
///     }
/// }
/// let server = Server::builder().port(7000).start(Greeter)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<Inner>,
}

impl Connection {
    /// A connection being set up: its first event is `Connect`, and the
    /// caller holds the right to drain it.
    pub(crate) fn new(
        id: ConnId,
        local: Address,
        peer: Address,
        env: Arc<ServerEnv>,
        first_data: Option<Vec<u8>>,
    ) -> Connection {
        let conn = Connection::with_state(id, peer, env, State::new(id, first_data));
        let _ = conn.inner.local.set(local);
        conn
    }

    /// An outbound connection to `peer`, before its connect is posted.
    pub(crate) fn outbound(id: ConnId, peer: SocketAddr, env: Arc<ServerEnv>) -> Connection {
        Connection::with_state(id, Address::Ip(peer), env, State::outbound(id))
    }

    fn with_state(id: ConnId, peer: Address, env: Arc<ServerEnv>, state: State) -> Connection {
        let now = env.now_ms();
        Connection {
            inner: Arc::new(Inner {
                id,
                local: OnceLock::new(),
                peer,
                env,
                activity: Activity::new(now),
                gone: AtomicBool::new(false),
                queued: AtomicUsize::new(0),
                meter: ConnMeter::new(now),
                state: Mutex::new(state),
                app: Mutex::new(None),
            }),
        }
    }

    /// The connection's deadline clocks.
    pub(crate) fn activity(&self) -> &Activity {
        &self.inner.activity
    }

    /// The connection's state, locked.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    pub(crate) fn env(&self) -> &Arc<ServerEnv> {
        &self.inner.env
    }

    /// The connection's id (and completion key).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// let same = conn.connections().get(conn.id());
    /// # }
    /// ```
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// The server's IP address of this connection (0.0.0.0:0 for an
    /// outbound connection not established yet, and for a connection on a
    /// Unix socket: see [`local_address`](Self::local_address)).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// println!("reached us on {}", conn.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .local
            .get()
            .and_then(Address::ip)
            .unwrap_or(UNSPECIFIED)
    }

    /// The peer's IP address (the client's, or the service an outbound
    /// connection goes to; 0.0.0.0:0 for a connection on a Unix socket: see
    /// [`peer_address`](Self::peer_address)).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// println!("client {}", conn.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer.ip().unwrap_or(UNSPECIFIED)
    }

    /// The server's address of this connection, of any family: an IP
    /// address, or the path (or abstract name) of the Unix listener that
    /// accepted it; [`Address::Unnamed`] for an outbound connection not
    /// established yet.
    ///
    /// ```
    /// use ringport::Address;
    /// # fn f(conn: &ringport_server::Connection) {
    /// match conn.local_address() {
    ///     Address::Path(p) => println!("reached us at {}", p.display()),
    ///     other => println!("reached us on {other}"),
    /// }
    /// # }
    /// ```
    pub fn local_address(&self) -> Address {
        self.inner.local.get().cloned().unwrap_or(Address::Unnamed)
    }

    /// The peer's address, of any family: an IP address, or for a client
    /// of a Unix listener most often [`Address::Unnamed`] (a client that
    /// did not bind its socket).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// println!("client {}", conn.peer_address());
    /// # }
    /// ```
    pub fn peer_address(&self) -> &Address {
        &self.inner.peer
    }

    /// Bytes queued for sending and not yet sent.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// if conn.queued() > 64 * 1024 {
    ///     println!("{} is slow to read", conn.peer_addr());
    /// }
    /// # }
    /// ```
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Memory the connection holds now, as flow control counts it: the
    /// buffers of its queued sends and of received data not yet handed to
    /// [`Handler::on_data`](crate::Handler::on_data) (their capacity). Flow
    /// control keeps it under the server's send-queue limit plus about one
    /// receive buffer, unless the handler itself sends more than that.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// println!("{} bytes held for {}", conn.held(), conn.id());
    /// # }
    /// ```
    pub fn held(&self) -> usize {
        self.inner.state.lock().held()
    }

    /// Whether the connection was removed from the server's registry.
    pub(crate) fn is_gone(&self) -> bool {
        self.inner.gone.load(Ordering::Acquire)
    }

    /// Whether the connection is still open (not closed, not closing).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// conn.close();
    /// assert!(!conn.is_open());
    /// # }
    /// ```
    pub fn is_open(&self) -> bool {
        self.inner.state.lock().is_open()
    }

    /// Queues `data` to be sent after what is already queued; the port
    /// finishes partial sends. `data` is any buffer the port can send: a
    /// `Vec<u8>` (given back to the receive pool once sent), or a shared
    /// one (`Arc<[u8]>`, `bytes::Bytes`) that many connections send without
    /// a copy each. When the queue grows past the server's send-queue
    /// limit, the connection stops being read until it drains (flow
    /// control); the data is queued anyway. Use
    /// [`try_send`](Self::try_send) to refuse instead.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) -> std::io::Result<()> {
    /// conn.send(b"hello\n".to_vec())?;
    /// conn.send(format!("you are {}\n", conn.peer_addr()).into_bytes())?;
    /// let shared: std::sync::Arc<[u8]> = b"news\n".as_slice().into();
    /// conn.send(shared)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NotConnected` once the connection is closed or closing; a port error.
    pub fn send(&self, data: impl IoBuf) -> io::Result<()> {
        self.send_inner(data, false)
    }

    /// As [`send`](Self::send), but refuses with `WouldBlock` while the send
    /// queue is at or over the server's limit: for data the server
    /// generates itself (broadcasts), so a client that does not read cannot
    /// make it grow.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// if conn.try_send(b"tick\n".to_vec()).is_err() {
    ///     println!("{} is behind; tick skipped", conn.id());
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// `WouldBlock` over the limit; otherwise as [`send`](Self::send).
    pub fn try_send(&self, data: impl IoBuf) -> io::Result<()> {
        self.send_inner(data, true)
    }

    fn send_inner<B: IoBuf>(&self, data: B, refuse_over_limit: bool) -> io::Result<()> {
        let n = data.len();
        if n == 0 {
            return Ok(());
        }
        let env = &self.inner.env;
        let mut st = self.inner.state.lock();
        if !st.is_open() {
            return Err(not_connected());
        }
        let Some(h) = st.handle.as_ref() else {
            return Err(not_connected());
        };
        if refuse_over_limit && st.held() >= env.config.send_queue_limit {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the connection's send queue is full",
            ));
        }
        let mem = send_mem(&data);
        let tag = st.next_send();
        env.port
            .submit(op::SendAll::new(h, data).user(tag.user()))?;
        if st.queued == 0 {
            // The write deadline counts from here.
            self.inner.activity.send.mark();
        }
        st.sent_posted(n, mem);
        self.inner.queued.store(st.queued, Ordering::Relaxed);
        st.check_limit(env);
        Ok(())
    }

    /// Closes the connection gracefully: stops reading, sends what is
    /// queued, then closes (FIN). The handler sees
    /// [`DisconnectReason::Closed`].
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// let _ = conn.send(b"bye\n".to_vec());
    /// conn.close(); // "bye" is sent first
    /// # }
    /// ```
    pub fn close(&self) {
        self.close_with(DisconnectReason::Closed, CloseMode::Graceful);
    }

    /// Closes the connection at once with a reset (SO_LINGER 0), dropping
    /// queued data. The handler sees [`DisconnectReason::Closed`].
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// conn.abort();
    /// # }
    /// ```
    pub fn abort(&self) {
        self.close_with(DisconnectReason::Closed, CloseMode::Abortive);
    }

    pub(crate) fn close_with(&self, reason: DisconnectReason, mode: CloseMode) {
        let claimed = {
            let mut st = self.inner.state.lock();
            st.begin_close(&self.inner.env, reason, mode);
            st.claim()
        };
        if claimed {
            self.schedule_drain();
        }
    }

    /// Makes sure a connection whose drain right the caller took gets
    /// drained: on a worker after its current completion, otherwise by a
    /// worker woken with a packet.
    pub(crate) fn schedule_drain(&self) {
        if IN_WORKER.with(Cell::get) {
            PENDING.with(|p| p.borrow_mut().push(self.clone()));
        } else if self
            .inner
            .env
            .port
            .post(
                op::Packet::new(0)
                    .key(self.id().as_u64())
                    .user(Tag::Kick.user()),
            )
            .is_err()
        {
            // The port is gone: nobody else will run the callbacks.
            self.drain(None);
        }
    }

    /// Arms a one-shot timer: [`Handler::on_timer`](crate::Handler::on_timer)
    /// runs for this connection with the returned id after `after` (in
    /// order with its other callbacks), unless it was cancelled or the
    /// connection ended first: a connection's timers are cancelled when it
    /// ends. A login deadline, a delayed reply.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) -> std::io::Result<()> {
    /// let login_deadline = conn.set_timer(std::time::Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NotConnected` once the connection ended; a port error.
    pub fn set_timer(&self, after: Duration) -> io::Result<TimerId> {
        self.inner
            .state
            .lock()
            .set_timer(&self.inner.env, after, None)
    }

    /// Arms a periodic timer: [`Handler::on_timer`](crate::Handler::on_timer)
    /// runs every `every` until [`cancel_timer`](Self::cancel_timer) or the
    /// end of the connection (a heartbeat).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) -> std::io::Result<()> {
    /// let heartbeat = conn.set_periodic(std::time::Duration::from_secs(1))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`set_timer`](Self::set_timer).
    pub fn set_periodic(&self, every: Duration) -> io::Result<TimerId> {
        self.inner
            .state
            .lock()
            .set_timer(&self.inner.env, every, Some(every))
    }

    /// Cancels a timer of this connection; returns whether it was armed.
    /// Once this returns, the timer's callback is not called (any more).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) -> std::io::Result<()> {
    /// let t = conn.set_timer(std::time::Duration::from_secs(10))?;
    /// assert!(conn.cancel_timer(t));
    /// assert!(!conn.cancel_timer(t));
    /// # Ok(()) }
    /// ```
    pub fn cancel_timer(&self, timer: TimerId) -> bool {
        self.inner
            .state
            .lock()
            .timers
            .cancel(&self.inner.env.port, timer)
    }

    /// Declares that the calling callback is about to block (a database
    /// query, a file read): until the guard is dropped, the worker's running
    /// slot is free, so another worker serves other connections meanwhile
    /// (as IOCP does when a running thread blocks). This connection's own
    /// callbacks still wait for this one.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// let row = {
    ///     let _blocking = conn.blocking();
    ///     std::fs::read_to_string("/etc/hostname") // stands for a slow query
    /// };
    /// # }
    /// ```
    pub fn blocking(&self) -> Blocking<'_> {
        self.inner.env.port.blocking()
    }

    /// Gives the connection its associated handle and starts reading, or
    /// drops the handle when the connection was closed meanwhile.
    pub(crate) fn attach(&self, handle: Handle) {
        self.inner.state.lock().attach(&self.inner.env, handle);
    }

    /// Hands over the completion numbered `seq` of `stream`: it enters the
    /// inbox in its turn (with any early ones it was holding up), or waits.
    /// When nobody is draining the connection, the caller takes the drain
    /// right and gets the first event's callback to run (its state change
    /// made here, under the same lock): it must then
    /// [`drain`](Self::drain) the connection.
    pub(crate) fn deliver(&self, stream: Stream<OpId>, seq: u64, ev: Event) -> Option<Action> {
        let mut st = self.inner.state.lock();
        st.accept(stream, seq, ev);
        if st.inbox_mem > 0 {
            st.check_limit(&self.inner.env);
        }
        self.take_turn(&mut st)
    }

    /// As [`deliver`](Self::deliver), for a change `f` makes to the state
    /// (a timer, a connect) that may queue an event.
    pub(crate) fn deliver_with(&self, f: impl FnOnce(&mut State, &ServerEnv)) -> Option<Action> {
        let mut st = self.inner.state.lock();
        f(&mut st, &self.inner.env);
        if self.inner.local.get().is_none() {
            if let Some(local) = st.handle.as_ref().and_then(local_addr_of) {
                let _ = self.inner.local.set(Address::Ip(local));
            }
        }
        self.take_turn(&mut st)
    }

    /// Takes the drain right if nobody holds it and there is an event:
    /// returns that event's callback to run.
    fn take_turn(&self, st: &mut State) -> Option<Action> {
        if st.draining {
            return None;
        }
        let ev = st.inbox.pop_front()?;
        st.draining = true;
        Some(self.prepare(st, ev))
    }

    /// Runs `first` (the action of the event the caller took the drain
    /// right with, if any), then the queued events' callbacks; the caller
    /// holds the drain right. Each event's state change is made when it is
    /// taken from the inbox, under the lock that takes it; its callback
    /// runs after, without the lock.
    pub(crate) fn drain(&self, first: Option<Action>) {
        const FAIR_SHARE: usize = 64;
        let mut app = self.inner.app.lock();
        let mut ran = 0;
        if let Some(action) = first {
            self.run(&mut app, action);
            ran = 1;
        }
        while ran < FAIR_SHARE {
            let action = {
                let mut st = self.inner.state.lock();
                match st.inbox.pop_front() {
                    Some(ev) => self.prepare(&mut st, ev),
                    None => {
                        st.draining = false;
                        return;
                    }
                }
            };
            self.run(&mut app, action);
            ran += 1;
        }
        drop(app);
        // Let other connections' completions run; a worker continues later.
        if self
            .inner
            .env
            .port
            .post(
                op::Packet::new(0)
                    .key(self.id().as_u64())
                    .user(Tag::Kick.user()),
            )
            .is_err()
        {
            self.drain(None);
        }
    }

    /// The state change of an event taken from the inbox (under the lock);
    /// returns the callback to run.
    fn prepare(&self, st: &mut State, ev: Event) -> Action {
        let action = st.prepare(&self.inner.env, ev);
        if let Action::Sent(_, report) = &action {
            self.inner.queued.store(st.queued, Ordering::Relaxed);
            if let Some(n) = report {
                self.inner.meter.add_out(*n as u64);
                let activity = &self.inner.activity;
                activity.any.mark();
                activity.send.mark();
            }
        }
        action
    }

    /// Runs an event's callback (without the lock).
    fn run(&self, app: &mut AppState, action: Action) {
        let env = &self.inner.env;
        match action {
            Action::Data(buf) => {
                env.counters.add_hot(Hot::BytesIn, buf.len() as u64);
                self.inner.meter.add_in(buf.len() as u64);
                let activity = &self.inner.activity;
                activity.any.mark();
                activity.recv.mark();
                env.callbacks.run(self, app, Action::Data(buf));
            }
            Action::Sent(buf, report) => {
                if let Some(buf) = buf {
                    env.port.recycle(buf);
                }
                if report.is_some() {
                    env.callbacks.run(self, app, Action::Sent(None, report));
                }
            }
            Action::Nothing => {}
            action if action.is_last() => {
                env.callbacks.run(self, app, action);
                self.inner.gone.store(true, Ordering::Release);
                env.removed(self.id());
            }
            action => env.callbacks.run(self, app, action),
        }
    }

    /// Drops the handle of a connection that never got to finalize (the
    /// server's last resort after its workers are gone).
    pub(crate) fn release(&self) {
        let h = self.inner.state.lock().handle.take();
        if let Some(h) = h {
            self.inner.env.port.cancel_handle(&h);
        }
    }
}

/// The memory a queued send's buffer counts for: a `Vec`'s capacity (it
/// is this connection's), the length of anything else.
pub(crate) fn send_mem<B: IoBuf>(data: &B) -> usize {
    (data as &dyn Any)
        .downcast_ref::<Vec<u8>>()
        .map_or(data.len(), Vec::capacity)
}

fn local_addr_of(h: &Handle) -> Option<SocketAddr> {
    socket2::SockRef::from(h).local_addr().ok()?.as_socket()
}

fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer)
            .field("queued", &self.queued())
            .finish()
    }
}
