//! `ringport bench --clients`: is the load generator the bottleneck? The
//! same server is loaded in turn by `ringport load` and by the plain epoll
//! client a person would write (`ringport epoll-load`: one thread, mio,
//! `write` then `read` per connection), each pinned to the load CPU, and
//! the table compares the messages per second each drives and the CPU time
//! each spends per message (its own thread's, from
//! `CLOCK_THREAD_CPUTIME_ID`, over the measured window).

use rustix::time::{clock_gettime, ClockId};

use super::report::RoundResult;
use super::server::{self, Server};
use super::{Args, Case, Plan};
use crate::load::{self, baseline, Phase};

/// The contestants, in the order they run in each round.
pub const CLIENTS: [&str; 2] = ["ringport load", "epoll client"];

/// CPU time of the calling thread so far, in seconds.
fn thread_cpu_s() -> f64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// What one client run measured, before it becomes a `RoundResult`.
struct Run {
    msgs: u64,
    window_s: f64,
    msgs_per_s: f64,
    latency: load::Latency,
    mismatch: Option<String>,
    /// Client thread CPU seconds and the load CPU's steal ticks, at the
    /// window's start and end.
    cpu: Vec<(f64, u64)>,
}

/// Runs client `which` (an index into `CLIENTS`) against `s` once;
/// `tick` is clock ticks per second.
pub fn run_one(
    a: &Args,
    p: &Plan,
    case: &Case,
    s: &Server,
    which: usize,
    tick: u64,
) -> anyhow::Result<RoundResult> {
    let load_cpu = p.load_cpu;
    let run = std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<Run> {
                if let Some(cpu) = load_cpu {
                    crate::affinity::pin_current(cpu)?;
                }
                let mut cpu = Vec::new();
                let mut hook = |_: Phase| {
                    cpu.push((thread_cpu_s(), server::steal_ticks(load_cpu)));
                };
                let run = if which == 0 {
                    // One message in flight, as the epoll client keeps.
                    let cfg = super::load_config(a, p, case, s, Some(1))?;
                    let r = load::run_load(&cfg, &mut hook)?;
                    if r.mismatch.is_none() {
                        if let Some(why) = r.stopped_early {
                            anyhow::bail!("the {} {why}", CLIENTS[which]);
                        }
                    }
                    (
                        r.msgs,
                        r.window_s.unwrap_or(0.0),
                        r.msgs_per_s.unwrap_or(0.0),
                        r.latency.unwrap_or_default(),
                        r.mismatch,
                    )
                } else {
                    let args = baseline::Args {
                        addr: s.addr,
                        conns: case.conns,
                        size: case.size,
                        duration: p.duration,
                        warmup: p.warmup,
                        cpu: None,
                    };
                    let r = baseline::run_client(&args, &mut hook)?;
                    (r.msgs, r.window_s, r.msgs_per_s, r.latency, r.mismatch)
                };
                let (msgs, window_s, msgs_per_s, latency, mismatch) = run;
                Ok(Run {
                    msgs,
                    window_s,
                    msgs_per_s,
                    latency,
                    mismatch,
                    cpu,
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    })?;
    if let Some(m) = &run.mismatch {
        anyhow::bail!("ECHO MISMATCH seen by the {}: {m}", CLIENTS[which]);
    }
    anyhow::ensure!(
        run.cpu.len() == 2,
        "the {} never reached its measured window",
        CLIENTS[which]
    );
    let cpu_s = run.cpu[1].0 - run.cpu[0].0;
    let stolen = run.cpu[1].1.saturating_sub(run.cpu[0].1) as f64 / tick as f64;
    let msgs = run.msgs.max(1) as f64;
    Ok(RoundResult {
        msgs_per_s: run.msgs_per_s,
        p99_us: run.latency.p99_us,
        p50_us: run.latency.p50_us,
        max_us: run.latency.max_us,
        server_cpu_s: cpu_s,
        server_cpu_share: cpu_s / run.window_s.max(1e-9),
        cpu_us_per_msg: cpu_s * 1e6 / msgs,
        ctx_switches_per_msg: 0.0,
        syscalls_per_msg: None,
        rss_kib_per_conn: None,
        msgs: run.msgs,
        errors: 0,
        window_s: run.window_s,
        steal_share: stolen / run.window_s.max(1e-9),
        lost: None,
    })
}
