//! The port's engine: the op table, the scheduler and the backend of one
//! port, and the path of an operation through them: submit (lanes, the
//! handle's op count), the backend's results through the op's result rules
//! to completions, cancellation, close, and shutdown.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::completion::{Completion, GetError};
use crate::handle::HandleInner;
use crate::op::{Lane, Record, Step};
use crate::pool::BufPool;
use crate::sched::{Kernel, Sched, SlotOwner};
use crate::sys::table::Table;
use crate::sys::{Backend, Driver, OpId, Reaped, Sink, Submit};

static NEXT_PORT_ID: AtomicU64 = AtomicU64::new(1);

/// How long shutdown waits for cancelled operations to come back before it
/// gives up and leaks their memory rather than free what the kernel may hold.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub(crate) struct Engine {
    me: Weak<Engine>,
    // Field order matters: the driver (and with it the kernel's view of every
    // op) goes before the op table.
    pub(crate) driver: Driver,
    pub(crate) sched: Sched,
    pub(crate) table: Table<Record>,
    pub(crate) pool: BufPool,
    /// Posts between their "is the port open?" check and their op being in
    /// the table: shutdown waits for them, so that it cancels and reaps
    /// every op a post let in.
    posting: AtomicUsize,
}

/// What a kernel result leads to, decided under the op's slot lock.
enum Next {
    /// The op is done (taken out of the table), with this result.
    Final(i32),
    /// Start it again.
    Restart,
    /// Nothing yet: the kernel posts another result for this stage.
    Wait,
    /// Hand this completion out; the op stays posted. `rearm`: start it
    /// again (the kernel stopped it); `end`: end it with this result
    /// instead.
    Emit {
        c: Completion,
        rearm: bool,
        end: Option<i32>,
    },
}

