//! Stress through the server framework, on each backend:
//!
//! * 8 workers serving 200 connections that each pipeline random-sized
//!   messages (1 B – 64 KiB) and check every echoed byte;
//! * half-close: clients send 10 MiB, shut down their writing side, and
//!   still receive the whole echo, byte for byte, then end of stream.
//!
//! Every socket operation is bounded by `LIMIT`, and descriptors are counted
//! before the server starts and after it stopped.

mod common;

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use ringport::BackendKind;

use common::*;

both_backends!(
    eight_workers_echo_200_pipelined_connections,
    half_close_after_10_mib_still_gets_the_whole_echo_then_eof,
);

const CONNECTIONS: usize = 200;
const MESSAGES: usize = 16;
const MAX_MESSAGE: usize = 64 * 1024;
/// Bytes a client has written and not yet read back, at most: well under
/// the server's send-queue limit (1 MiB), so flow control never pauses a
/// connection whose client is blocked writing.
const WINDOW: usize = 256 * 1024;
/// The whole test, however slow the machine: a hang fails before this.
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// A small xorshift, seeded per connection.
fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// One client: writes `MESSAGES` random-sized messages, up to `WINDOW`
/// bytes ahead of what came back, and checks the echo byte for byte.
/// Returns the bytes echoed.
fn pipelined_client(addr: SocketAddr, i: u64) -> usize {
    let mut s = client(addr);
    let mut rng = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    // Messages written and not yet read back in full, and how much of the
    // front one has come back.
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut front_read = 0;
    let (mut written, mut read, mut next) = (0usize, 0usize, 0usize);
    let mut buf = vec![0u8; 64 * 1024];
    while next < MESSAGES || !pending.is_empty() {
        let len = 1 + (next_rand(&mut rng) % MAX_MESSAGE as u64) as usize;
        if next < MESSAGES && written - read + len <= WINDOW {
            let msg = pattern(i * 1000 + next as u64, len);
            s.write_all(&msg)
                .unwrap_or_else(|e| panic!("client {i}: write: {e}"));
            written += len;
            pending.push_back(msg);
            next += 1;
            continue;
        }
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("client {i}: read: {e}"));
        assert!(
            n > 0,
            "client {i}: end of stream with {} bytes owed",
            written - read
        );
        read += n;
        let mut got = &buf[..n];
        while !got.is_empty() {
            let front = pending.front().expect("more echoed than written");
            let take = got.len().min(front.len() - front_read);
            assert!(
                got[..take] == front[front_read..front_read + take],
                "client {i}: echo differs in message {} at byte {front_read}",
                next - pending.len()
            );
            front_read += take;
            got = &got[take..];
            if front_read == front.len() {
                pending.pop_front();
                front_read = 0;
            }
        }
    }
    // Close, and see the server close its side in turn.
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 0, "client {i}: end of stream");
    written
}

fn eight_workers_echo_200_pipelined_connections(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let t0 = Instant::now();
    let fds_before = fd_count();
    let server = b.workers(8).concurrency(4).start(Echo).unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CONNECTIONS as u64)
        .map(|i| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || pipelined_client(addr, i))
                .unwrap()
        })
        .collect();
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    wait_for("every connection to be closed", || {
        server.stats().connections == 0
    });
    let stats = server.stop();
    let took = t0.elapsed();
    eprintln!(
        "{kind}: {CONNECTIONS} pipelined connections echoed {} MiB in {took:.1?}; {stats}",
        total >> 20
    );
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (total as u64, total as u64)
    );
    assert_eq!(stats.connections_total, CONNECTIONS as u64);
    assert_eq!(stats.peer_closed, CONNECTIONS as u64, "{stats}");
    assert_eq!((stats.resets, stats.local_errors), (0, 0), "{stats}");
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
    assert!(took < TEST_LIMIT, "took {took:?}");
}

const HALF_CLOSE_BYTES: usize = 10 << 20;
const HALF_CLOSE_CLIENTS: u64 = 4;

/// Sends 10 MiB in random-sized writes, shuts down its writing side, and
/// reads the echo (on this thread, while a second thread writes) to the end
/// of stream.
fn half_closing_client(addr: SocketAddr, i: u64) {
    let mut s = client(addr);
    let data = pattern(77 + i, HALF_CLOSE_BYTES);
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut rng = (i + 7).wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        let mut at = 0;
        while at < data.len() {
            let n = (1 + next_rand(&mut rng) as usize % (256 * 1024)).min(data.len() - at);
            w.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        w.shutdown(Shutdown::Write).unwrap();
        data
    });
    let mut got = Vec::with_capacity(HALF_CLOSE_BYTES);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("client {i}: read after {} bytes: {e}", got.len()),
        }
        assert!(
            got.len() <= HALF_CLOSE_BYTES,
            "client {i}: more echoed than sent"
        );
    }
    let data = writer.join().unwrap();
    assert_eq!(
        got.len(),
        data.len(),
        "client {i}: the whole echo before EOF"
    );
    let at = got.iter().zip(&data).take_while(|(a, b)| a == b).count();
    assert!(at == data.len(), "client {i}: echo differs at byte {at}");
}

fn half_close_after_10_mib_still_gets_the_whole_echo_then_eof(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let t0 = Instant::now();
    let fds_before = fd_count();
    let server = b.start(Echo).unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..HALF_CLOSE_CLIENTS)
        .map(|i| std::thread::spawn(move || half_closing_client(addr, i)))
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    wait_for("every connection to be closed", || {
        server.stats().connections == 0
    });
    let stats = server.stop();
    let took = t0.elapsed();
    eprintln!("{kind}: {HALF_CLOSE_CLIENTS} x 10 MiB half-closed echoes in {took:.1?}; {stats}");
    let total = HALF_CLOSE_BYTES as u64 * HALF_CLOSE_CLIENTS;
    assert_eq!((stats.bytes_in, stats.bytes_out), (total, total));
    assert_eq!(stats.peer_closed, HALF_CLOSE_CLIENTS, "{stats}");
    assert_eq!((stats.resets, stats.local_errors), (0, 0), "{stats}");
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
    assert!(took < TEST_LIMIT, "took {took:?}");
}
