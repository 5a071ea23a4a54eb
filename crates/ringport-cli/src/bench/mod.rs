//! `ringport bench`: `ringport echo` against a tokio echo server, side by
//! side.
//!
//! Both servers are started from this binary on 127.0.0.1 ephemeral ports,
//! pinned to one CPU; the load (`ringport load`'s engine, on a thread of this
//! process) is pinned to another. For every case and round the same load runs
//! against each server in turn, and the server's CPU time (utime + stime from
//! `/proc/PID/stat`) is sampled at the start and end of the measured window:
//! on a 2-core machine the client saturates, so CPU time per echoed message
//! is the figure that ranks servers.
//!
//! Cases prefixed `udp` (`udp100x512`) send datagrams to the servers'
//! `--udp` echo (`ringport echo --udp`, `ringport tokio-echo --udp`: the
//! same port number as their TCP echo), through `ringport load --udp`'s
//! engine: datagrams per second, server CPU per datagram, and the datagrams
//! lost. Cases prefixed `unix` connect to the servers' `--unix PATH`
//! listener. A server listed as `NAME:TRANSPORT` in `--servers` runs every
//! case over that transport: `--servers ringport:unix,ringport --cases
//! 100x512` compares one server's CPU per message over Unix sockets with
//! the same over TCP loopback, paired round by round.
mod case;
mod chart;
mod clients;
mod idle;
mod report;
mod server;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::load::{self, Mode, Phase};
pub use case::{Case, Kind, Transport};
use report::{CaseResult, Machine, Results, RoundResult};
use server::{Extra, Server, SyscallCount};

/// Flags of `ringport bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The full matrix: the demo's cases and 1×64, 100×512, 100×64p16;
    /// 5 rounds of 5 s.
    #[arg(long)]
    pub full: bool,
    /// Cases, comma-separated: `CONNSxSIZE[pN]` (`1000x64p4`: 1000
    /// connections, 64 B messages, 4 in flight each), `churn[N[xSIZE]]` (N
    /// connections at a time: connect, one echo, close; default 100 × 64 B),
    /// `idle[N]` (N idle connections: server memory each; default 1000).
    /// Prefixed `udp` (`udp100x512`: 100 UDP flows of 512 B datagrams,
    /// `--pipeline` outstanding each) or `unix` (`unix100x512`, `unixchurn`:
    /// over the servers' Unix stream socket), the servers are started with
    /// `--udp` or `--unix PATH` and loaded there.
    /// Default: the demo, `idle,1000x512,100x16k,1000x64p4,churn`.
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Rounds per case (each runs every server once, in turn).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds measured per run.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Seconds of load before each measured window (default 0.5; the demo
    /// 0.3).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Messages in flight per connection, for cases without a `pN`.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// CPU for the servers (default 0).
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// CPU for the load (default 1).
    #[arg(long)]
    pub load_cpu: Option<usize>,
    /// Do not pin anything.
    #[arg(long)]
    pub no_pin: bool,
    /// Worker threads of `ringport echo` (default 1, matching its one CPU).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Worker threads of the tokio server (default: tokio's own, one per CPU
    /// it may run on, so 1 when pinned).
    #[arg(long)]
    pub tokio_threads: Option<usize>,
    /// Leave Nagle's algorithm on in the tokio server (as most tokio echo
    /// servers do). By default both servers set TCP_NODELAY, as `ringport
    /// echo` does, so that 16 KiB echoes written in 8 KiB pieces are not held
    /// back ~40 ms by Nagle waiting for a delayed ACK.
    #[arg(long)]
    pub tokio_nagle: bool,
    /// Log filter of the servers (their `RUST_LOG`). At the default, warn,
    /// neither server logs per connection; at info `ringport echo` logs
    /// every connect and disconnect (a formatted line and a write(2) each),
    /// a cost the tokio server does not have.
    #[arg(long, default_value = "warn")]
    pub server_log: String,
    /// Backend of `ringport echo` (uring or epoll; default automatic).
    #[arg(long)]
    pub backend: Option<ringport::BackendKind>,
    /// Backend of the load's port (default automatic).
    #[arg(long)]
    pub load_backend: Option<ringport::BackendKind>,
    /// Count the servers' syscalls per message with `perf stat` (tracing
    /// adds a little to the CPU figures, more for the server that makes more
    /// syscalls). The demo counts them whenever `perf stat` can.
    #[arg(long)]
    pub syscalls: bool,
    /// Rank the load generators instead of the servers: `ringport load`
    /// against a plain one-thread epoll client, in turn, loading the first
    /// server of `--servers`; the CPU figures are the clients' own.
    #[arg(long)]
    pub clients: bool,
    /// Which servers to run, in this order. `NAME:TRANSPORT` (tcp, udp or
    /// unix) runs that server, a process of its own, with every case moved
    /// over the transport: `ringport:unix,ringport` pairs Unix sockets
    /// against TCP loopback for one server.
    #[arg(long, value_delimiter = ',', default_value = "ringport,tokio")]
    pub servers: Vec<String>,
    /// Command for the ringport server instead of `ringport echo ...`
    /// (whitespace-separated; it must print `listening on ADDR`). As for
    /// every server command, `--udp` and `--unix PATH` are appended when a
    /// case needs them, and it must then print `listening on udp ADDR` /
    /// `listening on unix PATH` too.
    #[arg(long, hide = true)]
    pub ringport_cmd: Option<String>,
    /// Command for the tokio server instead of `ringport tokio-echo ...`.
    #[arg(long, hide = true)]
    pub tokio_cmd: Option<String>,
    /// Another server, NAME=COMMAND (repeatable; the command must print
    /// `listening on ADDR`): run it by listing NAME in `--servers`.
    #[arg(long = "server-cmd", hide = true)]
    pub server_cmds: Vec<String>,
    /// Directory for bench.json, bench.svg and the servers' logs.
    #[arg(long, default_value = "target/ringport-bench")]
    pub out: PathBuf,
}

