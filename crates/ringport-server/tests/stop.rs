//! Graceful stop under load: 1000 busy connections, a deadline, no leaks.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringport::BackendKind;

use common::*;

const CLIENTS: usize = 1000;

fn stop_under_load_meets_deadline(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let fds_before = fd_count();
    let server = b
        .backlog(2048)
        .send_queue_limit(64 * 1024)
        .start(Echo)
        .unwrap();
    let addr = server.local_addr();
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| non_reading_client(addr)).collect();
    wait_for("all connections accepted", || {
        server.stats().connections == CLIENTS
    });

    // Writers keep every client busy sending (and never reading), so the
    // server has queued sends that cannot flush.
    let done = Arc::new(AtomicBool::new(false));
    let clients = Arc::new(clients);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (done, clients) = (done.clone(), clients.clone());
            std::thread::spawn(move || {
                let chunk = pattern(w, 16 * 1024);
                let mine: Vec<&TcpStream> = clients.iter().skip(w as usize).step_by(4).collect();
                for c in &mine {
                    c.set_nonblocking(true).unwrap();
                }
                while !done.load(Ordering::Relaxed) {
                    for mut c in mine.iter().copied() {
                        match c.write(&chunk) {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(_) => {} // closed by the server's stop
                        }
                    }
                }
            })
        })
        .collect();
    wait_for("send queues to fill", || server.stats().read_pauses >= 100);

    let deadline = Duration::from_secs(2);
    let t0 = Instant::now();
    let stats = server.stop_within(deadline);
    let took = t0.elapsed();
    eprintln!("{kind}: stop with {CLIENTS} busy connections took {took:?}; {stats}");
    assert!(
        took <= deadline + Duration::from_millis(250),
        "stop took {took:?}"
    );
    assert_eq!(stats.connections, 0);
    assert_eq!(stats.shutdown_closes, CLIENTS as u64);

    done.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    drop(clients);
    assert_eq!(fd_count(), fds_before, "descriptors leaked");
}

fn stop_flushes_queued_data(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(false);
    let server = b.start(h).unwrap();
    let mut c = client(server.local_addr());
    let id = match next(&rx) {
        Ev::Connect { id, .. } => id,
        other => panic!("expected connect, got {other:?}"),
    };
    let conn = server.connections().get(id).unwrap();
    let big = pattern(3, 8 << 20);
    conn.send(big.clone()).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut c, &mut got).unwrap();
        got
    });
    let stats = server.stop_within(Duration::from_secs(10));
    let got = reader.join().unwrap();
    assert!(got == big, "all queued data flushed before the close");
    assert_eq!(stats.shutdown_closes, 1);
}

both_backends!(stop_under_load_meets_deadline, stop_flushes_queued_data);
