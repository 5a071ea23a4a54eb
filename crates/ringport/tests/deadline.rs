//! Deadlines on single operations (`.deadline(..)`): a linked timeout on
//! io_uring, a timer on epoll; on both backends.

mod common;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{next, pair, port};
use ringport::{op, BackendKind, GetError, OpKind};
use socket2::{Domain, Socket, Type};

both_backends!(
    a_receive_past_its_deadline_times_out_with_its_buffer,
    a_receive_done_in_time_completes_once,
    a_cancel_before_the_deadline_is_ecanceled,
    a_connect_that_gets_no_answer_times_out,
    a_send_all_that_cannot_finish_times_out_with_its_buffer,
    a_datagram_receive_times_out,
    a_pooled_receive_delivers_then_times_out,
);

const SHORT: Duration = Duration::from_millis(50);

fn a_receive_past_its_deadline_times_out_with_its_buffer(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, conn) = pair(&port, 1);
    let began = Instant::now();
    port.submit(
        op::Recv::new(&conn, Vec::with_capacity(16))
            .user(7)
            .deadline(SHORT),
    )
    .unwrap();
    let mut c = next(&port);
    assert!(began.elapsed() >= SHORT, "{:?}", began.elapsed());
    assert_eq!((c.kind(), c.user()), (OpKind::Recv, 7));
    assert_eq!(c.error_code(), Some(libc::ETIMEDOUT), "{c:?}");
    assert_eq!(c.take_buf::<Vec<u8>>().map(|b| b.capacity()), Some(16));
    assert_eq!(port.outstanding(), 0);
}

fn a_receive_done_in_time_completes_once(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, conn) = pair(&port, 1);
    port.submit(op::Recv::new(&conn, Vec::with_capacity(16)).deadline(SHORT))
        .unwrap();
    client.write_all(b"on time").unwrap();
    let c = next(&port);
    assert_eq!(c.data(), b"on time");
    // Nothing more comes of it, before or after the deadline; a later
    // operation (which may reuse its table slot) is not cut short by it.
    port.submit(op::Recv::new(&conn, Vec::with_capacity(16)))
        .unwrap();
    assert!(matches!(port.get(Some(SHORT * 3)), Err(GetError::TimedOut)));
    client.write_all(b"later").unwrap();
    assert_eq!(next(&port).data(), b"later");
}

fn a_cancel_before_the_deadline_is_ecanceled(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, conn) = pair(&port, 1);
    let id = port
        .submit(op::Recv::new(&conn, Vec::with_capacity(16)).deadline(Duration::from_secs(60)))
        .unwrap();
    port.cancel(id).unwrap();
    let c = next(&port);
    assert!(c.is_cancelled(), "{c:?}");
}

fn a_connect_that_gets_no_answer_times_out(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    // A listener whose accept queue is full drops new SYNs: a connect to it
    // waits for an answer that does not come.
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let to = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let mut answered = true;
    for _ in 0..8 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&to.into());
        fillers.push(s);
        // Whether this one got an answer: a full queue leaves it pending.
        let last = fillers.last().unwrap();
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(last),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one live pollfd, read and written during the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n == 0 {
            answered = false;
            break;
        }
    }
    assert!(!answered, "the accept queue never filled");
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let h = port.associate(s, 1).unwrap();
    let began = Instant::now();
    port.submit(op::Connect::new(&h, to).deadline(Duration::from_millis(200)))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.kind(), OpKind::Connect);
    assert_eq!(c.error_code(), Some(libc::ETIMEDOUT), "{c:?}");
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

fn a_send_all_that_cannot_finish_times_out_with_its_buffer(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (client, conn) = pair(&port, 1);
    // The client never reads: 64 MiB cannot all fit in the socket buffers.
    let big = vec![7u8; 64 << 20];
    port.submit(op::SendAll::new(&conn, big).deadline(Duration::from_millis(200)))
        .unwrap();
    let mut c = next(&port);
    assert_eq!(c.error_code(), Some(libc::ETIMEDOUT), "{c:?}");
    assert_eq!(c.take_buf::<Vec<u8>>().map(|b| b.len()), Some(64 << 20));
    drop(client);
}

fn a_datagram_receive_times_out(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let h = port
        .associate(UdpSocket::bind("127.0.0.1:0").unwrap(), 1)
        .unwrap();
    port.submit(op::RecvFrom::new(&h, Vec::with_capacity(8)).deadline(SHORT))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.error_code(), Some(libc::ETIMEDOUT), "{c:?}");
    assert!(c.address().is_none());
}

fn a_pooled_receive_delivers_then_times_out(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (mut client, conn) = pair(&port, 1);
    port.submit(op::RecvPooled::new(&conn).deadline(Duration::from_millis(300)))
        .unwrap();
    client.write_all(b"before").unwrap();
    let mut c = next(&port);
    assert!(c.more());
    assert_eq!(c.data(), b"before");
    port.recycle(c.take_buf().unwrap());
    let c = next(&port);
    assert!(!c.more());
    assert_eq!(c.error_code(), Some(libc::ETIMEDOUT), "{c:?}");
}
