//! The servers under test: spawned pinned, their address read from their
//! first stdout line (and the extra listeners' from the lines after it:
//! `listening on udp ADDR`, `listening on unix PATH`), their CPU time read
//! from `/proc`, killed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use super::case::Transport;
use crate::affinity;

/// How long a server may take to print its address.
const START_LIMIT: Duration = Duration::from_secs(10);

/// A running server process.
pub struct Server {
    /// Short name for tables (`ringport`, `tokio`).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its first stdout line, as printed.
    pub banner: String,
    /// Where it serves UDP, if started with `--udp`.
    pub udp: Option<SocketAddr>,
    /// Its Unix stream socket, if started with `--unix PATH`.
    pub unix: Option<PathBuf>,
    /// The transport its runs use whatever the case says (a server listed
    /// as `NAME:TRANSPORT`).
    pub transport: Option<Transport>,
    child: Child,
}

/// The extra listeners a server is asked for, whose lines it must print.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// `--udp`: wait for `listening on udp ADDR`.
    pub udp: bool,
    /// `--unix PATH`: wait for `listening on unix PATH`.
    pub unix: Option<PathBuf>,
}

impl Server {
    /// Spawns `argv` pinned to `cpu`, with `env` added, stderr to `log`, and
    /// waits for its `listening on ADDR` line, then for the lines of the
    /// `extra` listeners.
    pub fn start(
        name: &str,
        argv: &[String],
        env: &[(String, String)],
        cpu: Option<usize>,
        log: &Path,
        extra: &Extra,
    ) -> anyhow::Result<Server> {
        let (prog, args) = argv.split_first().context("empty server command")?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log).with_context(|| format!("creating {}", log.display()))?);
        let mut child = affinity::spawn_pinned(cmd, cpu)?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        // Hands on every line (the receiver stops listening after the
        // listeners' lines), draining so the server never blocks on a full
        // pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let _ = tx.send(Some(line));
            }
            let _ = tx.send(None);
        });
        let mut server = Server {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            banner: String::new(),
            udp: None,
            unix: None,
            transport: None,
            child,
        };
        let first = match rx.recv_timeout(START_LIMIT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => anyhow::bail!(
                "{name} server ({argv:?}) exited or closed stdout before printing its address; \
                 see {}",
                log.display()
            ),
            Err(_) => {
                anyhow::bail!("{name} server did not print its address within {START_LIMIT:?}")
            }
        };
        server.addr = parse_banner(&first)
            .with_context(|| format!("{name} server printed {first:?}, not `listening on ADDR`"))?;
        server.banner = first;
        let deadline = std::time::Instant::now() + START_LIMIT;
        while (extra.udp && server.udp.is_none()) || (extra.unix.is_some() && server.unix.is_none())
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(Some(Ok(line))) => line,
                Ok(_) => anyhow::bail!(
                    "{name} server closed stdout before printing its extra listeners \
                     (`listening on udp ADDR` / `listening on unix PATH`); see {}",
                    log.display()
                ),
                Err(_) => anyhow::bail!(
                    "{name} server did not print `listening on udp ADDR` / `listening on unix \
                     PATH` within {START_LIMIT:?}"
                ),
            };
            match parse_extra(&line) {
                Some(Listener::Udp(a)) => server.udp = Some(a),
                Some(Listener::Unix(p)) => server.unix = Some(p),
                None => {}
            }
        }
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Killed, it could not remove its socket.
        if let Some(p) = &self.unix {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// An extra listener's line.
#[derive(Debug, PartialEq)]
enum Listener {
    Udp(SocketAddr),
    Unix(PathBuf),
}

/// `listening on udp ADDR` or `listening on unix PATH`.
fn parse_extra(line: &str) -> Option<Listener> {
    let rest = line.trim().strip_prefix("listening on ")?;
    if let Some(a) = rest.strip_prefix("udp ") {
        return a.split_whitespace().next()?.parse().ok().map(Listener::Udp);
    }
    let path = rest.strip_prefix("unix ")?.trim();
    (!path.is_empty()).then(|| Listener::Unix(PathBuf::from(path)))
}

/// `listening on 127.0.0.1:PORT` with anything after the address.
fn parse_banner(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix("listening on ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: fields are
    // counted from after the last ')'. utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        // `after` starts at field 3 (state).
        Ok(f.get(n - 3).context("short /proc stat")?.parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// Ticks stolen from `cpu` (all CPUs if `None`) by the hypervisor so far:
/// the `steal` column of `/proc/stat`; 0 where it cannot be read.
pub fn steal_ticks(cpu: Option<usize>) -> u64 {
    let name = cpu.map_or_else(|| "cpu".to_string(), |c| format!("cpu{c}"));
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Context switches summed over the threads of a process.
pub fn ctx_switches(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    let mut total = 0;
    for t in dir.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
            for line in s.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    total += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
    }
    total
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that cannot run).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// A `perf stat` counting a process's syscalls for a fixed time.
pub struct SyscallCount {
    child: Child,
}

impl SyscallCount {
    /// Starts counting `raw_syscalls:sys_enter` of `pid` for `secs`.
    pub fn start(pid: u32, secs: f64, cpu: Option<usize>) -> anyhow::Result<Self> {
        let mut cmd = Command::new("perf");
        cmd.args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p"])
            .arg(pid.to_string())
            .args(["--", "sleep"])
            .arg(format!("{secs:.3}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Ok(SyscallCount {
            child: affinity::spawn_pinned(cmd, cpu)?,
        })
    }

    /// Waits for perf to finish and returns the count.
    pub fn finish(self) -> anyhow::Result<u64> {
        let out = self.child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next())
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("perf stat printed no syscall count: {text}"))
    }
}

/// Whether `perf stat` can count syscalls here.
pub fn perf_works() -> bool {
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        assert_eq!(
            parse_banner("listening on 127.0.0.1:5150 (backend: io_uring)"),
            Some("127.0.0.1:5150".parse().unwrap())
        );
        assert_eq!(
            parse_banner("listening on 127.0.0.1:1"),
            Some("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(parse_banner("hello"), None);
        assert_eq!(
            parse_extra("listening on udp 127.0.0.1:5150"),
            Some(Listener::Udp("127.0.0.1:5150".parse().unwrap()))
        );
        assert_eq!(
            parse_extra("listening on unix /tmp/e.sock"),
            Some(Listener::Unix("/tmp/e.sock".into()))
        );
        assert_eq!(parse_extra("listening on 127.0.0.1:1"), None);
        assert_eq!(parse_extra("listening on unix "), None);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_ticks(std::process::id()).is_ok());
    }
}
