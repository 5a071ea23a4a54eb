//! What a load run measured, and how it is printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Mode;

/// `s` seconds for a person: `1.00 s`, or `3.2 ms` below a tenth of a
/// second (so a short window does not read as `0.00 s`).
pub(crate) fn secs(s: f64) -> String {
    if s >= 0.1 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest seen.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Latency {
    pub(crate) fn from_hist(h: &Histogram<u64>) -> Self {
        // Recorded in nanoseconds.
        let us = |v: u64| v as f64 / 1000.0;
        Latency {
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// What a datagram (UDP) run counted besides the echoes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DgramCounts {
    /// Datagrams sent in the measured window.
    pub sent: u64,
    /// Of those, the ones whose echo did not come back within the timeout
    /// (the run waits at most one timeout after the window for them).
    pub lost: u64,
    /// Echoes that came back after their datagram was counted lost (or
    /// twice): not verified again, not counted as echoes.
    pub late: u64,
    /// The timeout in seconds.
    pub timeout_s: f64,
}

/// The result of one load run (the measured window only).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// echo or churn.
    pub mode: Mode,
    /// tcp, unix or udp.
    pub transport: String,
    /// The load's own port backend.
    pub backend: String,
    /// Server address (a socket path over Unix sockets).
    pub addr: String,
    /// Connections (UDP: flows).
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection (UDP: the window per flow).
    pub pipeline: usize,
    /// Length of the measured window in seconds; `None` when the run
    /// stopped before the window began.
    pub window_s: Option<f64>,
    /// Messages echoed and verified in the window (churn: connections done).
    pub msgs: u64,
    /// Messages (churn: connections) per second; `None` unless the window
    /// ran its full length (see `stopped_early`).
    pub msgs_per_s: Option<f64>,
    /// Echoed payload MiB per second (one direction); `None` like
    /// `msgs_per_s`.
    pub mib_per_s: Option<f64>,
    /// Latency per message (churn: connect to echo received); `None` when
    /// no message was measured.
    pub latency: Option<Latency>,
    /// Connection failures, resets and early closes.
    pub errors: u64,
    /// The errors by what went wrong (connection numbers left out).
    pub error_kinds: BTreeMap<String, u64>,
    /// Connections up at the end of the run.
    pub connected: usize,
    /// Connections that got no echo back in the window although their
    /// oldest message had waited at least half of it at the end (counted
    /// only when the window ran its full length).
    pub no_echo: usize,
    /// Connections that had echoes back in the window, then none: their
    /// oldest message had waited at least half the window at its end.
    pub stalled: usize,
    /// The longest wait of a `stalled` connection in seconds (0 when none
    /// stalled).
    pub longest_wait_s: f64,
    /// The first echo mismatch, if any (the run stops at it).
    pub mismatch: Option<String>,
    /// Why the run stopped before its window ended, if it did: then no
    /// rates are given, as they would not be over the window asked for.
    pub stopped_early: Option<String>,
    /// Why the run failed, one sentence each; empty when every echo was
    /// verified and nothing went wrong.
    pub failures: Vec<String>,
    /// UDP runs: datagrams sent, lost and late.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dgram: Option<DgramCounts>,
}

impl Report {
    /// Sets the window and the rates over it. `complete`: the window ran
    /// its full length (otherwise there are no rates).
    pub(crate) fn window(&mut self, window: Option<Duration>, complete: bool) {
        self.window_s = window.map(|w| w.as_secs_f64());
        let s = match self.window_s {
            Some(s) if complete && s > 0.0 => s,
            _ => return,
        };
        self.msgs_per_s = Some(self.msgs as f64 / s);
        self.mib_per_s = Some((self.msgs as f64 * self.size as f64) / s / (1024.0 * 1024.0));
    }

    /// The errors as `count × kind`, most frequent first (at most five
    /// kinds named).
    pub fn error_summary(&self) -> String {
        let mut kinds: Vec<(&String, &u64)> = self.error_kinds.iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut s = kinds
            .iter()
            .take(5)
            .map(|(k, n)| format!("{n} × {k}"))
            .collect::<Vec<_>>()
            .join("; ");
        if kinds.len() > 5 {
            let _ = write!(s, "; and {} other kinds", kinds.len() - 5);
        }
        s
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let unit = match self.mode {
            Mode::Echo => "msgs",
            Mode::Churn => "conns",
        };
        let mut s = String::new();
        let mode = match self.mode {
            Mode::Echo => "echo",
            Mode::Churn => "churn",
        };
        let _ = if self.dgram.is_some() {
            write!(
                s,
                "udp {mode} {} flows × {} B (window {}) to {} [{}]",
                self.conns, self.size, self.pipeline, self.addr, self.backend,
            )
        } else {
            let over = if self.transport == "unix" {
                "unix "
            } else {
                ""
            };
            write!(
                s,
                "{mode} {} × {} B (pipeline {}) on {over}{} [{}]",
                self.conns, self.size, self.pipeline, self.addr, self.backend,
            )
        };
        let _ = match (self.window_s, &self.stopped_early) {
            (Some(w), None) => writeln!(s, " for {}", secs(w)),
            (Some(w), Some(_)) => writeln!(s, " for {}, cut short", secs(w)),
            (None, _) => writeln!(s, ", no measured window"),
        };
        let counts = format!("({} {unit}, {} errors)", self.msgs, self.errors);
        let _ = match (self.msgs_per_s, self.mib_per_s, &self.stopped_early) {
            (Some(r), Some(m), _) => {
                writeln!(s, "  {r:>12.0} {unit}/s  {m:>8.2} MiB/s  {counts}")
            }
            (_, _, Some(why)) => writeln!(s, "  no rates: {why}  {counts}"),
            _ => writeln!(s, "  no rates  {counts}"),
        };
        if let Some(l) = &self.latency {
            let _ = writeln!(
                s,
                "  latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
            );
        }
        if let Some(d) = &self.dgram {
            let share = if d.sent > 0 {
                d.lost as f64 * 100.0 / d.sent as f64
            } else {
                0.0
            };
            let _ = writeln!(
                s,
                "  lost {} of {} sent in the window ({share:.3}%; timeout {}), {} late",
                d.lost,
                d.sent,
                secs(d.timeout_s),
                d.late
            );
        }
        s
    }
}
