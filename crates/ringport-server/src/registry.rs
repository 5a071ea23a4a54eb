//! The table of live connections (the seeds' context list), sharded so that
//! no single lock is crossed by every packet.
//!
//! A connection id is its completion key: the low 32 bits are a slot index
//! (shard = index % SHARDS), the high 32 bits a generation that changes every
//! time the slot is reused, so a late completion of a closed connection never
//! reaches the connection that took its slot. Generations start at 1, so no
//! connection id is below 2^32 and the small keys are free for the server's
//! own operations (listener, timers, packets).

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use crate::id::ConnId;

const SHARDS: usize = 64;

struct Shard<C> {
    slots: Vec<Slot<C>>,
    free: Vec<u32>,
}

impl<C> Default for Shard<C> {
    fn default() -> Self {
        Shard {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

struct Slot<C> {
    generation: u32,
    conn: Option<C>,
}

/// The live connections (`C` is the connection type), by id.
pub(crate) struct Registry<C> {
    shards: Box<[RwLock<Shard<C>>]>,
    next_shard: AtomicUsize,
    live: AtomicUsize,
}

impl<C: Clone> Registry<C> {
    pub(crate) fn new() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            next_shard: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        }
    }

    /// Reserves a slot, builds the connection for its id and stores it.
    pub(crate) fn insert(&self, make: impl FnOnce(ConnId) -> C) -> C {
        let s = self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let mut shard = self.shards[s].write();
        let slot_no = match shard.free.pop() {
            Some(n) => n,
            None => {
                shard.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                (shard.slots.len() - 1) as u32
            }
        };
        let slot = &mut shard.slots[slot_no as usize];
        slot.generation = slot.generation.wrapping_add(1).max(1);
        let index = u64::from(slot_no) * SHARDS as u64 + s as u64;
        let id = ConnId((u64::from(slot.generation) << 32) | index);
        let conn = make(id);
        slot.conn = Some(conn.clone());
        self.live.fetch_add(1, Ordering::SeqCst);
        conn
    }

    fn locate(id: ConnId) -> Option<(usize, usize, u32)> {
        let generation = (id.0 >> 32) as u32;
        if generation == 0 {
            return None;
        }
        let index = (id.0 & 0xffff_ffff) as usize;
        Some((index % SHARDS, index / SHARDS, generation))
    }

    /// The live connection with this id (completion key), if any.
    pub(crate) fn get(&self, id: ConnId) -> Option<C> {
        let (s, n, generation) = Self::locate(id)?;
        let shard = self.shards[s].read();
        let slot = shard.slots.get(n)?;
        if slot.generation != generation {
            return None;
        }
        slot.conn.clone()
    }

    /// Removes a connection; returns whether it was there.
    pub(crate) fn remove(&self, id: ConnId) -> bool {
        let Some((s, n, generation)) = Self::locate(id) else {
            return false;
        };
        let removed = {
            let mut shard = self.shards[s].write();
            match shard.slots.get_mut(n) {
                Some(slot) if slot.generation == generation && slot.conn.is_some() => {
                    let conn = slot.conn.take();
                    shard.free.push(n as u32);
                    conn
                }
                _ => None,
            }
        };
        // The connection (and possibly its last reference) drops outside the
        // shard lock.
        if removed.is_some() {
            self.live.fetch_sub(1, Ordering::SeqCst);
        }
        removed.is_some()
    }

    /// Cs open now.
    pub(crate) fn len(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Every live connection, one shard lock at a time.
    pub(crate) fn snapshot(&self) -> Vec<C> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let shard = shard.read();
            out.extend(shard.slots.iter().filter_map(|s| s.conn.clone()));
        }
        out
    }

    /// Calls `f` for every live connection, one shard at a time: the shard's
    /// connections are copied out under its read lock and `f` runs without
    /// any lock held, so it may send, close or look connections up.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&C)) {
        let mut batch = Vec::new();
        for shard in self.shards.iter() {
            batch.extend(shard.read().slots.iter().filter_map(|s| s.conn.clone()));
            for conn in batch.drain(..) {
                f(&conn);
            }
        }
    }
}
