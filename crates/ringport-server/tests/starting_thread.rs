//! The thread that starts a server is not woken per accepted connection:
//! on io_uring the kernel runs a multishot accept's work on the thread that
//! submitted it, so a worker posts the first accepts, not `start`'s caller
//! (which, posting them, was switched about once per connection).

mod common;

use std::io::{Read, Write};
use std::sync::mpsc::channel;

use ringport::BackendKind;

use common::*;

/// This thread's context switches so far.
fn my_context_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split(':').nth(1).unwrap().trim().parse::<u64>().unwrap())
        .sum()
}

fn the_starting_thread_is_not_woken_per_connection(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (to_starter, starter_rx) = channel::<()>();
    let (to_test, test_rx) = channel();
    let starter = std::thread::spawn(move || {
        let server = b.start(Echo).unwrap();
        let first = my_context_switches();
        to_test.send(server.local_addr()).unwrap();
        starter_rx.recv().unwrap();
        let woken = my_context_switches() - first;
        server.stop();
        woken
    });
    let addr = test_rx.recv_timeout(LIMIT).unwrap();
    let connections = 300;
    for i in 0..connections {
        let mut c = client(addr);
        c.write_all(&[i as u8]).unwrap();
        let mut one = [0; 1];
        c.read_exact(&mut one).unwrap();
        assert_eq!(one[0], i as u8);
    }
    to_starter.send(()).unwrap();
    let woken = starter.join().unwrap();
    assert!(
        woken < 20,
        "the starting thread was switched {woken} times for {connections} connections"
    );
}

both_backends!(the_starting_thread_is_not_woken_per_connection);
