//! Memory follows traffic, not connections, and goes back after it:
//!
//! * 10 000 idle connections must cost the server less than 2 KiB each
//!   beyond its baseline (the seeds pin an 8 KiB receive buffer per client);
//! * clients that push data and never read cost the server about their
//!   send-queue limit plus one receive buffer each, while a well-behaved
//!   client is still answered quickly;
//! * after a heavy load, the idle server's resident memory comes back to
//!   within 32 MiB of what it was before.
//!
//! The server runs in this process; the clients run in a child process
//! (this binary, re-executed), so the two sides' descriptors and memory are
//! counted apart.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let (child, lines) = spawn_child("memory_child", CHILD_ENV, format!("{addr} {n}"));
    expect_line(&lines, "ready");
    child
}

/// Runs this test binary's test `name` in a child process with `env` set to
/// `spec`; its stdout lines come through the receiver.
fn spawn_child(name: &str, env: &str, spec: String) -> (std::process::Child, Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = channel();
    // Keeps reading to the end, so the child's harness can print its result.
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits (at most `LIMIT`) for a line of the child starting with `what`.
fn expect_line(lines: &Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with(what) => return line,
            Ok(_) => continue,
            Err(e) => panic!("the client process said no {what:?} line: {e}"),
        }
    }
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

const ABUSER_ENV: &str = "RINGPORT_MEMORY_ABUSERS";
/// Clients that push data and never read (scaled to a 2-core machine).
const ABUSERS: usize = 50;
/// The server's send-queue limit in that test.
const ABUSE_LIMIT: usize = 256 << 10;
/// The server's receive buffer size in the memory tests (the default).
const RECV_BUF: usize = 32 << 10;
/// Each abusive client pushes at most this much...
const PUSH_CAP: usize = 64 << 20;
/// ...and stops once a write has made no progress for this long: the
/// server stopped reading it.
const STALL: Duration = Duration::from_millis(300);
/// What one abusive connection may add to the server's resident memory
/// beyond its limit and one receive buffer: the allocator's own overhead.
const ABUSE_SLACK: usize = 64 << 10;
/// A well-behaved client's echo while the others push.
const GOOD_P99: Duration = Duration::from_millis(20);

/// The child of `abusive_clients_cost_their_limit`: opens `N` connections
/// to `ADDR` that never read, says `ready`; on a line from the parent
/// pushes data on all of them until the server stops reading every one,
/// says `stalled BYTES QUIET_MS` (how long ago the last write went
/// through), and holds them until its input ends.
#[test]
fn abusers_child() {
    let Ok(spec) = std::env::var(ABUSER_ENV) else {
        return; // only runs as the child of `abusive_clients_cost_their_limit`
    };
    let (addr, n) = spec.split_once(' ').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = n.parse().unwrap();
    let conns: Vec<TcpStream> = (0..n).map(|_| non_reading_client(addr)).collect();
    println!("\nready");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let pushers: Vec<_> = conns
        .iter()
        .map(|c| {
            let c = c.try_clone().unwrap();
            std::thread::spawn(move || push_until_stalled(c))
        })
        .collect();
    let (mut total, mut last) = (0, None);
    for p in pushers {
        let (bytes, at) = p.join().unwrap();
        total += bytes;
        last = last.max(at);
    }
    let quiet = last.map_or(Duration::ZERO, |t: Instant| t.elapsed());
    println!("stalled {total} {}", quiet.as_millis());
    line.clear();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(conns);
}

