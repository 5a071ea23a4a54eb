//! Datagrams with addresses (`RecvFrom`, `RecvFromPooled`, `SendTo`) over
//! real UDP sockets, IPv4 and IPv6, on both backends.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{next, port, LIMIT};
use ringport::{op, BackendKind, CompletionPort, Outcome};

both_backends!(
    recv_from_reports_the_sender_v4,
    recv_from_reports_the_sender_v6,
    recv_from_a_datagram_longer_than_the_buffer_is_emsgsize,
    recv_from_an_empty_datagram_is_ok_zero_with_its_sender,
    send_to_reaches_each_address_from_one_unconnected_socket,
    send_to_an_address_of_the_wrong_family_fails,
    recv_from_pooled_delivers_each_datagram_with_its_sender,
    recv_from_pooled_reports_a_datagram_too_long_and_goes_on,
    recv_from_pooled_waits_while_idle_and_cancel_ends_it,
    recv_from_cancelled_returns_the_buffer,
    udp_echo_round_trips_many_datagrams,
    recv_from_pooled_with_pool_buffers_too_small_fails,
);

/// A UDP socket bound on loopback (`v6`: `[::1]`), with bounded blocking
/// calls.
fn udp(v6: bool) -> UdpSocket {
    let s = UdpSocket::bind(if v6 { "[::1]:0" } else { "127.0.0.1:0" }).expect("bind");
    s.set_read_timeout(LIMIT).unwrap();
    s
}

fn recv_from_reports_the_sender(kind: BackendKind, v6: bool) {
    let Some(port) = port(kind, 1) else { return };
    let (server, client) = (udp(v6), udp(v6));
    let to = server.local_addr().unwrap();
    let h = port.associate(server, 3).unwrap();
    port.submit(op::RecvFrom::new(&h, Vec::with_capacity(64)).user(4))
        .unwrap();
    client.send_to(b"hello", to).unwrap();
    let mut c = next(&port);
    assert_eq!((c.kind(), c.key(), c.user()), (op::OpKind::RecvFrom, 3, 4));
    assert_eq!(c.result().unwrap(), 5);
    assert_eq!(
        c.address().and_then(|a| a.ip()),
        Some(client.local_addr().unwrap())
    );
    match c.take_outcome() {
        Outcome::ReceivedFrom(5, buf, from) => {
            assert_eq!(&*buf, b"hello");
            assert_eq!(from.ip(), Some(client.local_addr().unwrap()));
        }
        other => panic!("{other:?}"),
    }
}

fn recv_from_reports_the_sender_v4(kind: BackendKind) {
    recv_from_reports_the_sender(kind, false);
}

fn recv_from_reports_the_sender_v6(kind: BackendKind) {
    recv_from_reports_the_sender(kind, true);
}

fn recv_from_a_datagram_longer_than_the_buffer_is_emsgsize(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (server, client) = (udp(false), udp(false));
    let to = server.local_addr().unwrap();
    let h = port.associate(server, 1).unwrap();
    client.send_to(b"0123456789", to).unwrap();
    client.send_to(b"abcd", to).unwrap();
    port.submit(op::RecvFrom::new(&h, Vec::with_capacity(4)))
        .unwrap();
    let mut c = next(&port);
    assert_eq!(c.error_code(), Some(libc::EMSGSIZE), "{c:?}");
    assert_eq!(c.data(), b"0123", "the part that fitted");
    assert_eq!(
        c.address().and_then(|a| a.ip()),
        Some(client.local_addr().unwrap())
    );
    // The rest of the truncated datagram is gone; the next one fits exactly.
    let buf: Vec<u8> = c.take_buf().unwrap();
    assert_eq!(buf.capacity(), 4);
    port.submit(op::RecvFrom::new(&h, Vec::with_capacity(4)))
        .unwrap();
    let c = next(&port);
    assert_eq!((c.result().unwrap(), c.data()), (4, &b"abcd"[..]));
}

