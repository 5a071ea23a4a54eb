//! `ringport load --udp` and `--unix`, and the bench's `udp`/`unix` cases,
//! end to end on 127.0.0.1 (and a Unix socket in the temporary directory)
//! with short, bounded runs. The load's own port runs on each backend.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{output_within, ringport, socket_path, LIMIT};

both_backends!(
    load_udp_verifies_the_ringport_and_tokio_udp_echoes,
    load_udp_fails_on_a_corrupted_datagram,
    load_udp_fails_on_a_truncated_or_longer_datagram,
    load_udp_fails_on_an_echo_from_another_address,
    load_udp_counts_dropped_datagrams_as_lost,
    load_udp_counts_duplicate_echoes_as_late,
    load_udp_fails_when_a_flow_gets_nothing_back,
    load_udp_reports_a_flow_silent_for_less_than_three_timeouts_as_loss,
    load_unix_verifies_the_ringport_and_tokio_unix_echoes,
    load_unix_fails_on_a_corrupted_echo,
);

/// How long a load run may take in all (its window is at most 1 s).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What a test responder does with the `n`th datagram it receives
/// (counted from 0 over all senders): the reply, or `None` to drop it.
type Reply = fn(u64, &[u8]) -> Vec<Vec<u8>>;

/// A UDP responder on 127.0.0.1:0 answering from the same socket with
/// `reply`; `(address, datagrams received, datagrams dropped)`. It ends
/// after [`LIMIT`] without a datagram.
fn responder(reply: Reply) -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicU64>) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let addr = s.local_addr().unwrap();
    let (seen, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (seen2, dropped2) = (seen.clone(), dropped.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, from)) = s.recv_from(&mut buf) {
            let n = seen2.fetch_add(1, Ordering::Relaxed);
            let out = reply(n, &buf[..len]);
            if out.is_empty() {
                dropped2.fetch_add(1, Ordering::Relaxed);
            }
            for d in out {
                let _ = s.send_to(&d, from);
            }
        }
    });
    (addr, seen, dropped)
}

