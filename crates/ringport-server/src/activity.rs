//! When a connection last received, last made progress sending, and was
//! last active, as the deadline sweep sees it: the data path only sets a
//! flag (no clock is read per message); the sweep turns a set flag into
//! "now" at its next round.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One of a connection's clocks.
pub(crate) struct Clock {
    seen: AtomicBool,
    last_ms: AtomicU64,
}

impl Clock {
    pub(crate) fn new(now_ms: u64) -> Self {
        Clock {
            seen: AtomicBool::new(false),
            last_ms: AtomicU64::new(now_ms),
        }
    }

    /// Something happened (cheap: a load, and a store the first time
    /// between two sweeps).
    #[inline]
    pub(crate) fn mark(&self) {
        if !self.seen.load(Ordering::Relaxed) {
            self.seen.store(true, Ordering::Relaxed);
        }
    }

    /// Milliseconds since the last event as the sweep sees it at `now_ms`:
    /// an event since the previous round counts as happening now, so the
    /// time is never overestimated.
    pub(crate) fn elapsed_ms(&self, now_ms: u64) -> u64 {
        if self.seen.swap(false, Ordering::Relaxed) {
            self.last_ms.store(now_ms, Ordering::Relaxed);
            return 0;
        }
        now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed))
    }

    /// Restarts the clock at `now_ms`.
    pub(crate) fn reset(&self, now_ms: u64) {
        self.seen.store(false, Ordering::Relaxed);
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }
}

/// A connection's clocks.
pub(crate) struct Activity {
    /// Bytes received or a send completed (idle timeout).
    pub any: Clock,
    /// Bytes received (read deadline).
    pub recv: Clock,
    /// A send completed, or one was queued on an empty queue (write
    /// deadline).
    pub send: Clock,
}

impl Activity {
    pub(crate) fn new(now_ms: u64) -> Self {
        Activity {
            any: Clock::new(now_ms),
            recv: Clock::new(now_ms),
            send: Clock::new(now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn an_event_since_the_last_round_counts_as_now() {
        let c = Clock::new(100);
        assert_eq!(c.elapsed_ms(150), 50);
        c.mark();
        assert_eq!(c.elapsed_ms(400), 0);
        assert_eq!(c.elapsed_ms(450), 50);
        c.reset(500);
        assert_eq!(c.elapsed_ms(520), 20);
    }
}
