//! `ringport load` and `ringport bench` end to end, on 127.0.0.1 with short,
//! bounded runs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const RINGPORT: &str = env!("CARGO_BIN_EXE_ringport");

/// A thread-per-connection echo server on 127.0.0.1:0. With `corrupt`, it
/// flips one bit of the 10th byte it echoes on each connection.
fn echo_server(corrupt: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || echo_conn(stream, corrupt.then_some(9)));
        }
    });
    addr
}

/// Echoes until the peer closes (see `echo`).
fn echo_conn(mut s: TcpStream, corrupt_at: Option<usize>) {
    echo(&mut s, corrupt_at, usize::MAX);
}

/// Echoes until `limit` bytes are echoed or the peer closes, flipping one
/// bit of byte `corrupt_at` (counted over the connection).
fn echo(s: &mut TcpStream, corrupt_at: Option<usize>, limit: usize) {
    // Bounded: a stuck connection ends on its own.
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut buf = [0u8; 8192];
    let mut total = 0usize;
    while total < limit {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n.min(limit - total),
        };
        if let Some(at) = corrupt_at.filter(|&at| total <= at && total + n > at) {
            buf[at - total] ^= 0x20;
        }
        total += n;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Reads and drops everything until the peer closes; never writes.
fn swallow(mut s: TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut buf = [0u8; 8192];
    // Bounded by the read timeout and by the peer closing at its exit.
    while let Ok(1..) = s.read(&mut buf) {}
}

/// A server on 127.0.0.1:0 that hands each of its first `max` connections
/// (numbered from 0) to `serve` on a thread of its own, then stops
/// listening.
fn server(max: usize, serve: fn(usize, TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().take(max).enumerate() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || serve(i, stream));
        }
    });
    addr
}

