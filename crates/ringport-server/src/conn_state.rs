//! A connection's state behind its lock: its handle, receive state, send
//! accounting, inbox and closing; and the change each event makes to it.
//! Everything here runs under the connection's lock; callbacks run after,
//! without it (see the `conn` module).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ringport::{op, Handle, OpId};

use crate::env::Env;
use crate::event::{Action, Event};
use crate::flow::{RecvEnd, RecvState};
use crate::id::ConnId;
use crate::reason::DisconnectReason;
use crate::reorder::{Reorder, Stream};
use crate::stats::Counters;
use crate::tag::Tag;
use crate::timer::{Owner, TimerId, Timers};

/// An outbound connection's connect in progress.
pub(crate) struct Connecting {
    /// The connect operation.
    op: OpId,
    /// The connect timeout's timer.
    timeout: OpId,
    /// The timeout fired (the connect was cancelled for it).
    timed_out: bool,
}

/// How a close ends the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CloseMode {
    /// Send what is queued, then close (FIN).
    Graceful,
    /// Close at once with a reset (SO_LINGER 0), dropping queued data.
    Abortive,
    /// Idle timeout: graceful if nothing is queued, abortive otherwise.
    Idle,
}

pub(crate) struct State {
    pub handle: Option<Handle>,
    pub recv: RecvState<OpId>,
    /// Bytes queued for sending and not yet sent.
    pub queued: usize,
    /// Memory of the queued sends' buffers (their capacity).
    queued_mem: usize,
    pub inbox: VecDeque<Event>,
    /// Memory of the buffers of the `Data` events in the inbox: received,
    /// not yet handed to the handler. It counts toward the flow-control
    /// limit with `queued_mem`, so a handler that does not keep up (one
    /// that sends nothing back, as well as one whose client does not read)
    /// holds no more than the limit.
    pub inbox_mem: usize,
    /// A worker holds the right to run the inbox's callbacks.
    pub draining: bool,
    reorder: Reorder<OpId, Event>,
    /// Sends posted so far (each send's number is in its tag).
    sends_posted: u64,
    /// A graceful close waits for the send queue to drain.
    pub closing: Option<DisconnectReason>,
    /// The handle is gone; the Disconnect event is queued or delivered.
    pub closed: bool,
    /// The connection's timers.
    pub timers: Timers,
    /// An outbound connection not established yet.
    connecting: Option<Connecting>,
}

impl State {
    /// A connection being set up: its first event is `Connect`, and its
    /// creator holds the right to drain it.
    pub(crate) fn new(id: ConnId, first_data: Option<Vec<u8>>) -> State {
        State {
            timers: Timers::new(Owner::Conn(id.as_u64())),
            connecting: None,
            handle: None,
            recv: RecvState::Stopped,
            queued: 0,
            queued_mem: 0,
            inbox: VecDeque::from([Event::Connect(first_data)]),
            inbox_mem: 0,
            draining: true,
            reorder: Reorder::default(),
            sends_posted: 0,
            closing: None,
            closed: false,
        }
    }

    /// Memory held for the connection: see
    /// [`Connection::held`](crate::Connection::held).
    pub(crate) fn held(&self) -> usize {
        self.queued_mem + self.inbox_mem
    }

    /// An outbound connection before its connect is posted: nothing to
    /// drain, nobody draining.
    pub(crate) fn outbound(id: ConnId) -> State {
        let mut st = State::new(id, None);
        st.inbox.clear();
        st.draining = false;
        st
    }

    /// Whether the connection is open (established, not closed, not
    /// closing).
    pub(crate) fn is_open(&self) -> bool {
        !self.closed && self.closing.is_none() && self.connecting.is_none()
    }

