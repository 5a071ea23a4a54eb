//! `ringport load`: a verifying load generator on ringport's own port.
//!
//! One completion port, one thread. `--mode echo` keeps `--conns`
//! connections open, each with `--pipeline` messages of `--size` seeded
//! random bytes in flight, reads every echo back and compares every byte (a
//! mismatch stops the run and exits with code 3). `--mode churn` opens a
//! connection, sends one message, reads it back and closes, `--conns` at a
//! time: connections per second. The run always ends by itself after
//! `--warmup` + `--duration` (plus a bounded connect phase).
//!
//! Exit codes: 0 when every echo was verified and nothing went wrong; 3 at
//! an echo mismatch; 1 for every other failure. Each failure is said on
//! stderr (`ringport load: ...`) and listed in the report's `failures`:
//! connections that failed (counted by kind), connections no echo came back
//! from, a window in which no echo was completed. A run that stops before
//! its window ends gives no rates, and says why.

pub mod baseline;
mod engine;
mod stats;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub use engine::{run_load, Phase};
pub use stats::Latency;

/// What the load does with each connection.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Long-lived connections; messages echoed and verified.
    Echo,
    /// Connect, one message, close: connections per second.
    Churn,
}

/// How the load receives (see `--recv`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    /// One multishot receive per connection, buffers from the port's pool.
    Pooled,
    /// A receive per chunk into the connection's own buffer.
    Single,
}

/// Flags of `ringport load`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The echo server to load (only this address is ever connected to).
    #[arg(long)]
    pub addr: SocketAddr,
    /// Connections (echo: kept open; churn: opened at a time).
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Seconds measured (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before the measured window starts.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Messages (churn: connections) per second in total; unlimited if absent.
    #[arg(long)]
    pub rate: Option<f64>,
    /// echo or churn.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Seed of the message bytes.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Pin the load thread to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Backend of the load's own port: uring or epoll (default: automatic).
    #[arg(long)]
    pub backend: Option<ringport::BackendKind>,
    /// How replies are received: `pooled` keeps one multishot receive per
    /// connection that takes buffers from the port's pool; `single` posts a
    /// receive into the connection's own buffer for every chunk.
    #[arg(long, value_enum, default_value_t = Recv::Pooled)]
    pub recv: Recv,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A validated load configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Server address.
    pub addr: SocketAddr,
    /// Connections.
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Measured window.
    pub duration: Duration,
    /// Load before the window.
    pub warmup: Duration,
    /// Total messages per second, if limited.
    pub rate: Option<f64>,
    /// echo or churn.
    pub mode: Mode,
    /// Seed of the message bytes.
    pub seed: u64,
    /// Backend of the load's port.
    pub backend: Option<ringport::BackendKind>,
    /// Multishot receives into the port's pool.
    pub pooled: bool,
    /// Show a live progress line on stderr.
    pub progress: bool,
}

impl Args {
    /// Checks the flags.
    pub fn config(&self) -> anyhow::Result<Config> {
        anyhow::ensure!(
            (1..=100_000).contains(&self.conns),
            "--conns must be 1..=100000"
        );
        anyhow::ensure!(
            (1..=16 << 20).contains(&self.size),
            "--size must be 1..=16 MiB"
        );
        anyhow::ensure!(
            (1..=1024).contains(&self.pipeline),
            "--pipeline must be 1..=1024"
        );
        anyhow::ensure!(
            self.duration.is_finite() && self.duration > 0.0 && self.duration <= 86_400.0,
            "--duration must be > 0 and at most a day"
        );
        anyhow::ensure!(
            self.warmup.is_finite() && (0.0..=3600.0).contains(&self.warmup),
            "--warmup must be 0..=3600"
        );
        if let Some(r) = self.rate {
            anyhow::ensure!(r.is_finite() && r > 0.0, "--rate must be > 0");
        }
        Ok(Config {
            addr: self.addr,
            conns: self.conns,
            size: self.size,
            pipeline: if self.mode == Mode::Churn {
                1
            } else {
                self.pipeline
            },
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            rate: self.rate,
            mode: self.mode,
            seed: self.seed,
            backend: self.backend,
            pooled: self.recv == Recv::Pooled,
            progress: std::io::stderr().is_terminal() && !self.json,
        })
    }
}

/// Exit code when an echoed byte differs from what was sent.
pub const EXIT_MISMATCH: u8 = 3;

/// Runs `ringport load`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = args.config()?;
    if let Some(cpu) = args.cpu {
        crate::affinity::pin_current(cpu).context("--cpu")?;
    }
    let report = run_load(&cfg, &mut |_| {})?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    for f in &report.failures {
        eprintln!("ringport load: {f}");
    }
    if report.mismatch.is_some() {
        return Ok(ExitCode::from(EXIT_MISMATCH));
    }
    if !report.failures.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
