//! Flow control: a client that does not read cannot grow the server's
//! memory, and the other clients are still served.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use ringport::BackendKind;

use common::*;

const LIMIT_BYTES: usize = 256 * 1024;
const CHUNK: usize = 4096;
const POOL: usize = 16;
/// The client gives up (and the test fails) after writing this much
/// without the server pushing back.
const CAP: usize = 512 << 20;

fn non_reading_client_is_paused(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let server = b
        .send_queue_limit(LIMIT_BYTES)
        .recv_buffer_size(CHUNK)
        .pool_buffers(POOL)
        .start(Echo)
        .unwrap();
    let addr = server.local_addr();
    let rss_before = rss_kib();

    // The hog writes and never reads; each write blocks at most 1 s. A
    // server without flow control would read (and queue) forever.
    let mut hog = client(addr);
    hog.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let data = pattern(7, 1 << 20);
    let mut written = 0usize;
    loop {
        let off = written % data.len();
        match hog.write(&data[off..]) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("hog write failed: {e}"),
        }
        assert!(
            written < CAP,
            "the server kept reading a client that does not read"
        );
    }
    let conns = server.connections().snapshot();
    assert_eq!(conns.len(), 1);
    let queued = conns[0].queued();
    // Each receive is posted for the room left under the limit and the
    // port reads no further, so the queue ends over the limit by at most
    // one receive buffer (the last receive of a capped io_uring multishot)
    // and the chunk the handler had in hand.
    assert!(
        queued <= LIMIT_BYTES + 2 * CHUNK,
        "send queue grew to {queued} bytes (limit {LIMIT_BYTES})"
    );
    assert!(server.stats().read_pauses >= 1);
    let grown = rss_kib().saturating_sub(rss_before);
    eprintln!(
        "{kind}: hog wrote {} KiB before stalling; server queue {} KiB; RSS +{grown} KiB",
        written / 1024,
        queued / 1024
    );
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");

    // Other clients are served meanwhile.
    let mut other = client(addr);
    for i in 0..20 {
        let msg = pattern(i, 1000);
        assert_eq!(round_trip(&mut other, &msg), msg);
    }

    // When the hog reads again, it gets every byte back, in order.
    let mut back = vec![0; written];
    hog.set_read_timeout(Some(LIMIT)).unwrap();
    hog.read_exact(&mut back).unwrap();
    for (i, chunk) in back.chunks(data.len()).enumerate() {
        assert!(chunk == &data[..chunk.len()], "echo differs in MiB {i}");
    }
    // And it is read from again.
    assert_eq!(round_trip(&mut hog, b"after"), b"after");
    server.stop();
}

both_backends!(non_reading_client_is_paused);
