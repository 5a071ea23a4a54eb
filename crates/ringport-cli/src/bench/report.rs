//! Bench results: per round, medians per server, ratios, the table.

use std::fmt::Write as _;

use super::server::Server;
use super::Case;

/// One run of one server in one round.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundResult {
    /// Echoed messages per second seen by the load.
    pub msgs_per_s: f64,
    /// 99th percentile latency.
    pub p99_us: f64,
    /// Median latency.
    pub p50_us: f64,
    /// Largest latency.
    pub max_us: f64,
    /// Server CPU seconds (user + system) in the window.
    pub server_cpu_s: f64,
    /// Server CPU seconds per second of window (1.0 = one core busy).
    pub server_cpu_share: f64,
    /// Server CPU microseconds per echoed message.
    pub cpu_us_per_msg: f64,
    /// Server context switches per echoed message.
    pub ctx_switches_per_msg: f64,
    /// Server syscalls per echoed message (with `--syscalls`).
    pub syscalls_per_msg: Option<f64>,
    /// Messages echoed in the window.
    pub msgs: u64,
    /// Load errors.
    pub errors: u64,
    /// Window length.
    pub window_s: f64,
    /// Share of the window the measured CPU lost to the hypervisor (steal
    /// time): rounds with much of it are noise.
    pub steal_share: f64,
}

/// Medians over the rounds of one server in one case.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Median {
    /// msgs/s.
    pub msgs_per_s: f64,
    /// p99 µs.
    pub p99_us: f64,
    /// Server CPU µs per message.
    pub cpu_us_per_msg: f64,
    /// Server CPU share of one core.
    pub server_cpu_share: f64,
    /// Context switches per message.
    pub ctx_switches_per_msg: f64,
    /// Syscalls per message, if counted.
    pub syscalls_per_msg: Option<f64>,
}

/// One server's rounds and medians in one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerResult {
    /// Server name.
    pub server: String,
    /// Every round.
    pub rounds: Vec<RoundResult>,
    /// Medians.
    pub median: Median,
}

/// One case: each server's results and the first/second ratios.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// `100 × 512 B`.
    pub label: String,
    /// Per server, in run order.
    pub servers: Vec<ServerResult>,
    /// First server's median over the second's (ringport / tokio).
    pub ratio: Option<Median>,
    /// The first server's CPU per message over the second's, round by
    /// round (each pair ran back to back, so a slow phase of the machine
    /// tends to hit both): how far the rounds agree on the ratio.
    pub paired_cpu_ratio: Option<Spread>,
}

/// The median and range of some values.
///
/// ```text
/// CPU µs/msg ringport/tokio, paired by round: median 0.97, range 0.91–1.04 (5 rounds)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Spread {
    /// The spread of `v`; `None` when it is empty.
    pub fn of(v: Vec<f64>) -> Option<Spread> {
        let min = v.iter().copied().reduce(f64::min)?;
        let max = v.iter().copied().reduce(f64::max)?;
        let n = v.len();
        Some(Spread {
            median: median(v),
            min,
            max,
            n,
        })
    }
}

impl CaseResult {
    pub(crate) fn new(case: Case, servers: &[Server]) -> Self {
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        Self::named(case, &names)
    }

    /// A case whose rows are named `names` (clients, in `--clients` mode).
    pub(crate) fn named(case: Case, names: &[&str]) -> Self {
        CaseResult {
            case,
            label: case.label(),
            servers: names
                .iter()
                .map(|name| ServerResult {
                    server: name.to_string(),
                    rounds: Vec::new(),
                    median: Median::default(),
                })
                .collect(),
            ratio: None,
            paired_cpu_ratio: None,
        }
    }

    pub(crate) fn finish(&mut self) {
        for s in &mut self.servers {
            let r = &s.rounds;
            let med = |f: &dyn Fn(&RoundResult) -> f64| median(r.iter().map(f).collect());
            s.median = Median {
                msgs_per_s: med(&|x| x.msgs_per_s),
                p99_us: med(&|x| x.p99_us),
                cpu_us_per_msg: med(&|x| x.cpu_us_per_msg),
                server_cpu_share: med(&|x| x.server_cpu_share),
                ctx_switches_per_msg: med(&|x| x.ctx_switches_per_msg),
                syscalls_per_msg: r
                    .iter()
                    .map(|x| x.syscalls_per_msg)
                    .collect::<Option<Vec<_>>>()
                    .filter(|v| !v.is_empty())
                    .map(median),
            };
        }
        if let [a, b, ..] = &self.servers[..] {
            self.paired_cpu_ratio = Spread::of(paired_ratios(&a.rounds, &b.rounds));
            let (a, b) = (&a.median, &b.median);
            let q = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::NAN };
            self.ratio = Some(Median {
                msgs_per_s: q(a.msgs_per_s, b.msgs_per_s),
                p99_us: q(a.p99_us, b.p99_us),
                cpu_us_per_msg: q(a.cpu_us_per_msg, b.cpu_us_per_msg),
                server_cpu_share: q(a.server_cpu_share, b.server_cpu_share),
                ctx_switches_per_msg: q(a.ctx_switches_per_msg, b.ctx_switches_per_msg),
                syscalls_per_msg: a
                    .syscalls_per_msg
                    .zip(b.syscalls_per_msg)
                    .map(|(x, y)| q(x, y)),
            });
        }
    }
}

