//! The `ringport` command: the seed servers, a load generator and a
//! side-by-side benchmark.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod affinity;
mod bench;
mod echo;
mod load;
mod log;
mod metrics;
mod observe;
mod recent;
mod stats_socket;
mod stats_wire;
mod tokio_echo;
mod top;

/// Windows-style I/O completion ports for Linux: servers, load and benchmark.
#[derive(Parser, Debug)]
#[command(name = "ringport", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The echo server of seeds 002 and 003.
    Echo(echo::Args),
    /// The server of seeds 000 and 004 that prints every message it receives.
    Log(log::Args),
    /// A verifying load generator for echo servers, on ringport's own port.
    Load(load::Args),
    /// Side-by-side benchmark: `ringport echo` against a tokio echo server.
    Bench(bench::Args),
    /// A running server's connections and traffic, live, from its stats
    /// socket (`--stats-socket PATH` of echo and log).
    Top(top::Args),
    /// The tokio baseline echo server used by `bench`.
    #[command(hide = true)]
    TokioEcho(tokio_echo::Args),
    /// A simple one-thread epoll (mio) load client, the yardstick for `load`.
    #[command(hide = true)]
    EpollLoad(load::baseline::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringport: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Echo(a) => echo::run(a),
        Command::Log(a) => log::run(a),
        Command::Load(a) => load::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Top(a) => top::run(a),
        Command::TokioEcho(a) => tokio_echo::run(a),
        Command::EpollLoad(a) => load::baseline::run(a),
    }
}
