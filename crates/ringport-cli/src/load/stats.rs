//! What a load run measured, and how it is printed.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Mode;

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

/// The result of one load run (the measured window only).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// echo or churn.
    pub mode: Mode,
    /// The load's own port backend.
    pub backend: String,
    /// Server address.
    pub addr: String,
    /// Connections.
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Length of the measured window in seconds.
    pub window_s: f64,
    /// Messages echoed and verified in the window (churn: connections done).
    pub msgs: u64,
    /// Messages (churn: connections) per second.
    pub msgs_per_s: f64,
    /// Echoed payload MiB per second (one direction).
    pub mib_per_s: f64,
    /// Latency per message (churn: connect to echo received).
    pub latency: Latency,
    /// Connection failures, resets and early closes.
    pub errors: u64,
    /// Connections that were up when the window started (echo mode).
    pub connected: usize,
    /// The first echo mismatch, if any (the run stops at it).
    pub mismatch: Option<String>,
}

impl Report {
    pub(crate) fn window(&mut self, window: Duration) {
        let s = window.as_secs_f64().max(1e-9);
        self.window_s = s;
        self.msgs_per_s = self.msgs as f64 / s;
        self.mib_per_s = (self.msgs as f64 * self.size as f64) / s / (1024.0 * 1024.0);
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let unit = match self.mode {
            Mode::Echo => "msgs",
            Mode::Churn => "conns",
        };
        let l = &self.latency;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} × {} B (pipeline {}) on {} [{}] for {:.2} s",
            match self.mode {
                Mode::Echo => "echo",
                Mode::Churn => "churn",
            },
            self.conns,
            self.size,
            self.pipeline,
            self.addr,
            self.backend,
            self.window_s
        );
        let _ = writeln!(
            s,
            "  {:>12.0} {unit}/s  {:>8.2} MiB/s  ({} {unit}, {} errors)",
            self.msgs_per_s, self.mib_per_s, self.msgs, self.errors
        );
        let _ = writeln!(
            s,
            "  latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
        s
    }
}
