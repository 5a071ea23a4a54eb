//! Gather sends and scatter receives (`SendVectored`, `RecvVectored`) over
//! real sockets, on both backends.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;

use common::{next, pair, pattern, port, set_linger_zero};
use ringport::{op, BackendKind, OpKind};

both_backends!(
    send_vectored_sends_every_buffer_in_order,
    vectored_sends_never_interleave_with_other_sends,
    recv_vectored_fills_the_parts_in_order,
    recv_vectored_of_zero_bytes_means_peer_closed,
    recv_vectored_of_a_datagram_too_long_is_emsgsize,
    send_vectored_to_a_reset_peer_fails_with_its_buffers,
    recv_vectored_cancelled_returns_its_buffers,
    a_vectored_op_without_buffers_is_refused,
);

fn send_vectored_sends_every_buffer_in_order(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, conn) = pair(&port, 1);
    // Larger than the socket buffers: partial sends are continued.
    let parts: Vec<Vec<u8>> = (0..5).map(|i| pattern(i, 300_000 + i as usize)).collect();
    let want = parts.concat();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 1_500_010];
        client.read_exact(&mut got).map(|_| got)
    });
    port.submit(op::SendVectored::new(&conn, parts.clone()).user(3))
        .unwrap();
    let mut c = next(&port);
    assert_eq!((c.kind(), c.user()), (OpKind::SendVectored, 3));
    assert_eq!(c.result().unwrap(), want.len());
    assert_eq!(c.take_buf::<Vec<Vec<u8>>>(), Some(parts));
    assert_eq!(reader.join().unwrap().unwrap(), want);
}

fn vectored_sends_never_interleave_with_other_sends(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    let (mut client, conn) = pair(&port, 1);
    const ROUNDS: u64 = 20;
    let mut want = Vec::new();
    for i in 0..ROUNDS {
        let parts = vec![pattern(i, 70_000), pattern(i + 100, 50_000)];
        want.extend(parts.concat());
        port.submit(op::SendVectored::new(&conn, parts)).unwrap();
        let single = pattern(i + 200, 90_000);
        want.extend_from_slice(&single);
        port.submit(op::SendAll::new(&conn, single)).unwrap();
    }
    let len = want.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; len];
        client.read_exact(&mut got).map(|_| got)
    });
    for _ in 0..2 * ROUNDS {
        next(&port).result().unwrap();
    }
    let got = reader.join().unwrap().unwrap();
    assert!(
        got == want,
        "the sends' bytes were reordered or interleaved"
    );
}

fn recv_vectored_fills_the_parts_in_order(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, conn) = pair(&port, 1);
    client.write_all(b"0123456789").unwrap();
    let parts = vec![
        b"x".to_vec(),
        Vec::with_capacity(3),
        Vec::with_capacity(100),
    ];
    let mut parts = parts;
    parts[0].reserve_exact(2); // one byte in, room for more after it
    let room0 = parts[0].capacity() - 1;
    port.submit(op::RecvVectored::new(&conn, parts)).unwrap();
    let mut c = next(&port);
    assert_eq!((c.kind(), c.result().unwrap()), (OpKind::RecvVectored, 10));
    let parts: Vec<Vec<u8>> = c.take_buf().unwrap();
    let mut all = parts.concat();
    assert_eq!(all.remove(0), b'x', "what was in a part stays first");
    assert_eq!(all, b"0123456789");
    assert_eq!(
        parts[0].len(),
        1 + room0.min(10),
        "the first part filled first"
    );
}

fn recv_vectored_of_zero_bytes_means_peer_closed(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (client, conn) = pair(&port, 1);
    drop(client);
    port.submit(op::RecvVectored::new(
        &conn,
        (0..2)
            .map(|_| Vec::with_capacity(8))
            .collect::<Vec<Vec<u8>>>(),
    ))
    .unwrap();
    assert_eq!(next(&port).result().unwrap(), 0);
}

fn recv_vectored_of_a_datagram_too_long_is_emsgsize(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let h = port.associate(server, 1).unwrap();
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"abcdefgh", to)
        .unwrap();
    port.submit(op::RecvVectored::new(
        &h,
        vec![Vec::with_capacity(3), Vec::with_capacity(2)],
    ))
    .unwrap();
    let mut c = next(&port);
    assert_eq!(c.error_code(), Some(libc::EMSGSIZE), "{c:?}");
    let parts: Vec<Vec<u8>> = c.take_buf().unwrap();
    assert_eq!(parts.concat(), b"abcde", "the part that fitted");
}

fn send_vectored_to_a_reset_peer_fails_with_its_buffers(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (client, conn) = pair(&port, 1);
    set_linger_zero(&client);
    drop(client);
    // The reset may arrive after the first send: send until it shows.
    let mut failed = None;
    for _ in 0..100 {
        port.submit(op::SendVectored::new(
            &conn,
            vec![vec![1u8; 1000], vec![2u8; 1000]],
        ))
        .unwrap();
        let mut c = next(&port);
        let bufs = c.take_buf::<Vec<Vec<u8>>>().expect("the buffers come back");
        assert_eq!(bufs.len(), 2);
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

fn recv_vectored_cancelled_returns_its_buffers(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, conn) = pair(&port, 1);
    let id = port
        .submit(op::RecvVectored::new(
            &conn,
            (0..3)
                .map(|_| Vec::with_capacity(8))
                .collect::<Vec<Vec<u8>>>(),
        ))
        .unwrap();
    port.cancel(id).unwrap();
    let mut c = next(&port);
    assert!(c.is_cancelled(), "{c:?}");
    assert_eq!(c.take_buf::<Vec<Vec<u8>>>().map(|v| v.len()), Some(3));
}

fn a_vectored_op_without_buffers_is_refused(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, conn) = pair(&port, 1);
    let none: Vec<Vec<u8>> = Vec::new();
    let err = port.submit(op::SendVectored::new(&conn, none)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let full = vec![Vec::<u8>::new()];
    let err = port.submit(op::RecvVectored::new(&conn, full)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(port.outstanding(), 0);
}
