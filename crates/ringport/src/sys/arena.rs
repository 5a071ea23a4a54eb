//! The table of operations in flight: a slab with stable addresses.
//!
//! Every posted operation lives in a slot from the moment it is posted until
//! its final completion is reaped. Slots are allocated in chunks that are never
//! moved or freed while the port lives, so the kernel may keep pointers into a
//! slot (a `sockaddr`, a `timespec`, the heap block of a buffer) for as long as
//! the operation is in flight. The free list is a lock-free stack with an ABA
//! tag; each slot's data sits behind its own (uncontended) lock, so no global
//! lock is crossed by a submission or a completion.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::completion::OpId;
use crate::op::OpData;

const CHUNK: usize = 1024;
const MAX_CHUNKS: usize = 1024;

struct Slot {
    /// Generation of the current (or next) occupant; never 0.
    gen: AtomicU32,
    /// Next free slot index + 1 while on the free list.
    next: AtomicU32,
    data: Mutex<Option<OpData>>,
}

/// The op table. See the module docs.
pub(crate) struct Arena {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    /// Free-list head: `tag << 32 | (index + 1)`, 0 in the low half = empty.
    free: AtomicU64,
    fresh: AtomicU32,
    live: AtomicUsize,
}

impl Arena {
    pub(crate) fn new() -> Self {
        Arena {
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            free: AtomicU64::new(0),
            fresh: AtomicU32::new(0),
            live: AtomicUsize::new(0),
        }
    }

    fn slot(&self, index: u32) -> Option<&Slot> {
        let index = index as usize;
        self.chunks.get(index / CHUNK)?.get()?.get(index % CHUNK)
    }

    fn slot_or_create(&self, index: u32) -> Option<&Slot> {
        let index = index as usize;
        let chunk = self.chunks.get(index / CHUNK)?.get_or_init(|| {
            (0..CHUNK)
                .map(|_| Slot {
                    gen: AtomicU32::new(1),
                    next: AtomicU32::new(0),
                    data: Mutex::new(None),
                })
                .collect()
        });
        chunk.get(index % CHUNK)
    }

    /// Stores `op` in a free slot and returns its id, or `None` when
    /// `CHUNK * MAX_CHUNKS` operations are already outstanding.
    pub(crate) fn insert(&self, op: OpData) -> Option<OpId> {
        self.insert_then(op, |_, _| ()).map(|(id, ())| id)
    }

    /// As `insert`, then runs `f` on the stored op under the same slot lock
    /// (a backend lowers a fresh op to a kernel request there: its addresses
    /// are final once it sits in the slot).
    pub(crate) fn insert_then<R>(
        &self,
        op: OpData,
        f: impl FnOnce(OpId, &mut OpData) -> R,
    ) -> Option<(OpId, R)> {
        let index = self.pop_free().or_else(|| {
            let i = self.fresh.fetch_add(1, Ordering::Relaxed);
            if (i as usize) < CHUNK * MAX_CHUNKS {
                Some(i)
            } else {
                self.fresh.fetch_sub(1, Ordering::Relaxed);
                None
            }
        })?;
        let slot = self.slot_or_create(index)?;
        let mut data = slot.data.lock();
        self.live.fetch_add(1, Ordering::Relaxed);
        let id = OpId(u64::from(slot.gen.load(Ordering::Acquire)) << 32 | u64::from(index));
        let r = f(id, data.insert(op));
        Some((id, r))
    }

    fn pop_free(&self) -> Option<u32> {
        let mut head = self.free.load(Ordering::Acquire);
        loop {
            let top = head as u32;
            if top == 0 {
                return None;
            }
            let next = self.slot(top - 1)?.next.load(Ordering::Relaxed);
            let tagged = ((head >> 32).wrapping_add(1) << 32) | u64::from(next);
            match self
                .free
                .compare_exchange_weak(head, tagged, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(top - 1),
                Err(h) => head = h,
            }
        }
    }

    fn push_free(&self, index: u32, slot: &Slot) {
        let mut head = self.free.load(Ordering::Acquire);
        loop {
            slot.next.store(head as u32, Ordering::Relaxed);
            let tagged = ((head >> 32).wrapping_add(1) << 32) | u64::from(index + 1);
            match self
                .free
                .compare_exchange_weak(head, tagged, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    fn live_slot(&self, id: OpId) -> Option<&Slot> {
        let slot = self.slot(id.0 as u32)?;
        (slot.gen.load(Ordering::Acquire) == (id.0 >> 32) as u32).then_some(slot)
    }

    /// Runs `f` on the operation `id`, if it is still outstanding.
    pub(crate) fn with<R>(&self, id: OpId, f: impl FnOnce(&mut OpData) -> R) -> Option<R> {
        let slot = self.live_slot(id)?;
        let mut data = slot.data.lock();
        // Re-check under the lock: the slot may have been freed meanwhile.
        if slot.gen.load(Ordering::Acquire) != (id.0 >> 32) as u32 {
            return None;
        }
        data.as_mut().map(f)
    }

    /// Removes the operation `id` and frees its slot.
    pub(crate) fn remove(&self, id: OpId) -> Option<OpData> {
        self.with_then_remove(id, |_| ((), true))
            .and_then(|((), op)| op)
    }

    /// Runs `f` on the operation `id`, if it is still outstanding, and
    /// removes it (freeing its slot) when `f` says so, under one lock.
    pub(crate) fn with_then_remove<R>(
        &self,
        id: OpId,
        f: impl FnOnce(&mut OpData) -> (R, bool),
    ) -> Option<(R, Option<OpData>)> {
        let slot = self.live_slot(id)?;
        let (r, op) = {
            let mut data = slot.data.lock();
            let gen = slot.gen.load(Ordering::Acquire);
            if gen != (id.0 >> 32) as u32 {
                return None;
            }
            let (r, remove) = f(data.as_mut()?);
            if !remove {
                return Some((r, None));
            }
            let op = data.take();
            let next = match gen.wrapping_add(1) {
                0 => 1,
                g => g,
            };
            slot.gen.store(next, Ordering::Release);
            (r, op)
        };
        self.live.fetch_sub(1, Ordering::Relaxed);
        self.push_free(id.0 as u32, slot);
        Some((r, op))
    }

    /// Ids of every outstanding operation (for shutdown).
    pub(crate) fn ids(&self) -> Vec<OpId> {
        let end = self.fresh.load(Ordering::Acquire);
        (0..end)
            .filter_map(|i| {
                let slot = self.slot(i)?;
                let data = slot.data.lock();
                data.as_ref()?;
                Some(OpId(
                    u64::from(slot.gen.load(Ordering::Acquire)) << 32 | u64::from(i),
                ))
            })
            .collect()
    }

    /// Number of operations outstanding.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}
