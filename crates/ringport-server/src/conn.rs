//! One client connection: its handle, send queue, receive state and the
//! inbox that runs its callbacks one at a time, in order.
//!
//! # Why an inbox
//!
//! A pooled receive stays posted and completes once per chunk, and any
//! worker may dequeue any completion, so two chunks of one connection can be
//! in two workers' hands at once; so can two sends' completions. Workers
//! dequeue without any shared lock and hand each completion to its
//! connection, which puts it back in order before it enters the inbox:
//! chunks of a pooled receive by their [`seq`](ringport::Completion::seq)
//! (the final completion comes last, with the next number), sends by the
//! number the connection gave them when they were posted (in the user
//! value). A completion that arrives ahead of its turn waits in `early`
//! until the ones before it came. A connection's inbox is drained by one
//! worker at a time. So callbacks of one connection never overlap, see bytes
//! in the order they arrived and sends in the order they were posted.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use ringport::op;
use ringport::{Handle, OpId};

use crate::conn_meter::ConnMeter;
use crate::handler::DisconnectReason;
use crate::server::{schedule_drain, Shared, KICK, RECV, SEND, USER_SHIFT};
use crate::stats::{Counters, Hot};

/// Identifies a connection for as long as the server runs; also its
/// completion key on the port. Ids of closed connections are not reused
/// (a slot's generation changes).
///
/// ```
/// # fn f(conn: &ringport_server::Connection) {
/// println!("connection {}", conn.id());
/// let raw: u64 = conn.id().as_u64();
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The raw value (the connection's completion key).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 & 0xffff_ffff, self.0 >> 32)
    }
}

/// What happened to a connection, waiting for its callbacks to run.
pub(crate) enum Event {
    Connect(Option<Vec<u8>>),
    Data(Vec<u8>),
    Sent(Result<usize, i32>, Option<Vec<u8>>),
    RecvEnd(Result<usize, i32>),
    Disconnect(DisconnectReason),
}

/// What remains of an event once the connection's state was updated for
/// it: the callback to run, without the connection's lock.
pub(crate) enum Action {
    Connect(Option<Vec<u8>>),
    Data(Vec<u8>),
    /// A buffer to give back to the pool (data after the connection closed,
    /// or a sent buffer), and the bytes to report to `on_sent`.
    Sent(Option<Vec<u8>>, Option<usize>),
    Disconnect(DisconnectReason),
    Nothing,
}

/// The ordered streams of completions of one connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stream {
    /// The completions of one pooled receive, numbered by `seq`.
    Recv(OpId),
    /// Send completions, numbered in post order.
    Send,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RecvState {
    /// A pooled receive is posted, for at most the room the connection had
    /// under its limit when it was posted.
    Reading(OpId),
    /// Flow control cancelled the receive; its final completion is due.
    Pausing,
    /// Flow control: no receive posted until what the connection holds is
    /// down to half its limit.
    Paused,
    /// Not reading any more (end of stream, error, closing).
    Stopped,
}

/// How [`Connection::close_with`] ends the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CloseMode {
    /// Send what is queued, then close (FIN).
    Graceful,
    /// Close at once with a reset (SO_LINGER 0), dropping queued data.
    Abortive,
    /// Idle timeout: graceful if nothing is queued, abortive otherwise.
    Idle,
}

struct State {
    handle: Option<Handle>,
    recv: RecvState,
    /// Bytes queued for sending and not yet sent.
    queued: usize,
    /// Memory of the queued sends' buffers (their capacity).
    queued_mem: usize,
    inbox: VecDeque<Event>,
    /// Memory of the buffers of the `Data` events in the inbox: received,
    /// not yet handed to the handler. It counts toward the flow-control
    /// limit with `queued_mem`, so a handler that does not keep up (one
    /// that sends nothing back, as well as one whose client does not read)
    /// holds no more than the limit.
    inbox_mem: usize,
    draining: bool,
    /// The pooled receive whose completions are put in order, and the
    /// `seq` of the one to deliver next.
    recv_op: Option<OpId>,
    recv_next: u64,
    /// Sends posted so far (each send's number is in its user value), and
    /// the number of the send whose completion is delivered next.
    sends_posted: u64,
    sent_next: u64,
    /// Completions dequeued ahead of their turn (only with several workers).
    early: Vec<(Stream, u64, Event)>,
    /// A graceful close waits for the send queue to drain.
    closing: Option<DisconnectReason>,
    /// The handle is gone; the Disconnect event is queued or delivered.
    closed: bool,
}

