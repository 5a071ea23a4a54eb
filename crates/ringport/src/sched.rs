//! Who gets the next completion: the queue of finished operations, the
//! waiting threads (released last in, first out), the concurrency limit and
//! the poller token (the one waiting thread that sleeps in the kernel).
//!
//! On the hot path a completion crosses the ready queue (one short lock) and
//! two atomics; a lone dequeuing thread (`Builder::single_thread`) skips the
//! queue. The sleeper stack's lock is taken only to park or to wake a thread.

use std::cell::RefCell;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, Thread};
use std::time::Instant;

use parking_lot::Mutex;

use crate::completion::Completion;
use crate::ready::ReadyQueue;
use crate::shared::Shared;

struct Sleeper {
    thread: Thread,
    woken: AtomicBool,
    /// A completion handed to this thread by the waker, with a running slot
    /// already taken for it: the released thread, not whoever is awake
    /// first, runs it (strict last-in-first-out release).
    handoff: Mutex<Option<Completion>>,
}

/// What [`Sched::notify`] found to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notify {
    /// Nothing needed.
    Nothing,
    /// A parked thread was woken.
    Woke,
    /// Work is queued, no thread is parked and the poller sleeps in the
    /// kernel: the backend must be woken.
    WakeBackend,
}

pub(crate) struct Sched {
    pub(crate) queue: ReadyQueue,
    concurrency: usize,
    running: AtomicUsize,
    sleepers: Mutex<Vec<Arc<Sleeper>>>,
    nsleep: AtomicUsize,
    poller: AtomicBool,
    pub(crate) closed: AtomicBool,
}

impl Sched {
    pub(crate) fn new(concurrency: usize) -> Self {
        Sched {
            queue: ReadyQueue::default(),
            concurrency: concurrency.max(1),
            running: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::new()),
            nsleep: AtomicUsize::new(0),
            poller: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.concurrency
    }

    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Threads waiting in `get`: parked ones plus the poller.
    pub(crate) fn idle(&self) -> usize {
        self.nsleep.load(Ordering::SeqCst) + usize::from(self.poller.load(Ordering::SeqCst))
    }

    fn has_work(&self) -> bool {
        !self.queue.is_empty() && self.running.load(Ordering::SeqCst) < self.concurrency
    }

