//! A worker's own table of the connections it has routed completions to, so
//! that routing a completion does not cross the registry's shard lock and
//! two reference-count updates every time (those locked instructions were
//! most of the worker loop's own time in `perf`).
//!
//! Entries are indexed like the registry (a connection id's low 32 bits) and
//! hold the connection with its full id, so an entry answers only for the
//! exact generation it was looked up for. A connection removed from the
//! registry is marked gone; its entry then counts as absent (late
//! completions of it take the registry's answer, "no such connection"), and
//! [`ConnCache::sweep`] lets go of such entries now and then.

use crate::conn::Connection;
use crate::id::ConnId;
use crate::registry::Registry;

/// Lookups between two sweeps of entries of removed connections.
const SWEEP_EVERY: u32 = 1 << 16;

/// See the module docs.
#[derive(Default)]
pub(crate) struct ConnCache {
    slots: Vec<Option<Connection>>,
    since_sweep: u32,
}

impl ConnCache {
    /// The live connection with this id: from the cache, or from the
    /// registry (then cached).
    pub(crate) fn get(
        &mut self,
        registry: &Registry<Connection>,
        id: ConnId,
    ) -> Option<&Connection> {
        self.since_sweep += 1;
        if self.since_sweep >= SWEEP_EVERY {
            self.sweep();
        }
        let index = (id.0 & 0xffff_ffff) as usize;
        let hit = matches!(
            self.slots.get(index),
            Some(Some(c)) if c.id() == id && !c.is_gone()
        );
        if !hit {
            let conn = registry.get(id)?;
            if index >= self.slots.len() {
                self.slots.resize_with(index + 1, || None);
            }
            self.slots[index] = Some(conn);
        }
        self.slots[index].as_ref()
    }

    /// The cached connection with exactly this id, gone or not (for a
    /// connection whose drain right the worker already holds).
    pub(crate) fn peek(&self, id: ConnId) -> Option<&Connection> {
        let index = (id.0 & 0xffff_ffff) as usize;
        self.slots.get(index)?.as_ref().filter(|c| c.id() == id)
    }

    /// Lets go of the entries of removed connections.
    pub(crate) fn sweep(&mut self) {
        self.since_sweep = 0;
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(Connection::is_gone) {
                *slot = None;
            }
        }
    }
}