fn recv_from_an_empty_datagram_is_ok_zero_with_its_sender(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (server, client) = (udp(false), udp(false));
    let to = server.local_addr().unwrap();
    let h = port.associate(server, 1).unwrap();
    client.send_to(b"", to).unwrap();
    port.submit(op::RecvFrom::new(&h, Vec::with_capacity(8)))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.result().unwrap(), 0);
    assert_eq!(
        c.address().and_then(|a| a.ip()),
        Some(client.local_addr().unwrap())
    );
}

fn send_to_reaches_each_address_from_one_unconnected_socket(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    for v6 in [false, true] {
        let (a, b) = (udp(v6), udp(v6));
        let sender = udp(v6);
        let from = sender.local_addr().unwrap();
        let h = port.associate(sender, 1).unwrap();
        for (i, peer) in [&a, &b].into_iter().enumerate() {
            let msg = format!("to peer {i}").into_bytes();
            port.submit(
                op::SendTo::new(&h, msg.clone(), peer.local_addr().unwrap()).user(i as u64),
            )
            .unwrap();
            let mut c = next(&port);
            assert_eq!((c.kind(), c.user()), (op::OpKind::SendTo, i as u64));
            assert_eq!(c.result().unwrap(), msg.len());
            assert_eq!(c.take_buf::<Vec<u8>>(), Some(msg.clone()));
            let mut got = [0u8; 64];
            let (n, src) = peer.recv_from(&mut got).unwrap();
            assert_eq!((&got[..n], src), (&msg[..], from));
        }
    }
}

fn send_to_an_address_of_the_wrong_family_fails(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let h = port.associate(udp(false), 1).unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    port.submit(op::SendTo::new(&h, b"x".to_vec(), v6)).unwrap();
    let mut c = next(&port);
    let err = c.result().unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EINVAL)),
        "{err}"
    );
    assert_eq!(
        c.take_buf::<Vec<u8>>(),
        Some(b"x".to_vec()),
        "the buffer comes back"
    );
}

fn recv_from_pooled_delivers_each_datagram_with_its_sender(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    for v6 in [false, true] {
        let server = udp(v6);
        let to = server.local_addr().unwrap();
        let h = port.associate(server, 7).unwrap();
        let id = port.submit(op::RecvFromPooled::new(&h)).unwrap();
        let clients = [udp(v6), udp(v6)];
        // A burst from two senders, more than one arming's worth.
        const EACH: usize = 100;
        for i in 0..EACH {
            for (k, c) in clients.iter().enumerate() {
                c.send_to(format!("{k}:{i}").as_bytes(), to).unwrap();
            }
        }
        let mut next_of = [0usize; 2];
        let mut got = 0;
        while got < 2 * EACH {
            let mut c = next(&port);
            assert_eq!((c.id(), c.key()), (id, 7));
            assert!(c.more(), "{c:?}");
            let from = c.address().and_then(|a| a.ip()).unwrap();
            let k = clients
                .iter()
                .position(|s| s.local_addr().unwrap() == from)
                .expect("a known sender");
            // Loopback keeps each sender's datagrams in order.
            assert_eq!(c.data(), format!("{k}:{}", next_of[k]).as_bytes());
            next_of[k] += 1;
            got += 1;
            port.recycle(c.take_buf().unwrap());
        }
        port.cancel(id).unwrap();
        let c = next(&port);
        assert!(c.is_cancelled() && !c.more(), "{c:?}");
    }
}