/// `ringport load --udp --addr ADDR --backend BACKEND EXTRA --json`.
fn load_udp(backend: &str, addr: SocketAddr, extra: &[&str]) -> Output {
    let mut cmd = ringport();
    cmd.args(["load", "--udp", "--addr", &addr.to_string()])
        .args(["--backend", backend, "--json"])
        .args(extra);
    output_within(cmd, RUN_LIMIT)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout {:?}, stderr {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A server process and its stdout lines; killed on drop.
struct Server {
    child: Child,
    /// Where its TCP echo listens (its first line).
    addr: SocketAddr,
    lines: Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The first stdout line after the first that starts with `prefix`
    /// (waiting at most [`LIMIT`] for it).
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line starting with {prefix:?}");
    }
}

/// `ringport SUB` (`echo` or `tokio-echo`) on 127.0.0.1 with `args`, its
/// first line read.
fn echo_server(sub: &str, args: &[&str]) -> Server {
    let mut child = ringport()
        .args([sub, "--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ringport");
    let out = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines.recv_timeout(LIMIT).expect("a first line");
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|a| a.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    Server { child, addr, lines }
}

/// The two servers the bench compares, as it starts them.
const SERVERS: [(&str, &[&str]); 2] = [("echo", &["--workers", "1"]), ("tokio-echo", &[])];

fn load_udp_verifies_the_ringport_and_tokio_udp_echoes(backend: &str) {
    for (sub, args) in SERVERS {
        load_udp_verifies(backend, echo_server(sub, &[args, &["--udp"]].concat()));
    }
}

fn load_udp_verifies(backend: &str, server: Server) {
    let line = server.line("listening on udp ");
    let addr: SocketAddr = line["listening on udp ".len()..].parse().unwrap();
    assert_eq!(addr, server.addr, "UDP on the TCP echo's port number");
    let flags = [
        "--conns",
        "8",
        "--size",
        "300",
        "--pipeline",
        "4",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ];
    let out = load_udp(backend, addr, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["transport"], "udp", "{v}");
    assert_eq!(
        (v["conns"].as_u64(), v["pipeline"].as_u64()),
        (Some(8), Some(4))
    );
    assert!(v["msgs"].as_u64().unwrap() > 0, "{v}");
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["latency"]["p99_us"].as_f64().unwrap() > 0.0, "{v}");
    let d = &v["dgram"];
    // Every datagram sent in the window was echoed or lost; on loopback,
    // with a window of 4 per flow, none is lost.
    assert!(
        d["sent"].as_u64().unwrap() >= v["msgs"].as_u64().unwrap(),
        "{v}"
    );
    assert_eq!(d["lost"], 0, "{v}");
    assert_eq!(v["failures"].as_array().unwrap().len(), 0, "{v}");

    // The text report: the TCP load's lines plus the datagrams lost.
    let mut cmd = ringport();
    cmd.args([
        "load",
        "--udp",
        "--addr",
        &addr.to_string(),
        "--backend",
        backend,
    ])
    .args(["--conns", "2", "--duration", "0.3", "--warmup", "0"]);
    let out = output_within(cmd, RUN_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("udp echo 2 flows × 512 B (window 1) to ")
            && text.contains(" msgs/s ")
            && text.contains("latency µs: p50 ")
            && text.contains("\n  lost 0 of "),
        "{text}"
    );
}

/// Flips bit 5 of byte 100 of the 50th datagram.
fn flip_one(n: u64, d: &[u8]) -> Vec<Vec<u8>> {
    let mut d = d.to_vec();
    if n == 49 {
        d[100] ^= 0x20;
    }
    vec![d]
}

fn load_udp_fails_on_a_corrupted_datagram(backend: &str) {
    let (addr, _, _) = responder(flip_one);
    let out = load_udp(
        backend,
        addr,
        &[
            "--conns",
            "2",
            "--size",
            "200",
            "--duration",
            "5",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("ECHO MISMATCH")
            && err.contains("came back corrupted (checksum mismatch): byte 100 of 200"),
        "{err}"
    );
    let v = json(&out);
    assert!(
        v["stopped_early"]
            .as_str()
            .unwrap()
            .ends_with("echo mismatch"),
        "{v}"
    );
}

/// Cuts the 30th datagram short by one byte, and makes the 30th of a
/// second kind of responder one byte longer.
fn truncate_one(n: u64, d: &[u8]) -> Vec<Vec<u8>> {
    let end = if n == 29 { d.len() - 1 } else { d.len() };
    vec![d[..end].to_vec()]
}

fn lengthen_one(n: u64, d: &[u8]) -> Vec<Vec<u8>> {
    let mut d = d.to_vec();
    if n == 29 {
        d.push(0);
    }
    vec![d]
}

fn load_udp_fails_on_a_truncated_or_longer_datagram(backend: &str) {
    for (reply, got) in [
        (truncate_one as Reply, "a 99 B datagram"),
        (lengthen_one, "a 101 B datagram"),
    ] {
        let (addr, _, _) = responder(reply);
        let out = load_udp(
            backend,
            addr,
            &[
                "--conns",
                "1",
                "--size",
                "100",
                "--duration",
                "5",
                "--warmup",
                "0",
            ],
        );
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{got} came back for 100 B sent (mis-sized)")),
            "{err}"
        );
    }
}

fn load_udp_fails_on_an_echo_from_another_address(backend: &str) {
    // Answers from a second socket: the load only takes echoes from the
    // address it sends to.
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let other = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let (addr, other_addr) = (s.local_addr().unwrap(), other.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = other.send_to(&buf[..n], from);
        }
    });
    let out = load_udp(
        backend,
        addr,
        &["--conns", "1", "--duration", "5", "--warmup", "0"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "a 512 B datagram from {other_addr}, not from the server {addr}"
        )),
        "{err}"
    );
}

/// Drops every 10th datagram.
fn drop_tenth(n: u64, d: &[u8]) -> Vec<Vec<u8>> {
    if n % 10 == 9 {
        Vec::new()
    } else {
        vec![d.to_vec()]
    }
}

fn load_udp_counts_dropped_datagrams_as_lost(backend: &str) {
    let (addr, seen, dropped) = responder(drop_tenth);
    // 8 outstanding per flow: a lost datagram holds its slot for the
    // timeout, the other slots go on.
    let (conns, window) = (4, 8);
    let out = load_udp(
        backend,
        addr,
        &[
            "--conns",
            "4",
            "--pipeline",
            "8",
            "--size",
            "64",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--timeout",
            "0.25",
        ],
    );
    // Loss is counted and reported, and is no failure.
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    let d = &v["dgram"];
    let (sent, lost) = (d["sent"].as_u64().unwrap(), d["lost"].as_u64().unwrap());
    let (seen, dropped) = (
        seen.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed),
    );
    assert!(sent > 100 && lost > 0, "{v}");
    assert!(
        lost <= dropped && seen >= sent,
        "{v}: {dropped} of {seen} dropped"
    );
    // A tenth of those sent in the window, give or take those the first
    // moment sent before it (the responder counts from the first one).
    assert!(
        (lost as i64 - sent as i64 / 10).abs() <= conns * window / 2,
        "{v}: {dropped} of {seen} dropped"
    );
    // No echo came after its datagram was counted lost, and none twice.
    assert_eq!(d["late"], 0, "{v}");
}