/// Writes until the peer stops reading (or `PUSH_CAP`); returns the bytes
/// and when the last write went through.
fn push_until_stalled(mut c: TcpStream) -> (usize, Option<Instant>) {
    c.set_write_timeout(Some(STALL)).unwrap();
    let data = pattern(1, 64 << 10);
    let (mut written, mut last) = (0, None);
    while written < PUSH_CAP {
        match c.write(&data) {
            Ok(n) => (written, last) = (written + n, Some(Instant::now())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("push failed: {e}"),
        }
    }
    (written, last)
}

/// The most any connection holds now, and the sum.
fn held(server: &ringport_server::Server) -> (usize, usize) {
    let (mut most, mut sum) = (0, 0);
    server.connections().for_each(|c| {
        let h = c.held();
        most = most.max(h);
        sum += h;
    });
    (most, sum)
}

/// The 99th percentile of `lat` (sorted in place).
fn p99(lat: &mut [Duration]) -> Duration {
    lat.sort_unstable();
    lat.get(lat.len() * 99 / 100).copied().unwrap_or_default()
}

fn abusive_clients_cost_their_limit(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b
        .send_queue_limit(ABUSE_LIMIT)
        .recv_buffer_size(RECV_BUF)
        .start(Echo)
        .unwrap();
    let addr = server.local_addr();
    // Warm up: the pool, the workers, every page of the kernel's buffer
    // ring (io_uring) — fixed costs, not per connection.
    let mut good = client(addr);
    good.set_nodelay(true).unwrap();
    let msg = pattern(9, 64 << 10);
    for _ in 0..256 {
        assert_eq!(round_trip(&mut good, &msg), msg);
    }
    let spec = format!("{addr} {ABUSERS}");
    let (mut child, lines) = spawn_child("abusers_child", ABUSER_ENV, spec);
    expect_line(&lines, "ready");
    wait_for("abusive connections accepted", || {
        server.stats().connections == ABUSERS + 1
    });
    let before = rss_kib();

    // The well-behaved client echoes small messages while the others push.
    let stop = Arc::new(AtomicBool::new(false));
    let echoes = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let ping = b"ping from a good client";
            let mut lat = Vec::new();
            let deadline = Instant::now() + LIMIT;
            while !stop.load(Ordering::Relaxed)
                && lat.len() < 1_000_000
                && Instant::now() < deadline
            {
                let t = Instant::now();
                assert_eq!(round_trip(&mut good, ping), ping);
                lat.push((t, t.elapsed()));
            }
            lat
        })
    };
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let start = Instant::now();
    let (mut peak_rss, mut most_held, mut peak_sum) = (before, 0, 0);
    let deadline = start + LIMIT;
    let (pushed, push_end) = loop {
        let (most, sum) = held(&server);
        (most_held, peak_sum) = (most_held.max(most), peak_sum.max(sum));
        peak_rss = peak_rss.max(rss_kib());
        match lines.recv_timeout(Duration::from_millis(5)) {
            Ok(line) if line.starts_with("stalled") => {
                let mut words = line.split(' ').skip(1);
                let pushed: usize = words.next().unwrap().parse().unwrap();
                let quiet: u64 = words.next().unwrap().parse().unwrap();
                break (pushed, Instant::now() - Duration::from_millis(quiet));
            }
            Ok(_) => {}
            Err(_) => assert!(Instant::now() < deadline, "the clients never stalled"),
        }
    };
    // Every abusive client is held up now: what the server holds is final.
    let (most, sum) = held(&server);
    (most_held, peak_sum) = (most_held.max(most), peak_sum.max(sum));
    peak_rss = peak_rss.max(rss_kib());
    stop.store(true, Ordering::Relaxed);
    // The good client's echoes sent while the others were pushing.
    let mut lat: Vec<Duration> = (echoes.join().unwrap().into_iter())
        .filter(|(t, _)| *t <= push_end)
        .map(|(_, l)| l)
        .collect();
    let good_p99 = p99(&mut lat);
    let pauses = server.stats().read_pauses;
    release(child);
    wait_for("abusive disconnects", || server.stats().connections == 0);
    server.stop();

    let per_conn = (peak_rss.saturating_sub(before) as usize * 1024) / ABUSERS;
    eprintln!(
        "{kind}: {ABUSERS} clients pushed {} MiB without reading for {:?}, limit {} KiB: \
         RSS {before} -> {peak_rss} KiB, {} KiB per connection; held: most {} KiB, \
         sum {} KiB; {pauses} read pauses; good client meanwhile: {} echoes, p99 {:?}, \
         max {:?}",
        pushed >> 20,
        push_end.saturating_duration_since(start),
        ABUSE_LIMIT / 1024,
        per_conn / 1024,
        most_held / 1024,
        peak_sum / 1024,
        lat.len(),
        good_p99,
        lat.last().copied().unwrap_or_default(),
    );
    assert!(
        most_held <= ABUSE_LIMIT + 2 * RECV_BUF,
        "a connection held {most_held} bytes (limit {ABUSE_LIMIT}, receive buffer {RECV_BUF})"
    );
    assert!(
        per_conn <= ABUSE_LIMIT + RECV_BUF + ABUSE_SLACK,
        "each abusive connection cost {per_conn} bytes of resident memory \
         (limit {ABUSE_LIMIT} + receive buffer {RECV_BUF} + slack {ABUSE_SLACK})"
    );
    assert!(
        lat.len() >= 20,
        "only {} echoes for the good client",
        lat.len()
    );
    assert!(
        good_p99 < GOOD_P99,
        "the good client's echo p99 was {good_p99:?} while the others pushed"
    );
}