fn recv_from_pooled_reports_a_datagram_too_long_and_goes_on(kind: BackendKind) {
    let Ok(port) = CompletionPort::builder()
        .backend(kind)
        .pool_buffer_size(1024)
        .build()
    else {
        eprintln!("SKIPPED: {kind} unavailable here");
        return;
    };
    let (server, client) = (udp(false), udp(false));
    let to = server.local_addr().unwrap();
    let h = port.associate(server, 1).unwrap();
    port.submit(op::RecvFromPooled::new(&h)).unwrap();
    let big = common::pattern(1, 2000);
    client.send_to(&big, to).unwrap();
    client.send_to(b"small", to).unwrap();
    let mut c = next(&port);
    assert!(c.more());
    assert_eq!(c.error_code(), Some(libc::EMSGSIZE), "{c:?}");
    let room = 1024 - 144;
    assert_eq!(c.data(), &big[..room], "the part that fitted");
    assert_eq!(
        c.address().and_then(|a| a.ip()),
        Some(client.local_addr().unwrap())
    );
    port.recycle(c.take_buf().unwrap());
    let c = next(&port);
    assert!(c.more());
    assert_eq!((c.result().unwrap(), c.data()), (5, &b"small"[..]));
}

fn recv_from_pooled_waits_while_idle_and_cancel_ends_it(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let h = port.associate(udp(false), 1).unwrap();
    let id = port.submit(op::RecvFromPooled::new(&h)).unwrap();
    assert!(matches!(
        port.get(Some(Duration::from_millis(20))),
        Err(ringport::GetError::TimedOut)
    ));
    port.cancel(id).unwrap();
    let c = next(&port);
    assert!(c.is_cancelled() && !c.more(), "{c:?}");
    assert!(c.data().is_empty() && c.address().is_none());
    assert_eq!(port.outstanding(), 0);
}

fn recv_from_cancelled_returns_the_buffer(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let h = port.associate(udp(false), 1).unwrap();
    let id = port
        .submit(op::RecvFrom::new(&h, Vec::with_capacity(32)))
        .unwrap();
    port.cancel(id).unwrap();
    let mut c = next(&port);
    assert!(c.is_cancelled(), "{c:?}");
    assert!(c.address().is_none());
    assert_eq!(c.take_buf::<Vec<u8>>().map(|b| b.capacity()), Some(32));
}

fn udp_echo_round_trips_many_datagrams(kind: BackendKind) {
    {
        let Some(port) = port(kind, 1) else { return };
        let server = udp(false);
        let to = server.local_addr().unwrap();
        let h = port.associate(server, 1).unwrap();
        let recv = port.submit(op::RecvFromPooled::new(&h)).unwrap();
        let client = udp(false);
        const N: usize = 300;
        for i in 0..N {
            let msg = common::pattern(i as u64, 1 + i % 700);
            client.send_to(&msg, to).unwrap();
            // The echo: each datagram back to its sender by SendTo.
            let mut c = next(&port);
            assert_eq!(c.kind(), op::OpKind::RecvFromPooled);
            let from = c.address().unwrap().to_sock_addr().unwrap();
            let data: Vec<u8> = c.take_buf().unwrap();
            assert_eq!(data, msg);
            port.submit(op::SendTo::new(&h, data, from)).unwrap();
            let mut sent = next(&port);
            assert_eq!(sent.result().unwrap(), msg.len());
            port.recycle(sent.take_buf().unwrap());
            let mut back = [0u8; 1024];
            let (n, src) = client.recv_from(&mut back).unwrap();
            assert_eq!((&back[..n], src), (&msg[..], to));
        }
        port.cancel(recv).unwrap();
        assert!(next(&port).is_cancelled());
    }
}

/// Pool buffers too small to hold a datagram's header and address: the
/// pooled receive fails at once (on epoll it used to be reposted forever
/// as "out of buffers").
fn recv_from_pooled_with_pool_buffers_too_small_fails(kind: BackendKind) {
    let Ok(port) = CompletionPort::builder()
        .backend(kind)
        .pool_buffer_size(128)
        .build()
    else {
        eprintln!("SKIPPED: {kind} unavailable here");
        return;
    };
    let (server, client) = (udp(false), udp(false));
    let to = server.local_addr().unwrap();
    let h = port.associate(server, 1).unwrap();
    client.send_to(b"x", to).unwrap();
    port.submit(op::RecvFromPooled::new(&h)).unwrap();
    let c = next(&port);
    assert!(!c.more());
    assert_eq!(c.error_code(), Some(libc::EMSGSIZE), "{c:?}");
}
