//! `ringport log` (placeholder; being written).

/// Flags of `ringport log`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the subcommand; returns the process exit code.
pub fn run(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not written yet")
}
