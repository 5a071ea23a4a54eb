//! IOCP thread semantics: posting from other threads, batches, timeouts, the
//! concurrency cap, last-in-first-out release and the blocking hint.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use common::{next, port, LIMIT};
use ringport::op;
use ringport::{BackendKind, CompletionPort, GetError, OpKind};

both_backends!(
    post_from_another_thread_wakes_a_waiter,
    get_many_dequeues_batches,
    get_times_out_and_zero_only_polls,
    a_timeout_past_the_clocks_range_waits_for_the_completion,
    at_most_concurrency_threads_run_at_once,
    waiting_threads_are_released_last_in_first_out,
    blocking_lets_another_waiter_run,
    without_blocking_the_cap_holds,
    a_thread_that_exits_gives_its_slot_back,
    many_threads_share_io_completions,
    packets_ping_pong_between_two_ports_without_a_lost_wake_up,
);

/// Waits until `n` threads wait in `get` on `port`.
fn until_waiting(port: &CompletionPort, n: usize) {
    let start = Instant::now();
    while port.waiting_threads() < n {
        assert!(
            start.elapsed() < LIMIT.unwrap(),
            "threads never started waiting"
        );
        std::thread::yield_now();
    }
}

fn post_from_another_thread_wakes_a_waiter(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let p = port.clone();
    let waiter = std::thread::spawn(move || next(&p));
    until_waiting(&port, 1);
    let poster = {
        let p = port.clone();
        std::thread::spawn(move || p.post(op::Packet::new(5).key(3).user(4)).unwrap())
    };
    poster.join().unwrap();
    let c = waiter.join().unwrap();
    assert_eq!(
        (c.kind(), c.key(), c.user(), c.result().unwrap()),
        (OpKind::Packet, 3, 4, 5)
    );
}

fn get_many_dequeues_batches(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    for i in 0..100 {
        port.post(op::Packet::new(0).user(i)).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(port.get_many(&mut out, 64, LIMIT).unwrap(), 64);
    assert_eq!(port.get_many(&mut out, 64, LIMIT).unwrap(), 36);
    let users: Vec<u64> = out.iter().map(|c| c.user()).collect();
    assert_eq!(users, (0..100).collect::<Vec<_>>(), "packets in post order");
    assert!(matches!(
        port.get_many(&mut out, 64, Some(Duration::ZERO)),
        Err(GetError::TimedOut)
    ));
    // A batch of timer completions, reaped from the kernel.
    for i in 0..50 {
        port.submit(op::Timeout::new(Duration::from_millis(1)).user(i))
            .unwrap();
    }
    let mut got = 0;
    while got < 50 {
        let mut batch = Vec::new();
        got += port.get_many(&mut batch, 64, LIMIT).unwrap();
        assert!(batch.iter().all(|c| c.kind() == OpKind::Timeout));
    }
    assert_eq!(got, 50);
}

fn get_times_out_and_zero_only_polls(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let start = Instant::now();
    assert!(matches!(
        port.get(Some(Duration::ZERO)),
        Err(GetError::TimedOut)
    ));
    assert!(start.elapsed() < Duration::from_millis(500));
    let start = Instant::now();
    assert!(matches!(
        port.get(Some(Duration::from_millis(50))),
        Err(GetError::TimedOut)
    ));
    assert!(start.elapsed() >= Duration::from_millis(50));
    // A zero-timeout get still reaps a completion the kernel has finished.
    port.submit(op::Timeout::new(Duration::ZERO).user(1))
        .unwrap();
    let deadline = Instant::now() + LIMIT.unwrap();
    loop {
        match port.get(Some(Duration::ZERO)) {
            Ok(c) => {
                assert_eq!(c.kind(), OpKind::Timeout);
                break;
            }
            Err(GetError::TimedOut) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("{e}"),
        }
    }
}

/// `get(Some(Duration::MAX))` waits as `get(None)` does (the deadline is
/// past what `Instant` can hold) and returns the completion, instead of
/// panicking on the overflow.
fn a_timeout_past_the_clocks_range_waits_for_the_completion(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    port.submit(op::Timeout::new(Duration::from_millis(20)).user(7))
        .unwrap();
    let c = port
        .get(Some(Duration::MAX))
        .expect("the timer's completion");
    assert_eq!((c.kind(), c.user()), (OpKind::Timeout, 7));
}

fn at_most_concurrency_threads_run_at_once(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    const PACKETS: usize = 300;
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (port, active, peak, done) =
                (port.clone(), active.clone(), peak.clone(), done.clone());
            std::thread::spawn(move || {
                while let Ok(c) = port.get(LIMIT) {
                    if c.user() == u64::MAX {
                        return;
                    }
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    assert!(port.running_threads() <= 2);
                    let spin = Instant::now();
                    while spin.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    active.fetch_sub(1, Ordering::SeqCst);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for i in 0..PACKETS {
        port.post(op::Packet::new(0).user(i as u64)).unwrap();
    }
    let start = Instant::now();
    while done.load(Ordering::SeqCst) < PACKETS {
        assert!(
            start.elapsed() < LIMIT.unwrap(),
            "packets were not all handled"
        );
        std::thread::yield_now();
    }
    for _ in 0..6 {
        port.post(op::Packet::new(0).user(u64::MAX)).unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 2, "{peak} threads ran at once with concurrency 2");
}

fn waiting_threads_are_released_last_in_first_out(kind: BackendKind) {
    let Some(port) = port(kind, 8) else { return };
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..4 {
        let (p, tx) = (port.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let c = next(&p);
            tx.send((i, c.user())).unwrap();
        }));
        until_waiting(&port, i + 1);
    }
    let mut order = Vec::new();
    for n in 0..4u64 {
        port.post(op::Packet::new(0).user(n)).unwrap();
        order.push(rx.recv_timeout(LIMIT.unwrap()).unwrap());
    }
    for t in threads {
        t.join().unwrap();
    }
    let who: Vec<usize> = order.iter().map(|o| o.0).collect();
    assert_eq!(
        who,
        [3, 2, 1, 0],
        "the most recent waiter is released first"
    );
}

fn blocking_lets_another_waiter_run(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (tx, rx) = mpsc::channel::<()>();
    let rx = Arc::new(parking_lot::Mutex::new(rx));
    let started = Arc::new(Barrier::new(3));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (port, tx, rx, started) = (port.clone(), tx.clone(), rx.clone(), started.clone());
            std::thread::spawn(move || {
                started.wait();
                let c = next(&port);
                if c.user() == 1 {
                    // Blocks until the other worker has run packet 2.
                    let _b = port.blocking();
                    rx.lock()
                        .recv_timeout(LIMIT.unwrap())
                        .expect("the other worker ran");
                } else {
                    tx.send(()).unwrap();
                }
                c.user()
            })
        })
        .collect();
    started.wait();
    until_waiting(&port, 2);
    port.post(op::Packet::new(0).user(1)).unwrap();
    until_waiting(&port, 1);
    port.post(op::Packet::new(0).user(2)).unwrap();
    let mut users: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    users.sort_unstable();
    assert_eq!(users, [1, 2]);
}

