//! Bench results: per round, medians per server, ratios, the table.

use std::fmt::Write as _;

use super::case::Kind;
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
    /// Idle cases: the server's resident memory per open connection, KiB.
    pub rss_kib_per_conn: Option<f64>,
    /// Messages echoed in the window.
    pub msgs: u64,
    /// Load errors.
    pub errors: u64,
    /// Window length.
    pub window_s: f64,
    /// Share of the window the measured CPU lost to the hypervisor (steal
    /// time): rounds with much of it are noise.
    pub steal_share: f64,
    /// UDP cases: datagrams lost of those sent in the window.
    pub lost: Option<(u64, u64)>,
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
    /// Resident memory per idle connection, KiB (idle cases).
    pub rss_kib_per_conn: Option<f64>,
    /// The figure that ranks servers in this case (see `CaseResult::figure`).
    pub value: f64,
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
    /// The figure that ranks servers here: `CPU µs/msg`, `CPU µs/conn`
    /// (churn) or `RSS KiB/conn` (idle).
    pub figure: String,
    /// Per server, in run order.
    pub servers: Vec<ServerResult>,
    /// First server's median over the second's (ringport / tokio).
    pub ratio: Option<Median>,
    /// The first server's `figure` over the second's, round by round (each
    /// pair ran back to back, so a slow phase of the machine tends to hit
    /// both): how far the rounds agree on the ratio.
    pub paired_ratio: Option<Spread>,
    /// The same for p99 latency (echo and churn cases).
    pub paired_p99_ratio: Option<Spread>,
    /// The same for syscalls per message (with `--syscalls`).
    pub paired_syscalls_ratio: Option<Spread>,
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
            figure: case.figure().to_string(),
            servers: names
                .iter()
                .map(|name| ServerResult {
                    server: name.to_string(),
                    rounds: Vec::new(),
                    median: Median::default(),
                })
                .collect(),
            ratio: None,
            paired_ratio: None,
            paired_p99_ratio: None,
            paired_syscalls_ratio: None,
        }
    }

    /// The ranked figure of one round.
    fn value(&self, r: &RoundResult) -> Option<f64> {
        match self.case.kind {
            Kind::Idle => r.rss_kib_per_conn,
            Kind::Echo | Kind::Churn => Some(r.cpu_us_per_msg),
        }
    }

    pub(crate) fn finish(&mut self) {
        let opt_median = |v: Option<Vec<f64>>| v.filter(|v| !v.is_empty()).map(median);
        let values: Vec<Option<Vec<f64>>> = self
            .servers
            .iter()
            .map(|s| s.rounds.iter().map(|r| self.value(r)).collect())
            .collect();
        for (s, values) in self.servers.iter_mut().zip(values) {
            let r = &s.rounds;
            let med = |f: &dyn Fn(&RoundResult) -> f64| median(r.iter().map(f).collect());
            s.median = Median {
                rss_kib_per_conn: opt_median(r.iter().map(|x| x.rss_kib_per_conn).collect()),
                value: opt_median(values).unwrap_or(f64::NAN),
                msgs_per_s: med(&|x| x.msgs_per_s),
                p99_us: med(&|x| x.p99_us),
                cpu_us_per_msg: med(&|x| x.cpu_us_per_msg),
                server_cpu_share: med(&|x| x.server_cpu_share),
                ctx_switches_per_msg: med(&|x| x.ctx_switches_per_msg),
                syscalls_per_msg: opt_median(r.iter().map(|x| x.syscalls_per_msg).collect()),
            };
        }
        if let [a, b, ..] = &self.servers[..] {
            let paired = Spread::of(paired_ratios(&a.rounds, &b.rounds, |r| self.value(r)));
            let p99 = (self.case.kind != Kind::Idle)
                .then(|| Spread::of(paired_ratios(&a.rounds, &b.rounds, |r| Some(r.p99_us))))
                .flatten();
            let syscalls = Spread::of(paired_ratios(&a.rounds, &b.rounds, |r| r.syscalls_per_msg));
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
                rss_kib_per_conn: a
                    .rss_kib_per_conn
                    .zip(b.rss_kib_per_conn)
                    .map(|(x, y)| q(x, y)),
                value: q(a.value, b.value),
            });
            self.paired_ratio = paired;
            self.paired_p99_ratio = p99;
            self.paired_syscalls_ratio = syscalls;
        }
    }
}

/// `a`'s `figure` over `b`'s, round by round (rounds both ran, skipping any
/// where either figure is missing or not positive).
fn paired_ratios(
    a: &[RoundResult],
    b: &[RoundResult],
    figure: impl Fn(&RoundResult) -> Option<f64>,
) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((figure(x)?, figure(y)?)))
        .filter(|&(x, y)| x > 0.0 && y > 0.0)
        .map(|(x, y)| x / y)
        .collect()
}

