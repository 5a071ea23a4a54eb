//! The port's state shared by every thread: the op table, the scheduler and
//! the backend, and the logic that turns a kernel result into a completion
//! (continuing partial sends, reposting pooled receives, keeping lanes in
//! order).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::buf::BufPool;
use crate::builder::Builder;
use crate::completion::{Completion, GetError, OpId, OpKind};
use crate::handle::HandleInner;
use crate::op::{Lane, OpData};
use crate::sched::{self, Notify, Sched};
use crate::sys::arena::Arena;
use crate::sys::{Backend, Driver};

static NEXT_PORT_ID: AtomicU64 = AtomicU64::new(1);

/// How long shutdown waits for cancelled operations to come back before it
/// gives up and leaks their memory rather than free what the kernel may hold.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) me: Weak<Shared>,
    // Field order matters: the driver (and with it the kernel's view of every
    // op) goes before the op table.
    pub(crate) driver: Driver,
    pub(crate) sched: Sched,
    pub(crate) arena: Arena,
    pub(crate) pool: BufPool,
    /// Only one thread dequeues (`Builder::single_thread`): what its poll
    /// reaps goes straight to its caller, not through the shared queue.
    direct: bool,
}

/// What a kernel result means for its op.
enum Next {
    /// Start the same op again (the rest of a send, the first data of an
    /// accept, a pooled receive that ran out of buffers).
    Restart,
    /// Hand out a completion and keep the op posted.
    Emit(Completion),
    /// Hand out a completion, keep the op and start it again.
    EmitRestart(Completion),
    /// The op is done, with this result.
    Final(i32),
    /// Hand out a completion, then end the op with this result.
    EmitThenFinal(Completion, i32),
}

impl Shared {
    pub(crate) fn new(driver: Driver, concurrency: usize, b: &Builder) -> Shared {
        // `me` is filled in by `into_arc`.
        Shared {
            id: NEXT_PORT_ID.fetch_add(1, Ordering::Relaxed),
            me: Weak::new(),
            driver,
            sched: Sched::new(concurrency),
            arena: Arena::new(),
            pool: BufPool::new(b.pool_buf_size, b.pool_bufs * 4),
            direct: b.single_thread,
        }
    }

    pub(crate) fn into_arc(mut self) -> Arc<Shared> {
        Arc::new_cyclic(|me| {
            self.me = me.clone();
            self
        })
    }

    // ---- dequeue -------------------------------------------------------

    /// Whether the calling thread is polling this port right now.
    pub(crate) fn polling_here(&self) -> bool {
        POLLING.with(|p| p.get()) == self.id
    }

    pub(crate) fn notify(&self) {
        if self.sched.notify(self.polling_here()) == Notify::WakeBackend {
            self.driver.wake();
        }
    }

    /// Gives this thread's running slot back. Nobody is woken: the caller
    /// goes on to take the next completion itself if there is one.
    fn leave_running(&self) {
        if sched::unmark(self.id) == Some(true) {
            self.sched.sub_running();
        }
    }

    /// Hands `c` to the caller as a running thread, waking another waiter if
    /// more work is queued or nobody is left polling.
    fn hand_out(&self, c: Completion, out: &mut Vec<Completion>) -> Result<usize, GetError> {
        sched::mark_running(self.id, &self.me);
        self.notify();
        out.push(c);
        Ok(1)
    }

    /// After a poll of a single-thread port: hands what it reaped to the
    /// caller (up to `max`, the rest to the shared queue) with one running
    /// slot. `None` if nothing was reaped, no slot is free or the port was
    /// closed meanwhile (then the completions are dropped, as `deliver`
    /// does: the kernel is done with their memory).
    fn take_reaped(&self, out: &mut Vec<Completion>, max: usize) -> Option<usize> {
        if !self.direct {
            return None;
        }
        REAPED.with(|r| {
            let mut r = r.borrow_mut();
            if r.is_empty() {
                return None;
            }
            if self.sched.is_closed() {
                r.clear();
                return None;
            }
            let taken = if self.sched.try_add_running() {
                let n = r.len().min(max);
                out.extend(r.drain(..n));
                sched::mark_running(self.id, &self.me);
                Some(n)
            } else {
                None
            };
            if !r.is_empty() {
                self.sched.queue.push_all(&mut r);
                self.notify();
            }
            taken
        })
    }

