//! `ringport bench` (being written).

/// Flags of `ringport bench`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: Args) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not written yet")
}
