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

/// A `perf stat` counting a process's syscalls over exactly the measured
/// window.
///
/// The protocol: perf is started before the load, attached to the server
/// with its counter disabled (`-D -1`) and listening on a control FIFO
/// (`--control fifo:CTL,ACK`). At the window's start [`enable`] writes
/// `enable` and waits for perf's `ack`, so counting has really begun before
/// the first measured message; at its end [`disable`] does the same with
/// `disable`; [`finish`] then interrupts perf and reads the count it prints.
/// A perf that starts late (it shares the load generator's busy core) thus
/// delays the window instead of missing it.
///
/// [`enable`]: SyscallCount::enable
/// [`disable`]: SyscallCount::disable
/// [`finish`]: SyscallCount::finish
pub struct SyscallCount {
    /// perf, until [`SyscallCount::finish`] takes it.
    child: Option<Child>,
    ctl: File,
    ack: File,
    dir: PathBuf,
}

/// How long perf may take to acknowledge a command.
const ACK_LIMIT: Duration = Duration::from_secs(10);

impl SyscallCount {
    /// Starts perf attached to `pid` (pinned to `cpu`), counting nothing yet.
    pub fn start(pid: u32, cpu: Option<usize>) -> anyhow::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let dir = std::env::temp_dir().join(format!(
            "ringport-perf-{}-{pid}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ctl_path, ack_path) = (dir.join("ctl"), dir.join("ack"));
        let open = |path: &Path| -> anyhow::Result<File> {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                Mode::RUSR | Mode::WUSR,
                0,
            )
            .with_context(|| format!("mkfifo {}", path.display()))?;
            // Read-write, so that neither this open nor perf's blocks
            // waiting for the other end; non-blocking, so acks are polled
            // with a limit.
            let fd = rustix::fs::open(
                path,
                OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("opening {}", path.display()))?;
            Ok(File::from(fd))
        };
        let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
        let mut cmd = Command::new("perf");
        cmd.args([
            "stat",
            "-x",
            ",",
            "-e",
            "raw_syscalls:sys_enter",
            "-D",
            "-1",
        ])
        .arg(format!(
            "--control=fifo:{},{}",
            ctl_path.display(),
            ack_path.display()
        ))
        .arg("-p")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let child = affinity::spawn_pinned(cmd, cpu)?;
        Ok(SyscallCount {
            child: Some(child),
            ctl,
            ack,
            dir,
        })
    }

    /// Starts counting; returns once perf says it has.
    pub fn enable(&mut self) -> anyhow::Result<()> {
        self.command("enable")
    }

    /// Stops counting; returns once perf says it has.
    pub fn disable(&mut self) -> anyhow::Result<()> {
        self.command("disable")
    }

    fn command(&mut self, what: &str) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        self.ctl
            .write_all(format!("{what}\n").as_bytes())
            .with_context(|| format!("telling perf to {what}"))?;
        let deadline = std::time::Instant::now() + ACK_LIMIT;
        let mut got = Vec::new();
        // perf writes `ack\n` and a NUL.
        while !got.windows(4).any(|w| w == b"ack\n") {
            let child = self.child.as_mut().expect("perf runs until finish");
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("perf stat exited ({status}) before acknowledging `{what}`");
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "perf stat did not acknowledge `{what}` within {ACK_LIMIT:?}"
            );
            let mut fds = [rustix::event::PollFd::new(
                &self.ack,
                rustix::event::PollFlags::IN,
            )];
            // Short polls, so a perf that died is noticed.
            let step = left.min(Duration::from_millis(100));
            let timeout = rustix::event::Timespec::try_from(step).expect("a short timeout");
            rustix::event::poll(&mut fds, Some(&timeout)).context("polling perf's ack")?;
            let mut buf = [0u8; 64];
            match self.ack.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e).context("reading perf's ack"),
            }
        }
        Ok(())
    }

    /// Interrupts perf and returns the count it printed: the syscalls made
    /// while counting was enabled. perf prints `<not counted>` when the
    /// process never ran while enabled: that is 0.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        let child = self.child.take().expect("perf runs until finish");
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stderr);
        let line = text
            .lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .with_context(|| format!("perf stat printed no syscall count: {text}"))?;
        let value = line.split(',').next().unwrap_or("").trim();
        if value == "<not counted>" {
            return Ok(0);
        }
        value
            .parse()
            .with_context(|| format!("perf stat printed no syscall count: {text}"))
    }
}

impl Drop for SyscallCount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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

    /// A process killed when the test ends.
    struct Target(Child);

    impl Drop for Target {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn target(script: &str) -> Target {
        Target(
            Command::new("sh")
                .args(["-c", script])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// A server idle through the window made no syscalls in it: 0, not an
    /// error (perf prints `<not counted>` for it).
    #[test]
    fn an_idle_process_counts_zero_syscalls() {
        if !perf_works() {
            eprintln!("perf stat cannot count syscalls here; skipped");
            return;
        }
        let t = target("exec sleep 60");
        let mut c = SyscallCount::start(t.0.id(), None).unwrap();
        c.enable().unwrap();
        c.disable().unwrap();
        assert_eq!(c.finish().unwrap(), 0);
    }

    /// Only the enabled span is counted, however late perf starts: a busy
    /// process counted for no time at all (enabled and at once disabled,
    /// after a pause as long as a window) gets far fewer syscalls than the
    /// same process counted across the pause.
    #[test]
    fn only_the_enabled_span_is_counted() {
        if !perf_works() {
            eprintln!("perf stat cannot count syscalls here; skipped");
            return;
        }
        // `yes` writes to /dev/null as fast as it can: a syscall each time.
        let t = target("exec yes");
        let pause = Duration::from_millis(300);
        let mut across = SyscallCount::start(t.0.id(), None).unwrap();
        let mut none = SyscallCount::start(t.0.id(), None).unwrap();
        across.enable().unwrap();
        std::thread::sleep(pause);
        across.disable().unwrap();
        std::thread::sleep(pause);
        none.enable().unwrap();
        none.disable().unwrap();
        let (across, none) = (across.finish().unwrap(), none.finish().unwrap());
        assert!(across > 1000, "{across} syscalls in {pause:?} of `yes`");
        assert!(
            none * 10 < across,
            "{none} counted in no time, {across} across the pause"
        );
    }
}