const LOAD_ENV: &str = "RINGPORT_MEMORY_LOAD";
/// The load: connections, message size, messages per connection, runs.
const LOAD_CONNS: usize = 50;
const LOAD_MSG: usize = 4 << 20;
const LOAD_MSGS: usize = 2;
const LOAD_RUNS: usize = 3;
/// Each connection may hold this much, so the load needs a lot of memory.
const LOAD_LIMIT: usize = 4 << 20;
/// How far above its RSS before the load an idle server may stay after it.
const AFTER_LOAD_SLACK_KIB: u64 = 32 * 1024;

/// The child of `memory_goes_back_after_load`: `CONNS` connections to
/// `ADDR`, each writing `MSGS` messages of `SIZE` bytes back to back while
/// it reads and checks their echo; says `done` when all are echoed.
#[test]
fn load_child() {
    let Ok(spec) = std::env::var(LOAD_ENV) else {
        return; // only runs as the child of `memory_goes_back_after_load`
    };
    let mut parts = spec.split(' ');
    let addr: SocketAddr = parts.next().unwrap().parse().unwrap();
    let conns: usize = parts.next().unwrap().parse().unwrap();
    let size: usize = parts.next().unwrap().parse().unwrap();
    let msgs: usize = parts.next().unwrap().parse().unwrap();
    let workers: Vec<_> = (0..conns)
        .map(|i| {
            std::thread::spawn(move || {
                let c = client(addr);
                let msg = pattern(i as u64, size);
                let mut w = c.try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    for _ in 0..msgs {
                        w.write_all(&msg).unwrap();
                    }
                    msg
                });
                let mut r = c;
                let mut back = vec![0; size];
                let mut got = Vec::with_capacity(msgs);
                for _ in 0..msgs {
                    r.read_exact(&mut back).unwrap();
                    got.push(back.clone());
                }
                let msg = writer.join().unwrap();
                assert!(got.iter().all(|b| *b == msg), "echo differs");
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    println!("\ndone");
}

fn memory_goes_back_after_load(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b
        .recv_buffer_size(RECV_BUF)
        .send_queue_limit(LOAD_LIMIT)
        .start(Echo)
        .unwrap();
    let addr = server.local_addr();
    let mut c = client(addr);
    for i in 0..20 {
        let msg = pattern(i, 8000);
        assert_eq!(round_trip(&mut c, &msg), msg);
    }
    drop(c);
    wait_for("warm-up disconnect", || server.stats().connections == 0);
    let before = rss_kib();
    let mut peak = before;
    for _ in 0..LOAD_RUNS {
        let spec = format!("{addr} {LOAD_CONNS} {LOAD_MSG} {LOAD_MSGS}");
        let (mut child, lines) = spawn_child("load_child", LOAD_ENV, spec);
        let deadline = Instant::now() + LIMIT;
        loop {
            peak = peak.max(rss_kib());
            match lines.recv_timeout(Duration::from_millis(5)) {
                Ok(line) if line.starts_with("done") => break,
                Ok(_) => {}
                Err(_) => assert!(Instant::now() < deadline, "the load did not finish"),
            }
        }
        assert!(child.wait().unwrap().success());
        wait_for("load disconnects", || server.stats().connections == 0);
    }
    // Idle now: what the load made the server allocate must go back (the
    // port gives it back once it has been idle for a moment).
    let deadline = Instant::now() + LIMIT;
    let mut after = rss_kib();
    while after > before + AFTER_LOAD_SLACK_KIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        after = rss_kib();
    }
    eprintln!(
        "{kind}: {LOAD_RUNS} x {LOAD_CONNS} connections x {LOAD_MSGS} x {} MiB echoed: \
         RSS {before} KiB before, peak {peak} KiB, {after} KiB idle after",
        LOAD_MSG >> 20
    );
    server.stop();
    assert!(
        after <= before + AFTER_LOAD_SLACK_KIB,
        "idle after the load, RSS is {after} KiB against {before} KiB before"
    );
}

both_backends!(
    idle_connections_cost_little,
    abusive_clients_cost_their_limit,
    memory_goes_back_after_load,
);