    /// Posts an outbound connection's connect and its timeout.
    pub(crate) fn start_connect<C: Clone>(
        &mut self,
        env: &Env<C>,
        handle: Handle,
        key: u64,
        to: SocketAddr,
        timeout: Duration,
    ) -> io::Result<()> {
        let timer = env.port.submit(
            op::Timeout::new(timeout)
                .key(key)
                .user(Tag::ConnectTimeout.user()),
        )?;
        let connect = env
            .port
            .submit(op::Connect::new(&handle, to).user(Tag::Connect.user()));
        let connect = match connect {
            Ok(id) => id,
            Err(e) => {
                let _ = env.port.cancel(timer);
                env.port.cancel_handle(&handle);
                return Err(e);
            }
        };
        self.handle = Some(handle);
        self.connecting = Some(Connecting {
            op: connect,
            timeout: timer,
            timed_out: false,
        });
        Ok(())
    }

    /// The connect timeout fired: cancel the connect (it then completes
    /// as cancelled, reported as timed out).
    pub(crate) fn on_connect_timeout<C: Clone>(&mut self, env: &Env<C>) {
        if let Some(c) = self.connecting.as_mut() {
            c.timed_out = true;
            let _ = env.port.cancel(c.op);
        }
    }

    /// The connect completed: the connection starts (its `Connect` event
    /// queued, reading), or ends with `ConnectFailed`.
    pub(crate) fn on_connected<C: Clone>(&mut self, env: &Env<C>, res: Result<usize, i32>) {
        if self.closed {
            return;
        }
        let Some(c) = self.connecting.take() else {
            return;
        };
        let _ = env.port.cancel(c.timeout);
        match res {
            Ok(_) => {
                self.inbox.push_back(Event::Connect(None));
                self.recv = RecvState::Paused;
                self.resume(env);
            }
            Err(code) => {
                let error = if c.timed_out {
                    io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                } else {
                    io::Error::from_raw_os_error(code)
                };
                self.closed = true;
                if let Some(h) = self.handle.take() {
                    env.port.cancel_handle(&h);
                }
                self.timers.cancel_all(&env.port);
                Counters::add(&env.counters.connect_failures, 1);
                self.inbox.push_back(Event::ConnectFailed(error));
            }
        }
    }

    /// Timer `n` of the connection completed: its event is queued if it is
    /// still armed.
    pub(crate) fn on_timer<C: Clone>(&mut self, env: &Env<C>, n: u64, cancelled: bool) {
        if self.closed {
            return;
        }
        if let Some(id) = self.timers.fired(&env.port, n, cancelled) {
            self.inbox.push_back(Event::Timer(id));
        }
    }

