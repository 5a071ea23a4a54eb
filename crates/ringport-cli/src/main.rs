//! The `ringport` command: the seed servers, a load generator and a
//! side-by-side benchmark.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod echo;
mod log;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Echo(a) => echo::run(a),
        Command::Log(a) => log::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringport: {e:#}");
            ExitCode::FAILURE
        }
    }
}