pub(crate) struct Inner {
    id: ConnId,
    local: SocketAddr,
    peer: SocketAddr,
    server: Arc<Shared>,
    /// Milliseconds since the server started at which the connection was
    /// last seen active: set at creation and by the idle sweep, which
    /// finds `active` set when bytes were received or a send completed
    /// since its previous round (so no clock is read per message).
    last_active: AtomicU64,
    active: AtomicBool,
    /// Removed from the registry (its Disconnect callback ran).
    gone: AtomicBool,
    queued: AtomicUsize,
    pub(crate) meter: ConnMeter,
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
        server: Arc<Shared>,
        first_data: Option<Vec<u8>>,
    ) -> Connection {
        let now = server.now_ms();
        Connection {
            inner: Arc::new(Inner {
                id,
                local,
                peer,
                server,
                last_active: AtomicU64::new(now),
                active: AtomicBool::new(false),
                gone: AtomicBool::new(false),
                queued: AtomicUsize::new(0),
                meter: ConnMeter::new(now),
                state: Mutex::new(State {
                    handle: None,
                    recv: RecvState::Stopped,
                    queued: 0,
                    queued_mem: 0,
                    inbox: VecDeque::from([Event::Connect(first_data)]),
                    inbox_mem: 0,
                    draining: true,
                    recv_op: None,
                    recv_next: 0,
                    sends_posted: 0,
                    sent_next: 0,
                    early: Vec::new(),
                    closing: None,
                    closed: false,
                }),
            }),
        }
    }

    pub(crate) fn server(&self) -> &Arc<Shared> {
        &self.inner.server
    }

    /// The connection's id (and completion key).
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// The server's address of this connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Bytes queued for sending and not yet sent.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Memory the connection holds now, as flow control counts it: the
    /// buffers of its queued sends and of received data not yet handed to
    /// [`Handler::on_data`](crate::Handler::on_data) (their capacity). Flow
    /// control keeps it under the server's send-queue limit plus about one
    /// receive buffer, unless the handler itself sends more than that.
    pub fn held(&self) -> usize {
        self.inner.state.lock().held()
    }

    /// Whether the connection was removed from the server's registry.
    pub(crate) fn is_gone(&self) -> bool {
        self.inner.gone.load(Ordering::Acquire)
    }

    /// Whether the connection is still open (not closed, not closing).
    pub fn is_open(&self) -> bool {
        let st = self.inner.state.lock();
        !st.closed && st.closing.is_none()
    }

    /// The registry of the server this connection belongs to, e.g. to
    /// broadcast to every client from a callback.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection, data: &[u8]) {
    /// conn.connections().for_each(|other| {
    ///     let _ = other.try_send(data);
    /// });
    /// # }
    /// ```
    pub fn connections(&self) -> crate::Connections {
        crate::Connections {
            shared: self.inner.server.clone(),
        }
    }

    /// Queues `data` to be sent after what is already queued; the port
    /// finishes partial sends. When the queue grows past the server's
    /// send-queue limit, the connection stops being read until it drains
    /// (flow control); the data is queued anyway. Use
    /// [`try_send`](Self::try_send) to refuse instead.
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
        let sh = &self.inner.server;
        let mut st = self.inner.state.lock();
        if st.closed || st.closing.is_some() {
            return Err(not_connected());
        }
        let Some(h) = st.handle.as_ref() else {
            return Err(not_connected());
        };
        let limit = sh.config.send_queue_limit;
        if refuse_over_limit && st.held() >= limit {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the connection's send queue is full",
            ));
        }
        let user = SEND | (st.sends_posted << USER_SHIFT);
        let mem = data.capacity();
        sh.port.submit(op::SendAll::new(h, data).user(user))?;
        st.sends_posted += 1;
        st.queued += n;
        st.queued_mem += mem;
        self.inner.queued.store(st.queued, Ordering::Relaxed);
        self.check_limit(&mut st);
        Ok(())
    }

    /// Flow control: stops reading while the connection holds more than
    /// the limit (the handler sent more than it was given: a receive never
    /// delivers more than the room there was when it was posted).
    fn check_limit(&self, st: &mut State) {
        let sh = &self.inner.server;
        if st.held() > sh.config.send_queue_limit {
            if let RecvState::Reading(id) = st.recv {
                // Final completion (cancelled) comes as RecvEnd.
                let _ = sh.port.cancel(id);
                st.recv = RecvState::Pausing;
                Counters::add(&sh.counters.read_pauses, 1);
            }
        }
    }

    /// Closes the connection gracefully: stops reading, sends what is
    /// queued, then closes (FIN). The handler sees
    /// [`DisconnectReason::Closed`].
    pub fn close(&self) {
        self.close_with(DisconnectReason::Closed, CloseMode::Graceful);
    }

    /// Closes the connection at once with a reset (SO_LINGER 0), dropping
    /// queued data. The handler sees [`DisconnectReason::Closed`].
    pub fn abort(&self) {
        self.close_with(DisconnectReason::Closed, CloseMode::Abortive);
    }

    pub(crate) fn close_with(&self, reason: DisconnectReason, mode: CloseMode) {
        let claimed = {
            let mut st = self.inner.state.lock();
            self.begin_close(&mut st, reason, mode);
            claim(&mut st)
        };
        if claimed {
            schedule_drain(self);
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
        let mut st = self.inner.state.lock();
        if st.closed {
            self.inner.server.port.cancel_handle(&handle);
            return;
        }
        st.handle = Some(handle);
        st.recv = RecvState::Paused;
        if st.closing.is_some() {
            st.recv = RecvState::Stopped;
            if st.queued == 0 {
                let reason = st.closing.take().unwrap_or(DisconnectReason::Closed);
                self.finalize(&mut st, reason, false);
            }
            return;
        }
        self.resume(&mut st);
    }

    /// Hands over the completion numbered `seq` of `stream`: it enters the
    /// inbox in its turn (with any early ones it was holding up), or waits.
    /// When nobody is draining the connection, the caller takes the drain
    /// right and gets the first event's callback to run (its state change
    /// made here, under the same lock): it must then
    /// [`drain`](Self::drain) the connection.
    pub(crate) fn deliver(&self, stream: Stream, seq: u64, ev: Event) -> Option<Action> {
        let mut st = self.inner.state.lock();
        st.accept(stream, seq, ev);
        if st.inbox_mem > 0 {
            self.check_limit(&mut st);
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
        let sh = &self.inner.server;
        if sh
            .port
            .post(op::Packet::new(0).key(self.id().0).user(KICK))
            .is_err()
        {
            self.drain(None);
        }
    }

    /// The state change of an event taken from the inbox (under the lock);
    /// returns the callback to run.
    fn prepare(&self, st: &mut State, ev: Event) -> Action {
        match ev {
            Event::Connect(first) => Action::Connect(first),
            Event::Data(buf) => {
                st.inbox_mem -= buf.capacity();
                // A handler that keeps what it is given (or sends it on)
                // holds it elsewhere; one that is done with it made room.
                self.resume(st);
                if st.closed {
                    Action::Sent(Some(buf), None)
                } else {
                    Action::Data(buf)
                }
            }
            Event::Sent(res, buf) => {
                let len = buf.as_ref().map_or(0, Vec::len);
                st.queued_mem = st
                    .queued_mem
                    .saturating_sub(buf.as_ref().map_or(0, Vec::capacity));
                let report = self.on_sent(st, res, len);
                Action::Sent(buf, report)
            }
            Event::RecvEnd(res) => {
                self.on_recv_end(st, res);
                Action::Nothing
            }
            Event::Disconnect(reason) => Action::Disconnect(reason),
        }
    }

    /// Runs an event's callback (without the lock).
    fn run(&self, action: Action) {
        let sh = &self.inner.server;
        match action {
            Action::Connect(first) => sh.handler.on_connect(self, first),
            Action::Data(buf) => {
                sh.counters.add_hot(Hot::BytesIn, buf.len() as u64);
                self.inner.meter.add_in(buf.len() as u64);
                self.touch();
                sh.handler.on_data(self, buf);
            }
            Action::Sent(buf, report) => {
                if let Some(buf) = buf {
                    sh.port.recycle(buf);
                }
                if let Some(n) = report {
                    sh.handler.on_sent(self, n);
                }
            }
            Action::Disconnect(reason) => {
                sh.handler.on_disconnect(self, &reason);
                self.inner.gone.store(true, Ordering::Release);
                sh.removed(self.id());
            }
            Action::Nothing => {}
        }
    }

    /// Marks the connection active for the idle sweep (when there is one).
    fn touch(&self) {
        let inner = &self.inner;
        if inner.server.config.idle_timeout.is_some() && !inner.active.load(Ordering::Relaxed) {
            inner.active.store(true, Ordering::Relaxed);
        }
    }

    /// Accounts for a finished send; returns the bytes to report.
    fn on_sent(&self, st: &mut State, res: Result<usize, i32>, len: usize) -> Option<usize> {
        let sh = &self.inner.server;
        st.queued = st.queued.saturating_sub(len);
        self.inner.queued.store(st.queued, Ordering::Relaxed);
        if st.closed {
            return None;
        }
        match res {
            Ok(n) => {
                sh.counters.add_hot(Hot::BytesOut, n as u64);
                self.inner.meter.add_out(n as u64);
                self.touch();
                if st.queued == 0 {
                    if let Some(reason) = st.closing.take() {
                        self.finalize(st, reason, false);
                        return Some(n);
                    }
                }
                self.resume(st);
                Some(n)
            }
            Err(code) if code == libc::ECANCELED => None,
            Err(code) => {
                self.finalize(st, DisconnectReason::from_os(code), true);
                None
            }
        }
    }

    fn on_recv_end(&self, st: &mut State, res: Result<usize, i32>) {
        if st.closed {
            return;
        }
        match (st.recv, res) {
            // Cancelled by flow control, or it delivered its budget.
            (RecvState::Pausing, Err(libc::ECANCELED))
            | (RecvState::Reading(_) | RecvState::Pausing, Ok(1..)) => {
                let used_up = matches!(st.recv, RecvState::Reading(_));
                st.recv = RecvState::Paused;
                self.resume(st);
                if used_up && st.recv == RecvState::Paused {
                    // Stopped by the limit (a cancel counts when it is asked).
                    Counters::add(&self.inner.server.counters.read_pauses, 1);
                }
            }
            (RecvState::Stopped, Err(libc::ECANCELED) | Ok(1..)) => {}
            (_, Err(libc::ECANCELED)) => {
                // Cancelled by nobody here: the port is shutting down.
                st.recv = RecvState::Stopped;
                self.begin_close(st, DisconnectReason::Shutdown, CloseMode::Graceful);
            }
            (_, Ok(_)) => {
                st.recv = RecvState::Stopped;
                self.begin_close(st, DisconnectReason::PeerClosed, CloseMode::Graceful);
            }
            (_, Err(code)) => {
                st.recv = RecvState::Stopped;
                let reason = DisconnectReason::from_os(code);
                self.begin_close(st, reason, CloseMode::Abortive);
            }
        }
    }

    /// Posts a pooled receive if the connection is paused and holds no more
    /// than half its limit: for the room left under the limit (at least
    /// one receive buffer), so what it holds stays within the limit plus
    /// about one receive buffer whatever the backend reads ahead.
    fn resume(&self, st: &mut State) {
        if st.recv != RecvState::Paused || st.closed || st.closing.is_some() {
            return;
        }
        let config = &self.inner.server.config;
        let held = st.held();
        if held > config.send_queue_limit / 2 {
            return;
        }
        let Some(h) = st.handle.as_ref() else {
            return;
        };
        let room = (config.send_queue_limit - held).max(config.recv_buffer);
        let recv = op::RecvPooled::new(h).up_to(room).user(RECV);
        match self.inner.server.port.submit(recv) {
            Ok(id) => {
                // Its completions cannot be routed before this is set: the
                // router takes the state lock held here.
                st.recv = RecvState::Reading(id);
                st.recv_op = Some(id);
                st.recv_next = 0;
            }
            Err(e) => {
                st.recv = RecvState::Stopped;
                self.finalize(st, DisconnectReason::Error(e), true);
            }
        }
    }

    fn stop_reading(&self, st: &mut State) {
        if let RecvState::Reading(id) = st.recv {
            let _ = self.inner.server.port.cancel(id);
        }
        st.recv = RecvState::Stopped;
    }

    fn begin_close(&self, st: &mut State, reason: DisconnectReason, mode: CloseMode) {
        if st.closed {
            return;
        }
        let abortive = match mode {
            CloseMode::Graceful => false,
            CloseMode::Abortive => true,
            CloseMode::Idle => st.queued > 0 || st.closing.is_some(),
        };
        if !abortive && st.queued > 0 {
            if st.closing.is_none() {
                st.closing = Some(reason);
                self.stop_reading(st);
            }
            return;
        }
        self.finalize(st, reason, abortive);
    }

    /// Lets go of the handle (its operations are cancelled; the descriptor
    /// closes when the last completes) and queues the Disconnect event.
    fn finalize(&self, st: &mut State, reason: DisconnectReason, abortive: bool) {
        let sh = &self.inner.server;
        st.closed = true;
        st.closing = None;
        self.stop_reading(st);
        if let Some(h) = st.handle.take() {
            if abortive {
                let _ = socket2::SockRef::from(&h).set_linger(Some(Duration::ZERO));
            }
            sh.port.cancel_handle(&h);
        }
        let c = &sh.counters;
        Counters::add(
            match &reason {
                DisconnectReason::PeerClosed => &c.peer_closed,
                DisconnectReason::Reset => &c.resets,
                DisconnectReason::IdleTimeout => &c.idle_timeouts,
                DisconnectReason::Shutdown => &c.shutdown_closes,
                DisconnectReason::Closed => &c.local_closes,
                DisconnectReason::Error(_) => &c.local_errors,
            },
            1,
        );
        st.inbox.push_back(Event::Disconnect(reason));
    }

    /// Drops the handle of a connection that never got to finalize (the
    /// server's last resort after its workers are gone).
    pub(crate) fn release(&self) {
        let h = self.inner.state.lock().handle.take();
        if let Some(h) = h {
            self.inner.server.port.cancel_handle(&h);
        }
    }
}

impl State {
    /// The number the next completion of `stream` must carry, or `None`
    /// for a receive that is not the one being ordered (delivered as is).
    fn expected(&self, stream: Stream) -> Option<u64> {
        match stream {
            Stream::Recv(id) if self.recv_op == Some(id) => Some(self.recv_next),
            Stream::Recv(_) => None,
            Stream::Send => Some(self.sent_next),
        }
    }

    fn push_inbox(&mut self, ev: Event) {
        if let Event::Data(buf) = &ev {
            self.inbox_mem += buf.capacity();
        }
        self.inbox.push_back(ev);
    }

    /// Memory held for the connection: see [`Connection::held`].
    fn held(&self) -> usize {
        self.queued_mem + self.inbox_mem
    }

    fn advance(&mut self, stream: Stream) {
        match stream {
            Stream::Recv(_) => self.recv_next += 1,
            Stream::Send => self.sent_next += 1,
        }
    }

    /// Puts a completion's event in the inbox in its turn.
    fn accept(&mut self, stream: Stream, seq: u64, ev: Event) {
        match self.expected(stream) {
            Some(next) if next != seq => {
                self.early.push((stream, seq, ev));
                return;
            }
            Some(_) => self.advance(stream),
            None => {}
        }
        self.push_inbox(ev);
        // Whatever arrived early and is now in turn follows it.
        while !self.early.is_empty() {
            let Some(i) = self
                .early
                .iter()
                .position(|(s, n, _)| self.expected(*s) == Some(*n))
            else {
                break;
            };
            let (s, _, ev) = self.early.swap_remove(i);
            self.advance(s);
            self.push_inbox(ev);
        }
    }
}

/// Takes the drain right if there is something to drain and nobody has it.
fn claim(st: &mut State) -> bool {
    if !st.draining && !st.inbox.is_empty() {
        st.draining = true;
        true
    } else {
        false
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
