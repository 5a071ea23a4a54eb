//! Every operation over real loopback sockets and files, on both backends.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{next, pair, pattern, port, set_linger_zero, LIMIT};
use ringport::op;
use ringport::{BackendKind, OpKind};
use socket2::{Domain, Socket, Type};

both_backends!(
    a_receive_cancelled_in_its_lane_does_not_free_the_lane,
    accept_reports_socket_and_both_addresses,
    accept_with_data_completes_with_the_first_bytes,
    several_accepts_stay_posted,
    accept_multi_accepts_until_cancelled,
    connect_succeeds_and_refused_connect_fails,
    recv_and_send_round_trip,
    recv_of_zero_bytes_means_peer_closed,
    recv_after_reset_is_econnreset,
    send_completes_with_bytes_actually_sent,
    send_all_finishes_partial_sends,
    several_sends_keep_their_order,
    recv_and_send_outstanding_at_once,
    recv_pooled_delivers_chunks_then_end_of_stream,
    recv_pooled_sees_end_of_stream_queued_behind_data,
    recv_pooled_up_to_stops_at_its_budget,
    read_at_and_write_at_on_a_file,
    timeouts_fire_in_deadline_order,
    cancel_returns_the_buffer,
    cancel_handle_cancels_every_op,
    close_cancels_pending_ops_and_closes_the_socket,
    coalesced_waits_still_deliver_a_lone_completion,
);

fn listener(port: &ringport::CompletionPort) -> (ringport::Handle, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (port.associate(l, 0).unwrap(), addr)
}

fn accept_reports_socket_and_both_addresses(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (l, addr) = listener(&port);
    let id = port.submit(op::Accept::new(&l).user(9)).unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let mut c = next(&port);
    assert_eq!(
        (c.kind(), c.id(), c.user(), c.key()),
        (OpKind::Accept, id, 9, 0)
    );
    assert_eq!(c.result().unwrap(), 0);
    let acc = c.take_accepted().expect("accepted socket");
    assert_eq!(acc.peer, client.local_addr().unwrap());
    assert_eq!(acc.local, addr);
    // The socket is real: bytes written on it reach the client.
    let mut s = TcpStream::from(acc.socket);
    s.write_all(b"hi").unwrap();
    let mut got = [0; 2];
    let mut client = client;
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hi");
}

fn accept_with_data_completes_with_the_first_bytes(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (l, addr) = listener(&port);
    port.submit(
        op::Accept::new(&l)
            .first_data(Vec::with_capacity(64))
            .user(1),
    )
    .unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"first data").unwrap();
    let mut c = next(&port);
    assert_eq!(c.kind(), OpKind::Accept);
    assert_eq!(c.result().unwrap(), 10);
    assert_eq!(c.data(), b"first data");
    let acc = c.take_accepted().expect("accepted socket");
    assert_eq!(acc.peer, client.local_addr().unwrap());
}

fn several_accepts_stay_posted(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (l, addr) = listener(&port);
    for i in 0..10 {
        port.submit(op::Accept::new(&l).user(i)).unwrap();
    }
    let clients: Vec<_> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut users = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..10 {
        let mut c = next(&port);
        users.push(c.user());
        peers.push(c.take_accepted().unwrap().peer);
    }
    users.sort_unstable();
    assert_eq!(users, (0..10).collect::<Vec<_>>());
    let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    expected.sort();
    peers.sort();
    assert_eq!(peers, expected);
}

fn accept_multi_accepts_until_cancelled(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (l, addr) = listener(&port);
    let id = port
        .submit(op::Accept::new(&l).multishot().user(3))
        .unwrap();
    let clients: Vec<_> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut peers = Vec::new();
    for seq in 0..20 {
        let mut c = next(&port);
        assert_eq!(
            (c.kind(), c.id(), c.user(), c.seq()),
            (OpKind::Accept, id, 3, seq)
        );
        assert!(c.more(), "{c:?}");
        let acc = c.take_accepted().expect("a connection");
        assert_eq!(acc.local, addr);
        peers.push(acc.peer);
    }
    let mut expected: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
    expected.sort();
    peers.sort();
    assert_eq!(peers, expected, "both addresses of every connection");
    port.cancel(id).unwrap();
    let c = next(&port);
    assert!(c.is_cancelled() && !c.more(), "{c:?}");
    assert_eq!(port.outstanding(), 0);
}

