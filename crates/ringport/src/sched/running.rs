//! Which ports the calling thread holds a running slot of.
//!
//! IOCP counts a thread as running from the moment its dequeue returns
//! until it dequeues again (or blocks); so does ringport, and that is
//! per-thread state by nature. It changes only through calls the thread
//! makes and whose docs say so: `get`/`get_many` (take a slot, after giving
//! back the one held), `CompletionPort::leave` and `blocking` (give it back),
//! and the thread's exit (a thread-local destructor gives back what it
//! still holds).

use std::cell::RefCell;
use std::sync::Weak;

/// Gives a running slot back on behalf of a thread that exits holding it.
pub(crate) trait SlotOwner: Send + Sync {
    /// Frees one running slot and wakes a waiter if one may now run.
    fn give_back(&self);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Waiting in `get`, or between calls without a slot.
    Idle,
    Running,
    /// Gave its slot up for a blocking call (`CompletionPort::blocking`).
    Blocking,
}

/// The ports this thread has dequeued from and its role in each. An entry
/// stays once made (the hot path only flips its role); ports that are gone
/// are forgotten when a new one is added.
struct RunningSet(Vec<(u64, Weak<dyn SlotOwner>, Role)>);

impl Drop for RunningSet {
    fn drop(&mut self) {
        for (_, port, role) in self.0.drain(..) {
            if let (Some(port), Role::Running) = (port.upgrade(), role) {
                port.give_back();
            }
        }
    }
}

#[cfg(not(loom))]
std::thread_local!(static RUNNING: RefCell<RunningSet> = const { RefCell::new(RunningSet(Vec::new())) });
#[cfg(loom)]
loom::thread_local!(static RUNNING: RefCell<RunningSet> = RefCell::new(RunningSet(Vec::new())));

/// Records that this thread now runs a completion of port `id`. `port` is
/// called only the first time this thread runs one of that port's
/// completions: cloning a `Weak` costs two atomic read-modify-writes, which
/// the hot path (an entry exists, only its role flips) does not pay.
pub(super) fn mark_running(id: u64, port: impl FnOnce() -> Weak<dyn SlotOwner>) {
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        match r.0.iter_mut().find(|e| e.0 == id) {
            Some(e) => e.2 = Role::Running,
            None => {
                r.0.retain(|e| e.1.strong_count() > 0);
                r.0.push((id, port(), Role::Running));
            }
        }
    });
}

/// Marks this thread idle for port `id`; returns whether it held a slot.
pub(super) fn unmark(id: u64) -> bool {
    RUNNING
        .try_with(|r| {
            let mut r = r.borrow_mut();
            let Some(e) = r.0.iter_mut().find(|e| e.0 == id) else {
                return false;
            };
            let was_running = e.2 == Role::Running;
            e.2 = Role::Idle;
            was_running
        })
        .unwrap_or(false)
}

/// Switches this thread's entry for port `id` between running and
/// blocking; returns whether it changed.
pub(super) fn set_blocking(id: u64, blocking: bool) -> bool {
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