/// Runs the binary with a hard time limit.
fn ringport(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(RINGPORT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringport");
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "ringport {args:?} did not stop within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout {:?}, stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn load_echo_reports_json() {
    let addr = echo_server(false).to_string();
    let out = ringport(
        &[
            "load",
            "--addr",
            &addr,
            "--conns",
            "4",
            "--size",
            "300",
            "--pipeline",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.1",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["mode"], "echo");
    assert_eq!(v["conns"], 4);
    assert_eq!(v["errors"], 0);
    assert!(v["mismatch"].is_null());
    assert!(v["msgs"].as_u64().unwrap() > 0, "{v}");
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0);
    let window = v["window_s"].as_f64().unwrap();
    assert!((0.9..3.0).contains(&window), "window {window}");
    let lat = &v["latency"];
    assert!(lat["p50_us"].as_f64().unwrap() > 0.0);
    assert!(lat["p99_us"].as_f64().unwrap() >= lat["p50_us"].as_f64().unwrap());
    assert!(lat["max_us"].as_f64().unwrap() >= lat["p999_us"].as_f64().unwrap());
}

#[test]
fn load_churn_counts_connections() {
    let addr = echo_server(false).to_string();
    let out = ringport(
        &[
            "load",
            "--addr",
            &addr,
            "--mode",
            "churn",
            "--conns",
            "2",
            "--size",
            "64",
            "--duration",
            "0.5",
            "--warmup",
            "0",
            "--rate",
            "500",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["mode"], "churn");
    let msgs = v["msgs"].as_u64().unwrap();
    // The rate caps it at ~250 in 0.5 s.
    assert!(msgs > 0 && msgs < 400, "{v}");
}

#[test]
fn load_fails_loudly_on_a_corrupted_echo() {
    let addr = echo_server(true).to_string();
    let out = ringport(
        &[
            "load",
            "--addr",
            &addr,
            "--conns",
            "2",
            "--size",
            "64",
            "--duration",
            "5",
            "--warmup",
            "0",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MISMATCH") && err.contains("byte 9"),
        "stderr: {err}"
    );
}

#[test]
fn load_refuses_bad_flags() {
    let out = ringport(
        &[
            "load",
            "--addr",
            "127.0.0.1:1",
            "--conns",
            "0",
            "--duration",
            "1",
        ],
        Duration::from_secs(10),
    );
    assert!(!out.status.success());
}

/// Runs a short `ringport bench` with `extra` flags into a fresh directory;
/// returns its stdout, its bench.json and the directory.
fn short_bench(extra: &[&str], tag: &str) -> (String, serde_json::Value, PathBuf) {
    short_bench_of(&["--cases", "2x64", "--rounds", "1"], extra, tag)
}

/// `short_bench` with the cases and rounds in `cases` (none: the demo's).
fn short_bench_of(
    cases: &[&str],
    extra: &[&str],
    tag: &str,
) -> (String, serde_json::Value, PathBuf) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ringport-{tag}-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut args = vec!["bench"];
    args.extend_from_slice(cases);
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let out = ringport(&args, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bench.json")).expect("bench.json"))
            .expect("bench.json is JSON");
    (stdout, v, dir)
}

#[test]
fn bench_writes_json_and_svg() {
    let (stdout, v, dir) = short_bench(&[], "bench");
    assert!(stdout.contains("ringport/tokio"), "{stdout}");
    let case = &v["cases"][0];
    assert_eq!(case["case"]["conns"], 2);
    assert_eq!(case["servers"][0]["server"], "ringport");
    assert_eq!(case["servers"][1]["server"], "tokio");
    for s in case["servers"].as_array().unwrap() {
        let m = &s["median"];
        assert!(m["msgs_per_s"].as_f64().unwrap() > 0.0, "{s}");
        assert!(m["cpu_us_per_msg"].as_f64().unwrap() >= 0.0, "{s}");
    }
    let svg = std::fs::read_to_string(dir.join("bench.svg")).expect("bench.svg");
    assert!(
        svg.starts_with("<svg") && svg.contains("server CPU"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The case syntax: a pipelined echo case, connection churn and idle
/// connections, each measured and ranked by its own figure, with the
/// ringport/tokio ratios paired round by round.
#[test]
fn bench_runs_pipelined_churn_and_idle_cases() {
    let (stdout, v, dir) = short_bench_of(
        &["--cases", "20x64p4,churn4,idle50", "--rounds", "2"],
        // Counted where `perf stat` can; skipped (with a warning) elsewhere.
        &["--syscalls"],
        "cases",
    );
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3, "{v}");

    let echo = &cases[0];
    assert_eq!(echo["case"]["kind"], "echo");
    assert_eq!(echo["case"]["pipeline"], 4);
    assert_eq!(echo["figure"], "CPU µs/msg");
    assert_eq!(echo["label"], "20 × 64 B, 4 in flight");
    for s in echo["servers"].as_array().unwrap() {
        assert_eq!(s["rounds"].as_array().unwrap().len(), 2, "{s}");
        assert!(s["median"]["msgs_per_s"].as_f64().unwrap() > 0.0, "{s}");
    }
    assert_eq!(echo["paired_ratio"]["n"], 2, "{echo}");
    assert_eq!(echo["paired_p99_ratio"]["n"], 2, "{echo}");

    let churn = &cases[1];
    assert_eq!(churn["case"]["kind"], "churn");
    assert_eq!(churn["case"]["conns"], 4);
    assert_eq!(churn["figure"], "CPU µs/conn");
    for s in churn["servers"].as_array().unwrap() {
        // Connections completed (connect, echo, close) in the window.
        assert!(s["median"]["msgs_per_s"].as_f64().unwrap() > 0.0, "{s}");
    }

    let idle = &cases[2];
    assert_eq!(idle["case"]["kind"], "idle");
    assert_eq!(idle["case"]["conns"], 50);
    assert_eq!(idle["figure"], "RSS KiB/conn");
    for s in idle["servers"].as_array().unwrap() {
        for r in s["rounds"].as_array().unwrap() {
            assert_eq!(r["msgs"], 50, "{r}");
            assert!(r["rss_kib_per_conn"].as_f64().unwrap().is_finite(), "{r}");
        }
    }
    // The tokio server reads each connection into a buffer of its own
    // (8 KiB), touched by the echo: its memory grows with idle connections.
    let tokio = &idle["servers"][1];
    assert_eq!(tokio["server"], "tokio");
    assert!(
        tokio["median"]["rss_kib_per_conn"].as_f64().unwrap() > 0.5,
        "{tokio}"
    );
    assert!(idle["paired_p99_ratio"].is_null(), "{idle}");

    assert!(stdout.contains("RSS KiB/conn"), "{stdout}");
    assert!(
        stdout.contains("| churn 4 × 64 B | server CPU µs/conn |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| 20 × 64 B, 4 in flight | p99 µs |"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(dir.join("bench.svg")).expect("bench.svg");
    assert!(svg.contains("idle 50: server RSS KiB/conn"), "{svg}");
    assert!(svg.contains("ringport / tokio"), "{svg}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no cases given, the bench runs the demo: the cases that rank
/// servers.
#[test]
fn bench_demo_runs_the_ranking_cases() {
    let (stdout, v, dir) = short_bench_of(&["--rounds", "1"], &[], "demo");
    let labels: Vec<&str> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "idle 1000",
            "1000 × 512 B",
            "100 × 16 KiB",
            "1000 × 64 B, 4 in flight",
            "churn 100 × 64 B"
        ],
        "{stdout}"
    );
    for c in v["cases"].as_array().unwrap() {
        assert!(c["paired_ratio"]["median"].as_f64().is_some(), "{c}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A case that is none of the forms is refused before any server starts,
/// naming the case.
#[test]
fn bench_refuses_a_bad_case() {
    for bad in ["100x64p0", "fast", "idle0"] {
        let out = ringport(&["bench", "--cases", bad], Duration::from_secs(10));
        assert!(!out.status.success(), "{bad}: {out:?}");
        assert!(stderr(&out).contains(bad), "{bad}: {}", stderr(&out));
    }
}

/// `bench --clients`: the two load generators against one server, each
/// with its own CPU time measured.
#[test]
fn bench_ranks_the_load_generators() {
    let (stdout, v, dir) = short_bench(&["--clients", "--servers", "ringport"], "clients");
    assert!(stdout.contains("ringport load/epoll client"), "{stdout}");
    assert!(stdout.contains("client CPU µs/msg"), "{stdout}");
    assert_eq!(v["measured"], "client");
    let case = &v["cases"][0];
    assert_eq!(case["servers"][0]["server"], "ringport load");
    assert_eq!(case["servers"][1]["server"], "epoll client");
    for s in case["servers"].as_array().unwrap() {
        let m = &s["median"];
        assert!(m["msgs_per_s"].as_f64().unwrap() > 0.0, "{s}");
        // A client that echoed messages spent CPU time doing it.
        assert!(m["cpu_us_per_msg"].as_f64().unwrap() > 0.0, "{s}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A short `ringport load` run against `addr` with `extra` flags.
fn short_load(addr: SocketAddr, extra: &[&str]) -> Output {
    let addr = addr.to_string();
    let mut args = vec!["load", "--addr", &addr, "--size", "64"];
    args.extend_from_slice(extra);
    ringport(&args, Duration::from_secs(30))
}

/// A server that accepts and never answers: the load says no echo came
/// back, from how many connections, and fails (both modes).
#[test]
fn load_says_no_echo_came_back_from_a_silent_server() {
    let addr = server(3, |_, s| swallow(s));
    let out = short_load(
        addr,
        &["--conns", "3", "--duration", "0.5", "--warmup", "0"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("ringport load: no echo came back from 3 of 3 connections"),
        "stderr: {}",
        stderr(&out)
    );
    // No latency line for messages that never came back.
    assert!(!stdout(&out).contains("latency"), "{}", stdout(&out));

    // Churn starts its window before the connections are up.
    let addr = server(2, |_, s| swallow(s));
    let flags = ["--mode", "churn", "--conns", "2", "--duration", "0.5"];
    let out = short_load(addr, &[&flags[..], &["--warmup", "0", "--json"]].concat());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json(&out);
    assert_eq!(v["no_echo"], 2, "{v}");
    assert!(v["latency"].is_null(), "{v}");
    assert_eq!(
        v["failures"][0], "no echo came back from 2 of 2 connections in the 0.50 s window",
        "{v}"
    );
}

/// A server that answers one connection and ignores the others fails the
/// run, though messages were verified.
#[test]
fn load_names_the_connections_a_server_ignores() {
    let addr = server(4, |i, s| {
        if i == 0 {
            echo_conn(s, None);
        } else {
            swallow(s);
        }
    });
    let flags = ["--conns", "4", "--duration", "0.5", "--warmup", "0"];
    let out = short_load(addr, &[&flags[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json(&out);
    assert!(v["msgs"].as_u64().unwrap() > 0, "{v}");
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["no_echo"], 3, "{v}");
    assert!(
        stderr(&out).contains("ringport load: no echo came back from 3 of 4 connections"),
        "stderr: {}",
        stderr(&out)
    );
}

/// A mismatch 300 messages into the window: the window is as long as it
/// really was, and there are no rates (not msgs over a nanosecond).
#[test]
fn load_gives_no_rates_when_a_mismatch_cuts_the_window_short() {
    let addr = server(1, |_, s| echo_conn(s, Some(64 * 300)));
    let flags = ["--conns", "1", "--duration", "5", "--warmup", "0"];
    let out = short_load(addr, &[&flags[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v = json(&out);
    assert_eq!(v["msgs"], 300, "{v}");
    assert!(v["msgs_per_s"].is_null(), "{v}");
    assert!(v["mib_per_s"].is_null(), "{v}");
    let window = v["window_s"].as_f64().unwrap();
    assert!(window > 1e-6 && window < 5.0, "{v}");
    let why = v["stopped_early"].as_str().unwrap();
    assert!(
        why.contains("into the 5.00 s window: echo mismatch"),
        "{why}"
    );
    assert!(stderr(&out).contains("ECHO MISMATCH"), "{}", stderr(&out));

    let addr = server(1, |_, s| echo_conn(s, Some(64 * 300)));
    let out = short_load(addr, &flags);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("cut short") && text.contains("no rates: stopped") && !text.contains("/s"),
        "{text}"
    );
}

/// A mismatch in the warm-up: no window at all, and the report says so.
#[test]
fn load_reports_no_window_when_it_stops_in_the_warm_up() {
    let addr = server(1, |_, s| echo_conn(s, Some(9)));
    let flags = ["--conns", "1", "--duration", "1", "--warmup", "5", "--json"];
    let out = short_load(addr, &flags);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v = json(&out);
    assert!(v["window_s"].is_null(), "{v}");
    assert!(v["msgs_per_s"].is_null(), "{v}");
    assert_eq!(
        v["stopped_early"], "stopped during the warm-up, before the measured window: echo mismatch",
        "{v}"
    );
}

/// Nothing listens: the load says every connect was refused, in both
/// modes, and prints no window of 0.00 s.
#[test]
fn load_says_the_connections_were_refused() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().unwrap()
    }; // closed: connects to it are refused
    let out = short_load(addr, &["--conns", "3", "--duration", "0.5"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out)
            .contains("ringport load: 3 of 3 connections failed: 3 × connect: Connection refused"),
        "stderr: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("no measured window")
            && text.contains("stopped while connecting")
            && !text.contains("0.00 s"),
        "{text}"
    );

    let flags = ["--mode", "churn", "--conns", "2", "--duration", "0.3"];
    let out = short_load(addr, &[&flags[..], &["--warmup", "0"]].concat());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("connection attempts failed: ")
            && err.contains(" × connect: Connection refused"),
        "stderr: {err}"
    );
}

/// The server echoes 50 messages on each connection, then closes it: the
/// load says so, and gives no rates over the window it cut short.
#[test]
fn load_says_the_server_closed_the_connections() {
    let addr = server(2, |_, mut s| {
        echo(&mut s, None, 64 * 50);
        let _ = s.shutdown(std::net::Shutdown::Write);
        swallow(s);
    });
    let flags = ["--conns", "2", "--duration", "5", "--warmup", "0", "--json"];
    let out = short_load(addr, &flags);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json(&out);
    assert_eq!(v["errors"], 2, "{v}");
    assert_eq!(
        v["failures"][0], "2 of 2 connections failed: 2 × the server closed the connection",
        "{v}"
    );
    assert!(v["msgs_per_s"].is_null(), "{v}");
    let why = v["stopped_early"].as_str().unwrap();
    assert!(why.ends_with("s window: every connection failed"), "{why}");
    assert!(v["window_s"].as_f64().unwrap() < 5.0, "{v}");
}

/// The server echoes 20 messages on each connection, then reads on but
/// never answers again (the connections stay open): the load says the
/// echoes stopped, though it verified messages.
#[test]
fn load_says_when_the_echoes_stop() {
    let addr = server(2, |_, mut s| {
        echo(&mut s, None, 64 * 20);
        swallow(s);
    });
    let flags = [
        "--conns",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--json",
    ];
    let out = short_load(addr, &flags);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v = json(&out);
    assert_eq!(v["msgs"], 40, "{v}");
    assert_eq!(v["stalled"], 2, "{v}");
    let f = v["failures"][0].as_str().unwrap();
    assert!(
        f.starts_with("echoes stopped coming back on 2 of 2 connections"),
        "{f}"
    );
}
