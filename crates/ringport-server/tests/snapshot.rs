//! `Server::monitor`: snapshots taken from another thread list the
//! connections each order asks for, with their own bytes, age and send
//! queue, and the server-wide counts.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringport::BackendKind;
use ringport_server::{Monitor, Snapshot, SortBy};

use common::*;

/// Takes snapshots on another thread until `ok` accepts one.
fn snapshot_until(
    m: &Monitor,
    n: usize,
    order: SortBy,
    what: &str,
    ok: impl Fn(&Snapshot) -> bool + Send + 'static,
) -> Snapshot {
    let m = m.clone();
    let what = what.to_owned();
    std::thread::spawn(move || {
        let deadline = Instant::now() + LIMIT;
        loop {
            let s = m.snapshot(n, order);
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never saw {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .join()
    .unwrap()
}

fn busiest_by_bytes_and_by_age(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b.start(Echo).unwrap();
    let m = server.monitor();
    let first = m.snapshot(10, SortBy::Bytes);
    assert_eq!(first.backend, kind);
    assert_eq!(first.workers, 4);
    assert!(first.outstanding >= 1, "the accept is posted");
    assert!(!first.accept_backoff.backing_off);
    assert!(first.busiest.is_empty());

    // Client n moves n KiB each way; each connects a few ms after the one
    // before, as the server's clock sees it.
    let mut clients: Vec<TcpStream> = Vec::new();
    for n in 1..=5usize {
        if !clients.is_empty() {
            let t = m.snapshot(0, SortBy::Bytes).uptime;
            snapshot_until(&m, 0, SortBy::Bytes, "time passing", move |s| {
                s.uptime >= t + Duration::from_millis(3)
            });
        }
        let mut c = client(server.local_addr());
        let data = vec![n as u8; n * 1024];
        assert_eq!(round_trip(&mut c, &data), data);
        clients.push(c);
    }
    let total = 15 * 1024;
    // Counted server-wide, then per connection: wait for both.
    snapshot_until(&m, 10, SortBy::Bytes, "every send counted", move |s| {
        s.stats.bytes_out == total && s.busiest.iter().map(|c| c.bytes_out).sum::<u64>() == total
    });
    let s = m.snapshot(3, SortBy::Bytes);
    assert_eq!(s.stats.connections, 5);
    assert_eq!(s.stats.connections_total, 5);
    assert_eq!(s.stats.bytes_in, total);
    assert!(s.stats.messages_in >= 5 && s.stats.messages_out >= 5);
    let peers: Vec<_> = s.busiest.iter().map(|c| c.peer).collect();
    let want: Vec<_> = [4, 3, 2]
        .iter()
        .map(|&i| clients[i].local_addr().unwrap())
        .collect();
    assert_eq!(peers, want, "the three busiest, busiest first");
    for (c, n) in s.busiest.iter().zip([5u64, 4, 3]) {
        assert_eq!(
            (c.bytes_in, c.bytes_out, c.send_queue),
            (n * 1024, n * 1024, 0)
        );
    }

    let s = m.snapshot(2, SortBy::Age);
    let peers: Vec<_> = s.busiest.iter().map(|c| c.peer).collect();
    let want: Vec<_> = [0, 1]
        .iter()
        .map(|&i| clients[i].local_addr().unwrap())
        .collect();
    assert_eq!(peers, want, "the two oldest, oldest first");
    assert!(s.busiest[0].age > s.busiest[1].age);

    drop(clients);
    snapshot_until(&m, 10, SortBy::Bytes, "every client gone", |s| {
        s.stats.connections == 0 && s.busiest.is_empty() && s.stats.peer_closed == 5
    });
    let last = server.stop();
    // The monitor outlives the server and keeps its final counters.
    assert_eq!(m.snapshot(10, SortBy::Bytes).stats, last);
}

fn busiest_by_send_queue(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b.send_queue_limit(8 << 20).start(Echo).unwrap();
    let m = server.monitor();
    let mut readers: Vec<TcpStream> = (0..3).map(|_| client(server.local_addr())).collect();
    for r in &mut readers {
        assert_eq!(round_trip(r, b"hello"), b"hello");
    }
    // A send leaves the queue when its completion is handled, which may
    // come after the client read the echo: wait for the three.
    snapshot_until(&m, 10, SortBy::SendQueue, "the echoes sent", |s| {
        s.stats.messages_out == 3 && s.busiest.iter().all(|c| c.send_queue == 0)
    });
    // A client that writes and does not read: the echo queues up.
    let mut hog = non_reading_client(server.local_addr());
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let data = vec![7u8; 64 * 1024];
    for _ in 0..64 {
        match hog.write(&data) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("hog write: {e}"),
        }
    }
    let hog_addr = hog.local_addr().unwrap();
    let s = snapshot_until(&m, 1, SortBy::SendQueue, "a send queue", move |s| {
        s.busiest.first().is_some_and(|c| c.send_queue > 0)
    });
    assert_eq!(s.busiest.len(), 1);
    assert_eq!(s.busiest[0].peer, hog_addr);
    assert!(s.busiest[0].bytes_in >= s.busiest[0].send_queue as u64);
    let all = m.snapshot(10, SortBy::SendQueue);
    assert_eq!(all.busiest.len(), 4);
    assert!(all.busiest[1..].iter().all(|c| c.send_queue == 0));
    drop(hog);
    server.stop();
}

both_backends!(busiest_by_bytes_and_by_age, busiest_by_send_queue);
