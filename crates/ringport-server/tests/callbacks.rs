//! Every handler callback, each disconnect reason, ordering and the
//! registry, on both backends.

mod common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use ringport::BackendKind;
use socket2::SockRef;

use common::*;

fn callbacks_in_order_with_addresses(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(true);
    let server = b.start(h).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let mut c = client(addr);
    let me = c.local_addr().unwrap();
    let id = match next(&rx) {
        Ev::Connect {
            id,
            local,
            peer,
            first,
        } => {
            assert_eq!(local, addr);
            assert_eq!(peer, me);
            assert!(first.is_none());
            id
        }
        other => panic!("expected connect, got {other:?}"),
    };
    assert_eq!(server.connections().len(), 1);
    assert_eq!(round_trip(&mut c, b"hello"), b"hello");
    match next(&rx) {
        Ev::Data { id: i, data } => assert_eq!((i, &data[..]), (id, &b"hello"[..])),
        other => panic!("expected data, got {other:?}"),
    }
    match next(&rx) {
        Ev::Sent { id: i, bytes } => assert_eq!((i, bytes), (id, 5)),
        other => panic!("expected sent, got {other:?}"),
    }
    c.shutdown(Shutdown::Write).unwrap();
    match next(&rx) {
        Ev::Disconnect { id: i, reason } => assert_eq!((i, reason), (id, "peer-closed")),
        other => panic!("expected disconnect, got {other:?}"),
    }
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let stats = server.stop();
    assert_eq!(stats.connections, 0);
    assert_eq!(stats.connections_total, 1);
    assert_eq!((stats.bytes_in, stats.bytes_out), (5, 5));
    assert_eq!(stats.peer_closed, 1);
}

fn first_data_comes_with_connect(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(true);
    let server = b.first_data(true).start(h).unwrap();
    let mut c = client(server.local_addr());
    c.write_all(b"first").unwrap();
    match next(&rx) {
        Ev::Connect { first, .. } => assert_eq!(first.as_deref(), Some(&b"first"[..])),
        other => panic!("expected connect, got {other:?}"),
    }
    // The recorder does not echo first data (it overrides on_connect); the
    // connection carries on as usual.
    assert_eq!(round_trip(&mut c, b"more"), b"more");
    server.stop();
}

fn reset_is_reported_as_reset(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(true);
    let server = b.start(h).unwrap();
    let mut c = client(server.local_addr());
    assert_eq!(round_trip(&mut c, b"x"), b"x");
    SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    assert_eq!(disconnect_reason(&rx), "reset");
    assert_eq!(server.stop().resets, 1);
}

fn idle_connections_time_out(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(true);
    let server = b.idle_timeout(Duration::from_millis(200)).start(h).unwrap();
    let mut busy = client(server.local_addr());
    let mut idle = client(server.local_addr());
    let idle_port = idle.local_addr().unwrap();
    let t0 = Instant::now();
    // The busy client keeps talking past the timeout and stays connected.
    while t0.elapsed() < Duration::from_millis(600) {
        assert_eq!(round_trip(&mut busy, b"tick"), b"tick");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut buf = [0; 1];
    assert_eq!(idle.read(&mut buf).unwrap(), 0, "idle client sees EOF");
    let mut idle_id = None;
    let mut reason = None;
    while let Ok(ev) = rx.recv_timeout(Duration::from_millis(10)) {
        match ev {
            Ev::Connect { id, peer, .. } if peer == idle_port => idle_id = Some(id),
            Ev::Disconnect { id, reason: r } => {
                assert_eq!(Some(id), idle_id);
                reason = Some(r);
            }
            _ => {}
        }
    }
    assert_eq!(reason, Some("idle-timeout"));
    assert_eq!(round_trip(&mut busy, b"still here"), b"still here");
    let stats = server.stop();
    assert_eq!(stats.idle_timeouts, 1);
    assert_eq!(stats.shutdown_closes, 1);
}

fn stop_reports_shutdown(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(true);
    let server = b.start(h).unwrap();
    let mut c = client(server.local_addr());
    assert_eq!(round_trip(&mut c, b"x"), b"x");
    let stats = server.stop();
    assert_eq!(disconnect_reason(&rx), "shutdown");
    assert_eq!(stats.shutdown_closes, 1);
    let mut buf = [0; 1];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "client sees EOF");
}

fn local_close_and_abort(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(false);
    let server = b.start(h).unwrap();
    let mut a = client(server.local_addr());
    let mut r = client(server.local_addr());
    let a_port = a.local_addr().unwrap();
    let mut ids = std::collections::HashMap::new();
    for _ in 0..2 {
        if let Ev::Connect { id, peer, .. } = next(&rx) {
            ids.insert(peer == a_port, id);
        }
    }
    let conns = server.connections();
    let graceful = conns.get(ids[&true]).unwrap();
    let abortive = conns.get(ids[&false]).unwrap();
    graceful.send(&b"bye"[..]).unwrap();
    graceful.close();
    abortive.abort();
    let mut got = Vec::new();
    a.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye", "queued data is sent before a graceful close");
    let mut buf = [0; 1];
    let err = r.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(disconnect_reason(&rx), "closed");
    assert_eq!(disconnect_reason(&rx), "closed");
    assert!(graceful.send(&b"late"[..]).is_err());
    assert_eq!(server.stop().local_closes, 2);
}