/// Echoes every datagram, and the 20th twice.
fn echo_twice(n: u64, d: &[u8]) -> Vec<Vec<u8>> {
    let times = if n == 19 { 2 } else { 1 };
    vec![d.to_vec(); times]
}

fn load_udp_counts_duplicate_echoes_as_late(backend: &str) {
    let (addr, _, _) = responder(echo_twice);
    let out = load_udp(
        backend,
        addr,
        &["--conns", "1", "--duration", "0.3", "--warmup", "0"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["dgram"]["late"], 1, "{v}");
    assert_eq!(v["dgram"]["lost"], 0, "{v}");
}

/// Echoes the datagrams of the first sender only.
fn first_sender_only(_: u64, d: &[u8]) -> Vec<Vec<u8>> {
    // Flow 0 is the first four bytes.
    if d[..4] == [0, 0, 0, 0] {
        vec![d.to_vec()]
    } else {
        Vec::new()
    }
}

fn load_udp_fails_when_a_flow_gets_nothing_back(backend: &str) {
    let (addr, _, _) = responder(first_sender_only);
    let out = load_udp(
        backend,
        addr,
        &[
            "--conns",
            "3",
            "--duration",
            "0.8",
            "--warmup",
            "0",
            "--timeout",
            "0.05",
        ],
    );
    // Each of the two flows it ignores sends a datagram every timeout, and
    // loses them all: at least three timeouts in a row make it a failure.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "ringport load: no echo came back on 2 of 3 flows of the datagrams they sent in the "
        ),
        "{err}"
    );
    let v = json(&out);
    assert!(v["msgs"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["no_echo"], 2, "{v}");
    assert!(v["dgram"]["lost"].as_u64().unwrap() >= 6, "{v}");
}

