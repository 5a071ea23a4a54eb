//! The synchronisation types the scheduler is built from: the standard ones
//! (and `parking_lot`'s mutex) in a normal build, loom's under `--cfg loom`,
//! so that the model tests in `model.rs` explore every interleaving of the
//! real protocol code.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::thread::{self, Thread};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::thread::{self, Thread};

/// A mutex whose `lock` returns the guard (parking_lot's shape) in both
/// builds.
pub(crate) struct Mutex<T>(
    #[cfg(not(loom))] parking_lot::Mutex<T>,
    #[cfg(loom)] loom::sync::Mutex<T>,
);

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(loom))]
        return Mutex(parking_lot::Mutex::new(value));
        #[cfg(loom)]
        return Mutex(loom::sync::Mutex::new(value));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.0.lock();
        #[cfg(loom)]
        return self.0.lock().unwrap_or_else(|e| e.into_inner());
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

/// Parks the calling thread until unparked or `until` (loom has no clock:
/// there the model never passes a deadline).
/// A lock held for a push or a pop (the ready queue's): the crate's
/// [`ShortLock`](crate::short_lock::ShortLock), whose unlock is a plain
/// store, in a normal build; loom's mutex under loom.
pub(crate) struct ShortMutex<T>(
    #[cfg(not(loom))] crate::short_lock::ShortLock<T>,
    #[cfg(loom)] loom::sync::Mutex<T>,
);

#[cfg(not(loom))]
pub(crate) type ShortMutexGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T, spin::relax::Yield>;
#[cfg(loom)]
pub(crate) type ShortMutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> ShortMutex<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(loom))]
        return ShortMutex(crate::short_lock::ShortLock::new(value));
        #[cfg(loom)]
        return ShortMutex(loom::sync::Mutex::new(value));
    }

    pub(crate) fn lock(&self) -> ShortMutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.0.lock();
        #[cfg(loom)]
        return self.0.lock().unwrap_or_else(|e| e.into_inner());
    }
}

impl<T: Default> Default for ShortMutex<T> {
    fn default() -> Self {
        ShortMutex::new(T::default())
    }
}

pub(crate) fn park_until(until: Option<std::time::Instant>) {
    match until {
        None => thread::park(),
        #[cfg(not(loom))]
        Some(d) => thread::park_timeout(d.saturating_duration_since(std::time::Instant::now())),
        #[cfg(loom)]
        Some(_) => thread::park(),
    }
}
