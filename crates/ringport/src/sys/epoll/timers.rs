//! Timeout operations: a deadline-ordered map the poller's wait is bounded
//! by.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::sys::{OpId, Sink, SysOp};

/// A timer's place in the map: deadline, then a sequence number for ties.
type TimerKey = (Instant, u64);

#[derive(Default)]
struct State {
    map: BTreeMap<TimerKey, OpId>,
    /// Where each armed timer sits in `map`.
    keys: HashMap<OpId, TimerKey, BuildHasherDefault<IdHasher>>,
    seq: u64,
    /// While the poller waits: until when (`None` = forever).
    waiting: Option<Option<Instant>>,
}

/// Hashes an `OpId` (already unique: a slot index and a generation) with
/// one multiplication. The standard SipHash, which resists chosen keys that
/// ids are not, was a tenth of a timer's CPU time.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The time, read once when first asked for: one poll's calls share it,
/// and a poll with no timer armed and no bound on its wait reads no clock.
#[derive(Default)]
pub(crate) struct Clock(Option<Instant>);

impl Clock {
    pub(crate) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// The `epoll_wait` timeout for a wait until `bound` (`None`: forever, -1),
/// in milliseconds rounded up, without 128-bit arithmetic.
pub(crate) fn wait_ms(bound: Option<Instant>, clock: &mut Clock) -> i32 {
    let Some(bound) = bound else {
        return -1;
    };
    let left = bound.saturating_duration_since(clock.get());
    let ms = left
        .as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(left.subsec_nanos().div_ceil(1_000_000)));
    i32::try_from(ms).unwrap_or(i32::MAX)
}

/// The pending timers. Lock order: this lock, then an op's slot.
#[derive(Default)]
pub(crate) struct Timers {
    state: Mutex<State>,
}

impl Timers {
    /// Arms timer `id`. Returns `false` if the op was already cancelled (the
    /// caller reports it); calls `wake` if the poller sleeps past the new
    /// deadline.
    pub(crate) fn start(
        &self,
        cx: &impl Sink,
        id: OpId,
        after: Duration,
        wake: impl FnOnce(),
    ) -> bool {
        let now = Instant::now();
        let deadline = now
            .checked_add(after)
            .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)));
        let mut st = self.state.lock();
        st.seq += 1;
        let key = (deadline, st.seq);
        // Under the timers lock, so `cancel` either sees the key or the op
        // is seen stopping here (the front end marks it before asking us).
        if cx.table().with(id, |op| op.stopping()) != Some(false) {
            return false;
        }
        st.map.insert(key, id);
        st.keys.insert(id, key);
        if let Some(until) = st.waiting {
            if until.is_none_or(|u| deadline < u) {
                st.waiting = Some(Some(deadline));
                drop(st);
                wake();
            }
        }
        true
    }

    /// Whether timer `id` is armed.
    pub(crate) fn is_armed(&self, id: OpId) -> bool {
        self.state.lock().keys.contains_key(&id)
    }

    /// Disarms timer `id`; `true` if it was pending (the caller reports it
    /// cancelled), `false` if it already fired or was never armed.
    pub(crate) fn cancel(&self, id: OpId) -> bool {
        let mut st = self.state.lock();
        match st.keys.remove(&id) {
            Some(key) => st.map.remove(&key).is_some(),
            None => false,
        }
    }

    /// Marks the poller as waiting until `until` (`None`: forever) or the
    /// nearest deadline, whichever is first, and returns that bound. A
    /// timer armed meanwhile that is due earlier wakes the poller.
    pub(crate) fn begin_wait(&self, until: Option<Instant>) -> Option<Instant> {
        let mut st = self.state.lock();
        let timer = st.map.keys().next().map(|k| k.0);
        let bound = match (until, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        st.waiting = Some(bound);
        bound
    }

    /// Marks the poller as no longer waiting.
    pub(crate) fn end_wait(&self) {
        self.state.lock().waiting = None;
    }

    /// Removes and returns the timers that are due (none without reading
    /// the clock when none is armed).
    pub(crate) fn take_due(&self, now: &mut Clock) -> Vec<OpId> {
        let mut st = self.state.lock();
        let mut due = Vec::new();
        if st.map.is_empty() {
            return due;
        }
        let now = now.get();
        while let Some(entry) = st.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        for id in &due {
            st.keys.remove(id);
        }
        due
    }
}
