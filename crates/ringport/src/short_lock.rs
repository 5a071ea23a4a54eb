//! The lock for state that is held for a handful of instructions on the hot
//! path (an op's slot, a handle's lanes, the submission queue).
//!
//! Such locks are almost never contended, so what they cost is their atomic
//! instructions. `parking_lot::Mutex` takes one locked instruction to lock
//! and another to unlock (it must check for parked waiters); this spin lock
//! unlocks with a plain release store, which halves that. A thread that
//! finds it taken yields the CPU between tries, so a holder that was
//! preempted gets to run.

/// A spin lock that yields while it waits. See the module docs.
pub(crate) type ShortLock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;