fn connect_succeeds_and_refused_connect_fails(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let h = port.associate(s, 3).unwrap();
    port.submit(op::Connect::new(&h, addr).user(4)).unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.key(), c.user()), (OpKind::Connect, 3, 4));
    assert_eq!(c.result().unwrap(), 0);
    let (_, peer) = l.accept().unwrap();
    assert_eq!(peer, ringport::local_addr(&h).unwrap());

    // A port nobody listens on: ECONNREFUSED, code kept.
    let gone = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let h = port.associate(s, 5).unwrap();
    port.submit(op::Connect::new(&h, gone_addr).user(6))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.error_code(), Some(libc::ECONNREFUSED), "{c:?}");
}

fn recv_and_send_round_trip(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 7);
    client.write_all(b"hello").unwrap();
    let mut buf = Vec::with_capacity(16);
    buf.extend_from_slice(b">>");
    port.submit(op::Recv::new(&h, buf).user(1)).unwrap();
    let mut c = next(&port);
    assert_eq!((c.kind(), c.key(), c.user()), (OpKind::Recv, 7, 1));
    assert_eq!(c.result().unwrap(), 5);
    // Received bytes are appended after what the buffer held.
    assert_eq!(c.data(), b">>hello");
    let buf = c.take_buf::<Vec<u8>>().unwrap();
    port.submit(op::Send::new(&h, buf).user(2)).unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.result().unwrap()), (OpKind::Send, 7));
    let mut got = [0; 7];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b">>hello");
}

fn recv_of_zero_bytes_means_peer_closed(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (client, h) = pair(&port, 1);
    port.submit(op::Recv::new(&h, Vec::with_capacity(64)))
        .unwrap();
    drop(client);
    let mut c = next(&port);
    assert_eq!(c.result().unwrap(), 0);
    assert_eq!(c.take_buf::<Vec<u8>>().unwrap().capacity(), 64);
}

fn recv_after_reset_is_econnreset(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (client, h) = pair(&port, 1);
    set_linger_zero(&client);
    port.submit(op::Recv::new(&h, Vec::with_capacity(64)))
        .unwrap();
    drop(client);
    let c = next(&port);
    assert_eq!(c.error_code(), Some(libc::ECONNRESET), "{c:?}");
    assert!(!c.is_cancelled());
}

fn send_completes_with_bytes_actually_sent(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    socket2::SockRef::from(&h)
        .set_send_buffer_size(4096)
        .unwrap();
    let data = pattern(1, 4 << 20);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        got
    });
    port.submit(op::Send::new(&h, data.clone())).unwrap();
    let mut c = next(&port);
    let sent = c.result().unwrap();
    assert!(sent > 0 && sent <= data.len());
    assert_eq!(
        c.take_buf::<Vec<u8>>().unwrap(),
        data,
        "the buffer comes back whole"
    );
    drop(h);
    let got = reader.join().unwrap();
    assert_eq!(got[..], data[..sent], "exactly the reported bytes arrived");
}

fn send_all_finishes_partial_sends(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    socket2::SockRef::from(&h)
        .set_send_buffer_size(4096)
        .unwrap();
    let data = pattern(2, 8 << 20);
    let expect = data.clone();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0; expect.len()];
        // Read slowly in small pieces so the sender sees partial sends.
        for chunk in got.chunks_mut(32 << 10) {
            client.read_exact(chunk).unwrap();
        }
        got == expect
    });
    port.submit(op::SendAll::new(&h, data)).unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.result().unwrap()), (OpKind::SendAll, 8 << 20));
    assert!(reader.join().unwrap(), "every byte arrived in order");
}