/// The demo's cases: those that rank servers (many connections, large
/// messages, small pipelined messages, idle memory, connection churn).
/// Idle goes first, while the servers' heaps are fresh.
pub const DEMO: [&str; 5] = ["idle", "1000x512", "100x16k", "1000x64p4", "churn"];
/// `--full` adds the cases where both servers are bound by the kernel.
pub const FULL_EXTRA: [&str; 3] = ["1x64", "100x512", "100x64p16"];

pub(crate) struct Plan {
    cases: Vec<Case>,
    rounds: usize,
    duration: f64,
    warmup: f64,
    server_cpu: Option<usize>,
    load_cpu: Option<usize>,
}

fn plan(a: &Args) -> anyhow::Result<Plan> {
    let demo = a.cases.is_empty() && !a.full;
    let cases: Vec<String> = if !a.cases.is_empty() {
        a.cases.clone()
    } else if a.full {
        DEMO.iter()
            .chain(&FULL_EXTRA)
            .map(|c| c.to_string())
            .collect()
    } else {
        DEMO.map(String::from).to_vec()
    };
    let mut cases = Case::parse_all(&cases, a.pipeline)?;
    if a.clients {
        // The clients are ranked on echoes; the demo's other cases are not.
        if a.cases.is_empty() {
            cases.retain(|c| c.kind == Kind::Echo);
        }
        anyhow::ensure!(
            cases
                .iter()
                .all(|c| c.kind == Kind::Echo && c.transport == Transport::Tcp),
            "--clients ranks load generators on TCP echo cases (CONNSxSIZE[pN]) only"
        );
    }
    // The demo fits in about a minute: 4 loaded cases × 3 rounds × 2
    // servers × (0.3 s warm-up + 1 s window + connecting and settling).
    let rounds = a.rounds.unwrap_or(if a.full { 5 } else { 3 });
    let duration = a.duration.unwrap_or(if a.full {
        5.0
    } else if demo {
        1.0
    } else {
        2.0
    });
    let warmup = a.warmup.unwrap_or(if demo { 0.3 } else { 0.5 });
    anyhow::ensure!((1..=1000).contains(&rounds), "--rounds must be 1..=1000");
    anyhow::ensure!(
        duration > 0.0 && duration <= 3600.0,
        "--duration must be > 0 and at most an hour"
    );
    anyhow::ensure!(
        warmup.is_finite() && (0.0..=3600.0).contains(&warmup),
        "--warmup must be 0..=3600"
    );
    let cpus = crate::affinity::available();
    let (server_cpu, load_cpu) = if a.no_pin {
        (None, None)
    } else if cpus.len() < 2 && a.server_cpu.is_none() && a.load_cpu.is_none() {
        tracing::warn!("fewer than 2 CPUs available: not pinning server and load apart");
        (None, None)
    } else {
        (
            Some(a.server_cpu.unwrap_or(cpus[0])),
            Some(a.load_cpu.unwrap_or(cpus[1])),
        )
    };
    Ok(Plan {
        cases,
        rounds,
        duration,
        warmup,
        server_cpu,
        load_cpu,
    })
}

