//! Single-thread ports (`Builder::single_thread`): io_uring with
//! SINGLE_ISSUER | DEFER_TASKRUN. One thread dequeues; others post and stop.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{pair, LIMIT};
use ringport::op;
use ringport::{BackendKind, CompletionPort, GetError, OpKind};

both_backends!(
    a_reaped_batch_taken_piecemeal_loses_nothing,
    one_thread_echoes_while_others_post,
    a_second_dequeuing_thread_is_refused,
    shutdown_from_another_thread_drains_through_the_owner,
    more_posts_before_the_first_get_than_the_ring_holds,
);

fn single(kind: BackendKind) -> Option<CompletionPort> {
    common::port(kind, 1)?;
    Some(
        CompletionPort::builder()
            .backend(kind)
            .single_thread(true)
            .build()
            .expect("single-thread port"),
    )
}

fn one_thread_echoes_while_others_post(kind: BackendKind) {
    let Some(port) = single(kind) else { return };
    let (mut client, h) = pair(&port, 1);
    // Posted from the main thread before the owner exists.
    port.submit(op::RecvPooled::new(&h)).unwrap();
    let owner = {
        let port = port.clone();
        std::thread::spawn(move || {
            let mut echoed = 0;
            loop {
                let mut c = port.get(LIMIT).unwrap();
                match c.kind() {
                    OpKind::RecvPooled if c.result().unwrap() > 0 => {
                        echoed += c.data().len();
                        port.submit(op::SendAll::new(&h, c.take_buf::<Vec<u8>>().unwrap()))
                            .unwrap();
                    }
                    OpKind::Packet => {
                        // The owner shuts down: it reaps what is cancelled.
                        port.shutdown();
                        return echoed;
                    }
                    _ => {}
                }
            }
        })
    };
    for i in 0..50u64 {
        let msg = common::pattern(i, 1 + i as usize * 97);
        client.write_all(&msg).unwrap();
        let mut got = vec![0; msg.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
    // A timer posted from this (non-owner) thread still fires.
    port.submit(op::Timeout::new(Duration::from_millis(5)))
        .unwrap();
    port.post(op::Packet::new(0)).unwrap();
    let echoed = owner.join().unwrap();
    assert_eq!(echoed, (0..50).map(|i| 1 + i * 97).sum::<usize>());
}

fn a_second_dequeuing_thread_is_refused(kind: BackendKind) {
    let Some(port) = single(kind) else { return };
    assert!(matches!(
        port.get(Some(Duration::ZERO)),
        Err(GetError::TimedOut)
    ));
    let p = port.clone();
    let other = std::thread::spawn(move || p.get(Some(Duration::from_millis(10))));
    match other.join().unwrap() {
        Err(GetError::Io(e)) => assert_eq!(kind, BackendKind::IoUring, "{e}"),
        Err(GetError::TimedOut) => assert_eq!(kind, BackendKind::Epoll),
        other => panic!("unexpected {other:?}"),
    }
}

fn shutdown_from_another_thread_drains_through_the_owner(kind: BackendKind) {
    let Some(port) = single(kind) else { return };
    let mut keep = Vec::new();
    for i in 0..20 {
        let (client, h) = pair(&port, i);
        port.submit(op::Recv::new(&h, Vec::with_capacity(64)))
            .unwrap();
        keep.push((client, h));
    }
    let owner = {
        let port = port.clone();
        std::thread::spawn(move || loop {
            match port.get(None) {
                Err(GetError::Closed) => return,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        })
    };
    while port.waiting_threads() < 1 {
        std::thread::yield_now();
    }
    port.shutdown();
    owner.join().unwrap();
    assert_eq!(port.outstanding(), 0, "the owner reaped every cancelled op");
}

/// What one poll reaps goes straight to the single dequeuing thread; taken
/// a few at a time (and one by one with `get`), every completion arrives
/// once, and the chunks of one pooled receive keep their order.
fn a_reaped_batch_taken_piecemeal_loses_nothing(kind: BackendKind) {
    const CLIENTS: usize = 8;
    const TIMERS: usize = 40;
    let Some(port) = single(kind) else { return };
    let mut pairs: Vec<_> = (0..CLIENTS).map(|i| pair(&port, i as u64)).collect();
    for (_, h) in &pairs {
        port.submit(op::RecvPooled::new(h)).unwrap();
    }
    for i in 0..TIMERS {
        port.submit(op::Timeout::new(Duration::ZERO).key(1000 + i as u64))
            .unwrap();
    }
    let sent: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| common::pattern(i as u64, 200_000))
        .collect();
    for ((c, _), data) in pairs.iter_mut().zip(&sent) {
        c.write_all(data).unwrap();
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); CLIENTS];
    let mut next_seq = [0u64; CLIENTS];
    let mut timers = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut round = 0;
    while got.iter().map(Vec::len).sum::<usize>() < CLIENTS * 200_000 || timers.len() < TIMERS {
        out.clear();
        if round % 2 == 0 {
            port.get_many(&mut out, 3, LIMIT).unwrap();
            assert!((1..=3).contains(&out.len()));
        } else {
            out.push(port.get(LIMIT).unwrap());
        }
        round += 1;
        for c in &mut out {
            match c.kind() {
                OpKind::Timeout => assert!(timers.insert(c.key()), "timer {} twice", c.key()),
                OpKind::RecvPooled => {
                    let k = c.key() as usize;
                    assert_eq!(c.seq(), next_seq[k], "chunks of client {k} in order");
                    next_seq[k] += 1;
                    got[k].extend_from_slice(c.data());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(got == sent, "every byte once, in order");
    port.shutdown();
    assert_eq!(port.outstanding(), 0);
}

/// Before its owner first dequeues, a single-thread ring cannot be entered:
/// posts beyond the submission queue's size wait in the port's backlog
/// instead of blocking the poster (here: 8 entries, 40 sockets with a
/// receive each, plus their registrations).
fn more_posts_before_the_first_get_than_the_ring_holds(kind: BackendKind) {
    if common::port(kind, 1).is_none() {
        return;
    }
    let port = CompletionPort::builder()
        .backend(kind)
        .single_thread(true)
        .entries(8)
        .build()
        .unwrap();
    let mut clients = Vec::new();
    let mut handles = Vec::new();
    for i in 0..40u64 {
        let (client, h) = pair(&port, i);
        port.submit(op::Recv::new(&h, Vec::with_capacity(16)).user(i))
            .unwrap();
        clients.push(client);
        handles.push(h);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&[i as u8]).unwrap();
    }
    let mut seen = [false; 40];
    for _ in 0..40 {
        let c = port.get(LIMIT).unwrap();
        assert_eq!(c.kind(), OpKind::Recv);
        assert_eq!(c.data(), [c.key() as u8]);
        seen[c.key() as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    port.shutdown();
}