fn several_sends_keep_their_order(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    let msgs: Vec<Vec<u8>> = (0..40)
        .map(|i| pattern(i, 50_000 + i as usize * 7))
        .collect();
    let expect: Vec<u8> = msgs.concat();
    let total = expect.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0; total];
        client.read_exact(&mut got).unwrap();
        got == expect
    });
    let ids: Vec<_> = msgs
        .into_iter()
        .enumerate()
        .map(|(i, m)| port.submit(op::SendAll::new(&h, m).user(i as u64)).unwrap())
        .collect();
    let mut done = Vec::new();
    for _ in 0..ids.len() {
        let c = next(&port);
        assert!(c.result().is_ok(), "{c:?}");
        done.push(c.user());
    }
    assert_eq!(
        done,
        (0..40).collect::<Vec<_>>(),
        "completions in post order"
    );
    assert!(reader.join().unwrap(), "bytes in post order");
}

fn recv_and_send_outstanding_at_once(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    let recv = port
        .submit(op::Recv::new(&h, Vec::with_capacity(64)).user(1))
        .unwrap();
    let send = port
        .submit(op::SendAll::new(&h, b"from server".to_vec()).user(2))
        .unwrap();
    assert_ne!(recv, send);
    let c = next(&port);
    assert_eq!((c.kind(), c.result().unwrap()), (OpKind::SendAll, 11));
    let mut got = [0; 11];
    client.read_exact(&mut got).unwrap();
    client.write_all(b"from client").unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.data()), (OpKind::Recv, &b"from client"[..]));
}

fn recv_pooled_delivers_chunks_then_end_of_stream(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    let id = port.submit(op::RecvPooled::new(&h).user(5)).unwrap();
    let mut seq = 0;
    for i in 0..20u64 {
        let msg = pattern(i, 100 + i as usize);
        client.write_all(&msg).unwrap();
        let mut got = Vec::new();
        while got.len() < msg.len() {
            let mut c = next(&port);
            assert_eq!((c.kind(), c.id(), c.user()), (OpKind::RecvPooled, id, 5));
            assert!(c.more(), "{c:?}");
            assert_eq!(c.seq(), seq, "chunks are numbered in arrival order");
            seq += 1;
            got.extend_from_slice(c.data());
            port.recycle(c.take_buf::<Vec<u8>>().unwrap());
        }
        assert_eq!(got, msg);
    }
    drop(client);
    let c = next(&port);
    assert_eq!((c.result().unwrap(), c.more(), c.seq()), (0, false, seq));
    assert_eq!(port.outstanding(), 0);
}

/// Data and the peer's FIN both wait in the socket, and the port has
/// already seen their event, before the pooled receive is posted: a short
/// read must not make the port stop reading there (on epoll no further
/// edge would come for the end of stream).
fn recv_pooled_sees_end_of_stream_queued_behind_data(kind: BackendKind) {
    use std::os::fd::{AsFd, AsRawFd};
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    let msg = pattern(7, 300);
    client.write_all(&msg).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    // Wait until the server side has the FIN (POLLRDHUP), so both are
    // queued when the receive starts.
    let mut pfd = libc::pollfd {
        fd: h.as_fd().as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let limit_ms = LIMIT.map_or(-1, |d| d.as_millis() as i32);
    // SAFETY: one valid pollfd; the descriptor stays open (the handle is
    // alive) for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, limit_ms) };
    assert_eq!(n, 1, "the FIN reached the server side");
    // Let the port take the socket's event (a timer completes only through
    // a poll), so no event is left to come when the receive starts.
    port.submit(op::Timeout::new(Duration::from_millis(1)).key(9).user(9))
        .unwrap();
    assert_eq!(next(&port).kind(), OpKind::Timeout);
    let id = port.submit(op::RecvPooled::new(&h).user(5)).unwrap();
    let mut got = Vec::new();
    loop {
        let mut c = next(&port);
        assert_eq!((c.kind(), c.id()), (OpKind::RecvPooled, id));
        if !c.more() {
            assert_eq!(c.result().unwrap(), 0, "end of stream");
            break;
        }
        got.extend_from_slice(c.data());
        port.recycle(c.take_buf::<Vec<u8>>().unwrap());
    }
    assert_eq!(got, msg);
    assert_eq!(port.outstanding(), 0);
}

/// A pooled receive with a budget delivers no more than the budget plus
/// less than one pool buffer, although more data waits in the socket, then
/// ends by itself with `Ok(bytes delivered)`; the next receive takes up
/// exactly where it stopped.
fn recv_pooled_up_to_stops_at_its_budget(kind: BackendKind) {
    const BUDGET: usize = 20_000;
    const POOL_BUF: usize = 4096;
    let Ok(port) = ringport::CompletionPort::builder()
        .backend(kind)
        .pool_buffer_size(POOL_BUF)
        .build()
    else {
        eprintln!("SKIPPED: {kind} unavailable here");
        return;
    };
    let (mut client, h) = pair(&port, 1);
    let err = port
        .submit(op::RecvPooled::new(&h).up_to(0).user(5))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let msg = pattern(3, 3 * BUDGET);
    client.write_all(&msg).unwrap();
    let mut got = Vec::new();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= msg.len() / BUDGET + 1, "too many rounds");
        let id = port
            .submit(op::RecvPooled::new(&h).up_to(BUDGET).user(5))
            .unwrap();
        let (start, mut seq) = (got.len(), 0);
        let end = loop {
            let mut c = next(&port);
            assert_eq!((c.kind(), c.id(), c.user()), (OpKind::RecvPooled, id, 5));
            assert_eq!(c.seq(), seq);
            seq += 1;
            if !c.more() {
                break c.result().unwrap();
            }
            got.extend_from_slice(c.data());
            let buf = c.take_buf::<Vec<u8>>().unwrap();
            assert!(buf.capacity() <= POOL_BUF);
            port.recycle(buf);
            if got.len() == msg.len() {
                // All in: end the stream, so the last receive ends too.
                client.shutdown(std::net::Shutdown::Write).unwrap();
            }
        };
        let delivered = got.len() - start;
        if end == 0 {
            assert_eq!(got.len(), msg.len(), "end of stream after the data");
            break;
        }
        assert_eq!(end, delivered, "the final result is what it delivered");
        assert!(
            (BUDGET..BUDGET + POOL_BUF).contains(&delivered),
            "delivered {delivered} bytes for a budget of {BUDGET}"
        );
    }
    assert_eq!(got, msg, "nothing lost or duplicated across receives");
    assert_eq!(port.outstanding(), 0);
}

