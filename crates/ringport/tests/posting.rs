//! An operation starts when it is posted, as `WSASend` starts the I/O
//! inside the call: a posting thread that goes on to compute, to block on
//! something else, or never to dequeue again does not hold its I/O back.
//!
//! Each test measures the time from the post to the bytes reaching the
//! peer while the poster is busy or blocked, and requires it to be under
//! `BOUND`; the poster waits far longer than that, so a send that waits for
//! the poster's next `get` fails the test instead of passing late.

mod common;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{next, pair, port, LIMIT};
use ringport::op;
use ringport::{BackendKind, OpKind};

both_backends!(
    a_send_goes_out_while_the_poster_computes,
    a_request_goes_out_while_the_poster_waits_for_the_reply,
    a_thread_that_stopped_dequeuing_still_sends,
    a_batch_submits_when_it_ends,
    a_send_queued_behind_another_leaves_while_nobody_dequeues,
);

/// How long the bytes may take to reach the peer.
const BOUND: Duration = Duration::from_millis(50);
/// How long the poster stays busy or blocked: much longer than `BOUND`.
const BUSY: Duration = Duration::from_millis(400);

/// Starts a thread running `f` and waits until it is asleep in `get` on
/// `port`: counted as waiting, and in the kernel's sleeping state (so a
/// post finds it blocked in the kernel, the case that used to stall, and
/// not on its way there).
fn waiter<T: Send + 'static>(
    port: &ringport::CompletionPort,
    f: impl FnOnce(ringport::CompletionPort) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let (tid_tx, tid_rx) = mpsc::channel();
    let p = port.clone();
    let t = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        f(p)
    });
    let tid = tid_rx.recv().unwrap();
    let start = Instant::now();
    loop {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        let sleeping = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('S'));
        if sleeping && port.waiting_threads() >= 1 {
            return t;
        }
        assert!(
            start.elapsed() < LIMIT.unwrap(),
            "the waiter never went to sleep"
        );
        std::thread::yield_now();
    }
}

/// Reads `n` bytes on a client thread and reports when they arrived.
fn arrival(mut client: std::net::TcpStream, n: usize) -> mpsc::Receiver<(Instant, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0; n];
        if client.read_exact(&mut buf).is_ok() {
            let _ = tx.send((Instant::now(), buf));
        }
    });
    rx
}

/// A worker runs a completion, posts a send and computes for `BUSY`; a
/// second worker waits idle in `get`. The peer must see the bytes within
/// `BOUND` of the post, long before the poster is done.
fn a_send_goes_out_while_the_poster_computes(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let (client, conn) = pair(&port, 1);
    let got = arrival(client, 5);
    port.post(op::Packet::new(0)).unwrap();
    assert_eq!(next(&port).kind(), OpKind::Packet, "this thread now runs");
    let idle = waiter(&port, |p| p.get(Some(BUSY * 2)).map(|c| c.kind()).ok());
    let posted = Instant::now();
    port.submit(op::SendAll::new(&conn, b"hello".to_vec()).user(7))
        .unwrap();
    // The computation: this thread does not come back to the port.
    let arrived = got.recv_timeout(BUSY);
    let (at, bytes) = arrived.expect("the bytes reached the peer while the poster computed");
    assert_eq!(bytes, b"hello");
    assert!(
        at - posted < BOUND,
        "the send took {:?} to reach the peer",
        at - posted
    );
    // The send's completion goes to the idle worker.
    assert_eq!(idle.join().unwrap(), Some(OpKind::SendAll));
}