fn load_udp_reports_a_flow_silent_for_less_than_three_timeouts_as_loss(backend: &str) {
    // The same responder, but the window (0.3 s) is shorter than two
    // timeouts (0.2 s each): the ignored flow sends one or two datagrams in
    // it, too few to tell a peer ignored from bad luck in a full socket
    // buffer. They are lost, and the run passes.
    let (addr, _, _) = responder(first_sender_only);
    let out = load_udp(
        backend,
        addr,
        &[
            "--conns",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--timeout",
            "0.2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["no_echo"], 0, "{v}");
    let lost = v["dgram"]["lost"].as_u64().unwrap();
    assert!((1..=2).contains(&lost), "{v}");
    assert_eq!(v["failures"], serde_json::json!([]), "{v}");
}

/// `ringport load --unix PATH --backend BACKEND EXTRA --json`.
fn load_unix(backend: &str, path: &std::path::Path, extra: &[&str]) -> Output {
    let mut cmd: Command = ringport();
    cmd.arg("load")
        .arg("--unix")
        .arg(path)
        .args(["--backend", backend, "--json"])
        .args(extra);
    output_within(cmd, RUN_LIMIT)
}

fn load_unix_verifies_the_ringport_and_tokio_unix_echoes(backend: &str) {
    for (sub, args) in SERVERS {
        let path = socket_path("unix-echo");
        let unix = ["--unix", path.to_str().unwrap()];
        load_unix_verifies(backend, echo_server(sub, &[args, &unix].concat()), path);
    }
}

fn load_unix_verifies(backend: &str, server: Server, path: std::path::PathBuf) {
    let line = server.line("listening on unix ");
    assert_eq!(line, format!("listening on unix {}", path.display()));
    let flags = [
        "--conns",
        "6",
        "--size",
        "700",
        "--pipeline",
        "3",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ];
    let out = load_unix(backend, &path, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["transport"], "unix", "{v}");
    assert_eq!(v["addr"], path.to_str().unwrap(), "{v}");
    assert!(v["msgs"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v.get("dgram").is_none(), "{v}");
    // Churn works over Unix sockets too.
    let flags = [
        "--mode",
        "churn",
        "--conns",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    ];
    let out = load_unix(backend, &path, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json(&out)["msgs"].as_u64().unwrap() > 0);
    drop(server);
    let _ = std::fs::remove_file(path);
}

fn load_unix_fails_on_a_corrupted_echo(backend: &str) {
    let path = socket_path("unix-corrupt");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        // One connection: echoes, flipping one bit of its 10th byte.
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(LIMIT)).ok();
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if total <= 9 && total + n > 9 {
                buf[9 - total] ^= 0x20;
            }
            total += n;
            if s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let out = load_unix(
        backend,
        &path,
        &[
            "--conns",
            "1",
            "--size",
            "64",
            "--duration",
            "5",
            "--warmup",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MISMATCH: connection 0: byte 9 of a 64-byte message"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_file(path);
}

/// Flags a UDP load refuses.
#[test]
fn load_udp_refuses_what_datagrams_cannot_do() {
    for (flags, says) in [
        (&["--mode", "churn"][..], "no churn mode"),
        (
            &["--size", "23"][..],
            "--size must be 24..=65507 with --udp",
        ),
        (
            &["--size", "70000"][..],
            "--size must be 24..=65507 with --udp",
        ),
        (&["--rate", "100"][..], "--rate is not supported with --udp"),
        (&["--timeout", "0"][..], "--timeout must be"),
    ] {
        let mut cmd = ringport();
        cmd.args(["load", "--udp", "--addr", "127.0.0.1:9"])
            .args(flags);
        let out = output_within(cmd, RUN_LIMIT);
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
    }
    // --unix and --udp (or --addr) do not go together.
    let mut cmd = ringport();
    cmd.args(["load", "--udp", "--unix", "/tmp/x.sock"]);
    assert!(!output_within(cmd, RUN_LIMIT).status.success());
}

/// `ringport bench` with a UDP case and a Unix case: the servers are started
/// with `--udp` and `--unix PATH`, each case loads them there, and the
/// datagrams lost are in the results.
#[test]
fn bench_runs_udp_and_unix_cases() {
    let dir = std::env::temp_dir().join(format!("ringport-udpbench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = ringport();
    cmd.args(["bench", "--cases", "udp4x64p2,unix4x64", "--rounds", "2"])
        .args(["--duration", "0.3", "--warmup", "0.1", "--out"])
        .arg(&dir);
    let out = output_within(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bench.json")).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases[0]["case"]["transport"], "udp", "{v}");
    assert_eq!(cases[0]["label"], "udp 4 × 64 B, 2 in flight", "{v}");
    assert_eq!(cases[1]["case"]["transport"], "unix", "{v}");
    for c in cases {
        let servers = c["servers"].as_array().unwrap();
        assert_eq!(servers[0]["server"], "ringport");
        assert_eq!(servers[1]["server"], "tokio");
        for s in servers {
            assert!(s["median"]["msgs_per_s"].as_f64().unwrap() > 0.0, "{s}");
            for r in s["rounds"].as_array().unwrap() {
                // Only datagram runs count what was lost.
                assert_eq!(r["lost"].is_array(), c["case"]["transport"] == "udp", "{r}");
            }
        }
        assert_eq!(c["paired_ratio"]["n"], 2, "{c}");
    }
    assert!(
        stdout.contains("| udp 4 × 64 B, 2 in flight | server CPU µs/msg |")
            && stdout.contains("udp 4 × 64 B, 2 in flight ringport: ")
            && stdout.contains(" datagrams lost "),
        "{stdout}"
    );
    // The servers' Unix sockets are gone with them.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `NAME:TRANSPORT` pins a server's runs to a transport: one server over
/// Unix sockets against itself over TCP loopback, paired by round.
#[test]
fn bench_pairs_a_server_over_unix_with_itself_over_tcp() {
    let dir = std::env::temp_dir().join(format!("ringport-unixpair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = ringport();
    cmd.args(["bench", "--cases", "4x64", "--rounds", "2"])
        .args(["--servers", "ringport:unix,ringport"])
        .args(["--duration", "0.3", "--warmup", "0.1", "--out"])
        .arg(&dir);
    let out = output_within(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains("| 4 × 64 B | server CPU µs/msg |")
            && stdout.contains("ringport:unix/ringport"),
        "{stdout}"
    );
    // The pinned server was started with --unix, the other without.
    let err = stderr(&out);
    let started: Vec<&str> = err.lines().filter(|l| l.contains("(pid ")).collect();
    assert!(
        started.len() == 2 && started[0].contains("\"--unix\"") && !started[1].contains("--unix"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cases and servers that cannot go together are refused before any
/// server starts.
#[test]
fn bench_refuses_transports_a_case_cannot_use() {
    for (flags, says) in [
        (&["--cases", "udpchurn"][..], "udpchurn"),
        (&["--cases", "unixidle"][..], "unixidle"),
        (
            &["--cases", "udp10x16"][..],
            "a UDP datagram must be 24..=65507 B",
        ),
        (
            &["--cases", "idle10", "--servers", "ringport:udp"][..],
            "server ringport:udp in case idle 10",
        ),
        (
            &["--cases", "10x64", "--servers", "ringport:sctp"][..],
            "not a transport",
        ),
        (&["--cases", "udp10x64", "--clients"][..], "TCP echo cases"),
    ] {
        let mut cmd = ringport();
        cmd.arg("bench")
            .args(flags)
            .args(["--out", "/nonexistent/x"]);
        let out = output_within(cmd, RUN_LIMIT);
        assert!(!out.status.success(), "{flags:?}");
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
    }
}