/// A `--servers` entry: the server's name and the transport it is pinned
/// to, if any (`ringport:unix`).
fn server_spec(entry: &str) -> anyhow::Result<(&str, Option<Transport>)> {
    match entry.split_once(':') {
        Some((name, t)) => Ok((name, Some(Transport::parse(t)?))),
        None => Ok((entry, None)),
    }
}

/// The extra listeners a server running `cases` (over `pinned`, if given)
/// needs, its Unix socket in `out`.
fn extras(cases: &[Case], pinned: Option<Transport>, entry: &str, out: &Path) -> Extra {
    let used = |t: Transport| cases.iter().any(|c| pinned.unwrap_or(c.transport) == t);
    let file: String = entry
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Extra {
        udp: used(Transport::Udp),
        unix: used(Transport::Unix).then(|| out.join(format!("{file}.sock"))),
    }
}

fn server_argv(a: &Args, name: &str, extra: &Extra) -> anyhow::Result<Vec<String>> {
    let mut argv = base_argv(a, name)?;
    if extra.udp {
        argv.push("--udp".into());
    }
    if let Some(p) = &extra.unix {
        argv.push("--unix".into());
        argv.push(p.to_string_lossy().into_owned());
    }
    Ok(argv)
}

fn base_argv(a: &Args, name: &str) -> anyhow::Result<Vec<String>> {
    let split = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let exe = std::env::current_exe()
        .context("locating this binary")?
        .to_string_lossy()
        .into_owned();
    let base = |sub: &str| {
        vec![
            exe.clone(),
            sub.into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--port".into(),
            "0".into(),
        ]
    };
    Ok(match name {
        "ringport" => match &a.ringport_cmd {
            Some(c) => split(c),
            None => {
                let mut v = base("echo");
                v.extend(["--workers".into(), a.workers.max(1).to_string()]);
                v
            }
        },
        "tokio" => match &a.tokio_cmd {
            Some(c) => split(c),
            None => {
                let mut v = base("tokio-echo");
                if !a.tokio_nagle {
                    v.push("--nodelay".into());
                }
                if let Some(n) = a.tokio_threads {
                    v.extend(["--threads".into(), n.to_string()]);
                }
                v
            }
        },
        other => match a
            .server_cmds
            .iter()
            .find_map(|c| c.strip_prefix(other)?.strip_prefix('='))
        {
            Some(c) => split(c),
            None => anyhow::bail!(
                "unknown server {other:?} (expected ringport, tokio or a --server-cmd NAME)"
            ),
        },
    })
}

/// Steal share of a window from which a round is flagged as noisy.
const STEAL_NOTE: f64 = 0.02;