impl Engine {
    pub(crate) fn new(
        driver: Driver,
        concurrency: usize,
        direct: bool,
        pool: BufPool,
    ) -> Arc<Engine> {
        let id = NEXT_PORT_ID.fetch_add(1, Ordering::Relaxed);
        Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            driver,
            sched: Sched::new(id, concurrency, direct),
            table: Table::default(),
            pool,
            posting: AtomicUsize::new(0),
        })
    }

    /// How a request made now should go to the kernel: the poller's go at
    /// the end of its reap (it flushes there); anyone else's at once.
    fn submit_mode(&self) -> Submit {
        if self.sched.polling_here() {
            Submit::Deferred
        } else {
            Submit::Now
        }
    }

    // ---- dequeue -------------------------------------------------------

    pub(crate) fn get(&self, timeout: Option<Duration>) -> Result<Completion, GetError> {
        let mut one = Vec::new();
        self.get_into(timeout, &mut one, 1)?;
        one.pop().ok_or(GetError::TimedOut)
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

    pub(crate) fn post(&self, c: Completion) -> io::Result<()> {
        if self.sched.post(self, c) {
            Ok(())
        } else {
            Err(closed_error())
        }
    }

    pub(crate) fn leave(&self) {
        self.sched.leave_and_notify(self);
    }

    pub(crate) fn begin_blocking(&self) -> bool {
        self.sched.begin_blocking(self)
    }

    pub(crate) fn end_blocking(&self) {
        self.sched.end_blocking();
    }

    pub(crate) fn flush(&self) {
        if let Err(e) = self.driver.flush() {
            tracing::warn!("submitting a batch failed: {e}");
        }
    }

    // ---- posting -------------------------------------------------------

    /// Puts an op in the table and starts it (or queues it behind its
    /// lane). `submit`: whether its request may wait for a flush.
    pub(crate) fn submit(&self, rec: Record, submit: Submit) -> io::Result<OpId> {
        // Paired with `shutdown`: it closes, then waits for `posting` to be
        // 0. A post counted before the close is waited for (its op is in
        // the table when shutdown cancels); one counted after it sees the
        // port closed. Both sides are SeqCst, so one of them sees the other.
        self.posting.fetch_add(1, Ordering::SeqCst);
        let posted = if self.sched.is_closed_seqcst() {
            Err(closed_error())
        } else {
            self.submit_open(rec, submit)
        };
        self.posting.fetch_sub(1, Ordering::SeqCst);
        posted
    }

    fn submit_open(&self, mut rec: Record, submit: Submit) -> io::Result<OpId> {
        rec.check()?;
        let handle = rec.head.handle.clone();
        if let Some(h) = &handle {
            if !std::ptr::eq(h.port.as_ptr(), self) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the handle is associated with another port",
                ));
            }
        }
        let lane = rec.lane();
        if let Some(h) = &handle {
            let mut st = h.state.lock();
            if h.closed.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the handle was closed",
                ));
            }
            // Counted from here to its final completion, so that the
            // handle's `Close` completion can come after it.
            st.ops += 1;
            if let Some(lane) = lane {
                let q = &mut st.lanes[lane as usize];
                if q.busy {
                    // Started by `release` when the ops ahead of it are done.
                    let Some(id) = self.table.insert(rec) else {
                        st.ops -= 1;
                        return Err(table_full());
                    };
                    q.waiting.push_back(id);
                    drop(st);
                    self.progress();
                    return Ok(id);
                }
                q.busy = true;
            }
        }
        let Some(id) = self.driver.start_new(self, rec, submit) else {
            if let Some(h) = handle {
                // Uncount it, and pass its lane on to whatever queued
                // behind it meanwhile.
                self.release(h, lane);
            }
            return Err(table_full());
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

    /// Cancels one op: a queued one completes at once, a started one when
    /// the kernel lets go of it.
    pub(crate) fn cancel(&self, id: OpId) -> bool {
        let Some((handle, lane)) = self.table.with(id, |rec| {
            rec.head.cancelled = true;
            (rec.head.handle.clone(), rec.lane())
        }) else {
            return false;
        };
        if let (Some(h), Some(lane)) = (handle, lane) {
            let mut st = h.state.lock();
            let q = &mut st.lanes[lane as usize];
            if let Some(i) = q.waiting.iter().position(|w| *w == id) {
                q.waiting.remove(i);
                drop(st);
                self.end_unstarted(id, false);
                return true;
            }
        }
        self.driver.cancel(self, id);
        true
    }

    /// Ends an op that never reached the backend, as cancelled: one taken
    /// out of its lane's queue (it does not hold the lane), or one just
    /// handed the lane (`holds_lane`: it passes it on).
    fn end_unstarted(&self, id: OpId, holds_lane: bool) {
        if let Some(rec) = self.table.remove(id) {
            self.finish_removed(id, rec, -libc::ECANCELED, holds_lane);
        }
    }

    /// Closes a handle: stops its ops and refuses new ones, and hands out
    /// its `Close` completion (with `user`) after the last of them
    /// completed.
    pub(crate) fn close(&self, h: &Arc<HandleInner>, user: u64) -> io::Result<()> {
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
            st.close = Some(user);
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
        if let Some(user) = due {
            self.deliver(Completion::close(h, user));
        }
        Ok(())
    }

    /// Stops every op of a handle and refuses new ones.
    pub(crate) fn cancel_handle(&self, h: &HandleInner) {
        let (waiting, started) = {
            let mut st = h.state.lock();
            h.closed.store(true, Ordering::Release);
            let waiting: Vec<OpId> = st
                .lanes
                .iter_mut()
                .flat_map(|q| q.waiting.drain(..))
                .collect();
            // `closed` is set under the same lock that `submit_open` counts
            // an op under, so no op can start after this count.
            let started = st.ops - waiting.len();
            (waiting, started)
        };
        for id in waiting {
            self.end_unstarted(id, false);
        }
        // Nothing of the handle's is with the kernel (the common case when
        // a connection ends at its peer's close): no cancel request, which
        // cost a tenth of the server's CPU under connection churn (the
        // kernel looks for the descriptor's requests in every list).
        if started > 0 {
            #[cfg(test)]
            tests::CANCELS_SENT.with(|n| n.set(n.get() + 1));
            self.driver.cancel_fd(self, h.fd.as_raw_fd());
        }
    }

    // ---- completing ----------------------------------------------------

    /// Applies op `id`'s result rules to a kernel result (after `commit`,
    /// under the same slot lock) and does what they say.
    fn complete_with(
        &self,
        id: OpId,
        mut r: Reaped,
        commit: impl FnOnce(&mut Record, &mut Reaped),
    ) {
        let closed = self.sched.is_closed();
        let Some((next, removed)) = self.table.with_then_remove(id, |rec| {
            commit(rec, &mut r);
            let next = match rec.on_result(&mut r, closed) {
                Step::Final(res) => Next::Final(res),
                Step::Restart => Next::Restart,
                Step::Wait => Next::Wait,
                Step::More { out, armed, end } => {
                    let head = &rec.head;
                    let c = Completion::of_op(
                        rec.kind(),
                        id,
                        head.key,
                        head.user,
                        head.seq,
                        true,
                        head.handle.as_ref(),
                        out,
                    );
                    rec.head.seq += 1;
                    let stop = !armed && rec.is_stopping(closed);
                    Next::Emit {
                        c,
                        rearm: !armed,
                        end: if stop { Some(-libc::ECANCELED) } else { end },
                    }
                }
            };
            let last = matches!(next, Next::Final(_));
            (next, last)
        }) else {
            return;
        };
        // A descriptor the rules did not take (a stopped accept) closes
        // here.
        drop(r);
        match next {
            Next::Final(res) => {
                if let Some(rec) = removed {
                    self.finish_removed(id, rec, res, true);
                }
            }
            Next::Restart => self.driver.start(self, id, self.submit_mode()),
            Next::Wait => {}
            Next::Emit { c, rearm, end } => {
                self.deliver(c);
                if let Some(res) = end {
                    if let Some(rec) = self.table.remove(id) {
                        self.finish_removed(id, rec, res, true);
                    }
                } else if rearm {
                    self.driver.start(self, id, self.submit_mode());
                }
            }
        }
    }

    /// Hands out a finished op's completion and releases its handle (and
    /// its lane, if it `held_lane`: it ran).
    fn finish_removed(&self, id: OpId, rec: Record, res: i32, held_lane: bool) {
        let lane = rec.lane().filter(|_| held_lane);
        let (head, kind, out) = rec.finish(res);
        let c = Completion::of_op(
            kind,
            id,
            head.key,
            head.user,
            head.seq,
            false,
            head.handle.as_ref(),
            out,
        );
        self.deliver(c);
        if let Some(h) = head.handle {
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
                self.end_unstarted(next, true);
            } else {
                self.driver.start(self, next, self.submit_mode());
            }
        }
        if let Some(user) = close {
            self.deliver(Completion::close(&h, user));
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
        // Posts that saw the port open finish putting their ops in the
        // table (see `submit`).
        while self.posting.load(Ordering::SeqCst) > 0 {
            std::thread::yield_now();
        }
        self.cancel_all();
        if self.driver.can_poll_here() {
            // Take the poller's seat (the current poller sees `closed` and
            // leaves), unless another thread that saw the port closed is
            // already draining it.
            while self.table.live() > 0 && start.elapsed() < DRAIN_LIMIT {
                if self.sched.try_poller() {
                    self.drain(start);
                    break;
                }
                self.driver.wake();
                std::thread::park_timeout(Duration::from_millis(1));
            }
        } else {
            // A single-thread port owned by another thread: it drains what
            // was cancelled here when it sees the port closed.
            self.driver.wake();
            while self.table.live() > 0 && start.elapsed() < DRAIN_LIMIT && !self.driver.orphaned()
            {
                std::thread::park_timeout(Duration::from_millis(1));
            }
        }
        self.sched.clear();
    }

    fn cancel_all(&self) {
        for id in self.table.ids() {
            self.cancel(id);
        }
    }

    /// Reaps cancelled operations until none is left (or `DRAIN_LIMIT`),
    /// cancelling again now and then what an operation started while the
    /// port was closing. The caller holds the poller seat: `shutdown` keeps
    /// it (every op is in the table by then: nobody polls the port again);
    /// a helper gives it back (see `drain_if_closed`).
    fn drain(&self, start: Instant) {
        let mut rounds = 0u32;
        while self.table.live() > 0 && start.elapsed() < DRAIN_LIMIT {
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
    /// cancelled (for a single-thread port, only its owner can), then gives
    /// the poller seat back: a post that saw the port open may still put
    /// its op in the table after this drain found it empty, and `shutdown`
    /// (which waits for such posts) must then take the seat to reap it.
    fn drain_if_closed(&self) {
        if self.table.live() > 0 && self.driver.can_poll_here() && self.sched.try_poller() {
            self.drain(Instant::now());
            self.sched.release_poller();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
        let live = self.table.live();
        if live > 0 {
            tracing::error!(
                "{live} operations never completed; leaking their memory rather than \
                 freeing buffers the kernel may still write"
            );
            std::mem::forget(std::mem::take(&mut self.table));
        }
    }
}

impl Sink for Engine {
    type Op = Record;

    fn table(&self) -> &Table<Record> {
        &self.table
    }

    fn pool(&self) -> &BufPool {
        &self.pool
    }

    fn complete(&self, id: OpId, r: Reaped, commit: impl FnOnce(&mut Record, &mut Reaped)) {
        self.complete_with(id, r, commit);
    }

    fn polling(&self) -> bool {
        self.sched.polling_here()
    }
}

impl Kernel for Engine {
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

impl SlotOwner for Engine {
    fn give_back(&self) {
        self.sched.give_back(self);
    }
}

fn table_full() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "too many operations outstanding",
    )
}

pub(crate) fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the completion port was shut down",
    )
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::net::TcpListener;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use crate::completion::GetError;
    use crate::op::sealed::Sealed;
    use crate::op::{self, Timeout};
    use crate::sys::Submit;
    use crate::{BackendKind, CompletionPort};

    thread_local! {
        /// Cancel requests for a whole handle sent from this thread.
        pub(super) static CANCELS_SENT: Cell<usize> = const { Cell::new(0) };
    }

    fn sent() -> usize {
        CANCELS_SENT.with(Cell::get)
    }

    /// A handle dropped with nothing in flight (a connection that ended at
    /// its peer's close) costs the kernel no cancel request; one dropped
    /// with an accept outstanding sends one, and the accept comes back
    /// cancelled.
    #[test]
    fn a_handle_with_nothing_in_flight_is_dropped_without_a_cancel() {
        for kind in [BackendKind::IoUring, BackendKind::Epoll] {
            let Ok(port) = CompletionPort::builder().backend(kind).build() else {
                continue;
            };
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let h = port.associate(l, 1).expect("associate");
            let before = sent();
            drop(h);
            assert_eq!(sent(), before, "{kind}: idle handle");

            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            let h = port.associate(l, 2).expect("associate");
            port.submit(op::Accept::new(&h)).expect("accept");
            drop(h);
            assert_eq!(sent(), before + 1, "{kind}: handle with an accept");
            let c = port.get(Some(Duration::from_secs(10))).expect("get");
            assert!(c.is_cancelled(), "{kind}: {c:?}");
        }
    }

    /// Found by the chaos test (seed 3298841376, io_uring, under ASan): a
    /// thread whose `get` found the port closed drained it, found the table
    /// empty and kept the poller seat; then a post that had seen the port
    /// open put its timer in the table, `shutdown` cancelled it and waited
    /// 10 s for a seat nobody would give back, and returned with the timer
    /// outstanding. Here the post in progress is held by hand: `shutdown`
    /// waits for it, a helper drains meanwhile, then the post's op goes in.
    #[test]
    fn an_op_posted_while_a_helper_drains_is_reaped_by_shutdown() {
        for kind in [BackendKind::IoUring, BackendKind::Epoll] {
            let Ok(port) = CompletionPort::builder().backend(kind).build() else {
                continue;
            };
            let engine = port.engine().clone();
            // Something for the helper to drain.
            port.submit(Timeout::new(Duration::from_secs(3600)))
                .expect("first timer");
            // A post that has seen the port open and not yet inserted.
            engine.posting.fetch_add(1, Ordering::SeqCst);
            let closer = {
                let port = port.clone();
                std::thread::spawn(move || {
                    let start = Instant::now();
                    port.shutdown();
                    start.elapsed()
                })
            };
            let limit = Instant::now() + Duration::from_secs(10);
            while !port.is_shut_down() {
                assert!(
                    Instant::now() < limit,
                    "{kind}: shutdown never closed the port"
                );
                std::thread::yield_now();
            }
            // The helper: shutdown has not cancelled yet (it waits for the
            // post), so cancel the first timer here; `get` then drains it.
            for id in engine.table.ids() {
                engine.cancel(id);
            }
            assert!(matches!(
                port.get(Some(Duration::ZERO)),
                Err(GetError::Closed)
            ));
            assert_eq!(port.outstanding(), 0, "{kind}: the helper drained");
            // The post goes on: its op is in the table, then it is done.
            let late = Timeout::new(Duration::from_secs(3600)).into_record();
            engine
                .submit_open(late, Submit::Now)
                .expect("the late timer");
            engine.posting.fetch_sub(1, Ordering::SeqCst);
            let took = closer.join().expect("shutdown");
            assert_eq!(port.outstanding(), 0, "{kind}: the late timer was reaped");
            assert!(
                took < Duration::from_secs(5),
                "{kind}: shutdown took {took:?}"
            );
        }
    }
}
