//! Zero-copy sends (`Builder::send_zero_copy_above`): large `SendAll`s go
//! out with io_uring's `SEND_ZC` and complete after the kernel's
//! notification; epoll ignores the setting. Both backends must send the
//! same bytes, in order, and hand the buffer back.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};

use common::{next, pattern, set_linger_zero, LIMIT};
use ringport::{op, BackendKind, CompletionPort, Handle};

both_backends!(
    large_sends_arrive_whole_and_in_order_with_their_buffers,
    a_zero_copy_send_to_a_reset_peer_fails_with_its_buffer,
);

fn zc_port(kind: BackendKind) -> Option<CompletionPort> {
    match CompletionPort::builder()
        .backend(kind)
        .send_zero_copy_above(16 * 1024)
        .build()
    {
        Ok(p) => Some(p),
        Err(e) if kind == BackendKind::IoUring => {
            eprintln!("SKIPPED: io_uring unavailable here: {e}");
            None
        }
        Err(e) => panic!("{kind}: {e}"),
    }
}

fn pair(port: &CompletionPort) -> (TcpStream, Handle) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    client.set_read_timeout(LIMIT).unwrap();
    let server = port.associate(l.accept().unwrap().0, 1).unwrap();
    (client, server)
}

fn large_sends_arrive_whole_and_in_order_with_their_buffers(kind: BackendKind) {
    let Some(port) = zc_port(kind) else { return };
    let (mut client, conn) = pair(&port);
    // Above and below the threshold, interleaved: order is kept.
    let sends: Vec<Vec<u8>> = (0..12u64)
        .map(|i| {
            pattern(
                i,
                if i % 3 == 0 {
                    100
                } else {
                    64 * 1024 + i as usize * 4096
                },
            )
        })
        .collect();
    let want = sends.concat();
    let len = want.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; len];
        client.read_exact(&mut got).map(|_| got)
    });
    for (i, s) in sends.iter().enumerate() {
        port.submit(op::SendAll::new(&conn, s.clone()).user(i as u64))
            .unwrap();
    }
    for _ in 0..sends.len() {
        let mut c = next(&port);
        let i = c.user() as usize;
        assert_eq!(c.result().unwrap(), sends[i].len());
        assert_eq!(c.take_buf::<Vec<u8>>().as_ref(), Some(&sends[i]));
    }
    assert!(reader.join().unwrap().unwrap() == want, "bytes differ");
}

fn a_zero_copy_send_to_a_reset_peer_fails_with_its_buffer(kind: BackendKind) {
    let Some(port) = zc_port(kind) else { return };
    let (client, conn) = pair(&port);
    set_linger_zero(&client);
    drop(client);
    let mut failed = None;
    for _ in 0..100 {
        port.submit(op::SendAll::new(&conn, vec![5u8; 256 * 1024]))
            .unwrap();
        let mut c = next(&port);
        assert_eq!(c.take_buf::<Vec<u8>>().map(|b| b.len()), Some(256 * 1024));
        if let Err(e) = c.result() {
            failed = e.raw_os_error();
            break;
        }
    }
    assert!(
        matches!(failed, Some(libc::EPIPE | libc::ECONNRESET)),
        "{failed:?}"
    );
}
