//! The table of operations in flight: a slab with stable addresses, and the
//! [`OpId`] that names an entry.
//!
//! Every posted operation lives in a slot from the moment it is posted until
//! its final completion is reaped. Slots are allocated in chunks that are never
//! moved or freed while the port lives, so the kernel may keep pointers into a
//! slot (a `sockaddr`, a `timespec`, the heap block of a buffer) for as long as
//! the operation is in flight. Each slot's data sits behind its own
//! (uncontended) lock, so no global lock is crossed by a submission or a
//! completion.
//!
//! A slot's generation is odd while it holds an operation and even while it
//! is free; it moves on at every insert and every removal, so an `OpId`
//! (`generation << 32 | index`) names one occupant only, and counting the
//! live operations needs no shared counter. Free slots are kept per thread
//! first (the thread that reaps completions is usually the one that posts
//! the next operations), then in a shared list: taking and freeing a slot
//! touches no shared memory on the hot path.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::short_lock::ShortLock;

/// Identifies one posted operation, for
/// [`CompletionPort::cancel`](crate::CompletionPort::cancel).
///
/// An `OpId` is never reused while the operation it names is outstanding, and
/// a stale `OpId` (of an operation that already completed) cancels nothing.
///
/// # Examples
///
/// ```
/// use ringport::{op, CompletionPort, OpId};
/// use std::time::Duration;
///
/// let port = CompletionPort::new(0)?;
/// let id: OpId = port.submit(op::Timeout::new(Duration::from_secs(60)))?;
/// port.cancel(id)?;
/// assert!(port.get(None)?.is_cancelled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) u64);

impl OpId {
    /// The id carried by completions that had no posted operation (user
    /// packets, a handle's close).
    pub const NONE: OpId = OpId(0);

    /// The raw value (index and generation), useful for logging.
    ///
    /// ```
    /// assert_eq!(ringport::OpId::NONE.as_u64(), 0);
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Debug for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpId({}#{})", self.0 as u32, self.0 >> 32)
    }
}

const CHUNK: usize = 1024;
const MAX_CHUNKS: usize = 1024;
/// Free slots a thread keeps for itself; half of them move to the shared
/// list when it is full.
const LOCAL_KEEP: usize = 64;

static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

struct Slot<T> {
    /// Odd while occupied (the occupant's generation), even while free.
    gen: AtomicU32,
    data: ShortLock<Option<T>>,
}

/// The free slots of one table that no thread keeps for itself.
struct FreeList {
    table: u64,
    slots: Mutex<Vec<u32>>,
}

/// A thread's own free slots, and the list they go back to.
struct LocalSlots {
    owner: Option<Arc<FreeList>>,
    slots: Vec<u32>,
}

impl LocalSlots {
    /// Gives every slot back to its table's shared list.
    fn flush(&mut self) {
        if let Some(owner) = self.owner.take() {
            owner.slots.lock().append(&mut self.slots);
        }
    }
}

impl Drop for LocalSlots {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static LOCAL: RefCell<LocalSlots> = const {
        RefCell::new(LocalSlots { owner: None, slots: Vec::new() })
    };
}

/// A chunk of slots, made on first use.
type Chunk<T> = OnceLock<Box<[Slot<T>]>>;

/// The op table. See the module docs.
pub(crate) struct Table<T> {
    chunks: Box<[Chunk<T>]>,
    free: Arc<FreeList>,
    fresh: AtomicU32,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            free: Arc::new(FreeList {
                table: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
                slots: Mutex::new(Vec::new()),
            }),
            fresh: AtomicU32::new(0),
        }
    }
}