/// A figure with two decimals below 100, none above.
fn figure_text(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
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
    /// The table of medians and the table of paired ratios, as printed.
    pub fn table(&self) -> String {
        let sys = self.cases.iter().any(|c| {
            c.servers
                .iter()
                .any(|s| s.median.syscalls_per_msg.is_some())
        });
        let idle = self.cases.iter().any(|c| c.case.kind == Kind::Idle);
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
        let mut rule = String::from("|---|---|--:|--:|--:|--:|");
        if sys {
            t.push_str(" syscalls/msg |");
            rule.push_str("--:|");
        }
        if idle {
            t.push_str(" RSS KiB/conn |");
            rule.push_str("--:|");
        }
        let _ = writeln!(t, "\n{rule}");
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        let row = |t: &mut String, c: &CaseResult, who: &str, m: &Median, ratio: bool| {
            let (b0, b1) = if ratio { ("**", "**") } else { ("", "") };
            let n = |v: f64, d: usize| format!("{v:.d$}");
            let cells = match c.case.kind {
                Kind::Idle => ["-".into(), "-".into(), "-".into(), "-".into()],
                Kind::Echo | Kind::Churn => [
                    n(m.msgs_per_s, if ratio { 2 } else { 0 }),
                    n(m.p99_us, if ratio { 2 } else { 0 }),
                    format!("{b0}{:.2}{b1}", m.cpu_us_per_msg),
                    n(m.server_cpu_share, 2),
                ],
            };
            let _ = write!(t, "| {} | {who} | {} |", c.label, cells.join(" | "));
            if sys {
                let _ = write!(t, " {} |", opt(m.syscalls_per_msg));
            }
            if idle {
                let _ = write!(t, " {} |", opt(m.rss_kib_per_conn));
            }
            t.push('\n');
        };
        for c in &self.cases {
            for s in &c.servers {
                row(&mut t, c, &s.server, &s.median, false);
            }
            if let (Some(r), [a, b, ..]) = (&c.ratio, &c.servers[..]) {
                row(
                    &mut t,
                    c,
                    &format!("**{}/{}**", a.server, b.server),
                    r,
                    true,
                );
            }
        }
        if self.cases.iter().any(|c| c.servers.len() >= 2) {
            t.push_str(&self.ratio_table());
        }
        for c in &self.cases {
            for s in &c.servers {
                let failed: Vec<u64> = s
                    .rounds
                    .iter()
                    .map(|r| r.errors)
                    .filter(|&e| e > 0)
                    .collect();
                if let Some(max) = failed.iter().max() {
                    let _ = writeln!(
                        t,
                        "{} {}: {} of {} runs had failed connections (up to {max}); \
                         they ran with fewer connections",
                        c.label,
                        s.server,
                        failed.len(),
                        s.rounds.len()
                    );
                }
            }
        }
        for c in &self.cases {
            for s in &c.servers {
                let lost: Vec<(u64, u64)> = s.rounds.iter().filter_map(|r| r.lost).collect();
                if lost.is_empty() {
                    continue;
                }
                let (n, of) = lost.iter().fold((0, 0), |(n, of), (l, s)| (n + l, of + s));
                let _ = writeln!(
                    t,
                    "{} {}: {n} of {of} datagrams lost ({:.3}%) in {} of {} runs",
                    c.label,
                    s.server,
                    n as f64 * 100.0 / of.max(1) as f64,
                    lost.iter().filter(|(l, _)| *l > 0).count(),
                    lost.len()
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

    /// Per case and figure, the first server's value over the second's,
    /// paired round by round: median and range.
    pub fn ratio_table(&self) -> String {
        let mut t = String::new();
        let Some([a, b, ..]) = self.cases.first().map(|c| &c.servers[..]) else {
            return t;
        };
        let (a, b) = (&a.server, &b.server);
        let who = &self.measured;
        let _ = writeln!(
            t,
            "\n{a}/{b} per case, paired by round (each {a} run over the {b} run beside it): \
             median and range; below 1.00 {a} needs less\n\
             | case | figure | {a} | {b} | {a}/{b} | range | rounds |\n\
             |---|---|--:|--:|--:|--:|--:|"
        );
        for c in &self.cases {
            for (figure, pick, spread) in c.ratios() {
                let (Some(p), [x, y, ..]) = (spread, &c.servers[..]) else {
                    continue;
                };
                let figure = if figure.starts_with("p99") || figure.starts_with("sys") {
                    figure.to_string()
                } else {
                    format!("{who} {figure}")
                };
                let v = |m: &Median| pick(m).map_or("-".to_string(), figure_text);
                let _ = writeln!(
                    t,
                    "| {} | {figure} | {} | {} | **{:.2}** | {:.2}–{:.2} | {} |",
                    c.label,
                    v(&x.median),
                    v(&y.median),
                    p.median,
                    p.min,
                    p.max,
                    p.n
                );
            }
        }
        t
    }
}

impl CaseResult {
    /// The paired ratios this case has: (figure, how to read it from a
    /// median, the spread).
    #[allow(clippy::type_complexity)]
    pub fn ratios(&self) -> Vec<(&str, fn(&Median) -> Option<f64>, Option<Spread>)> {
        vec![
            (
                self.figure.as_str(),
                (|m| Some(m.value)) as fn(&Median) -> Option<f64>,
                self.paired_ratio,
            ),
            ("p99 µs", |m| Some(m.p99_us), self.paired_p99_ratio),
            (
                "syscalls/msg",
                |m| m.syscalls_per_msg,
                self.paired_syscalls_ratio,
            ),
        ]
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
            rss_kib_per_conn: None,
            msgs: 1,
            errors: 0,
            window_s: 1.0,
            steal_share: 0.0,
            lost: None,
        }
    }

    #[test]
    fn ratios_are_paired_round_by_round() {
        // Each round's pair gives one ratio; a round where one side
        // echoed nothing gives none.
        let a = [round(1.0), round(4.0), round(0.0)];
        let b = [round(2.0), round(4.0), round(3.0)];
        let r = paired_ratios(&a, &b, |r| Some(r.cpu_us_per_msg));
        assert_eq!(r, vec![0.5, 1.0]);
        let s = Spread::of(r).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (0.75, 0.5, 1.0, 2));
        assert_eq!(Spread::of(vec![]), None);
    }
}