fn many_clients_echo_in_order(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b.recv_buffer_size(4096).start(Echo).unwrap();
    let addr = server.local_addr();
    let threads: Vec<_> = (0..32)
        .map(|i| {
            std::thread::spawn(move || {
                let data = pattern(i, 256 * 1024);
                let mut c = client(addr);
                let mut r = c.try_clone().unwrap();
                let expect = data.clone();
                let reader = std::thread::spawn(move || {
                    let mut back = vec![0; expect.len()];
                    r.read_exact(&mut back).unwrap();
                    assert!(back == expect, "client {i}: echo differs");
                });
                for chunk in data.chunks(1000 + i as usize * 37) {
                    c.write_all(chunk).unwrap();
                }
                reader.join().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = server.stop();
    assert_eq!(stats.bytes_in, 32 * 256 * 1024);
    assert_eq!(stats.bytes_out, stats.bytes_in);
}

fn broadcast_from_another_thread(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (h, rx) = Recorder::new(false);
    let server = b.start(h).unwrap();
    let mut clients: Vec<_> = (0..5).map(|_| client(server.local_addr())).collect();
    for _ in 0..5 {
        assert!(matches!(next(&rx), Ev::Connect { .. }));
    }
    let conns = server.connections();
    assert_eq!(conns.len(), 5);
    let n = std::thread::spawn(move || conns.broadcast(b"news".as_slice(), None))
        .join()
        .unwrap();
    assert_eq!(n, 5);
    for c in &mut clients {
        let mut buf = [0; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"news");
    }
    assert_eq!(server.connections().snapshot().len(), 5);
    server.stop();
}

fn max_connections_rejects_extra(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b.max_connections(2).start(Echo).unwrap();
    let mut a = client(server.local_addr());
    let mut b2 = client(server.local_addr());
    assert_eq!(round_trip(&mut a, b"a"), b"a");
    assert_eq!(round_trip(&mut b2, b"b"), b"b");
    // The server may reset the third connection before `connect` returns
    // here: that is a refusal too.
    if let Ok(mut c) = std::net::TcpStream::connect(server.local_addr()) {
        c.set_read_timeout(Some(LIMIT)).unwrap();
        let mut buf = [0; 1];
        let _ = c.write_all(b"c");
        assert!(
            matches!(c.read(&mut buf), Ok(0) | Err(_)),
            "third client refused"
        );
    }
    assert_eq!(server.stop().rejected, 1);
}

fn no_descriptor_leaks(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let before = fd_count();
    let server = b.idle_timeout(Duration::from_secs(30)).start(Echo).unwrap();
    let mut clients: Vec<_> = (0..20).map(|_| client(server.local_addr())).collect();
    for c in &mut clients {
        assert_eq!(round_trip(c, b"abc"), b"abc");
    }
    server.stop();
    drop(clients);
    assert_eq!(fd_count(), before, "descriptors leaked");
}

/// io_uring: one multishot accept takes a whole burst of connections; with
/// first data, or on epoll, each accept is replenished (the seeds'
/// MAX_POST_ACCEPT accepts kept posted).
fn accepts_are_multishot_where_the_backend_has_them(kind: BackendKind) {
    const BURST: usize = 50;
    for first_data in [false, true] {
        let Some(b) = builder(kind) else { return };
        let server = b.accepts(10).first_data(first_data).start(Echo).unwrap();
        let mut clients: Vec<_> = (0..BURST).map(|_| client(server.local_addr())).collect();
        for c in &mut clients {
            assert_eq!(round_trip(c, b"x"), b"x");
        }
        let stats = server.stats();
        assert_eq!(stats.connections_total, BURST as u64);
        let multishot = kind == BackendKind::IoUring && !first_data;
        let expected = if multishot { 1 } else { 10 + BURST as u64 };
        assert_eq!(
            stats.accepts_posted, expected,
            "{kind}, first data {first_data}: accept operations posted"
        );
        server.stop();
    }
}

both_backends!(
    accepts_are_multishot_where_the_backend_has_them,
    callbacks_in_order_with_addresses,
    first_data_comes_with_connect,
    reset_is_reported_as_reset,
    idle_connections_time_out,
    stop_reports_shutdown,
    local_close_and_abort,
    many_clients_echo_in_order,
    broadcast_from_another_thread,
    max_connections_rejects_extra,
    no_descriptor_leaks,
);