/// `a`'s CPU per message over `b`'s, round by round (rounds both ran,
/// skipping any with no messages).
fn paired_ratios(a: &[RoundResult], b: &[RoundResult]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.cpu_us_per_msg > 0.0 && y.cpu_us_per_msg > 0.0)
        .map(|(x, y)| x.cpu_us_per_msg / y.cpu_us_per_msg)
        .collect()
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Where the bench ran.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// CPUs online.
    pub nproc: usize,
    /// `/proc/cpuinfo` model name.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    pub(crate) fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_string()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
        }
    }
}

/// A server as started.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerInfo {
    /// Name.
    pub name: String,
    /// Its first stdout line.
    pub banner: String,
}

/// Everything `bench.json` holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Results {
    /// What the rows are and whose CPU time is measured: `server` (servers
    /// ranked under one load) or `client` (load generators ranked against
    /// one server).
    pub measured: String,
    /// Where.
    pub machine: Machine,
    /// The command line.
    pub command: String,
    /// Rounds per case.
    pub rounds: usize,
    /// Window per run.
    pub duration_s: f64,
    /// Warm-up per run.
    pub warmup_s: f64,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// CPU the servers were pinned to.
    pub server_cpu: Option<usize>,
    /// CPU the load was pinned to.
    pub load_cpu: Option<usize>,
    /// The servers.
    pub servers: Vec<ServerInfo>,
    /// Per case.
    pub cases: Vec<CaseResult>,
}

impl Results {
    /// The table of medians and ratios, as printed.
    pub fn table(&self) -> String {
        let sys = self.cases.iter().any(|c| {
            c.servers
                .iter()
                .any(|s| s.median.syscalls_per_msg.is_some())
        });
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nmedians of {} rounds, {:.1} s each; {} CPUs, kernel {}; server on CPU {}, load on CPU {}",
            self.rounds,
            self.duration_s,
            self.machine.nproc,
            self.machine.kernel,
            self.server_cpu.map_or("any".into(), |c| c.to_string()),
            self.load_cpu.map_or("any".into(), |c| c.to_string()),
        );
        let who = &self.measured;
        let _ = write!(
            t,
            "| case | {who} | msgs/s | p99 µs | {who} CPU µs/msg | {who} CPU share |"
        );
        if sys {
            let _ = write!(t, " syscalls/msg |");
        }
        let _ = write!(t, "\n|---|---|--:|--:|--:|--:|");
        if sys {
            let _ = write!(t, "--:|");
        }
        t.push('\n');
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        for c in &self.cases {
            for s in &c.servers {
                let m = &s.median;
                let _ = write!(
                    t,
                    "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} |",
                    c.label, s.server, m.msgs_per_s, m.p99_us, m.cpu_us_per_msg, m.server_cpu_share
                );
                if sys {
                    let _ = write!(t, " {} |", opt(m.syscalls_per_msg));
                }
                t.push('\n');
            }
            if let (Some(r), [a, b, ..]) = (&c.ratio, &c.servers[..]) {
                let _ = write!(
                    t,
                    "| {} | **{}/{}** | {:.2} | {:.2} | **{:.2}** | {:.2} |",
                    c.label,
                    a.server,
                    b.server,
                    r.msgs_per_s,
                    r.p99_us,
                    r.cpu_us_per_msg,
                    r.server_cpu_share
                );
                if sys {
                    let _ = write!(t, " {} |", opt(r.syscalls_per_msg));
                }
                t.push('\n');
            }
        }
        for c in &self.cases {
            if let (Some(p), [a, b, ..]) = (&c.paired_cpu_ratio, &c.servers[..]) {
                let _ = writeln!(
                    t,
                    "{}: {who} CPU µs/msg {}/{} paired by round: median {:.2}, range {:.2}–{:.2} ({} rounds)",
                    c.label, a.server, b.server, p.median, p.min, p.max, p.n
                );
            }
        }
        let rounds: Vec<f64> = self
            .cases
            .iter()
            .flat_map(|c| &c.servers)
            .flat_map(|s| s.rounds.iter().map(|r| r.steal_share))
            .collect();
        let noisy = rounds.iter().filter(|&&x| x >= 0.02).count();
        if noisy > 0 {
            let max = rounds.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                t,
                "\n{noisy} of {} runs lost 2% or more of the measured CPU's time to the \
                 hypervisor (steal, up to {:.0}%): expect noise.",
                rounds.len(),
                max * 100.0
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::{median, paired_ratios, RoundResult, Spread};

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    fn round(cpu_us_per_msg: f64) -> RoundResult {
        RoundResult {
            msgs_per_s: 1.0,
            p99_us: 1.0,
            p50_us: 1.0,
            max_us: 1.0,
            server_cpu_s: 1.0,
            server_cpu_share: 1.0,
            cpu_us_per_msg,
            ctx_switches_per_msg: 0.0,
            syscalls_per_msg: None,
            msgs: 1,
            errors: 0,
            window_s: 1.0,
            steal_share: 0.0,
        }
    }

    #[test]
    fn ratios_are_paired_round_by_round() {
        // Each round's pair gives one ratio; a round where one side
        // echoed nothing gives none.
        let a = [round(1.0), round(4.0), round(0.0)];
        let b = [round(2.0), round(4.0), round(3.0)];
        let r = paired_ratios(&a, &b);
        assert_eq!(r, vec![0.5, 1.0]);
        let s = Spread::of(r).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (0.75, 0.5, 1.0, 2));
        assert_eq!(Spread::of(vec![]), None);
    }
}
