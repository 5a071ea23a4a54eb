//! Pinning threads (and, through inheritance, child processes) to CPUs.

use std::process::{Child, Command};

use anyhow::Context;

/// Pins the calling thread to `cpu`.
///
/// # Errors
/// When the CPU does not exist or the kernel refuses.
pub fn pin_current(cpu: usize) -> anyhow::Result<()> {
    let ids = core_affinity::get_core_ids().context("reading the CPUs this process may use")?;
    let id = ids
        .iter()
        .find(|c| c.id == cpu)
        .with_context(|| format!("CPU {cpu} is not available (have {})", list(&ids)))?;
    anyhow::ensure!(
        core_affinity::set_for_current(*id),
        "sched_setaffinity to CPU {cpu} failed"
    );
    Ok(())
}

/// The CPUs this process may run on.
pub fn available() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|v| v.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Spawns `cmd` pinned to `cpu` (if given): a short-lived thread pins itself
/// and spawns, so the child and every thread it creates inherit the mask from
/// its first instruction, without racing its start-up.
///
/// # Errors
/// When pinning or spawning fails.
pub fn spawn_pinned(mut cmd: Command, cpu: Option<usize>) -> anyhow::Result<Child> {
    std::thread::spawn(move || {
        if let Some(cpu) = cpu {
            pin_current(cpu)?;
        }
        cmd.spawn().with_context(|| format!("spawning {cmd:?}"))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the spawning thread panicked"))?
}

fn list(ids: &[core_affinity::CoreId]) -> String {
    ids.iter()
        .map(|c| c.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}
