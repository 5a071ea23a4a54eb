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

    /// The `epoll_wait` timeout in milliseconds (rounded up, -1 = forever)
    /// for a wait of at most `limit`, bounded by the nearest deadline; marks
    /// the poller as waiting.
    pub(crate) fn begin_wait(&self, limit: Option<Duration>) -> i32 {
        let now = Instant::now();
        let mut st = self.state.lock();
        let user = limit.map(|t| {
            now.checked_add(t)
                .unwrap_or(now + Duration::from_secs(1 << 31))
        });
        let timer = st.map.keys().next().map(|k| k.0);
        let until = match (user, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        st.waiting = Some(until);
        match until {
            None => -1,
            Some(u) => {
                let ns = u.saturating_duration_since(now).as_nanos();
                i32::try_from(ns.div_ceil(1_000_000)).unwrap_or(i32::MAX)
            }
        }
    }

    /// Marks the poller as no longer waiting.
    pub(crate) fn end_wait(&self) {
        self.state.lock().waiting = None;
    }

    /// Removes and returns the timers that are due.
    pub(crate) fn take_due(&self) -> Vec<OpId> {
        let now = Instant::now();
        let mut st = self.state.lock();
        let mut due = Vec::new();
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