fn read_at_and_write_at_on_a_file(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let path = std::env::temp_dir().join(format!("ringport-file-{}-{kind}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let h = port.associate(file, 11).unwrap();
    port.submit(op::WriteAt::new(&h, b"hello file".to_vec()).at(100).user(1))
        .unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.result().unwrap()), (OpKind::WriteAt, 10));
    port.submit(op::ReadAt::new(&h, Vec::with_capacity(10)).at(100).user(2))
        .unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.data()), (OpKind::ReadAt, &b"hello file"[..]));
    port.submit(op::ReadAt::new(&h, Vec::with_capacity(10)).at(1000).user(3))
        .unwrap();
    assert_eq!(next(&port).result().unwrap(), 0, "end of file");
    assert_eq!(std::fs::read(&path).unwrap()[100..], b"hello file"[..]);
    std::fs::remove_file(path).unwrap();
}

fn timeouts_fire_in_deadline_order(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let start = Instant::now();
    port.submit(op::Timeout::new(Duration::from_millis(90)).user(3))
        .unwrap();
    port.submit(op::Timeout::new(Duration::from_millis(30)).user(1))
        .unwrap();
    port.submit(op::Timeout::new(Duration::from_millis(60)).user(2))
        .unwrap();
    port.submit(op::Timeout::new(Duration::ZERO)).unwrap();
    for want in 0..4 {
        let c = next(&port);
        assert_eq!(
            (c.kind(), c.user(), c.result().unwrap()),
            (OpKind::Timeout, want, 0)
        );
        assert!(start.elapsed() >= Duration::from_millis(30 * want));
    }
}

fn cancel_returns_the_buffer(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, h) = pair(&port, 1);
    let mut buf = Vec::with_capacity(100);
    buf.extend_from_slice(b"kept");
    let id = port.submit(op::Recv::new(&h, buf).user(8)).unwrap();
    port.cancel(id).unwrap();
    let mut c = next(&port);
    assert!(c.is_cancelled(), "{c:?}");
    assert_eq!(c.error_code(), Some(libc::ECANCELED));
    assert_eq!((c.id(), c.user()), (id, 8));
    let buf = c.take_buf::<Vec<u8>>().unwrap();
    assert_eq!((&buf[..], buf.capacity()), (&b"kept"[..], 100));
    // The handle is still usable after cancelling one op.
    port.submit(op::SendAll::new(&h, b"x".to_vec())).unwrap();
    assert_eq!(next(&port).result().unwrap(), 1);
}

