//! What the screen shows, kept between frames: the latest snapshot, the
//! rates computed from the ones before, a minute of throughput, the order,
//! the filter, pause.

use std::collections::VecDeque;

use ringport_server::SortBy;

use crate::stats_wire::{LoggedMessage, WireConn, WireSnapshot};

/// Seconds of throughput the sparklines show.
pub const HISTORY_S: usize = 60;
/// Rates are taken over at least this many seconds of server time.
const RATE_WINDOW_S: f64 = 1.0;

/// Rates over the last second or so.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Messages received per second.
    pub msgs_in: f64,
    /// Messages sent per second.
    pub msgs_out: f64,
    /// Bytes received per second.
    pub bytes_in: f64,
    /// Bytes sent per second.
    pub bytes_out: f64,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    t: f64,
    msgs_in: u64,
    msgs_out: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Sample {
    fn of(s: &WireSnapshot) -> Self {
        Sample {
            t: s.uptime_s,
            msgs_in: s.messages.inbound,
            msgs_out: s.messages.outbound,
            bytes_in: s.bytes.inbound,
            bytes_out: s.bytes.outbound,
        }
    }

    fn rates_since(&self, old: &Sample) -> Rates {
        let dt = self.t - old.t;
        if dt <= 0.0 {
            return Rates::default();
        }
        let r = |a: u64, b: u64| a.saturating_sub(b) as f64 / dt;
        Rates {
            msgs_in: r(self.msgs_in, old.msgs_in),
            msgs_out: r(self.msgs_out, old.msgs_out),
            bytes_in: r(self.bytes_in, old.bytes_in),
            bytes_out: r(self.bytes_out, old.bytes_out),
        }
    }
}

/// Where keys go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Commands (q, s, /, p).
    Keys,
    /// Typing the filter.
    Filter,
}

/// The screen's state.
pub struct State {
    /// The socket's path, for the header.
    pub path: String,
    /// The latest snapshot shown.
    pub snap: Option<WireSnapshot>,
    /// Why the server cannot be reached, while it cannot.
    pub gone: Option<String>,
    /// Rates over the last second.
    pub rates: Rates,
    /// Bytes per second in and out, one value a second, oldest first.
    pub spark_in: VecDeque<u64>,
    /// See `spark_in`.
    pub spark_out: VecDeque<u64>,
    /// The connection table's order.
    pub order: SortBy,
    /// Shown rows must contain this (peer, or message text).
    pub filter: String,
    /// Where keys go.
    pub input: Input,
    /// Snapshots are not shown while paused.
    pub paused: bool,
    samples: VecDeque<Sample>,
    last_bucket: Option<Sample>,
}

impl State {
    /// A screen with nothing to show yet.
    pub fn new(path: String) -> Self {
        State {
            path,
            snap: None,
            gone: None,
            rates: Rates::default(),
            spark_in: VecDeque::new(),
            spark_out: VecDeque::new(),
            order: SortBy::Bytes,
            filter: String::new(),
            input: Input::Keys,
            paused: false,
            samples: VecDeque::new(),
            last_bucket: None,
        }
    }

    /// Takes a new snapshot (unless paused): rates, one sparkline value per
    /// second of server time. A server that restarted starts over.
    pub fn update(&mut self, snap: WireSnapshot) {
        self.gone = None;
        if self.paused {
            return;
        }
        let now = Sample::of(&snap);
        if self.samples.back().is_some_and(|s| s.t > now.t) {
            self.samples.clear();
            self.last_bucket = None;
            self.spark_in.clear();
            self.spark_out.clear();
        }
        self.samples.push_back(now);
        while self.samples.len() > 2 && now.t - self.samples[1].t >= RATE_WINDOW_S {
            self.samples.pop_front();
        }
        if let Some(first) = self.samples.front() {
            self.rates = now.rates_since(first);
        }
        match self.last_bucket {
            None => self.last_bucket = Some(now),
            Some(b) if now.t - b.t >= 1.0 => {
                let r = now.rates_since(&b);
                push_bounded(&mut self.spark_in, r.bytes_in as u64);
                push_bounded(&mut self.spark_out, r.bytes_out as u64);
                self.last_bucket = Some(now);
            }
            Some(_) => {}
        }
        self.snap = Some(snap);
    }

    /// The connections to show: filtered by peer, in the chosen order.
    pub fn connections(&self) -> Vec<&WireConn> {
        let Some(snap) = &self.snap else {
            return Vec::new();
        };
        let mut v: Vec<&WireConn> = snap
            .busiest
            .iter()
            .filter(|c| self.filter.is_empty() || c.peer.contains(&self.filter))
            .collect();
        match self.order {
            SortBy::Bytes => v.sort_by_key(|c| std::cmp::Reverse(c.bytes_in + c.bytes_out)),
            SortBy::Age => v.sort_by(|a, b| b.age_s.total_cmp(&a.age_s)),
            SortBy::SendQueue => v.sort_by_key(|c| std::cmp::Reverse(c.send_queue)),
        }
        v
    }

    /// `ringport log`'s messages that pass the filter, oldest first; `None`
    /// for a server that keeps none.
    pub fn messages(&self) -> Option<Vec<&LoggedMessage>> {
        let list = self.snap.as_ref()?.recent_messages.as_ref()?;
        Some(
            list.iter()
                .filter(|m| {
                    self.filter.is_empty()
                        || m.text.contains(&self.filter)
                        || m.peer.contains(&self.filter)
                })
                .collect(),
        )
    }
}

fn push_bounded(v: &mut VecDeque<u64>, x: u64) {
    if v.len() == HISTORY_S {
        v.pop_front();
    }
    v.push_back(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(t: f64, bytes: u64, msgs: u64) -> WireSnapshot {
        let mut s = WireSnapshot {
            uptime_s: t,
            ..WireSnapshot::default()
        };
        s.bytes.inbound = bytes;
        s.bytes.outbound = bytes;
        s.messages.inbound = msgs;
        s.messages.outbound = msgs;
        s
    }

    #[test]
    fn rates_over_the_last_second_and_one_spark_a_second() {
        let mut st = State::new("p".into());
        for i in 0..=12 {
            let t = f64::from(i) * 0.25;
            st.update(snap(t, (t * 1000.0) as u64, (t * 10.0) as u64));
        }
        assert!((st.rates.bytes_in - 1000.0).abs() < 1.0, "{:?}", st.rates);
        assert!((st.rates.msgs_out - 10.0).abs() < 1.0, "{:?}", st.rates);
        assert_eq!(st.spark_in.len(), 3);
        assert!(st.spark_in.iter().all(|&b| b == 1000));
        // Paused: nothing changes.
        st.paused = true;
        st.update(snap(4.0, 99_999, 0));
        assert_eq!(st.snap.as_ref().unwrap().uptime_s, 3.0);
        // A restarted server starts over.
        st.paused = false;
        st.update(snap(0.5, 10, 1));
        assert!(st.spark_in.is_empty());
        assert_eq!(st.rates, Rates::default());
    }
}
