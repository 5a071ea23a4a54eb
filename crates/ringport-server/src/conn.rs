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

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use ringport::op;
use ringport::{Handle, OpId};

use crate::conn_state::{CloseMode, State};
use crate::env::Env;
use crate::event::{Action, Event};
use crate::id::ConnId;
use crate::reason::DisconnectReason;
use crate::reorder::Stream;
use crate::stats::Hot;
use crate::tag::Tag;

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
    local: SocketAddr,
    peer: SocketAddr,
    env: Arc<ServerEnv>,
    /// Milliseconds since the server started at which the connection was
    /// last seen active: set at creation and by the idle sweep, which
    /// finds `active` set when bytes were received or a send completed
    /// since its previous round (so no clock is read per message).
    last_active: AtomicU64,
    active: AtomicBool,
    /// Removed from the registry (its Disconnect callback ran).
    gone: AtomicBool,
    queued: AtomicUsize,
    state: Mutex<State>,
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
///     fn on_connect(&self, conn: &Connection, _first: Option<Vec<u8>>) {
///         let _ = conn.send(format!("hello {}\n", conn.peer_addr()));
///     }
///     fn on_data(&self, conn: &Connection, data: Vec<u8>) {
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
        local: SocketAddr,
        peer: SocketAddr,
        env: Arc<ServerEnv>,
        first_data: Option<Vec<u8>>,
    ) -> Connection {
        let now = env.now_ms();
        Connection {
            inner: Arc::new(Inner {
                id,
                local,
                peer,
                env,
                last_active: AtomicU64::new(now),
                active: AtomicBool::new(false),
                gone: AtomicBool::new(false),
                queued: AtomicUsize::new(0),
                state: Mutex::new(State::new(first_data)),
            }),
        }
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

    /// The server's address of this connection.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// println!("reached us on {}", conn.local_addr());
    /// # }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The client's address.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// println!("client {}", conn.peer_addr());
    /// # }
    /// ```
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
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
    /// finishes partial sends. When the queue grows past the server's
    /// send-queue limit, the connection stops being read until it drains
    /// (flow control); the data is queued anyway. Use
    /// [`try_send`](Self::try_send) to refuse instead.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) -> std::io::Result<()> {
    /// conn.send(b"hello\n".to_vec())?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `NotConnected` once the connection is closed or closing; a port error.
    pub fn send(&self, data: impl Into<Vec<u8>>) -> io::Result<()> {
        self.send_inner(data.into(), false)
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
    pub fn try_send(&self, data: impl Into<Vec<u8>>) -> io::Result<()> {
        self.send_inner(data.into(), true)
    }

    fn send_inner(&self, data: Vec<u8>, refuse_over_limit: bool) -> io::Result<()> {
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
        let mem = data.capacity();
        let tag = st.next_send();
        env.port
            .submit(op::SendAll::new(h, data).user(tag.user()))?;
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

    /// How long the connection has been idle, as the idle sweep sees it at
    /// `now_ms`: activity since the sweep's previous round counts as
    /// happening now, so the idle time is never overestimated.
    pub(crate) fn idle_ms(&self, now_ms: u64) -> u64 {
        let inner = &self.inner;
        if inner.active.load(Ordering::Relaxed) {
            inner.active.store(false, Ordering::Relaxed);
            inner.last_active.store(now_ms, Ordering::Relaxed);
            return 0;
        }
        now_ms.saturating_sub(inner.last_active.load(Ordering::Relaxed))
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
        if st.draining {
            return None;
        }
        let ev = st.inbox.pop_front()?;
        st.draining = true;
        Some(self.prepare(&mut st, ev))
    }

    /// Runs `first` (the action of the event the caller took the drain
    /// right with, if any), then the queued events' callbacks; the caller
    /// holds the drain right. Each event's state change is made when it is
    /// taken from the inbox, under the lock that takes it; its callback
    /// runs after, without the lock.
    pub(crate) fn drain(&self, first: Option<Action>) {
        const FAIR_SHARE: usize = 64;
        let mut ran = 0;
        if let Some(action) = first {
            self.run(action);
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
            self.run(action);
            ran += 1;
        }
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
            if report.is_some() {
                self.touch();
            }
        }
        action
    }

    /// Runs an event's callback (without the lock).
    fn run(&self, action: Action) {
        let env = &self.inner.env;
        match action {
            Action::Data(buf) => {
                env.counters.add_hot(Hot::BytesIn, buf.len() as u64);
                self.touch();
                env.callbacks.run(self, Action::Data(buf));
            }
            Action::Sent(buf, report) => {
                if let Some(buf) = buf {
                    env.port.recycle(buf);
                }
                if report.is_some() {
                    env.callbacks.run(self, Action::Sent(None, report));
                }
            }
            Action::Disconnect(reason) => {
                env.callbacks.run(self, Action::Disconnect(reason));
                self.inner.gone.store(true, Ordering::Release);
                env.removed(self.id());
            }
            Action::Nothing => {}
            action @ Action::Connect(_) => env.callbacks.run(self, action),
        }
    }

    /// Marks the connection active for the idle sweep (when there is one).
    fn touch(&self) {
        let inner = &self.inner;
        if inner.env.config.idle_timeout.is_some() && !inner.active.load(Ordering::Relaxed) {
            inner.active.store(true, Ordering::Relaxed);
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
