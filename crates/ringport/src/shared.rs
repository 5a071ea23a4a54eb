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
use crate::sched::{Kernel, Sched, SlotOwner};
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
    /// Hand out a completion, then end the op as cancelled.
    EmitThenFinal(Completion),
}

impl Shared {
    pub(crate) fn new(driver: Driver, concurrency: usize, b: &Builder) -> Shared {
        // `me` is filled in by `into_arc`.
        let id = NEXT_PORT_ID.fetch_add(1, Ordering::Relaxed);
        Shared {
            id,
            me: Weak::new(),
            driver,
            sched: Sched::new(id, concurrency, b.single_thread),
            arena: Arena::new(),
            pool: BufPool::new(b.pool_buf_size, b.pool_bufs * 4),
        }
    }

    pub(crate) fn into_arc(mut self) -> Arc<Shared> {
        Arc::new_cyclic(|me| {
            self.me = me.clone();
            self
        })
    }

    // ---- dequeue -------------------------------------------------------

    /// Whether the calling thread is polling this port right now. Requests
    /// it queues while reaping may wait for the end of the reap, where the
    /// backend submits them.
    pub(crate) fn polling_here(&self) -> bool {
        self.sched.polling_here()
    }

    /// Whether the calling thread holds a [`Batch`](crate::Batch) of this
    /// port: its posts may wait for the batch's end.
    fn batching_here(&self) -> bool {
        BATCHING.with(|b| b.get()) == self.id
    }

    /// Starts a batch on this thread; false if it already batches (for this
    /// or another port: then posts submit at once, as without a batch).
    pub(crate) fn begin_batch(&self) -> bool {
        BATCHING.with(|b| {
            let free = b.get() == 0;
            if free {
                b.set(self.id);
            }
            free
        })
    }

    /// Ends this thread's batch and submits what it held back.
    pub(crate) fn end_batch(&self) {
        BATCHING.with(|b| b.set(0));
        if let Err(e) = self.driver.flush() {
            tracing::warn!("submitting a batch failed: {e}");
        }
    }

    pub(crate) fn leave(&self) {
        self.sched.leave_and_notify(self);
    }

    pub(crate) fn get(&self, timeout: Option<Duration>) -> Result<Completion, GetError> {
        let mut one = Vec::new();
        self.get_into(timeout, &mut one, 1)?;
        one.pop().ok_or(GetError::TimedOut)
    }

    fn get_into(
        &self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        max: usize,
    ) -> Result<usize, GetError> {
        let got = self.sched.get(self, timeout, out, max);
        if matches!(got, Err(GetError::Closed)) {
            self.drain_if_closed();
        }
        got
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
        Ok(n + self.sched.take_more(out, max - n))
    }

    pub(crate) fn post(&self, c: Completion) -> io::Result<()> {
        if self.sched.post(self, c) {
            Ok(())
        } else {
            Err(closed_error())
        }
    }

    pub(crate) fn begin_blocking(&self) -> bool {
        self.sched.begin_blocking(self)
    }

    pub(crate) fn end_blocking(&self) {
        self.sched.end_blocking();
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
        let lane = op.lane;
        if let Some(h) = handle {
            let mut st = h.state.lock();
            if h.closed.load(Ordering::Acquire) {
                return Err(handle_closed_error());
            }
            // Counted from here to its final completion, so that the
            // handle's `Close` completion can come after it.
            st.ops += 1;
            if let Some(lane) = lane {
                let q = &mut st.lanes[lane as usize];
                if q.busy {
                    // Started by `release` when the ops ahead of it are done.
                    let Some(id) = self.arena.insert(op) else {
                        st.ops -= 1;
                        return Err(full());
                    };
                    q.waiting.push_back(id);
                    drop(st);
                    self.progress();
                    return Ok(id);
                }
                q.busy = true;
            }
        }
        let Some(id) = self.driver.start_new(self, op, self.batching_here()) else {
            if let Some(h) = handle {
                // Uncount it, and pass its lane on to whatever queued
                // behind it meanwhile.
                self.release(h.clone(), lane);
            }
            return Err(full());
        };
        if handle.is_some_and(|h| h.closed.load(Ordering::Acquire)) {
            self.cancel(id);
        }
        Ok(id)
    }