    pub(crate) fn get(&self, timeout: Option<Duration>) -> Result<Completion, GetError> {
        let mut one = Vec::new();
        self.get_into(timeout, &mut one, 1)?;
        one.pop().ok_or(GetError::TimedOut)
    }

    /// Waits for at least one completion and appends it (and, straight from
    /// a poll of a single-thread port, up to `max` in all) to `out`.
    fn get_into(
        &self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        max: usize,
    ) -> Result<usize, GetError> {
        self.leave_running();
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.sched.is_closed() {
                self.drain_if_closed();
                return Err(GetError::Closed);
            }
            if let Some(c) = self.sched.try_take() {
                return self.hand_out(c, out);
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // Completions are queued but every running slot is taken: wait
            // for a slot. Polling now would only read further ahead of the
            // threads that are running (and grow memory with it).
            let backlog = !self.sched.queue.is_empty();
            if !backlog && self.sched.try_poller() {
                // A post between the backlog check and taking the seat saw
                // the seat free and woke nobody (there was no poller to
                // wake): look again now that the seat is ours, before
                // blocking in the kernel. Posts from here on see the seat
                // taken and wake the backend.
                if !self.sched.queue.is_empty() {
                    self.sched.release_poller();
                    continue;
                }
                POLLING.with(|p| p.set(self.id));
                let polled = self.driver.poll(self, remaining);
                POLLING.with(|p| p.set(0));
                self.sched.release_poller();
                // Empties this thread's reaped list on every path.
                if let Some(n) = self.take_reaped(out, max) {
                    return Ok(n);
                }
                if let Err(e) = polled {
                    self.notify();
                    return Err(GetError::Io(e));
                }
                if self.sched.is_closed() {
                    continue;
                }
                if let Some(c) = self.sched.try_take() {
                    return self.hand_out(c, out);
                }
                self.notify();
                if remaining == Some(Duration::ZERO) {
                    return Err(GetError::TimedOut);
                }
                continue;
            }
            if let Err(e) = self.driver.flush() {
                tracing::debug!("flush before parking failed: {e}");
            }
            if remaining == Some(Duration::ZERO) {
                return Err(GetError::TimedOut);
            }
            if let Some(c) = self.sched.park(deadline) {
                if self.sched.is_closed() {
                    return Err(GetError::Closed);
                }
                sched::mark_running(self.id, &self.me);
                out.push(c);
                return Ok(1);
            }
        }
    }

    pub(crate) fn get_many(
        &self,
        out: &mut Vec<Completion>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, GetError> {
        if max == 0 {
            return Ok(0);
        }
        let n = self.get_into(timeout, out, max)?;
        // The slot taken by `get` covers the whole batch, as one
        // GetQueuedCompletionStatusEx call counts as one running thread.
        Ok(n + self.sched.queue.pop_into(out, max - n))
    }

    pub(crate) fn post(&self, c: Completion) -> io::Result<()> {
        if self.sched.is_closed() {
            return Err(closed_error());
        }
        self.sched.queue.push(c);
        self.notify();
        Ok(())
    }

    pub(crate) fn begin_blocking(&self) -> bool {
        if sched::set_blocking(self.id, true) {
            self.sched.sub_running();
            if let Err(e) = self.driver.flush() {
                tracing::debug!("flush before blocking failed: {e}");
            }
            self.notify();
            true
        } else {
            false
        }
    }

    pub(crate) fn end_blocking(&self) {
        if sched::set_blocking(self.id, false) {
            self.sched.add_running();
        }
    }

    // ---- posting -------------------------------------------------------

    /// Puts `op` (on `handle`, if any) in the table and starts it, or
    /// queues it behind its lane.
    pub(crate) fn submit(&self, op: OpData, handle: Option<&Arc<HandleInner>>) -> io::Result<OpId> {
        if self.sched.is_closed() {
            return Err(closed_error());
        }
        let full = || {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                "too many operations outstanding",
            )
        };
        let lane = handle.zip(op.lane);
        if let Some((h, lane)) = lane {
            let mut lanes = h.lanes.lock();
            if h.closed.load(Ordering::Acquire) {
                drop(lanes);
                let mut op = op;
                op.lane = None;
                let id = self.arena.insert(op).ok_or_else(full)?;
                self.complete(id, -libc::ECANCELED, false, None);
                return Ok(id);
            }
            let q = &mut lanes[lane as usize];
            if q.busy {
                // Started by `release_lane` when the ops ahead of it are done.
                let id = self.arena.insert(op).ok_or_else(full)?;
                q.waiting.push_back(id);
                return Ok(id);
            }
            q.busy = true;
        }
        let Some(id) = self.driver.start_new(self, op, sched::is_running(self.id)) else {
            if let Some((h, lane)) = lane {
                // Pass the lane on to whatever queued behind it meanwhile.
                self.release_lane(h, lane);
            }
            return Err(full());
        };
        if handle.is_some_and(|h| h.closed.load(Ordering::Acquire)) {
            self.cancel(id);
        }
        Ok(id)
    }

