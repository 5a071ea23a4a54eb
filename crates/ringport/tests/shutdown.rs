//! Shutdown and drop with operations in flight, and 10 000 outstanding ops.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use common::{next, pair, pattern, port, LIMIT};
use ringport::op;
use ringport::{BackendKind, GetError, OpKind};

both_backends!(
    shutdown_wakes_every_waiting_thread,
    shutdown_cancels_ops_in_flight_and_refuses_new_ones,
    dropping_the_port_with_ops_in_flight_is_safe,
    ten_thousand_ops_outstanding_complete_exactly_once,
);

fn shutdown_wakes_every_waiting_thread(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let p = port.clone();
            std::thread::spawn(move || p.get(None))
        })
        .collect();
    while port.waiting_threads() < 4 {
        std::thread::yield_now();
    }
    port.shutdown();
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Err(GetError::Closed)));
    }
    assert!(port.is_shut_down());
    assert!(matches!(
        port.get(Some(Duration::ZERO)),
        Err(GetError::Closed)
    ));
}

fn shutdown_cancels_ops_in_flight_and_refuses_new_ones(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let mut keep = Vec::new();
    for i in 0..50 {
        let (client, h) = pair(&port, i);
        port.submit(op::Recv::new(&h, Vec::with_capacity(1024)))
            .unwrap();
        socket2::SockRef::from(&h)
            .set_send_buffer_size(4096)
            .unwrap();
        port.submit(op::SendAll::new(&h, pattern(i, 1 << 20)).user(1))
            .unwrap(); // never read: stays in flight
        keep.push((client, h));
    }
    for i in 0..50 {
        port.submit(op::Timeout::new(Duration::from_secs(3600)).user(i))
            .unwrap();
    }
    assert!(port.outstanding() >= 150);
    port.shutdown();
    assert_eq!(port.outstanding(), 0, "every op came back from the kernel");
    let (_c, h) = &keep[0];
    assert!(port
        .submit(op::Recv::new(h, Vec::with_capacity(8)))
        .is_err());
    assert!(port.post(op::Packet::new(0)).is_err());
    assert!(port.submit(op::Timeout::new(Duration::ZERO)).is_err());
}

fn dropping_the_port_with_ops_in_flight_is_safe(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let mut clients = Vec::new();
    for i in 0..20 {
        let (client, h) = pair(&port, i);
        port.submit(op::Recv::new(&h, Vec::with_capacity(1024)))
            .unwrap();
        port.submit(op::RecvPooled::new(&h)).unwrap(); // queued behind the recv in the read lane
        clients.push(client);
    }
    port.submit(op::Timeout::new(Duration::from_secs(3600)))
        .unwrap();
    drop(port); // no shutdown call: drop does it
                // The server sides were closed: clients see end of stream.
    for mut c in clients {
        let _ = c.write_all(b"x");
        let mut b = [0; 1];
        use std::io::Read;
        assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    }
}

fn ten_thousand_ops_outstanding_complete_exactly_once(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    const PAIRS: usize = 2000;
    const TIMERS: usize = 8000;
    let mut clients = Vec::new();
    let mut handles = Vec::new();
    let mut ids = HashSet::new();
    for i in 0..PAIRS {
        let (client, h) = pair(&port, i as u64);
        ids.insert(
            port.submit(op::Recv::new(&h, Vec::with_capacity(64)))
                .unwrap(),
        );
        clients.push(client);
        handles.push(h);
    }
    for i in 0..TIMERS {
        ids.insert(
            port.submit(
                op::Timeout::new(Duration::from_millis(20 + (i % 50) as u64)).user(i as u64),
            )
            .unwrap(),
        );
    }
    assert_eq!(ids.len(), PAIRS + TIMERS, "ids are unique");
    assert!(port.outstanding() >= PAIRS + TIMERS);
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("msg {i}").as_bytes()).unwrap();
    }
    let mut seen = HashSet::new();
    for _ in 0..PAIRS + TIMERS {
        let c = next(&port);
        assert!(seen.insert(c.id()), "completed twice: {c:?}");
        assert!(ids.contains(&c.id()));
        if c.kind() == OpKind::Recv {
            assert_eq!(c.data(), format!("msg {}", c.key()).as_bytes());
        } else {
            assert_eq!((c.kind(), c.result().unwrap()), (OpKind::Timeout, 0));
        }
    }
    assert_eq!(port.outstanding(), 0);
    assert!(matches!(
        port.get(Some(Duration::from_millis(20))),
        Err(GetError::TimedOut)
    ));
    let _ = LIMIT;
}
