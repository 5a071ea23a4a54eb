//! A send made in a callback leaves when it is made, even if the callback
//! then computes for a long time and every other worker is busy too.

mod common;

use std::io::{Read, Write};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{builder, client, LIMIT};
use ringport::BackendKind;
use ringport_server::{Connection, Handler};

both_backends!(a_reply_leaves_while_every_worker_computes);

/// How long a reply may take to reach the client after `send`.
const BOUND: Duration = Duration::from_millis(50);
/// How long each callback computes after sending.
const BUSY: Duration = Duration::from_millis(400);

/// Echoes, says when it sent, then computes for `BUSY`.
struct SlowEcho {
    sent: Mutex<Sender<Instant>>,
}

impl Handler for SlowEcho {
    type State = ();
    fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
    fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
        let _ = conn.send(data);
        let _ = self.sent.lock().unwrap().send(Instant::now());
        // The computation (this worker does not come back to the port).
        std::thread::sleep(BUSY);
    }
}

fn a_reply_leaves_while_every_worker_computes(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (tx, sent) = channel();
    let server = b
        .workers(2)
        .concurrency(2)
        .start(SlowEcho {
            sent: Mutex::new(tx),
        })
        .unwrap();
    let mut a = client(server.local_addr());
    let mut b = client(server.local_addr());
    let mut back = [0; 1];
    // The first worker takes a's message and computes; then the second
    // takes b's: both are busy when b's reply is sent.
    a.write_all(b"a").unwrap();
    let a_sent = sent.recv_timeout(LIMIT).expect("a's callback ran");
    a.read_exact(&mut back).unwrap();
    let a_took = a_sent.elapsed();
    b.write_all(b"b").unwrap();
    let b_sent = sent.recv_timeout(LIMIT).expect("b's callback ran");
    b.read_exact(&mut back).unwrap();
    let b_took = b_sent.elapsed();
    assert_eq!(&back, b"b");
    assert!(
        b_took < BOUND && a_took < BOUND,
        "replies reached the clients {a_took:?} and {b_took:?} after their sends"
    );
    server.stop();
}