fn cancel_handle_cancels_every_op(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, h) = pair(&port, 1);
    socket2::SockRef::from(&h)
        .set_send_buffer_size(4096)
        .unwrap();
    port.submit(op::Recv::new(&h, Vec::with_capacity(8)).user(1))
        .unwrap();
    // The client never reads: this send cannot finish; a second one waits
    // behind it in the send lane.
    port.submit(op::SendAll::new(&h, pattern(3, 16 << 20)).user(2))
        .unwrap();
    port.submit(op::SendAll::new(&h, b"queued".to_vec()).user(3))
        .unwrap();
    port.cancel_handle(&h);
    let mut users: Vec<u64> = (0..3)
        .map(|_| {
            let c = next(&port);
            assert!(c.is_cancelled(), "{c:?}");
            c.user()
        })
        .collect();
    users.sort_unstable();
    assert_eq!(users, [1, 2, 3]);
    let err = port
        .submit(op::Recv::new(&h, Vec::with_capacity(8)).user(4))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
}

fn close_cancels_pending_ops_and_closes_the_socket(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 4);
    port.submit(op::Recv::new(&h, Vec::with_capacity(8)).user(1))
        .unwrap();
    port.close(h, 2).unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let c = next(&port);
        if c.kind() == OpKind::Recv {
            assert!(c.is_cancelled());
        }
        kinds.push((c.kind(), c.key(), c.user()));
    }
    kinds.sort_by_key(|k| k.2);
    assert_eq!(kinds, [(OpKind::Recv, 4, 1), (OpKind::Close, 4, 2)]);
    let mut b = [0; 1];
    assert_eq!(
        client.read(&mut b).unwrap(),
        0,
        "the server side was closed"
    );
    let _ = LIMIT;
}

/// `Builder::coalesce` waits for a batch only as long as its delay: a lone
/// completion still comes out (here: each of a few ping-pong receives).
fn coalesced_waits_still_deliver_a_lone_completion(kind: BackendKind) {
    if port(kind, 1).is_none() {
        return;
    }
    let port = ringport::CompletionPort::builder()
        .backend(kind)
        .concurrency(1)
        .coalesce(64, Duration::from_millis(2))
        .build()
        .unwrap();
    let (mut client, h) = pair(&port, 1);
    for i in 0..5u8 {
        port.submit(op::Recv::new(&h, Vec::with_capacity(8)))
            .unwrap();
        client.write_all(&[i]).unwrap();
        let t0 = Instant::now();
        let c = port.get(LIMIT).unwrap();
        assert_eq!(c.data(), [i]);
        // Far less than LIMIT: the wait ended after the coalescing delay.
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    }
}

/// A receive cancelled while it waits for the read lane never held it: the
/// receive queued after it must still wait for the pooled receive ahead of
/// both (they would otherwise split the stream between them).
fn a_receive_cancelled_in_its_lane_does_not_free_the_lane(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, h) = pair(&port, 1);
    let pooled = port.submit(op::RecvPooled::new(&h).user(1)).unwrap();
    let first = port
        .submit(op::Recv::new(&h, Vec::with_capacity(64)).user(2))
        .unwrap();
    port.submit(op::Recv::new(&h, Vec::with_capacity(64)).user(3))
        .unwrap();
    port.cancel(first).unwrap();
    let c = next(&port);
    assert_eq!((c.user(), c.is_cancelled()), (2, true));
    client.write_all(b"all of it").unwrap();
    let mut c = next(&port);
    assert_eq!(
        (c.user(), c.data()),
        (1, &b"all of it"[..]),
        "the pooled receive got it"
    );
    port.recycle(c.take_buf::<Vec<u8>>().unwrap());
    assert_eq!(
        port.outstanding(),
        2,
        "the last receive still waits its turn"
    );
    port.cancel(pooled).unwrap();
    assert_eq!(next(&port).user(), 1);
    drop(client);
    let c = next(&port);
    assert_eq!((c.user(), c.result().unwrap()), (3, 0), "then it ran");
}
