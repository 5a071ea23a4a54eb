//! Running `ringport echo`/`log` with a stats socket or metrics endpoint,
//! and clients that drive a known load, for the `top` and `metrics` tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

/// The longest any wait in these tests takes.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Both backends: `uring::` and `epoll::` variants of each test.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test] fn $name() { super::$name("uring") })*
        }
        mod epoll {
            $(#[test] fn $name() { super::$name("epoll") })*
        }
    };
}

pub fn ringport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringport"))
}

/// A fresh path for a stats socket (not created).
pub fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "ringport-test-{}-{tag}-{n}.sock",
        std::process::id()
    ))
}

/// A running server process.
pub struct Running {
    pub child: Child,
    pub addr: SocketAddr,
    pub lines: Receiver<String>,
    pub log: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines_of(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts `ringport SUB --bind 127.0.0.1 --port 0 --backend BACKEND ARGS`
/// and waits for its `listening on` line.
pub fn start(sub: &str, backend: &str, args: &[&str]) -> Running {
    let mut child = ringport()
        .args([sub, "--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
        .args(["--backend", backend])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringport");
    let lines = lines_of(child.stdout.take().unwrap());
    let log = lines_of(child.stderr.take().unwrap());
    let first = lines.recv_timeout(LIMIT).expect("a first line");
    let rest = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let addr: SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
    Running {
        child,
        addr,
        lines,
        log,
    }
}

/// Sends SIGTERM and waits for a clean exit.
pub fn stop(mut r: Running) {
    kill_process(Pid::from_child(&r.child), Signal::TERM).unwrap();
    let status = r.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// The first stderr line containing `needle` (waiting for it).
pub fn log_line(r: &Running, needle: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match r.log.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?}");
}

/// `ringport top PATH --once --json`, parsed.
pub fn once(path: &Path) -> serde_json::Value {
    let out = ringport()
        .arg("top")
        .arg(path)
        .args(["--once", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "top --once: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Polls `f` until it returns `Some`, for at most [`LIMIT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client that sent `messages` messages of `size` bytes, one at a time,
/// each read back before the next.
pub fn echo_client(addr: SocketAddr, messages: usize, size: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0; size];
    for _ in 0..messages {
        s.write_all(&msg).unwrap();
        s.read_exact(&mut back).unwrap();
        assert!(back == msg, "echo differs");
    }
    s
}

/// Closes a client and waits for the server to close its side.
pub fn close_client(s: TcpStream) {
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let mut s = s;
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

/// Runs a command with a hard time limit.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
