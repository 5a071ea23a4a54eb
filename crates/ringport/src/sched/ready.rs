//! The queue of finished operations waiting to be dequeued.
//!
//! A ring buffer under a short lock (a spin lock whose unlock is a plain
//! store: it is held for one push or pop), with its length mirrored in an atomic
//! so that "is anything queued?" (asked on every `get` and wake-up decision)
//! takes no lock. The buffer keeps its capacity, so a busy port allocates
//! nothing per completion (crossbeam's `SegQueue`, used before, allocated and
//! zeroed a block every 31 pushes); only when it empties after a burst that
//! grew it past [`SHRINK_ABOVE`] does it go back to [`KEEP`] entries, so a
//! burst's memory is not held for the life of the port.

use std::collections::VecDeque;

use super::sync::{AtomicUsize, Ordering, ShortMutex};

use crate::completion::Completion;

/// Capacity an emptied queue shrinks to...
const KEEP: usize = 1024;
/// ...when it has more than this.
const SHRINK_ABOVE: usize = 4 * KEEP;

/// Called with the lock held, after taking from the queue.
fn shrink_if_empty(q: &mut VecDeque<Completion>) {
    if q.is_empty() && q.capacity() > SHRINK_ABOVE {
        q.shrink_to(KEEP);
    }
}

#[derive(Default)]
pub(crate) struct ReadyQueue {
    items: ShortMutex<VecDeque<Completion>>,
    /// `items.len()`, written under the lock. A release store, not a
    /// sequentially consistent one (an `xchg`, ~20 cycles per completion
    /// on x86): the scheduler's wake-up protocol reads it against its
    /// sleeper count and poller seat only across `fence(SeqCst)`s — every
    /// push is followed by `notify`, which starts with one, and `park` and
    /// the poller's second look have theirs before they read it
    /// (PROTOCOL.md, rules 1–3) —, and fences order plain stores and loads
    /// as well. A pop's lower value may be seen late: a reader then finds
    /// the queue empty under the lock and looks again.
    len: AtomicUsize,
}

impl ReadyQueue {
    pub(crate) fn push(&self, c: Completion) {
        let mut q = self.items.lock();
        q.push_back(c);
        self.len.store(q.len(), Ordering::Release);
    }

    /// Appends every completion of `from`, under one lock.
    pub(crate) fn push_all(&self, from: &mut Vec<Completion>) {
        if from.is_empty() {
            return;
        }
        let mut q = self.items.lock();
        q.extend(from.drain(..));
        self.len.store(q.len(), Ordering::Release);
    }

    pub(crate) fn pop(&self) -> Option<Completion> {
        if self.is_empty() {
            return None;
        }
        let mut q = self.items.lock();
        let c = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        shrink_if_empty(&mut q);
        c
    }

    /// Moves up to `max` completions to `out`, under one lock; returns how
    /// many.
    pub(crate) fn pop_into(&self, out: &mut Vec<Completion>, max: usize) -> usize {
        if self.is_empty() || max == 0 {
            return 0;
        }
        let mut q = self.items.lock();
        let n = q.len().min(max);
        out.extend(q.drain(..n));
        self.len.store(q.len(), Ordering::Release);
        shrink_if_empty(&mut q);
        n
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.load(Ordering::SeqCst) == 0
    }

    /// Drops everything queued (shutdown).
    pub(crate) fn clear(&self) {
        let drained: VecDeque<Completion> = {
            let mut q = self.items.lock();
            self.len.store(0, Ordering::Release);
            std::mem::take(&mut *q)
        };
        // Buffers and sockets are freed outside the lock.
        drop(drained);
    }
}