/// A worker sends a request to another service and blocks until another
/// worker, which dequeues the reply, hands it over: the pattern of a
/// gateway. The request must leave while its poster is blocked.
fn a_request_goes_out_while_the_poster_waits_for_the_reply(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let (mut service, conn) = pair(&port, 1);
    // The service answers each request by echoing it.
    std::thread::spawn(move || {
        let mut req = [0; 7];
        if service.read_exact(&mut req).is_ok() {
            let _ = service.write_all(&req);
        }
    });
    port.submit(op::Recv::new(&conn, Vec::with_capacity(64)).user(2))
        .unwrap();
    port.post(op::Packet::new(0)).unwrap();
    assert_eq!(next(&port).kind(), OpKind::Packet, "this thread now runs");
    let (reply_tx, reply_rx) = mpsc::channel();
    // The second worker: dequeues whatever comes and passes replies on.
    let other = waiter(&port, move |p| {
        while let Ok(mut c) = p.get(LIMIT) {
            if c.kind() == OpKind::Recv {
                let _ = reply_tx.send(c.take_buf::<Vec<u8>>().unwrap_or_default());
                return;
            }
        }
    });
    let posted = Instant::now();
    port.submit(op::SendAll::new(&conn, b"request".to_vec()).user(3))
        .unwrap();
    let reply = reply_rx
        .recv_timeout(Duration::from_secs(3))
        .expect("the request left and its reply came back while the poster waited");
    assert_eq!(reply, b"request");
    assert!(
        posted.elapsed() < BOUND,
        "the round trip took {:?}",
        posted.elapsed()
    );
    other.join().unwrap();
}

/// A thread that dequeued once and then only sends (a timer thread, a
/// producer) while another thread sits in `get(None)`: every send reaches
/// the peer without the sender dequeuing again.
fn a_thread_that_stopped_dequeuing_still_sends(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let (client, conn) = pair(&port, 1);
    let got = arrival(client, 3 * 4);
    port.post(op::Packet::new(0)).unwrap();
    assert_eq!(next(&port).kind(), OpKind::Packet, "this thread ran once");
    let other = waiter(&port, |p| {
        let mut sends = 0;
        while sends < 3 {
            match p.get(LIMIT) {
                Ok(c) if c.kind() == OpKind::SendAll => sends += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        sends
    });
    let posted = Instant::now();
    for i in 0..3u8 {
        port.submit(op::SendAll::new(&conn, vec![b'a' + i; 4]).user(u64::from(i)))
            .unwrap();
    }
    let (at, bytes) = got.recv_timeout(BUSY).expect("the sends reached the peer");
    assert_eq!(bytes, b"aaaabbbbcccc");
    assert!(at - posted < BOUND, "the sends took {:?}", at - posted);
    assert_eq!(
        other.join().unwrap(),
        3,
        "the other thread took every completion"
    );
}

/// Batching is opt-in: sends posted while a `Batch` of the port lives on
/// this thread may wait, and all of them leave when it is dropped, though
/// this thread does not dequeue.
fn a_batch_submits_when_it_ends(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (one, conn_one) = pair(&port, 1);
    let (two, conn_two) = pair(&port, 2);
    let (got_one, got_two) = (arrival(one, 3), arrival(two, 3));
    {
        let _batch = port.batch();
        port.submit(op::SendAll::new(&conn_one, b"one".to_vec()).user(1))
            .unwrap();
        port.submit(op::SendAll::new(&conn_two, b"two".to_vec()).user(2))
            .unwrap();
    }
    let ended = Instant::now();
    for (got, want) in [(got_one, b"one"), (got_two, b"two")] {
        let (at, bytes) = got.recv_timeout(BUSY).expect("the batch was submitted");
        assert_eq!(&bytes, want);
        assert!(
            at - ended < BOUND,
            "the batch took {:?} to leave",
            at - ended
        );
    }
    for _ in 0..2 {
        assert_eq!(next(&port).kind(), OpKind::SendAll);
    }
}

/// Two sends on one handle from a thread that then blocks, with no thread
/// waiting in `get`: the second waits its turn behind the first (they must
/// not interleave), and must still leave though nobody dequeues the
/// first's completion.
fn a_send_queued_behind_another_leaves_while_nobody_dequeues(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (client, conn) = pair(&port, 1);
    let got = arrival(client, 6);
    let posted = Instant::now();
    port.submit(op::SendAll::new(&conn, b"one".to_vec()).user(1))
        .unwrap();
    port.submit(op::SendAll::new(&conn, b"two".to_vec()).user(2))
        .unwrap();
    let (at, bytes) = got.recv_timeout(BUSY).expect("both sends reached the peer");
    assert_eq!(bytes, b"onetwo");
    assert!(at - posted < BOUND, "the sends took {:?}", at - posted);
    for user in 1..=2 {
        let c = next(&port);
        assert_eq!((c.kind(), c.user()), (OpKind::SendAll, user));
    }
}