impl<T> Table<T> {
    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        self.chunks.get(index / CHUNK)?.get()?.get(index % CHUNK)
    }

    fn slot_or_create(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        let chunk = self.chunks.get(index / CHUNK)?.get_or_init(|| {
            (0..CHUNK)
                .map(|_| Slot {
                    gen: AtomicU32::new(0),
                    data: ShortLock::new(None),
                })
                .collect()
        });
        chunk.get(index % CHUNK)
    }

    /// Stores `op` in a free slot and returns its id, or `None` when
    /// `CHUNK * MAX_CHUNKS` operations are already outstanding.
    pub(crate) fn insert(&self, op: T) -> Option<OpId> {
        self.insert_then(op, |_, _| ()).map(|(id, ())| id)
    }

    /// As `insert`, then runs `f` on the stored op under the same slot lock
    /// (a backend lowers a fresh op to a kernel request there: its addresses
    /// are final once it sits in the slot).
    pub(crate) fn insert_then<R>(
        &self,
        op: T,
        f: impl FnOnce(OpId, &mut T) -> R,
    ) -> Option<(OpId, R)> {
        let index = self.take_free().or_else(|| {
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
        // Free (even) to occupied (odd); only this thread holds the slot.
        let gen = slot.gen.load(Ordering::Relaxed).wrapping_add(1);
        slot.gen.store(gen, Ordering::Release);
        let id = OpId(u64::from(gen) << 32 | u64::from(index));
        let r = f(id, data.insert(op));
        Some((id, r))
    }

    /// A free slot: this thread's own, or one from the shared list.
    fn take_free(&self) -> Option<u32> {
        let mine = LOCAL
            .try_with(|l| {
                let mut l = l.borrow_mut();
                let owned = l.owner.as_ref().is_some_and(|o| o.table == self.free.table);
                if owned {
                    l.slots.pop()
                } else {
                    None
                }
            })
            .ok()
            .flatten();
        mine.or_else(|| self.free.slots.lock().pop())
    }

    /// Frees slot `index` (its generation is even again).
    fn give_free(&self, index: u32) {
        let kept = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            let owned = l.owner.as_ref().is_some_and(|o| o.table == self.free.table);
            if !owned {
                // This thread now frees slots of this table.
                l.flush();
                l.owner = Some(self.free.clone());
            }
            if l.slots.len() == LOCAL_KEEP {
                let half = l.slots.split_off(LOCAL_KEEP / 2);
                self.free.slots.lock().extend(half);
            }
            l.slots.push(index);
        });
        if kept.is_err() {
            // The thread is exiting.
            self.free.slots.lock().push(index);
        }
    }

    fn live_slot(&self, id: OpId) -> Option<&Slot<T>> {
        let slot = self.slot(id.0 as u32)?;
        (slot.gen.load(Ordering::Acquire) == (id.0 >> 32) as u32).then_some(slot)
    }

    /// Runs `f` on the operation `id`, if it is still outstanding.
    pub(crate) fn with<R>(&self, id: OpId, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let slot = self.live_slot(id)?;
        let mut data = slot.data.lock();
        // Re-check under the lock: the slot may have been freed meanwhile.
        if slot.gen.load(Ordering::Acquire) != (id.0 >> 32) as u32 {
            return None;
        }
        data.as_mut().map(f)
    }

    /// Removes the operation `id` and frees its slot.
    pub(crate) fn remove(&self, id: OpId) -> Option<T> {
        self.with_then_remove(id, |_| ((), true))
            .and_then(|((), op)| op)
    }

    /// Runs `f` on the operation `id`, if it is still outstanding, and
    /// removes it (freeing its slot) when `f` says so, under one lock.
    pub(crate) fn with_then_remove<R>(
        &self,
        id: OpId,
        f: impl FnOnce(&mut T) -> (R, bool),
    ) -> Option<(R, Option<T>)> {
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
            // Occupied (odd) to free (even).
            slot.gen.store(gen.wrapping_add(1), Ordering::Release);
            (r, op)
        };
        self.give_free(id.0 as u32);
        Some((r, op))
    }

    /// Ids of every outstanding operation (for shutdown).
    pub(crate) fn ids(&self) -> Vec<OpId> {
        let end = self.fresh.load(Ordering::Acquire);
        (0..end)
            .filter_map(|i| {
                let gen = self.slot(i)?.gen.load(Ordering::Acquire);
                (gen % 2 == 1).then_some(OpId(u64::from(gen) << 32 | u64::from(i)))
            })
            .collect()
    }

    /// Number of operations outstanding (a scan of the slots in use so far).
    pub(crate) fn live(&self) -> usize {
        let end = self.fresh.load(Ordering::Acquire);
        (0..end)
            .filter(|&i| {
                self.slot(i)
                    .is_some_and(|s| s.gen.load(Ordering::Acquire) % 2 == 1)
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(user: u64) -> u64 {
        user
    }

    #[test]
    fn stale_ids_never_reach_a_new_occupant() {
        let table: Table<u64> = Table::default();
        let a = table.insert(op(1)).unwrap();
        assert_eq!(table.live(), 1);
        assert_eq!(table.remove(a), Some(1));
        assert_eq!(table.live(), 0);
        // The freed slot is reused, under a new generation.
        let b = table.insert(op(2)).unwrap();
        assert_eq!(a.0 as u32, b.0 as u32, "same slot");
        assert_ne!(a, b);
        assert!(table.with(a, |_| ()).is_none());
        assert!(table.remove(a).is_none());
        assert_eq!(table.with(b, |o| *o), Some(2));
        assert_eq!(table.ids(), vec![b]);
    }

    #[test]
    fn slots_freed_on_one_thread_serve_another() {
        let table: Arc<Table<u64>> = Arc::new(Table::default());
        let ids: Vec<OpId> = (0..200).map(|i| table.insert(op(i)).unwrap()).collect();
        let a = table.clone();
        // Another thread completes them all, then exits (its cache flushes).
        std::thread::spawn(move || {
            for id in ids {
                assert!(a.remove(id).is_some());
            }
        })
        .join()
        .unwrap();
        assert_eq!(table.live(), 0);
        let again: Vec<OpId> = (0..200).map(|i| table.insert(op(i)).unwrap()).collect();
        assert!(
            again.iter().all(|id| (id.0 as u32) < 200),
            "no fresh slot was needed"
        );
        let mut slots: Vec<u32> = again.iter().map(|id| id.0 as u32).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 200, "each slot holds one op");
    }
}
