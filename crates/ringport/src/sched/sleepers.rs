//! The stack of parked threads: the most recent waiter is released first,
//! and whoever releases it hands it its completion (with a running slot
//! already taken), so that no other thread that happens to be awake can
//! take it first.

use std::time::Instant;

use super::sync::{park_until, thread, Arc, AtomicBool, AtomicUsize, Mutex, Ordering, Thread};
use crate::completion::Completion;

/// One parked (or about to park) thread.
pub(super) struct Sleeper {
    thread: Thread,
    /// Set by the waker once it has taken this thread off the stack (and
    /// handed it its completion, if any).
    woken: AtomicBool,
    handoff: Mutex<Option<Completion>>,
}

#[cfg(not(loom))]
std::thread_local!(static SLEEPER: Arc<Sleeper> = Sleeper::new());
#[cfg(loom)]
loom::thread_local!(static SLEEPER: Arc<Sleeper> = Sleeper::new());

/// The calling thread's sleeper (one per thread, whichever port it waits on).
fn current() -> Arc<Sleeper> {
    SLEEPER.with(|s| s.clone())
}

/// The parked threads, last in first out.
#[derive(Default)]
pub(super) struct Sleepers {
    stack: Mutex<Vec<Arc<Sleeper>>>,
    /// `stack.len()`, readable without the lock (the wake-up protocol reads
    /// it against the ready queue's length: see PROTOCOL.md).
    count: AtomicUsize,
}

impl Sleepers {
    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Pushes the calling thread; returns its sleeper. Part of "park": the
    /// caller then re-checks for work (PROTOCOL.md, rule 2) and either
    /// [`wait`](Self::wait)s or [`leave`](Self::leave)s.
    pub(super) fn push_me(&self) -> Arc<Sleeper> {
        let me = current();
        me.woken.store(false, Ordering::Relaxed);
        let mut s = self.stack.lock();
        s.push(me.clone());
        self.count.fetch_add(1, Ordering::SeqCst);
        me
    }

    /// Waits until a waker took `me` off the stack, or `until`. Returns the
    /// completion handed over, if any (its running slot is already taken).
    pub(super) fn wait(&self, me: &Arc<Sleeper>, until: Option<Instant>) -> Option<Completion> {
        loop {
            if me.woken.load(Ordering::Acquire) {
                break;
            }
            if until.is_some_and(|d| Instant::now() >= d) {
                return self.leave(me);
            }
            park_until(until);
        }
        me.handoff.lock().take()
    }

    /// Takes `me` off the stack (it found work, or timed out). If a waker
    /// took it off first, waits for that waker to finish, and returns what
    /// it handed over.
    pub(super) fn leave(&self, me: &Arc<Sleeper>) -> Option<Completion> {
        {
            let mut s = self.stack.lock();
            if let Some(i) = s.iter().rposition(|x| Arc::ptr_eq(x, me)) {
                s.remove(i);
                self.count.fetch_sub(1, Ordering::SeqCst);
                return None;
            }
        }
        while !me.woken.load(Ordering::Acquire) {
            thread::yield_now();
        }
        me.handoff.lock().take()
    }

    /// Wakes the most recent sleeper, handing it what `take` gives (a
    /// completion with its running slot); false if nobody sleeps.
    pub(super) fn wake_top(&self, take: impl FnOnce() -> Option<Completion>) -> bool {
        let top = {
            let mut s = self.stack.lock();
            let top = s.pop();
            if top.is_some() {
                self.count.fetch_sub(1, Ordering::SeqCst);
            }
            top
        };
        let Some(s) = top else {
            return false;
        };
        *s.handoff.lock() = take();
        s.woken.store(true, Ordering::Release);
        s.thread.unpark();
        true
    }

    /// Wakes every sleeper, with nothing handed over (shutdown).
    pub(super) fn wake_all(&self) {
        let all = std::mem::take(&mut *self.stack.lock());
        self.count.fetch_sub(all.len(), Ordering::SeqCst);
        for s in all {
            s.woken.store(true, Ordering::Release);
            s.thread.unpark();
        }
    }
}

impl Sleeper {
    pub(super) fn new() -> Arc<Sleeper> {
        Arc::new(Sleeper {
            thread: thread::current(),
            woken: AtomicBool::new(false),
            handoff: Mutex::new(None),
        })
    }
}
