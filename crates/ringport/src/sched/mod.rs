//! Who gets the next completion: the queue of finished operations, the
//! waiting threads (released last in, first out), the concurrency limit and
//! the poller seat (the one waiting thread that sleeps in the kernel).
//!
//! The protocol, its invariants and why no wake-up is lost are written down
//! in `PROTOCOL.md` beside this file; `model.rs` checks it with loom. The
//! kernel side (the backend's poll and wake) comes in through [`Kernel`].
//!
//! On the hot path a completion crosses the ready queue (one lock) and two
//! atomics; a lone dequeuing thread (`Builder::single_thread`) takes what its
//! own poll reaped without the queue. The sleeper stack's lock is taken only
//! to park or to wake a thread.

mod ready;
mod running;
mod sleepers;
mod sync;

#[cfg(all(test, loom))]
mod model;

use std::cell::RefCell;
use std::io;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::completion::{Completion, GetError};
use ready::ReadyQueue;
pub(crate) use running::SlotOwner;
use sleepers::Sleepers;
use sync::{fence, AtomicBool, AtomicUsize, Ordering};

/// What the scheduler needs from the kernel side of a port.
pub(crate) trait Kernel {
    /// Waits at most `timeout` for completions and hands each to
    /// [`Sched::deliver`]. Called by the poller only (one thread at a time).
    fn poll(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Makes a current or the next `poll` return soon.
    fn wake(&self);
    /// Submits what a batch of this thread held back (before it sleeps).
    fn flush(&self);
    /// Whether this thread may poll (a single-thread ring: its owner only).
    fn can_poll_here(&self) -> bool;
    /// The port, to give a running slot back when a thread exits.
    fn owner(&self) -> Weak<dyn SlotOwner>;
}

/// The scheduler of one port. See the module docs and `PROTOCOL.md`.
pub(crate) struct Sched {
    /// The port's id: this thread's per-port state (running slot, poller,
    /// direct batch) is keyed by it.
    id: u64,
    queue: ReadyQueue,
    concurrency: usize,
    running: AtomicUsize,
    sleepers: Sleepers,
    poller: AtomicBool,
    closed: AtomicBool,
    /// Only one thread dequeues: what its poll reaps goes straight to its
    /// caller (`REAPED`), not through the shared queue.
    direct: bool,
}

#[cfg(not(loom))]
std::thread_local! {
    /// The id of the port this thread is polling, 0 if none.
    static POLLING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// What this thread's poll of a direct port reaped; emptied before the
    /// `get` that polled returns.
    static REAPED: RefCell<Vec<Completion>> = const { RefCell::new(Vec::new()) };
}
#[cfg(loom)]
loom::thread_local! {
    static POLLING: std::cell::Cell<u64> = std::cell::Cell::new(0);
    static REAPED: RefCell<Vec<Completion>> = RefCell::new(Vec::new());
}

impl Sched {
    pub(crate) fn new(id: u64, concurrency: usize, direct: bool) -> Self {
        Sched {
            id,
            queue: ReadyQueue::default(),
            concurrency: concurrency.max(1),
            running: AtomicUsize::new(0),
            sleepers: Sleepers::default(),
            poller: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            direct,
        }
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// Threads holding a running slot now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Threads waiting in `get`: parked ones plus the poller.
    pub(crate) fn idle(&self) -> usize {
        self.sleepers.count() + usize::from(self.poller.load(Ordering::SeqCst))
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// As [`is_closed`](Self::is_closed), ordered with other SeqCst
    /// accesses (the engine's count of posts in progress).
    pub(crate) fn is_closed_seqcst(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether the calling thread is polling this port right now.
    pub(crate) fn polling_here(&self) -> bool {
        POLLING.with(|p| p.get()) == self.id
    }

    // ---- dequeue -------------------------------------------------------

    /// Waits for at least one completion and appends it to `out`, at most
    /// `timeout`; straight from a poll of a direct port, up to `max`. The
    /// caller's running slot, if it held one, is given back first; the
    /// completions handed out come with one. `GetError::Closed` once the
    /// port is closed (the caller may help drain it).
    pub(crate) fn get(
        &self,
        k: &impl Kernel,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
        max: usize,
    ) -> Result<usize, GetError> {
        self.leave();
        // Read the clock only once there is something to wait for: a
        // completion already queued is handed out without it.
        let mut deadline = None;
        loop {
            if self.is_closed() {
                return Err(GetError::Closed);
            }
            if let Some(c) = self.try_take() {
                return Ok(self.hand_out(k, c, out));
            }
            // The first wait is the whole timeout (one clock read, for the
            // deadline); later ones what is left of it.
            let remaining = match deadline {
                None => {
                    // (A timeout past the clock's range waits forever.)
                    deadline = Some(timeout.and_then(|t| Instant::now().checked_add(t)));
                    timeout
                }
                Some(d) => d.map(|d: Instant| d.saturating_duration_since(Instant::now())),
            };
            let deadline = deadline.flatten();
            // Completions queued with every running slot taken: wait for a
            // slot (parked) rather than poll, which would only read further
            // ahead of the running threads and grow memory with it.
            let backlog = !self.queue.is_empty();
            if !backlog && self.try_poller() {
                // PROTOCOL.md, rule 3 (the second look): a post between the
                // backlog check and taking the seat found the seat free and
                // nobody parked, so it woke nobody. Posts from here on see
                // the seat taken and wake the kernel. The fence pairs with
                // the one in `notify`: either that post's `notify` sees the
                // seat taken, or this look sees its completion.
                fence(Ordering::SeqCst);
                if !self.queue.is_empty() {
                    self.release_poller();
                    continue;
                }
                let polled = self.poll_as_poller(k, remaining);
                if let Some(n) = self.take_reaped(k, out, max) {
                    return Ok(n);
                }
                if let Err(e) = polled {
                    self.notify(k);
                    return Err(GetError::Io(e));
                }
                if self.is_closed() {
                    continue;
                }
                if let Some(c) = self.try_take() {
                    return Ok(self.hand_out(k, c, out));
                }
                // Another thread may now be needed in the seat.
                self.notify(k);
                if remaining == Some(Duration::ZERO) {
                    return Err(GetError::TimedOut);
                }
                continue;
            }
            k.flush();
            if remaining == Some(Duration::ZERO) {
                return Err(GetError::TimedOut);
            }
            if let Some(c) = self.park(deadline) {
                if self.is_closed() {
                    return Err(GetError::Closed);
                }
                running::mark_running(self.id, || k.owner());
                out.push(c);
                return Ok(1);
            }
        }
    }

    /// Moves up to `max` queued completions to `out`, for a `get_many`
    /// that holds a running slot already (one batch counts as one running
    /// thread, as one `GetQueuedCompletionStatusEx` call does).
    pub(crate) fn take_more(&self, out: &mut Vec<Completion>, max: usize) -> usize {
        self.queue.pop_into(out, max)
    }

    /// Polls as the poller (the caller holds the seat), then gives the seat
    /// back.
    fn poll_as_poller(&self, k: &impl Kernel, timeout: Option<Duration>) -> io::Result<()> {
        POLLING.with(|p| p.set(self.id));
        let polled = k.poll(timeout);
        POLLING.with(|p| p.set(0));
        self.release_poller();
        polled
    }

    /// Reaps what is ready, without waiting, if no thread waits in the
    /// kernel to do it (see `Engine::submit`: an op queued behind one the
    /// kernel has finished).
    pub(crate) fn poll_now(&self, k: &impl Kernel) {
        if self.polling_here() || !k.can_poll_here() || !self.try_poller() {
            return;
        }
        if let Err(e) = self.poll_as_poller(k, Some(Duration::ZERO)) {
            tracing::debug!("reaping without waiting failed: {e}");
        }
        if self.direct {
            // Not this thread's `get`: what it reaped goes to the queue.
            REAPED.with(|r| self.queue.push_all(&mut r.borrow_mut()));
        }
        self.notify(k);
    }

    /// Gives the calling thread's running slot back, if it holds one. Nobody
    /// is woken: `get` goes on to take the next completion itself.
    pub(crate) fn leave(&self) {
        if running::unmark(self.id) {
            self.running.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// As [`leave`](Self::leave), for a thread that will not dequeue soon:
    /// a waiter may now run in its place.
    pub(crate) fn leave_and_notify(&self, k: &impl Kernel) {
        if running::unmark(self.id) {
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.notify(k);
        }
    }

    /// Hands `c` to the caller with a running slot already taken, waking
    /// another waiter if more work is queued or the seat needs a taker.
    fn hand_out(&self, k: &impl Kernel, c: Completion, out: &mut Vec<Completion>) -> usize {
        running::mark_running(self.id, || k.owner());
        self.notify(k);
        out.push(c);
        1
    }

    /// After a poll of a direct port: hands what it reaped to the caller
    /// (up to `max`, the rest to the queue) with one running slot. `None`
    /// if nothing was reaped, no slot is free or the port was closed
    /// meanwhile (then the completions are dropped: the kernel is done with
    /// their memory).
    fn take_reaped(&self, k: &impl Kernel, out: &mut Vec<Completion>, max: usize) -> Option<usize> {
        if !self.direct {
            return None;
        }
        REAPED.with(|r| {
            let mut r = r.borrow_mut();
            if r.is_empty() {
                return None;
            }
            if self.is_closed() {
                r.clear();
                return None;
            }
            let taken = self.try_add_running().then(|| {
                let n = r.len().min(max);
                out.extend(r.drain(..n));
                running::mark_running(self.id, || k.owner());
                n
            });
            if !r.is_empty() {
                self.queue.push_all(&mut r);
                self.notify(k);
            }
            taken
        })
    }

    /// Takes a running slot and a completion, or neither.
    fn try_take(&self) -> Option<Completion> {
        if self.queue.is_empty() || !self.try_add_running() {
            return None;
        }
        match self.queue.pop() {
            Some(c) => Some(c),
            None => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                None
            }
        }
    }

    /// Takes a running slot if one is free.
    fn try_add_running(&self) -> bool {
        let mut r = self.running.load(Ordering::SeqCst);
        while r < self.concurrency {
            match self
                .running
                .compare_exchange_weak(r, r + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => r = now,
            }
        }
        false
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty() && self.running.load(Ordering::SeqCst) < self.concurrency
    }

    // ---- the poller seat ----------------------------------------------

    /// Takes the poller seat if it is free.
    pub(crate) fn try_poller(&self) -> bool {
        !self.poller.load(Ordering::Relaxed)
            && self
                .poller
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
    }

    pub(crate) fn release_poller(&self) {
        self.poller.store(false, Ordering::SeqCst);
    }

    // ---- completions in ------------------------------------------------

    /// Queues a completion: a user packet, or a result from outside a
    /// poll. False if the port is closed (the completion is dropped).
    pub(crate) fn post(&self, k: &impl Kernel, c: Completion) -> bool {
        if self.is_closed() {
            return false;
        }
        self.queue.push(c);
        self.notify(k);
        true
    }

    /// Hands out a completion produced by the port: queued (the poller
    /// wakes helpers once per batch, after its reap), or kept for the
    /// poller's own caller on a direct port. Dropped once the port is
    /// closed: its buffer and socket are freed here, after the kernel let
    /// go of them.
    pub(crate) fn deliver(&self, k: &impl Kernel, c: Completion) {
        if self.is_closed() {
            return;
        }
        if !self.polling_here() {
            self.queue.push(c);
            self.notify(k);
        } else if self.direct {
            REAPED.with(|r| r.borrow_mut().push(c));
        } else {
            self.queue.push(c);
        }
    }

    /// Wakes a parked thread if there is something for it to do (a queued
    /// completion it may run, or the poller's seat to take), or the kernel
    /// if work is queued, nobody is parked and the poller sleeps in it.
    /// PROTOCOL.md, rule 1.
    pub(crate) fn notify(&self, k: &impl Kernel) {
        // Pairs with the fence in `park` (rule 2): either this thread sees
        // the parker on the stack, or the parker sees what was queued.
        fence(Ordering::SeqCst);
        let work = self.has_work();
        let seat_free = !self.poller.load(Ordering::SeqCst);
        // A free seat needs a taker only when nothing is queued: with a
        // backlog, waiting threads wait for a running slot instead.
        let seat_wanted = seat_free && self.queue.is_empty() && self.sleepers.count() > 0;
        if !(work || seat_wanted) {
            return;
        }
        if self.sleepers.count() > 0
            && self
                .sleepers
                .wake_top(|| if work { self.try_take() } else { None })
        {
            return;
        }
        if work && !seat_free && !self.polling_here() {
            k.wake();
        }
    }

    /// Parks the calling thread until woken or `deadline`, unless there is
    /// something to do already. Returns the completion the waker handed
    /// over, if any (its running slot is already taken).
    fn park(&self, deadline: Option<Instant>) -> Option<Completion> {
        let me = self.sleepers.push_me();
        // Pairs with the fence in `notify` (rule 2): either the poster sees
        // this thread on the stack, or this thread sees what was posted.
        fence(Ordering::SeqCst);
        if self.is_closed()
            || self.has_work()
            || (!self.poller.load(Ordering::SeqCst) && self.queue.is_empty())
        {
            // A waker that took this thread off the stack first may have
            // handed it a completion (with a slot): it is returned too.
            return self.sleepers.leave(&me);
        }
        self.sleepers.wait(&me, deadline)
    }

    // ---- blocking calls -------------------------------------------------

    /// The calling thread, which runs a completion, is about to block: its
    /// slot is free meanwhile. Returns whether it held one.
    pub(crate) fn begin_blocking(&self, k: &impl Kernel) -> bool {
        if !running::set_blocking(self.id, true) {
            return false;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        k.flush();
        self.notify(k);
        true
    }

    /// The blocking call is over: the thread takes its slot back, even if
    /// that exceeds the concurrency value for a moment (as on Windows).
    pub(crate) fn end_blocking(&self) {
        if running::set_blocking(self.id, false) {
            self.running.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A thread that exits holding a running slot gives it back (through
    /// [`SlotOwner`]).
    pub(crate) fn give_back(&self, k: &impl Kernel) {
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.notify(k);
    }

    // ---- shutdown -------------------------------------------------------

    /// Closes the scheduler; false if it was closed already. Every waiter
    /// returns `GetError::Closed`: the parked ones now, the poller when the
    /// kernel wakes it (the caller wakes it).
    pub(crate) fn close(&self) -> bool {
        if self.closed.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.sleepers.wake_all();
        true
    }

    /// Drops what is queued and wakes anyone still parked (the end of
    /// shutdown).
    pub(crate) fn clear(&self) {
        self.queue.clear();
        self.sleepers.wake_all();
    }
}
