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
//! `--unix PATH` runs the same over Unix stream sockets connected to PATH.
//! `--udp` sends datagrams instead (see the `dgram` module): `--conns`
//! flows, each its own UDP socket with up to `--pipeline` datagrams
//! outstanding; every datagram carries its flow, its sequence number and a
//! checksum, and every echo is checked. A datagram not echoed within
//! `--timeout` counts as lost: loss is counted and reported (`lost N`), as
//! UDP may drop; a corrupted, mis-sized, misdirected or never-sent datagram
//! is a mismatch and fails the run.
//!
//! Exit codes: 0 when every echo was verified and nothing went wrong (in
//! UDP mode lost datagrams alone are not a failure, unless a flow got none
//! of at least three windows' worth sent in the measured window back: a
//! server ignoring a peer); 3 at an echo mismatch; 1 for every other
//! failure. Each failure is said on
//! stderr (`ringport load: ...`) and listed in the report's `failures`:
//! connections that failed (counted by kind), connections no echo came back
//! from, a window in which no echo was completed. A run that stops before
//! its window ends gives no rates, and says why.

pub mod baseline;
mod dgram;
mod engine;
mod progress;
mod stats;

use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

pub use dgram::{HEADER as DGRAM_HEADER, MAX_SIZE as DGRAM_MAX};
pub use engine::Phase;
pub use stats::{Latency, Report};

/// Where the load sends its messages, and over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// TCP connections to an address.
    Tcp(SocketAddr),
    /// Unix stream connections to a socket path.
    Unix(PathBuf),
    /// UDP flows (one socket each) sending datagrams to an address.
    Udp(SocketAddr),
}

impl Target {
    /// `tcp`, `unix` or `udp`.
    pub fn transport(&self) -> &'static str {
        match self {
            Target::Tcp(_) => "tcp",
            Target::Unix(_) => "unix",
            Target::Udp(_) => "udp",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(a) | Target::Udp(a) => a.fmt(f),
            Target::Unix(p) => p.display().fmt(f),
        }
    }
}

/// Runs one load as configured (over the configured transport); `hook` is
/// called at the window's start and end. Returns the report even when an
/// echo mismatched (in `mismatch`).
///
/// # Errors
/// When the port cannot be created or fails.
pub fn run_load(cfg: &Config, hook: &mut dyn FnMut(Phase)) -> anyhow::Result<Report> {
    match cfg.target {
        Target::Udp(_) => dgram::run_dgram(cfg, hook),
        Target::Tcp(_) | Target::Unix(_) => engine::run_load(cfg, hook),
    }
}

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
    /// The echo server to load (only this address is ever connected to;
    /// with `--udp`, the only address datagrams are sent to).
    #[arg(long, required_unless_present = "unix")]
    pub addr: Option<SocketAddr>,
    /// Datagrams instead of TCP: UDP flows to `--addr`, each its own socket.
    #[arg(long, conflicts_with = "unix")]
    pub udp: bool,
    /// A Unix stream socket path to connect to instead of `--addr`.
    #[arg(long, value_name = "PATH", conflicts_with = "addr")]
    pub unix: Option<PathBuf>,
    /// With `--udp`: seconds after which a datagram not echoed counts as
    /// lost (its window slot is then reused).
    #[arg(long, default_value_t = 1.0)]
    pub timeout: f64,
    /// Connections (echo: kept open; churn: opened at a time; with `--udp`:
    /// flows).
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Messages in flight per connection (with `--udp`: the window of
    /// datagrams outstanding per flow).
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
    /// Where and over what.
    pub target: Target,
    /// UDP: how long a datagram's echo is awaited before it counts as lost.
    pub timeout: Duration,
    /// Connections (UDP: flows).
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
        anyhow::ensure!(
            self.timeout.is_finite() && self.timeout >= 0.001 && self.timeout <= 3600.0,
            "--timeout must be 0.001..=3600"
        );
        let target = match (&self.unix, self.addr) {
            (Some(path), _) => Target::Unix(path.clone()),
            (None, Some(addr)) if self.udp => Target::Udp(addr),
            (None, Some(addr)) => Target::Tcp(addr),
            (None, None) => anyhow::bail!("--addr or --unix is needed"),
        };
        if let Target::Udp(_) = target {
            anyhow::ensure!(
                self.mode == Mode::Echo,
                "--udp has no churn mode (datagrams have no connections)"
            );
            anyhow::ensure!(self.rate.is_none(), "--rate is not supported with --udp");
            anyhow::ensure!(
                (dgram::HEADER..=dgram::MAX_SIZE).contains(&self.size),
                "--size must be {}..={} with --udp (a datagram carries a {}-byte header)",
                dgram::HEADER,
                dgram::MAX_SIZE,
                dgram::HEADER
            );
        }
        Ok(Config {
            target,
            timeout: Duration::from_secs_f64(self.timeout),
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