    /// Reaps what is ready, without waiting, when no thread is waiting in
    /// the kernel to do it: an op queued behind one the kernel has already
    /// finished (the second of two sends, the first of which went out at
    /// once) then starts now, though the posting thread may not dequeue for
    /// a long time. While a thread waits in the kernel, the finished op's
    /// completion wakes it and it does the same.
    fn progress(&self) {
        self.sched.poll_now(self);
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
            let mut st = h.state.lock();
            let q = &mut st.lanes[lane as usize];
            if let Some(i) = q.waiting.iter().position(|w| *w == id) {
                q.waiting.remove(i);
                drop(st);
                self.arena.with(id, |op| op.lane = None);
                self.complete(id, -libc::ECANCELED, false, None);
                return true;
            }
        }
        self.driver.cancel(self, id);
        true
    }

    /// Closes a handle: stops its ops and refuses new ones, and hands out
    /// `close` (its `Close` completion) after the last of them completed.
    pub(crate) fn close(&self, h: &HandleInner, close: Completion) -> io::Result<()> {
        if self.sched.is_closed() {
            return Err(closed_error());
        }
        {
            let mut st = h.state.lock();
            if st.close_called {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the handle was closed already (close was called on another clone)",
                ));
            }
            st.close_called = true;
            st.close = Some(close);
        }
        self.cancel_handle(h);
        // Due now if no op is left; otherwise the last op's `release` (on
        // this thread meanwhile, or on another) hands it out.
        let due = {
            let mut st = h.state.lock();
            if st.ops == 0 {
                st.close.take()
            } else {
                None
            }
        };
        if let Some(c) = due {
            self.deliver(c);
        }
        Ok(())
    }

    /// Stops every op of a handle and refuses new ones.
    pub(crate) fn cancel_handle(&self, h: &HandleInner) {
        let waiting: Vec<OpId> = {
            let mut st = h.state.lock();
            h.closed.store(true, Ordering::Release);
            st.lanes
                .iter_mut()
                .flat_map(|q| q.waiting.drain(..))
                .collect()
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
            Next::Restart => self.driver.start(self, id, self.polling_here()),
            Next::Emit(c) => self.deliver(c),
            Next::EmitRestart(c) => {
                self.deliver(c);
                self.driver.start(self, id, self.polling_here());
            }
            Next::EmitThenFinal(c) => {
                self.deliver(c);
                self.finish(id, -libc::ECANCELED);
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
        // The op's own reference to its handle serves the release.
        let (lane, handle) = (op.lane, op.handle.take());
        self.deliver(final_completion(id, op, res));
        if let Some(h) = handle {
            self.release(h, lane);
        }
    }

    fn deliver(&self, c: Completion) {
        self.sched.deliver(self, c);
    }

    /// An op on `h` is done (or was never started): passes its lane, if it
    /// held one, to the next op waiting for it, and hands out the handle's
    /// `Close` completion if that was the handle's last op.
    fn release(&self, h: Arc<HandleInner>, lane: Option<Lane>) {
        let (next, close) = {
            let mut st = h.state.lock();
            st.ops -= 1;
            let next = lane.and_then(|lane| {
                let q = &mut st.lanes[lane as usize];
                let next = q.waiting.pop_front();
                q.busy = next.is_some();
                next
            });
            // An op handed the lane is still counted: no Close yet.
            let close = if st.ops == 0 { st.close.take() } else { None };
            (next, close)
        };
        if let Some(next) = next {
            if h.closed.load(Ordering::Acquire) || self.sched.is_closed() {
                self.complete(next, -libc::ECANCELED, false, None);
            } else {
                self.driver.start(self, next, self.polling_here());
            }
        }
        if let Some(close) = close {
            // This op's reference goes first: with no clone of the handle
            // left, the descriptor is closed before `Close` is seen.
            drop(h);
            self.deliver(close);
        }
    }

    // ---- shutdown ------------------------------------------------------

    pub(crate) fn shutdown(&self) {
        if !self.sched.close() {
            return;
        }
        // The poller sees the port closed when the backend wakes it.
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
        self.sched.clear();
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
    /// The id of the port this thread holds a `Batch` of, 0 if none.
    static BATCHING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn handle_closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the handle was closed")
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
/// unless the op was asked to stop (`closed`: the port is closing).
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
        Next::EmitThenFinal(c)
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

impl Kernel for Shared {
    fn poll(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.driver.poll(self, timeout)
    }

    fn wake(&self) {
        self.driver.wake();
    }

    fn flush(&self) {
        if let Err(e) = self.driver.flush() {
            tracing::debug!("submitting before sleeping failed: {e}");
        }
    }

    fn can_poll_here(&self) -> bool {
        self.driver.can_poll_here()
    }

    fn owner(&self) -> Weak<dyn SlotOwner> {
        self.me.clone()
    }
}

impl SlotOwner for Shared {
    fn give_back(&self) {
        self.sched.give_back(self);
    }
}
