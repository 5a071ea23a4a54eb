//! `ringport echo` and `ringport log` run as real processes: the
//! `listening on` line, serving, logging, Ctrl-C/SIGTERM, final stats, exit
//! codes for a taken port and a bad address, `--help` and `--version`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

const LIMIT: Duration = Duration::from_secs(20);

fn ringport() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringport"))
}

/// A running server: the child, its address, its stdout and stderr lines.
struct Running {
    child: Child,
    addr: SocketAddr,
    lines: Receiver<String>,
    log: Receiver<String>,
    first: String,
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

fn start(args: &[&str], backend: Option<&str>) -> Running {
    let mut cmd = ringport();
    cmd.args(args)
        .args(["--bind", "127.0.0.1", "--port", "0", "--workers", "2"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(b) = backend {
        cmd.env("RINGPORT_BACKEND", b);
    }
    let mut child = cmd.spawn().expect("spawn ringport");
    let lines = lines_of(child.stdout.take().unwrap());
    let log = lines_of(child.stderr.take().unwrap());
    let first = lines.recv_timeout(LIMIT).expect("a first line");
    let rest = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let addr: SocketAddr = rest.split(' ').next().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0);
    Running {
        child,
        addr,
        lines,
        log,
        first,
    }
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

/// Sends `sig`, waits for the exit; returns (success, rest of stdout, stderr).
fn stop(mut r: Running, sig: Signal) -> (bool, Vec<String>, String) {
    let pid = Pid::from_child(&r.child);
    kill_process(pid, sig).unwrap();
    // The reader thread ends when the child closes stderr (it exits).
    let err: String = std::iter::from_fn(|| r.log.recv_timeout(LIMIT).ok())
        .map(|l| l + "\n")
        .collect();
    let status = r.child.wait().unwrap();
    let rest: Vec<String> = std::iter::from_fn(|| r.lines.recv_timeout(LIMIT).ok()).collect();
    (status.success(), rest, err)
}

fn echo_serves_and_stops_on(backend: &str, sig: Signal) {
    let r = start(&["echo"], Some(backend));
    assert!(
        r.first.ends_with(&format!(
            "(backend: {})",
            backend.replace("uring", "io_uring")
        )),
        "{}",
        r.first
    );
    let mut c = client(r.addr);
    let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let reader = {
        let mut c = c.try_clone().unwrap();
        let n = msg.len();
        std::thread::spawn(move || {
            let mut back = vec![0; n];
            c.read_exact(&mut back).unwrap();
            back
        })
    };
    c.write_all(&msg).unwrap();
    assert!(reader.join().unwrap() == msg, "echo differs");
    drop(c);
    // The server reports the first client gone before the stop, so its
    // reason is "closed by peer", not "server shutdown".
    let mut seen = String::new();
    while !seen.contains("closed by peer") {
        let line = r
            .log
            .recv_timeout(LIMIT)
            .expect("the first client's disconnect logged");
        seen.push_str(&line);
        seen.push('\n');
    }
    let mut c2 = client(r.addr);
    c2.write_all(b"x").unwrap();
    let mut one = [0; 1];
    c2.read_exact(&mut one).unwrap();
    let (ok, rest, err) = stop(r, sig);
    let err = seen + &err;
    assert!(ok, "clean exit; stderr: {err}");
    let stats = rest.iter().find(|l| l.starts_with("final stats:"));
    let stats = stats.unwrap_or_else(|| panic!("final stats printed: {rest:?}"));
    assert!(stats.contains("100001 in, 100001 out"), "{stats}");
    assert!(err.contains("connected"), "connects logged: {err}");
    assert!(
        err.contains("closed by peer"),
        "disconnect reason logged: {err}"
    );
    assert!(
        err.contains("server shutdown"),
        "shutdown reason logged: {err}"
    );
}

#[test]
fn echo_on_io_uring_stops_on_sigterm() {
    echo_serves_and_stops_on("uring", Signal::TERM);
}

#[test]
fn echo_on_epoll_stops_on_ctrl_c() {
    echo_serves_and_stops_on("epoll", Signal::INT);
}

#[test]
fn log_prints_each_message_with_peer_and_timestamp() {
    let r = start(&["log"], None);
    let mut c = client(r.addr);
    let me = c.local_addr().unwrap();
    c.write_all(b"hello\x01world\n").unwrap();
    let line = r.lines.recv_timeout(LIMIT).expect("a message line");
    let mut parts = line.splitn(3, ' ');
    let (ts, peer, msg) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert_eq!(peer, me.to_string());
    assert_eq!(msg, "hello\\x01world\\n");
    // A second message, after the first was shown, is a line of its own.
    c.write_all(b"second").unwrap();
    let line = r.lines.recv_timeout(LIMIT).unwrap();
    assert!(line.ends_with(&format!("{me} second")), "{line}");
    drop(c);
    let (ok, rest, err) = stop(r, Signal::INT);
    assert!(ok, "clean exit; stderr: {err}");
    assert!(
        rest.iter().any(|l| l.starts_with("final stats:")),
        "{rest:?}"
    );
}

#[test]
fn taken_port_and_bad_address_exit_with_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for cmd in ["echo", "log"] {
        let out = ringport()
            .args([cmd, "--bind", "127.0.0.1", "--port", &port])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: port taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in use"), "{cmd}: {err}");

        let out = ringport()
            .args([cmd, "--bind", "not-an-ip"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: bad address");

        // A well-formed address that is not this host's.
        let out = ringport()
            .args([cmd, "--bind", "192.0.2.1", "--port", "0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: foreign address");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("192.0.2.1"), "{cmd}: {err}");
    }
}

#[test]
fn help_and_version() {
    for cmd in ["echo", "log"] {
        let out = ringport().args([cmd, "--help"]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--bind") && text.contains("--port"), "{text}");
    }
    let out = ringport().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ringport "));
}
