//! Memory follows traffic, not connections: 10 000 idle connections must
//! cost the server less than 2 KiB each beyond its baseline (the seeds pin
//! an 8 KiB receive buffer per client). The server runs in this process;
//! the clients run in a child process (this binary, re-executed), so the
//! two sides' descriptors do not share one limit.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use ringport::BackendKind;

use common::*;

const CHILD_ENV: &str = "RINGPORT_MEMORY_CHILD";
const IDLE: usize = 10_000;
const WARMUP: usize = 200;
const BUDGET_BYTES: u64 = 2048;

/// The child: opens `N` connections to `ADDR`, says `ready`, holds them
/// until its input ends.
#[test]
fn memory_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // only runs as the child of `idle_connections_cost_little`
    };
    let (addr, n) = spec.split_once(' ').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = n.parse().unwrap();
    let conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    println!("\nready {}", conns.len());
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(conns);
}

/// Opens `n` idle connections from a child; returns the child once they
/// are all accepted.
fn clients(addr: SocketAddr, n: usize) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "memory_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{addr} {n}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("ready") {
            // Keep reading, so the child's harness can print its result.
            std::thread::spawn(move || lines.for_each(drop));
            return child;
        }
    }
    let status = child.wait().unwrap();
    panic!("the client process ended ({status}) before it was ready");
}

fn release(mut child: std::process::Child) {
    let _ = child.stdin.take().unwrap().write_all(b"done\n");
    assert!(child.wait().unwrap().success());
}

fn idle_connections_cost_little(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b.backlog(4096).start(Echo).unwrap();
    let addr = server.local_addr();
    // Warm up: the pool, the workers' stacks, the registry's first slots.
    let mut c = client(addr);
    for i in 0..50 {
        let msg = pattern(i, 8000);
        assert_eq!(round_trip(&mut c, &msg), msg);
    }
    let warm = clients(addr, WARMUP);
    wait_for("warm-up connections", || {
        server.stats().connections == WARMUP + 1
    });
    release(warm);
    wait_for("warm-up disconnects", || server.stats().connections == 1);

    let before = rss_kib();
    let idle = clients(addr, IDLE);
    wait_for("all idle connections accepted", || {
        server.stats().connections == IDLE + 1
    });
    let after = rss_kib();
    let per_conn = (after.saturating_sub(before) * 1024) / IDLE as u64;
    eprintln!(
        "{kind}: {IDLE} idle connections: RSS {before} KiB -> {after} KiB, \
         {per_conn} bytes per connection (budget {BUDGET_BYTES})"
    );
    // They are live: the server still echoes on the warm connection.
    assert_eq!(round_trip(&mut c, b"still"), b"still");
    release(idle);
    wait_for("idle disconnects", || server.stats().connections == 1);
    server.stop();
    assert!(
        per_conn < BUDGET_BYTES,
        "{per_conn} bytes per idle connection (budget {BUDGET_BYTES})"
    );
}

both_backends!(idle_connections_cost_little);