    /// Arms a timer of the connection.
    pub(crate) fn set_timer<C: Clone>(
        &mut self,
        env: &Env<C>,
        after: Duration,
        period: Option<Duration>,
    ) -> io::Result<TimerId> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed",
            ));
        }
        self.timers.arm(&env.port, after, period)
    }

    /// The tag of the next send, which the caller posts now.
    pub(crate) fn next_send(&self) -> Tag {
        Tag::Send(self.sends_posted)
    }

    /// Accounts for a send posted with [`next_send`](Self::next_send).
    pub(crate) fn sent_posted(&mut self, bytes: usize, mem: usize) {
        self.sends_posted += 1;
        self.queued += bytes;
        self.queued_mem += mem;
    }

    /// Puts a completion's event in the inbox in its turn.
    pub(crate) fn accept(&mut self, stream: Stream<OpId>, seq: u64, ev: Event) {
        let (inbox, inbox_mem) = (&mut self.inbox, &mut self.inbox_mem);
        self.reorder.accept(stream, seq, ev, |ev| {
            if let Event::Data(buf) = &ev {
                *inbox_mem += buf.capacity();
            }
            inbox.push_back(ev);
        });
    }

    /// Takes the drain right if there is something to drain and nobody has
    /// it.
    pub(crate) fn claim(&mut self) -> bool {
        if !self.draining && !self.inbox.is_empty() {
            self.draining = true;
            true
        } else {
            false
        }
    }

    /// Flow control: stops reading while the connection holds more than
    /// the limit.
    pub(crate) fn check_limit<C: Clone>(&mut self, env: &Env<C>) {
        if env.config.flow().over(self.held()) {
            if let RecvState::Reading(id) = self.recv {
                // Final completion (cancelled) comes as RecvEnd.
                let _ = env.port.cancel(id);
                self.recv = RecvState::Pausing;
                Counters::add(&env.counters.read_pauses, 1);
            }
        }
    }

    /// Posts a pooled receive if the connection is paused and flow control
    /// gives it room.
    pub(crate) fn resume<C: Clone>(&mut self, env: &Env<C>) {
        if self.recv != RecvState::Paused || !self.is_open() {
            return;
        }
        let Some(room) = env.config.flow().room(self.held()) else {
            return;
        };
        let Some(h) = self.handle.as_ref() else {
            return;
        };
        let recv = op::RecvPooled::new(h).up_to(room).user(Tag::Recv.user());
        match env.port.submit(recv) {
            Ok(id) => {
                // Its completions cannot be routed before this is set: the
                // router takes the lock held here.
                self.recv = RecvState::Reading(id);
                self.reorder.start_recv(id);
            }
            Err(e) => {
                self.recv = RecvState::Stopped;
                self.finalize(env, DisconnectReason::Error(e), true);
            }
        }
    }

    fn stop_reading<C: Clone>(&mut self, env: &Env<C>) {
        if let RecvState::Reading(id) = self.recv {
            let _ = env.port.cancel(id);
        }
        self.recv = RecvState::Stopped;
    }

    pub(crate) fn begin_close<C: Clone>(
        &mut self,
        env: &Env<C>,
        reason: DisconnectReason,
        mode: CloseMode,
    ) {
        if self.closed {
            return;
        }
        let abortive = match mode {
            CloseMode::Graceful => false,
            CloseMode::Abortive => true,
            CloseMode::Idle => self.queued > 0 || self.closing.is_some(),
        };
        if !abortive && self.queued > 0 {
            if self.closing.is_none() {
                self.closing = Some(reason);
                self.stop_reading(env);
            }
            return;
        }
        self.finalize(env, reason, abortive);
    }

    /// Lets go of the handle (its operations are cancelled; the descriptor
    /// closes when the last completes) and queues the Disconnect event.
    pub(crate) fn finalize<C: Clone>(
        &mut self,
        env: &Env<C>,
        reason: DisconnectReason,
        abortive: bool,
    ) {
        self.closed = true;
        self.closing = None;
        self.stop_reading(env);
        self.timers.cancel_all(&env.port);
        if let Some(c) = self.connecting.take() {
            // Not established: no Connect was reported, so no Disconnect
            // either; the connect's own completion is ignored.
            let _ = env.port.cancel(c.timeout);
            if let Some(h) = self.handle.take() {
                env.port.cancel_handle(&h);
            }
            Counters::add(&env.counters.connect_failures, 1);
            self.inbox
                .push_back(Event::ConnectFailed(reason.to_connect_error()));
            return;
        }
        if let Some(h) = self.handle.take() {
            if abortive {
                let _ = socket2::SockRef::from(&h).set_linger(Some(Duration::ZERO));
            }
            env.port.cancel_handle(&h);
        }
        let c = &env.counters;
        Counters::add(
            match &reason {
                DisconnectReason::PeerClosed => &c.peer_closed,
                DisconnectReason::Reset => &c.resets,
                DisconnectReason::IdleTimeout => &c.idle_timeouts,
                DisconnectReason::ReadTimeout => &c.read_timeouts,
                DisconnectReason::WriteTimeout => &c.write_timeouts,
                DisconnectReason::Shutdown => &c.shutdown_closes,
                DisconnectReason::Closed => &c.local_closes,
                DisconnectReason::Error(_) => &c.local_errors,
            },
            1,
        );
        self.inbox.push_back(Event::Disconnect(reason));
    }

    /// Gives the connection its associated handle and starts reading, or
    /// drops the handle when the connection was closed meanwhile.
    pub(crate) fn attach<C: Clone>(&mut self, env: &Env<C>, handle: Handle) {
        if self.closed {
            env.port.cancel_handle(&handle);
            return;
        }
        self.handle = Some(handle);
        self.recv = RecvState::Paused;
        if self.closing.is_some() {
            self.recv = RecvState::Stopped;
            if self.queued == 0 {
                let reason = self.closing.take().unwrap_or(DisconnectReason::Closed);
                self.finalize(env, reason, false);
            }
            return;
        }
        self.resume(env);
    }

    /// The state change of an event taken from the inbox; returns the
    /// callback to run.
    pub(crate) fn prepare<C: Clone>(&mut self, env: &Env<C>, ev: Event) -> Action {
        match ev {
            Event::Connect(first) => Action::Connect(first),
            Event::Data(buf) => {
                self.inbox_mem -= buf.capacity();
                // A handler that keeps what it is given (or sends it on)
                // holds it elsewhere; one that is done with it made room.
                self.resume(env);
                if self.closed {
                    Action::Sent(Some(buf), None)
                } else {
                    Action::Data(buf)
                }
            }
            Event::Sent(res, buf) => {
                self.queued_mem = self.queued_mem.saturating_sub(buf.mem);
                let report = self.on_sent(env, res, buf.len);
                Action::Sent(buf.vec, report)
            }
            Event::Timer(id) => Action::Timer(id),
            Event::ConnectFailed(e) => Action::ConnectFailed(e),
            Event::RecvEnd(res) => {
                self.on_recv_end(env, res);
                Action::Nothing
            }
            Event::Disconnect(reason) => Action::Disconnect(reason),
        }
    }

    /// Accounts for a finished send; returns the bytes to report (`Some`
    /// exactly when the send succeeded on an open connection).
    fn on_sent<C: Clone>(
        &mut self,
        env: &Env<C>,
        res: Result<usize, i32>,
        len: usize,
    ) -> Option<usize> {
        self.queued = self.queued.saturating_sub(len);
        if self.closed {
            return None;
        }
        match res {
            Ok(n) => {
                env.counters.add_hot(crate::stats::Hot::BytesOut, n as u64);
                if self.queued == 0 {
                    if let Some(reason) = self.closing.take() {
                        self.finalize(env, reason, false);
                        return Some(n);
                    }
                }
                self.resume(env);
                Some(n)
            }
            Err(code) if code == libc::ECANCELED => None,
            Err(code) => {
                self.finalize(env, DisconnectReason::from_os(code), true);
                None
            }
        }
    }

    fn on_recv_end<C: Clone>(&mut self, env: &Env<C>, res: Result<usize, i32>) {
        if self.closed {
            return;
        }
        match RecvEnd::of(self.recv, res) {
            RecvEnd::Pause { used_up } => {
                self.recv = RecvState::Paused;
                self.resume(env);
                if used_up && self.recv == RecvState::Paused {
                    // Stopped by the limit (a cancel counts when it is asked).
                    Counters::add(&env.counters.read_pauses, 1);
                }
            }
            RecvEnd::Ignore => {}
            RecvEnd::Shutdown => {
                self.recv = RecvState::Stopped;
                self.begin_close(env, DisconnectReason::Shutdown, CloseMode::Graceful);
            }
            RecvEnd::PeerClosed => {
                self.recv = RecvState::Stopped;
                self.begin_close(env, DisconnectReason::PeerClosed, CloseMode::Graceful);
            }
            RecvEnd::Failed(code) => {
                self.recv = RecvState::Stopped;
                self.begin_close(env, DisconnectReason::from_os(code), CloseMode::Abortive);
            }
        }
    }
}