    /// Cancels one op: a queued one completes at once, a started one when the
    /// kernel lets go of it.
    pub(crate) fn cancel(&self, id: OpId) -> bool {
        let Some((handle, lane)) = self.arena.with(id, |op| {
            op.cancelled = true;
            (op.handle.clone(), op.lane)
        }) else {
            return false;
        };
        if let (Some(h), Some(lane)) = (handle, lane) {
            let mut lanes = h.lanes.lock();
            let q = &mut lanes[lane as usize];
            if let Some(i) = q.waiting.iter().position(|w| *w == id) {
                q.waiting.remove(i);
                drop(lanes);
                self.arena.with(id, |op| op.lane = None);
                self.complete(id, -libc::ECANCELED, false, None);
                return true;
            }
        }
        self.driver.cancel(self, id);
        true
    }

    /// Stops every op of a handle and refuses new ones.
    pub(crate) fn cancel_handle(&self, h: &HandleInner) {
        let waiting: Vec<OpId> = {
            let mut lanes = h.lanes.lock();
            h.closed.store(true, Ordering::Release);
            lanes.iter_mut().flat_map(|q| q.waiting.drain(..)).collect()
        };
        for id in waiting {
            self.arena.with(id, |op| op.lane = None);
            self.complete(id, -libc::ECANCELED, false, None);
        }
        self.driver.cancel_handle(self, h);
    }

    // ---- completing ----------------------------------------------------

    /// Reports a kernel result for `id`. Called by the backends (through
    /// `sys::reap`, which has already committed received bytes) and for ops
    /// that end without reaching the kernel.
    pub(crate) fn complete(&self, id: OpId, res: i32, more: bool, pooled: Option<Vec<u8>>) {
        self.complete_after(id, res, more, pooled, |_| {});
    }

    /// As `complete`, running `prepare` on the op first, under the same
    /// slot lock (the backends commit received bytes there).
    pub(crate) fn complete_after(
        &self,
        id: OpId,
        res: i32,
        more: bool,
        pooled: Option<Vec<u8>>,
        prepare: impl FnOnce(&mut OpData),
    ) {
        let closed = self.sched.is_closed();
        // A final result takes the op out of the table under the same lock.
        let Some((next, removed)) = self.arena.with_then_remove(id, |op| {
            prepare(op);
            let next = decide(id, op, res, more, pooled, closed);
            let last = matches!(next, Next::Final(_));
            (next, last)
        }) else {
            return;
        };
        if let (Next::Final(res), Some(op)) = (&next, removed) {
            self.finish_removed(id, op, *res);
            return;
        }
        match next {
            Next::Restart => self.driver.start(self, id, true),
            Next::Emit(c) => self.deliver(c),
            Next::EmitRestart(c) => {
                self.deliver(c);
                self.driver.start(self, id, true);
            }
            Next::EmitThenFinal(c, res) => {
                self.deliver(c);
                self.finish(id, res);
            }
            Next::Final(res) => self.finish(id, res),
        }
    }

    /// Removes a finished op, hands out its completion and frees its lane.
    fn finish(&self, id: OpId, res: i32) {
        if let Some(op) = self.arena.remove(id) {
            self.finish_removed(id, op, res);
        }
    }

    /// As `finish`, for an op already taken out of the table.
    fn finish_removed(&self, id: OpId, mut op: OpData, res: i32) {
        // The op's own reference to its handle serves the lane hand-over.
        let lane = op.lane.zip(op.handle.take());
        self.deliver(final_completion(id, op, res));
        if let Some((lane, h)) = lane {
            self.release_lane(&h, lane);
        }
    }

