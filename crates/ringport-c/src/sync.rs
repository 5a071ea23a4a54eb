//! Threads, events, critical sections and sleeps, and the rule that ties
//! them to the completion port: while a worker waits in one of them, its
//! running slot is free for another worker (Windows frees the slot of a
//! thread that blocks; here the library knows when its own calls block).
//!
//! Threads and events are [`Waitable`]s: a signalled flag under one global
//! lock, with one condition variable that every change notifies (waits on
//! several objects at once need no more; these are not hot paths).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::lock_api::RawReentrantMutex;
use parking_lot::{Condvar, Mutex, RawMutex, RawThreadId};
use ringport::CompletionPort;

thread_local! {
    /// The port this thread last dequeued from: its running slot is the
    /// one a blocking wait gives back.
    static CURRENT_PORT: RefCell<Option<(usize, CompletionPort)>> = const { RefCell::new(None) };
}

/// Remembers the port (handle `h`) the calling thread dequeues from.
pub fn set_current_port(h: usize, port: &CompletionPort) {
    CURRENT_PORT.with(|c| {
        let mut c = c.borrow_mut();
        // Compared by handle, so that a dequeue does not clone the port
        // (an atomic count shared by every worker) each time.
        if c.as_ref().is_none_or(|(cur, _)| *cur != h) {
            *c = Some((h, port.clone()));
        }
    });
}

/// Runs `wait` with the calling thread's running slot given back to its
/// port (if it holds one), so that another worker may run meanwhile.
pub fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    let port = CURRENT_PORT.with(|c| c.borrow().as_ref().map(|(_, p)| p.clone()));
    match port {
        Some(port) => {
            let _slot_free = port.blocking();
            wait()
        }
        None => wait(),
    }
}

/// `Sleep(ms)`: the running slot is free meanwhile.
pub fn sleep(ms: u32) {
    blocking(|| std::thread::sleep(Duration::from_millis(ms.into())));
}

/// What kind of waitable object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// A thread: signalled when it has exited.
    Thread,
    /// A manual-reset event: stays signalled until reset.
    ManualEvent,
    /// An auto-reset event: a satisfied wait resets it.
    AutoEvent,
}

/// A thread or an event.
pub struct Waitable {
    kind: WaitKind,
    signalled: AtomicBool,
    exit_code: AtomicU32,
}

/// The lock every change of a waitable's state is made under, and the
/// condition variable that announces it.
static STATE: LazyLock<(Mutex<()>, Condvar)> = LazyLock::new(Default::default);

impl Waitable {
    /// A new object, signalled or not.
    pub fn new(kind: WaitKind, signalled: bool) -> Waitable {
        Waitable {
            kind,
            signalled: AtomicBool::new(signalled),
            exit_code: AtomicU32::new(STILL_ACTIVE),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> WaitKind {
        self.kind
    }

    /// Whether it is signalled now.
    pub fn is_signalled(&self) -> bool {
        self.signalled.load(Ordering::Acquire)
    }

    /// Signals (`SetEvent`; a thread's exit, with its exit code).
    pub fn signal(&self, exit_code: Option<u32>) {
        let (lock, cv) = &*STATE;
        let _g = lock.lock();
        if let Some(code) = exit_code {
            self.exit_code.store(code, Ordering::Release);
        }
        self.signalled.store(true, Ordering::Release);
        cv.notify_all();
    }

    /// Clears the signal (`ResetEvent`).
    pub fn reset(&self) {
        let _g = STATE.0.lock();
        self.signalled.store(false, Ordering::Release);
    }

    /// A thread's exit code (`STILL_ACTIVE` while it runs).
    pub fn exit_code(&self) -> u32 {
        self.exit_code.load(Ordering::Acquire)
    }
}

/// `STILL_ACTIVE`: the exit code of a running thread.
pub const STILL_ACTIVE: u32 = 259;

/// What a wait ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum WaitResult {
    /// This object (index) satisfied it (all of them for a wait-all: 0).
    Signalled(usize),
    /// The time ran out.
    TimedOut,
}

/// Waits until one (or, with `all`, every) object is signalled, at most
/// `timeout` (`None`: forever). Satisfying a wait resets auto-reset events.
/// The running slot is free while the wait blocks.
pub fn wait(objects: &[&Waitable], all: bool, timeout: Option<Duration>) -> WaitResult {
    let deadline = timeout.map(|t| Instant::now() + t);
    let (lock, cv) = &*STATE;
    if let Some(r) = satisfied_now(objects, all) {
        return r;
    }
    blocking(|| {
        let mut g = lock.lock();
        loop {
            if let Some(r) = satisfied(objects, all) {
                return r;
            }
            match deadline {
                None => cv.wait(&mut g),
                Some(d) => {
                    if Instant::now() >= d || cv.wait_until(&mut g, d).timed_out() {
                        if let Some(r) = satisfied(objects, all) {
                            return r;
                        }
                        return WaitResult::TimedOut;
                    }
                }
            }
        }
    })
}

/// Whether the wait is satisfied now, taking the state lock.
fn satisfied_now(objects: &[&Waitable], all: bool) -> Option<WaitResult> {
    let _g = STATE.0.lock();
    satisfied(objects, all)
}

/// Under the state lock: whether the wait is satisfied now (and, if so,
/// consumes auto-reset signals).
fn satisfied(objects: &[&Waitable], all: bool) -> Option<WaitResult> {
    let consume = |o: &Waitable| {
        if o.kind == WaitKind::AutoEvent {
            o.signalled.store(false, Ordering::Release);
        }
    };
    if all {
        if objects.iter().all(|o| o.is_signalled()) {
            objects.iter().for_each(|o| consume(o));
            return Some(WaitResult::Signalled(0));
        }
        return None;
    }
    let i = objects.iter().position(|o| o.is_signalled())?;
    consume(objects[i]);
    Some(WaitResult::Signalled(i))
}

/// A critical section's lock: recursive, owned by a thread.
pub struct CriticalSection(RawReentrantMutex<RawMutex, RawThreadId>);

impl Default for CriticalSection {
    fn default() -> Self {
        CriticalSection(RawReentrantMutex::INIT)
    }
}

impl CriticalSection {
    /// `EnterCriticalSection`: if another thread holds it, the wait frees
    /// the running slot.
    pub fn enter(&self) {
        if !self.0.try_lock() {
            blocking(|| self.0.lock());
        }
    }

    /// `TryEnterCriticalSection`.
    pub fn try_enter(&self) -> bool {
        self.0.try_lock()
    }

    /// `LeaveCriticalSection`; `false` (and nothing done) if the calling
    /// thread does not hold it.
    pub fn leave(&self) -> bool {
        if !self.0.is_owned_by_current_thread() {
            return false;
        }
        // Held by this thread (checked above), so one unlock is ours to do;
        // RawReentrantMutex::unlock's contract is exactly that.
        self.unlock_owned();
        true
    }

    fn unlock_owned(&self) {
        crate::ffi::unlock_reentrant(&self.0);
    }
}
