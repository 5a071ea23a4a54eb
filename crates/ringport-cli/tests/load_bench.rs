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
            std::thread::spawn(move || echo_conn(stream, corrupt));
        }
    });
    addr
}

fn echo_conn(mut s: TcpStream, corrupt: bool) {
    // Bounded: a stuck connection ends on its own.
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut buf = [0u8; 8192];
    let mut total = 0usize;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if corrupt && total <= 9 && total + n > 9 {
            buf[9 - total] ^= 0x20;
        }
        total += n;
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
    }
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
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ringport-{tag}-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut args = vec!["bench"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[
        "--cases",
        "2x64",
        "--rounds",
        "1",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let out = ringport(&args, Duration::from_secs(60));
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