    fn deliver(&self, c: Completion) {
        if self.sched.is_closed() {
            // Nobody will dequeue it; its buffer and socket are freed here,
            // after the kernel has let go of them.
            return;
        }
        // The poller wakes helpers once per batch, after reaping it.
        if !self.polling_here() {
            self.sched.queue.push(c);
            self.notify();
        } else if self.direct {
            REAPED.with(|r| r.borrow_mut().push(c));
        } else {
            self.sched.queue.push(c);
        }
    }

    /// Passes a handle's lane to the next waiting op, if any.
    fn release_lane(&self, h: &Arc<HandleInner>, lane: Lane) {
        let next = {
            let mut lanes = h.lanes.lock();
            let q = &mut lanes[lane as usize];
            match q.waiting.pop_front() {
                Some(next) => Some(next),
                None => {
                    q.busy = false;
                    None
                }
            }
        };
        if let Some(next) = next {
            if h.closed.load(Ordering::Acquire) || self.sched.is_closed() {
                self.complete(next, -libc::ECANCELED, false, None);
            } else {
                self.driver.start(self, next, true);
            }
        }
    }

    // ---- shutdown ------------------------------------------------------

    pub(crate) fn shutdown(&self) {
        if self.sched.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Every waiter returns `Closed`: the parked ones now, the poller when
        // the backend wakes it.
        self.sched.wake_all();
        self.driver.wake();
        let start = Instant::now();
        self.cancel_all();
        if self.driver.can_poll_here() {
            // Take the poller's seat (the current poller sees `closed` and
            // leaves), unless another thread that saw the port closed is
            // already draining it.
            while self.arena.live() > 0 && start.elapsed() < DRAIN_LIMIT {
                if self.sched.try_poller() {
                    self.drain(start);
                    break;
                }
                self.driver.wake();
                std::thread::park_timeout(Duration::from_millis(1));
            }
        } else {
            // A single-thread port owned by another thread: it drains what was
            // cancelled here when it sees the port closed.
            self.driver.wake();
            while self.arena.live() > 0 && start.elapsed() < DRAIN_LIMIT && !self.driver.orphaned()
            {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        }
        self.sched.queue.clear();
        self.sched.wake_all();
    }

    fn cancel_all(&self) {
        for id in self.arena.ids() {
            self.cancel(id);
        }
    }

    /// Reaps cancelled operations until none is left (or `DRAIN_LIMIT`),
    /// cancelling again now and then what an operation started while the port
    /// was closing. The caller holds the poller token and keeps it: nobody
    /// polls a closed port again.
    fn drain(&self, start: Instant) {
        let mut rounds = 0u32;
        while self.arena.live() > 0 && start.elapsed() < DRAIN_LIMIT {
            if let Err(e) = self.driver.poll(self, Some(Duration::from_millis(20))) {
                tracing::error!("shutdown: reaping cancelled operations failed: {e}");
                break;
            }
            rounds += 1;
            if rounds % 8 == 0 {
                self.cancel_all();
            }
        }
    }

    /// A thread that finds the port closed helps reap what shutdown
    /// cancelled (for a single-thread port, only its owner can).
    fn drain_if_closed(&self) {
        if self.arena.live() > 0 && self.driver.can_poll_here() && self.sched.try_poller() {
            self.drain(Instant::now());
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.shutdown();
        let live = self.arena.live();
        if live > 0 {
            tracing::error!(
                "{live} operations never completed; leaking their memory rather than \
                 freeing buffers the kernel may still write"
            );
            std::mem::forget(std::mem::replace(&mut self.arena, Arena::new()));
        }
    }
}

thread_local! {
    /// The id of the port this thread is polling, 0 if none.
    static POLLING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// What this thread's poll of a single-thread port reaped (see
    /// `Shared::direct`); emptied before the poll's `get` returns.
    static REAPED: std::cell::RefCell<Vec<Completion>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

pub(crate) fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the completion port was shut down",
    )
}

fn decide(
    id: OpId,
    op: &mut OpData,
    res: i32,
    more: bool,
    pooled: Option<Vec<u8>>,
    closed: bool,
) -> Next {
    match op.kind {
        OpKind::SendAll if res > 0 => {
            op.pos += res as usize;
            if op.pos >= op.buf.as_ref().map_or(0, Vec::len) {
                Next::Final(res)
            } else if is_stopping(op, closed) {
                // Cut short: the bytes already sent are lost to the caller's
                // view, as with any cancelled send.
                Next::Final(-libc::ECANCELED)
            } else {
                Next::Restart
            }
        }
        OpKind::Accept if op.multishot => {
            if res < 0 {
                return Next::Final(if is_stopping(op, closed) {
                    -libc::ECANCELED
                } else {
                    res
                });
            }
            let accepted = op.accepted.take();
            emit_more(id, op, 0, None, accepted, more, closed)
        }
        OpKind::Accept if res >= 0 && op.buf.is_some() && !op.first_data_started => {
            if is_stopping(op, closed) {
                // The accepted socket is closed when the op is dropped.
                return Next::Final(-libc::ECANCELED);
            }
            op.first_data_started = true;
            Next::Restart
        }
        OpKind::RecvPooled => {
            if res == -libc::ENOBUFS {
                // Out of provided buffers: repost, unless it was stopping.
                return if is_stopping(op, closed) {
                    Next::Final(-libc::ECANCELED)
                } else {
                    Next::Restart
                };
            }
            if res <= 0 {
                return Next::Final(res);
            }
            // Bytes delivered, against the budget of `recv_pooled_up_to`.
            op.pos = op.pos.saturating_add(res as usize);
            emit_more(id, op, res as usize, pooled, None, more, closed)
        }
        _ => Next::Final(res),
    }
}

/// Whether the op was asked to stop: the port is closing, the op was
/// cancelled or its handle closed. Asked only where the answer changes
/// what happens, not for every completion: at many connections the
/// handle's flag is a cache miss of its own.
fn is_stopping(op: &OpData, closed: bool) -> bool {
    closed
        || op.cancelled
        || op
            .handle
            .as_ref()
            .is_some_and(|h| h.closed.load(Ordering::Acquire))
}

/// One result of an op that stays posted (pooled receive, multishot accept).
/// Such completions always say `more`: the op ends with a final completion
/// (end of stream, error or cancellation) of its own. `kernel_more` says
/// whether the kernel keeps the op armed; if not, the port re-arms it
/// unless the op was asked to stop (`closed`: the port is closing) or a
/// pooled receive has delivered its budget (the backends stop at it).
fn emit_more(
    id: OpId,
    op: &mut OpData,
    n: usize,
    buf: Option<Vec<u8>>,
    accepted: Option<Box<crate::completion::Accepted>>,
    kernel_more: bool,
    closed: bool,
) -> Next {
    let c = Completion {
        key: op.key,
        user: op.user,
        kind: op.kind,
        id,
        result: Ok(n),
        buf,
        accepted,
        more: true,
        seq: op.seq,
    };
    op.seq += 1;
    if kernel_more {
        Next::Emit(c)
    } else if is_stopping(op, closed) {
        Next::EmitThenFinal(c, -libc::ECANCELED)
    } else if op.pos >= op.max {
        Next::EmitThenFinal(c, i32::try_from(op.pos).unwrap_or(i32::MAX))
    } else {
        Next::EmitRestart(c)
    }
}

fn final_completion(id: OpId, mut op: OpData, res: i32) -> Completion {
    let result = if res < 0 {
        match (op.kind, -res) {
            (OpKind::Timeout, libc::ETIME) => Ok(0),
            (_, libc::EINTR) if op.cancelled => Err(libc::ECANCELED),
            (_, e) => Err(e),
        }
    } else {
        Ok(match op.kind {
            OpKind::SendAll => op.pos,
            OpKind::Accept if op.buf.is_some() => res as usize,
            OpKind::Accept | OpKind::Connect => 0,
            _ => res as usize,
        })
    };
    let accepted = match (op.accepted.take(), &result) {
        (Some(acc), Ok(_)) => Some(acc),
        // A failed first-data receive closes the accepted socket here.
        _ => None,
    };
    Completion {
        key: op.key,
        user: op.user,
        kind: op.kind,
        id,
        result,
        buf: op.buf.take(),
        accepted,
        more: false,
        seq: op.seq,
    }
}