fn without_blocking_the_cap_holds(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    port.post(op::Packet::new(0).user(1)).unwrap();
    let _first = next(&port); // this thread now runs: the only slot is taken
    port.post(op::Packet::new(0).user(2)).unwrap();
    let p = port.clone();
    let other =
        std::thread::spawn(move || p.get(Some(Duration::from_millis(200))).map(|c| c.user()));
    assert!(
        matches!(other.join().unwrap(), Err(GetError::TimedOut)),
        "a second thread ran while the slot was taken"
    );
    // Calling get again frees the slot: this thread takes the packet.
    assert_eq!(next(&port).user(), 2);
}

fn a_thread_that_exits_gives_its_slot_back(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    port.post(op::Packet::new(0).user(1)).unwrap();
    let p = port.clone();
    std::thread::spawn(move || assert_eq!(next(&p).user(), 1))
        .join()
        .unwrap();
    assert_eq!(port.running_threads(), 0);
    port.post(op::Packet::new(0).user(2)).unwrap();
    assert_eq!(next(&port).user(), 2);
}

fn many_threads_share_io_completions(kind: BackendKind) {
    // Four workers echo on 50 connections: any thread may take any
    // completion, and every byte comes back.
    let Some(port) = port(kind, 2) else { return };
    let conns: Vec<_> = (0..50).map(|i| common::pair(&port, i)).collect();
    let handles: Arc<Vec<ringport::Handle>> = Arc::new(conns.iter().map(|c| c.1.clone()).collect());
    for h in handles.iter() {
        port.submit(op::Recv::new(h, Vec::with_capacity(4096)))
            .unwrap();
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (port, handles) = (port.clone(), handles.clone());
            std::thread::spawn(move || {
                while let Ok(mut c) = port.get(LIMIT) {
                    let h = &handles[c.key() as usize];
                    match c.kind() {
                        OpKind::Recv if c.result().unwrap_or(0) > 0 => {
                            port.submit(op::SendAll::new(h, c.take_buf::<Vec<u8>>().unwrap()))
                                .unwrap();
                        }
                        OpKind::SendAll => {
                            let mut b = c.take_buf::<Vec<u8>>().unwrap();
                            b.clear();
                            port.submit(op::Recv::new(h, b)).unwrap();
                        }
                        OpKind::Packet => return,
                        _ => {}
                    }
                }
            })
        })
        .collect();
    let clients: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, (mut s, _))| {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                for round in 0..20 {
                    let msg =
                        common::pattern((i * 100 + round) as u64, 1 + (i * 37 + round * 11) % 3000);
                    s.write_all(&msg).unwrap();
                    let mut got = vec![0; msg.len()];
                    s.read_exact(&mut got).unwrap();
                    assert_eq!(got, msg);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    for _ in 0..4 {
        port.post(op::Packet::new(0)).unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
}

/// Two threads bounce packets between two ports, each blocked in `get`
/// while the other posts: every post must wake its waiter (a lost wake-up
/// shows as a `get` that times out: a post racing a thread that takes the
/// poller's seat lost one in ~300 000 round trips on io_uring). Bounded:
/// 500 000 round trips, ~3 s.
fn packets_ping_pong_between_two_ports_without_a_lost_wake_up(kind: BackendKind) {
    const ROUNDS: u64 = 500_000;
    let (Some(a), Some(back)) = (port(kind, 1), port(kind, 1)) else {
        return;
    };
    let (a2, back2) = (a.clone(), back.clone());
    let echo = std::thread::spawn(move || loop {
        let c = a2.get(LIMIT).expect("the echo thread's get");
        if c.user() == u64::MAX {
            return;
        }
        back2
            .post(op::Packet::new(0).user(c.user()))
            .expect("echo post");
    });
    for i in 0..ROUNDS {
        a.post(op::Packet::new(0).user(i)).unwrap();
        let c = back
            .get(LIMIT)
            .unwrap_or_else(|e| panic!("round trip {i}: {e:?}"));
        assert_eq!(c.user(), i);
    }
    a.post(op::Packet::new(0).user(u64::MAX)).unwrap();
    echo.join().unwrap();
}