    /// Takes a running slot and a completion, or neither.
    pub(crate) fn try_take(&self) -> Option<Completion> {
        let mut r = self.running.load(Ordering::SeqCst);
        loop {
            if r >= self.concurrency || self.queue.is_empty() {
                return None;
            }
            match self
                .running
                .compare_exchange_weak(r, r + 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => r = now,
            }
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
    pub(crate) fn try_add_running(&self) -> bool {
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

    pub(crate) fn add_running(&self) {
        self.running.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn sub_running(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

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

    /// Wakes a parked thread if there is something for it to do: a queued
    /// completion it may run, or the poller's seat to take.
    pub(crate) fn notify(&self, caller_is_poller: bool) -> Notify {
        fence(Ordering::SeqCst);
        let work = self.has_work();
        let seat_free = !self.poller.load(Ordering::SeqCst);
        // A free poller seat needs a taker only when nothing is queued: with
        // a backlog, waiting threads wait for a running slot instead.
        let seat_wanted =
            seat_free && self.queue.is_empty() && self.nsleep.load(Ordering::SeqCst) > 0;
        if !(work || seat_wanted) {
            return Notify::Nothing;
        }
        if self.nsleep.load(Ordering::SeqCst) > 0 {
            let top = {
                let mut s = self.sleepers.lock();
                let top = s.pop();
                if top.is_some() {
                    self.nsleep.fetch_sub(1, Ordering::SeqCst);
                }
                top
            };
            if let Some(s) = top {
                if work {
                    *s.handoff.lock() = self.try_take();
                }
                s.woken.store(true, Ordering::Release);
                s.thread.unpark();
                return Notify::Woke;
            }
        }
        if work && !seat_free && !caller_is_poller {
            Notify::WakeBackend
        } else {
            Notify::Nothing
        }
    }

    /// Wakes every parked thread (shutdown).
    pub(crate) fn wake_all(&self) {
        let all = std::mem::take(&mut *self.sleepers.lock());
        self.nsleep.fetch_sub(all.len(), Ordering::SeqCst);
        for s in all {
            s.woken.store(true, Ordering::Release);
            s.thread.unpark();
        }
    }

    /// Parks the calling thread until woken or `deadline`, unless there is
    /// something to do already. Returns the completion the waker handed to
    /// this thread, if any (its running slot is already taken).
    pub(crate) fn park(&self, deadline: Option<Instant>) -> Option<Completion> {
        let me = SLEEPER.with(|s| s.clone());
        self.park_inner(&me, deadline);
        let handed = me.handoff.lock().take();
        handed
    }

    fn park_inner(&self, me: &Arc<Sleeper>, deadline: Option<Instant>) {
        me.woken.store(false, Ordering::Relaxed);
        {
            let mut s = self.sleepers.lock();
            s.push(me.clone());
            self.nsleep.fetch_add(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if self.is_closed()
            || self.has_work()
            || (!self.poller.load(Ordering::SeqCst) && self.queue.is_empty())
        {
            self.unpark_self(me);
            return;
        }
        loop {
            if me.woken.load(Ordering::Acquire) {
                return;
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.unpark_self(me);
                        return;
                    }
                    thread::park_timeout(d - now);
                }
            }
        }
    }

    /// Leaves the sleeper stack. If a waker took this thread off it first,
    /// waits for that waker to finish (it may be handing a completion over).
    fn unpark_self(&self, me: &Arc<Sleeper>) {
        {
            let mut s = self.sleepers.lock();
            if let Some(i) = s.iter().rposition(|x| Arc::ptr_eq(x, me)) {
                s.remove(i);
                self.nsleep.fetch_sub(1, Ordering::SeqCst);
                return;
            }
        }
        while !me.woken.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    }
}

thread_local! {
    static SLEEPER: Arc<Sleeper> = Arc::new(Sleeper {
        thread: thread::current(),
        woken: AtomicBool::new(false),
        handoff: Mutex::new(None),
    });
    static RUNNING: RefCell<RunningSet> = const { RefCell::new(RunningSet(Vec::new())) };
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Waiting in `get`, or between calls without a slot.
    Idle,
    Running,
    Blocking,
}

/// The ports this thread has dequeued from, and whether it holds a running
/// slot of each (or gave it up for a blocking call). An entry stays once
/// made, so the hot path only flips its role; running slots are given back
/// when the thread exits.
struct RunningSet(Vec<(u64, Weak<Shared>, Role)>);

impl Drop for RunningSet {
    fn drop(&mut self) {
        for (_, port, role) in self.0.drain(..) {
            if let (Some(sh), Role::Running) = (port.upgrade(), role) {
                sh.sched.sub_running();
                sh.notify();
            }
        }
    }
}

/// Records that this thread now runs a completion of `port`.
pub(crate) fn mark_running(id: u64, port: &Weak<Shared>) {
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        match r.0.iter_mut().find(|e| e.0 == id) {
            Some(e) => e.2 = Role::Running,
            None => {
                // Forget ports that are gone before remembering a new one.
                r.0.retain(|e| e.1.strong_count() > 0);
                r.0.push((id, port.clone(), Role::Running));
            }
        }
    });
}

/// Marks this thread idle for `port`; returns whether it held a slot.
pub(crate) fn unmark(id: u64) -> Option<bool> {
    RUNNING
        .try_with(|r| {
            let mut r = r.borrow_mut();
            let e = r.0.iter_mut().find(|e| e.0 == id)?;
            let was_running = e.2 == Role::Running;
            e.2 = Role::Idle;
            Some(was_running)
        })
        .ok()
        .flatten()
}

/// Switches this thread's entry between running and blocking; returns whether
/// it changed.
pub(crate) fn set_blocking(id: u64, blocking: bool) -> bool {
    let (from, to) = if blocking {
        (Role::Running, Role::Blocking)
    } else {
        (Role::Blocking, Role::Running)
    };
    RUNNING
        .try_with(|r| {
            let mut r = r.borrow_mut();
            match r.0.iter_mut().find(|e| e.0 == id && e.2 == from) {
                Some(e) => {
                    e.2 = to;
                    true
                }
                None => false,
            }
        })
        .unwrap_or(false)
}
