//! What one connection moved, for the snapshot thread to read.
//!
//! Each counter has one writer at a time: bytes in are added by the worker
//! holding the connection's drain right (callbacks of a connection never
//! overlap), bytes out under the connection's state lock. Both hand-overs
//! are synchronised by that lock, so a relaxed load and store suffices (no
//! locked instruction per message), and a reader on another thread sees
//! each counter grow monotonically.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct ConnMeter {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    /// Milliseconds after the server's start at which the connection opened.
    opened_ms: u64,
}

impl ConnMeter {
    pub(crate) fn new(opened_ms: u64) -> Self {
        ConnMeter {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            opened_ms,
        }
    }

    /// Counts bytes handed to the handler (caller holds the drain right).
    #[inline]
    pub(crate) fn add_in(&self, n: u64) {
        bump(&self.bytes_in, n);
    }

    /// Counts bytes sent (caller holds the state lock).
    #[inline]
    pub(crate) fn add_out(&self, n: u64) {
        bump(&self.bytes_out, n);
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    pub(crate) fn opened_ms(&self) -> u64 {
        self.opened_ms
    }
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}
