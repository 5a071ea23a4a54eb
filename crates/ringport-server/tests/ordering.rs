//! Ordering without a shared dequeue lock, and the one-worker server (a
//! single-thread port).
//!
//! Many workers take completions in parallel, so chunks of one pooled
//! receive, and completions of one connection's sends, reach different
//! workers out of order; each connection puts them back in order (chunks by
//! `Completion::seq`, sends by the order they were posted). With one worker
//! the server runs its port single-threaded: only the worker dequeues, other
//! threads still send, broadcast and stop.

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringport::BackendKind;
use ringport_server::{ConnId, Connection, DisconnectReason, Handler, Server, ServerBuilder};

use common::*;

/// Echoes, and checks that `on_sent` reports each connection's sends in
/// the order they were made and that nothing is called after
/// `on_disconnect`.
#[derive(Default)]
struct Checks {
    /// The connections between their connect and disconnect.
    sends: Mutex<HashMap<ConnId, ()>>,
    out_of_order: AtomicUsize,
    sent_reports: AtomicU64,
    disconnects: AtomicUsize,
}

struct CheckedEcho(Arc<Checks>);

impl Handler for CheckedEcho {
    /// The sizes of this connection's sends not reported yet, in order.
    type State = VecDeque<usize>;

    fn on_connect(&self, conn: &Connection, _first: Option<Vec<u8>>) -> VecDeque<usize> {
        assert!(self.0.sends.lock().unwrap().insert(conn.id(), ()).is_none());
        VecDeque::new()
    }

    fn on_data(&self, conn: &Connection, sends: &mut VecDeque<usize>, data: Vec<u8>) {
        // Recorded before sending: on_sent of this send cannot run before
        // this callback returns (callbacks of a connection never overlap).
        sends.push_back(data.len());
        conn.send(data).unwrap();
    }

    fn on_sent(&self, conn: &Connection, sends: &mut VecDeque<usize>, bytes: usize) {
        self.0.sent_reports.fetch_add(1, Ordering::Relaxed);
        assert!(
            self.0.sends.lock().unwrap().contains_key(&conn.id()),
            "sent after disconnect"
        );
        if sends.pop_front() != Some(bytes) {
            self.0.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_disconnect(
        &self,
        conn: &Connection,
        _sends: VecDeque<usize>,
        _reason: &DisconnectReason,
    ) {
        assert!(self.0.sends.lock().unwrap().remove(&conn.id()).is_some());
        self.0.disconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// `clients` clients each send `bytes` in writes of varying sizes and read
/// the echo back, checking every byte.
fn echo_clients(server: &Server, clients: u64, bytes: usize) {
    let addr = server.local_addr();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let data = pattern(100 + i, bytes);
                let mut c = client(addr);
                let mut r = c.try_clone().unwrap();
                let expect = data.clone();
                let reader = std::thread::spawn(move || {
                    let mut back = vec![0; expect.len()];
                    r.read_exact(&mut back).unwrap();
                    if let Some(at) = back.iter().zip(&expect).position(|(a, b)| a != b) {
                        panic!("client {i}: echo differs from byte {at}");
                    }
                });
                let mut off = 0;
                let mut step = 0;
                while off < data.len() {
                    // 1 B .. ~24 KiB: many chunks per write and many writes
                    // per chunk.
                    let len = [1, 700, 3000, 24_000, 512, 9000][step % 6].min(data.len() - off);
                    c.write_all(&data[off..off + len]).unwrap();
                    off += len;
                    step += 1;
                }
                reader.join().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Many workers, many connections, messages much larger than a receive
/// buffer: every byte comes back in order and `on_sent` follows send order.
fn chunks_and_sends_in_order_with_many_workers(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let h = Arc::new(Checks::default());
    let server = b
        .workers(8)
        .concurrency(4)
        .recv_buffer_size(1024)
        .pool_buffers(64)
        .start(CheckedEcho(h.clone()))
        .unwrap();
    const CLIENTS: u64 = 48;
    const BYTES: usize = 512 * 1024;
    echo_clients(&server, CLIENTS, BYTES);
    wait_for("every disconnect", || {
        h.disconnects.load(Ordering::Relaxed) == CLIENTS as usize
    });
    let stats = server.stop();
    assert_eq!(stats.bytes_in, CLIENTS * BYTES as u64);
    assert_eq!(stats.bytes_out, stats.bytes_in);
    assert_eq!(stats.peer_closed, CLIENTS);
    assert_eq!(
        h.out_of_order.load(Ordering::Relaxed),
        0,
        "on_sent out of order"
    );
    assert!(h.sent_reports.load(Ordering::Relaxed) >= CLIENTS);
}

fn one_worker(kind: BackendKind) -> Option<ServerBuilder> {
    builder(kind).map(|b| b.workers(1))
}

/// One worker (single-thread port): echo, with sends from the worker.
fn one_worker_echoes_in_order(kind: BackendKind) {
    let Some(b) = one_worker(kind) else { return };
    let h = Arc::new(Checks::default());
    let server = b
        .recv_buffer_size(2048)
        .start(CheckedEcho(h.clone()))
        .unwrap();
    echo_clients(&server, 16, 256 * 1024);
    wait_for("every disconnect", || {
        h.disconnects.load(Ordering::Relaxed) == 16
    });
    let stats = server.stop();
    assert_eq!(stats.bytes_in, 16 * 256 * 1024);
    assert_eq!(stats.bytes_out, stats.bytes_in);
    assert_eq!(h.out_of_order.load(Ordering::Relaxed), 0);
}

/// One worker: another thread sends to every client and stops the server
/// while the clients keep it busy; descriptors are all closed.
fn one_worker_serves_other_threads_and_stops(kind: BackendKind) {
    let Some(b) = one_worker(kind) else { return };
    let fds_before = fd_count();
    let (h, rx) = Recorder::new(true);
    let server = b.idle_timeout(Duration::from_secs(30)).start(h).unwrap();
    let mut clients: Vec<TcpStream> = (0..8).map(|_| client(server.local_addr())).collect();
    for _ in 0..8 {
        assert!(matches!(next(&rx), Ev::Connect { .. }));
    }
    let conns = server.connections();
    let n = std::thread::spawn(move || conns.broadcast(b"news".as_slice(), None))
        .join()
        .unwrap();
    assert_eq!(n, 8);
    for c in &mut clients {
        let mut buf = [0; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"news");
        assert_eq!(round_trip(c, b"ping"), b"ping");
    }
    // A busy client while the server stops from this thread.
    let mut busy = clients.pop().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = pattern(9, 4096);
        while busy.write_all(&chunk).is_ok() {}
    });
    std::thread::sleep(Duration::from_millis(50));
    let stats = server.stop_within(Duration::from_secs(2));
    assert_eq!(stats.connections, 0);
    assert_eq!(stats.shutdown_closes, 8);
    writer.join().unwrap();
    drop(clients);
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
}

/// Dropping a one-worker server stops it too.
fn one_worker_drop_stops(kind: BackendKind) {
    let Some(b) = one_worker(kind) else { return };
    let fds_before = fd_count();
    let server = b.start(Echo).unwrap();
    let mut c = client(server.local_addr());
    assert_eq!(round_trip(&mut c, b"x"), b"x");
    drop(server);
    let mut buf = [0; 1];
    assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    drop(c);
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
}

both_backends!(
    chunks_and_sends_in_order_with_many_workers,
    one_worker_echoes_in_order,
    one_worker_serves_other_threads_and_stops,
    one_worker_drop_stops,
);