/// Runs `ringport bench`.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let p = plan(&a)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let tick = server::clock_ticks();
    let demo = a.cases.is_empty() && !a.full && !a.clients;
    let perf = (a.syscalls || demo) && server::perf_works();
    if demo && !perf && !a.syscalls {
        eprintln!("(syscalls per message not counted: `perf stat -e raw_syscalls:sys_enter` does not work here)");
    }
    if a.syscalls && !perf {
        tracing::warn!(
            "--syscalls: `perf stat -e raw_syscalls:sys_enter` does not work here; skipping"
        );
    }

    let mut servers = Vec::new();
    let names = if a.clients {
        &a.servers[..a.servers.len().min(1)]
    } else {
        &a.servers[..]
    };
    for entry in names {
        let (name, pinned) = server_spec(entry)?;
        for case in &p.cases {
            case.over(pinned.unwrap_or(case.transport))
                .with_context(|| format!("server {entry} in case {}", case.label()))?;
        }
        let extra = extras(&p.cases, pinned, entry, &a.out);
        if let Some(path) = &extra.unix {
            // A socket left behind by a server that was killed.
            let _ = std::fs::remove_file(path);
        }
        let argv = server_argv(&a, name, &extra)?;
        let mut env = vec![("RUST_LOG".to_string(), a.server_log.clone())];
        if name == "ringport" {
            if let Some(b) = a.backend {
                env.push(("RINGPORT_BACKEND".to_string(), b.name().to_string()));
            }
        }
        let log = a
            .out
            .join(format!("server-{}.log", entry.replace(':', "-")));
        let mut s = Server::start(entry, &argv, &env, p.server_cpu, &log, &extra)?;
        s.transport = pinned;
        eprintln!("{entry}: {} (pid {}, {argv:?})", s.banner, s.pid());
        servers.push(s);
    }
    anyhow::ensure!(!servers.is_empty(), "no servers to run");

    // The rows of the table: the servers, or in `--clients` mode the two
    // load generators against the one server.
    let rows = if a.clients {
        clients::CLIENTS.len()
    } else {
        servers.len()
    };
    let total = p.cases.len() * p.rounds * rows;
    eprintln!(
        "{} cases × {} rounds × {} {} × {:.1} s (+{:.1} s warm-up); server CPU {}, load CPU {}",
        p.cases.len(),
        p.rounds,
        rows,
        if a.clients { "clients" } else { "servers" },
        p.duration,
        p.warmup,
        p.server_cpu.map_or("any".into(), |c| c.to_string()),
        p.load_cpu.map_or("any".into(), |c| c.to_string()),
    );
    let mut results = Vec::new();
    let mut n = 0;
    for case in &p.cases {
        let mut cr = if a.clients {
            CaseResult::named(*case, &clients::CLIENTS)
        } else {
            CaseResult::new(*case, &servers)
        };
        for round in 0..p.rounds {
            for row in 0..rows {
                n += 1;
                let s = &mut servers[if a.clients { 0 } else { row }];
                anyhow::ensure!(
                    s.alive(),
                    "the {} server died; see its log in {}",
                    s.name,
                    a.out.display()
                );
                let r = if a.clients {
                    clients::run_one(&a, &p, case, s, row, tick)?
                } else if case.kind == Kind::Idle {
                    idle::run_one(case, s, p.load_cpu, tick)?
                } else {
                    run_one(&a, &p, case, s, tick, perf)?
                };
                let figures = match r.rss_kib_per_conn {
                    Some(kib) => format!("{kib:>6.2} RSS KiB/conn"),
                    None => format!(
                        "{:>9.0} {}/s  p99 {:>8.0} µs  {:>6.2} {}",
                        r.msgs_per_s,
                        if case.kind == Kind::Churn {
                            "conns"
                        } else {
                            "msgs"
                        },
                        r.p99_us,
                        r.cpu_us_per_msg,
                        case.figure()
                    ),
                };
                eprintln!(
                    "[{n}/{total}] {} {:<13} round {}: {figures}{}{}{}",
                    case.label(),
                    cr.servers[row].server,
                    round + 1,
                    r.syscalls_per_msg
                        .map_or(String::new(), |v| format!("  {v:.2} syscalls/msg")),
                    r.lost.map_or(String::new(), |(lost, sent)| format!(
                        "  lost {lost} of {sent}"
                    )),
                    if r.steal_share >= STEAL_NOTE {
                        format!(
                            "  ({:.0}% stolen by the hypervisor: noisy)",
                            r.steal_share * 100.0
                        )
                    } else {
                        String::new()
                    },
                );
                cr.servers[row].rounds.push(r);
                // Let the server finish the closes before the next run.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        cr.finish();
        results.push(cr);
    }

    let res = Results {
        measured: if a.clients { "client" } else { "server" }.to_string(),
        machine: Machine::detect(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rounds: p.rounds,
        duration_s: p.duration,
        warmup_s: p.warmup,
        pipeline: a.pipeline,
        server_cpu: p.server_cpu,
        load_cpu: p.load_cpu,
        servers: servers
            .iter()
            .map(|s| report::ServerInfo {
                name: s.name.clone(),
                banner: s.banner.clone(),
            })
            .collect(),
        cases: results,
    };
    drop(servers);
    print!("{}", res.table());
    let json = a.out.join("bench.json");
    std::fs::write(&json, serde_json::to_string_pretty(&res)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let svg = a.out.join("bench.svg");
    chart::draw(&res, &svg).with_context(|| format!("drawing {}", svg.display()))?;
    println!("wrote {} and {}", json.display(), svg.display());
    Ok(ExitCode::SUCCESS)
}

fn run_one(
    a: &Args,
    p: &Plan,
    case: &Case,
    s: &Server,
    tick: u64,
    perf: bool,
) -> anyhow::Result<RoundResult> {
    let cfg = load_config(a, p, case, s, None)?;
    let pid = s.pid();
    let (load_cpu, server_cpu) = (p.load_cpu, p.server_cpu);
    let (report, samples, syscalls) = std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<_> {
                if let Some(cpu) = load_cpu {
                    crate::affinity::pin_current(cpu)?;
                }
                let mut samples = Vec::new();
                let mut counter = if perf {
                    Some(SyscallCount::start(pid, load_cpu)?)
                } else {
                    None
                };
                let mut failure = None;
                // Counting is enabled before the start's sample and
                // disabled after the end's, each once perf has said so.
                let report = load::run_load(&cfg, &mut |phase| {
                    let told = match (phase, counter.as_mut()) {
                        (Phase::WindowStart, Some(c)) => c.enable(),
                        _ => Ok(()),
                    };
                    samples.push((
                        server::cpu_ticks(pid),
                        server::ctx_switches(pid),
                        server::steal_ticks(server_cpu),
                    ));
                    let told = told.and_then(|()| match (phase, counter.as_mut()) {
                        (Phase::WindowEnd, Some(c)) => c.disable(),
                        _ => Ok(()),
                    });
                    if let Err(e) = told {
                        failure.get_or_insert(e);
                    }
                })?;
                if let Some(e) = failure {
                    return Err(e);
                }
                let syscalls = counter.map(SyscallCount::finish).transpose()?;
                Ok((report, samples, syscalls))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?
    })?;
    if let Some(m) = &report.mismatch {
        anyhow::bail!("ECHO MISMATCH from the {} server: {m}", s.name);
    }
    anyhow::ensure!(
        samples.len() == 2,
        "the {} run never reached its measured window ({} of {} connections up, {} errors)",
        s.name,
        report.connected,
        case.conns,
        report.errors
    );
    let (Some(window_s), Some(msgs_per_s)) = (report.window_s, report.msgs_per_s) else {
        anyhow::bail!(
            "the {} run {} ({})",
            s.name,
            report.stopped_early.as_deref().unwrap_or("gave no rates"),
            report.failures.join("; ")
        );
    };
    let latency = report.latency.unwrap_or_default();
    let (t0, c0, s0) = (
        samples[0].0.as_ref().map_err(clone_err)?,
        samples[0].1,
        samples[0].2,
    );
    let (t1, c1, s1) = (
        samples[1].0.as_ref().map_err(clone_err)?,
        samples[1].1,
        samples[1].2,
    );
    let cpu_s = t1.saturating_sub(*t0) as f64 / tick as f64;
    let msgs = report.msgs.max(1) as f64;
    Ok(RoundResult {
        msgs_per_s,
        p99_us: latency.p99_us,
        p50_us: latency.p50_us,
        max_us: latency.max_us,
        server_cpu_s: cpu_s,
        server_cpu_share: cpu_s / window_s.max(1e-9),
        cpu_us_per_msg: cpu_s * 1e6 / msgs,
        ctx_switches_per_msg: c1.saturating_sub(c0) as f64 / msgs,
        syscalls_per_msg: syscalls.map(|n| n as f64 / msgs),
        rss_kib_per_conn: None,
        msgs: report.msgs,
        errors: report.errors,
        window_s,
        steal_share: s1.saturating_sub(s0) as f64 / tick as f64 / window_s.max(1e-9),
        lost: report.dgram.as_ref().map(|d| (d.lost, d.sent)),
    })
}

/// Longest a bench run waits for a datagram's echo before counting it lost
/// (a lost datagram holds its window slot that long: short, so that loss in
/// a full socket buffer does not idle a flow for long; long against the
/// loaded machine's worst echo times of some tens of milliseconds).
const UDP_TIMEOUT: Duration = Duration::from_millis(250);

/// The load one bench run puts on `s` (`pipeline` overrides the case's),
/// over the transport `s` is pinned to or else the case's.
fn load_config(
    a: &Args,
    p: &Plan,
    case: &Case,
    s: &Server,
    pipeline: Option<usize>,
) -> anyhow::Result<load::Config> {
    let missing = |what: &str| {
        anyhow::anyhow!(
            "the {} server printed no `listening on {what}` line",
            s.name
        )
    };
    let target = match s.transport.unwrap_or(case.transport) {
        Transport::Tcp => load::Target::Tcp(s.addr),
        Transport::Udp => load::Target::Udp(s.udp.ok_or_else(|| missing("udp ADDR"))?),
        Transport::Unix => load::Target::Unix(s.unix.clone().ok_or_else(|| missing("unix PATH"))?),
    };
    Ok(load::Config {
        target,
        timeout: UDP_TIMEOUT,
        conns: case.conns,
        size: case.size,
        pipeline: pipeline.unwrap_or(case.pipeline),
        duration: Duration::from_secs_f64(p.duration),
        warmup: Duration::from_secs_f64(p.warmup),
        rate: None,
        mode: match case.kind {
            Kind::Churn => Mode::Churn,
            Kind::Echo | Kind::Idle => Mode::Echo,
        },
        seed: 0x5eed,
        backend: a.load_backend,
        pooled: true,
        progress: false,
    })
}

fn clone_err(e: &anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}
