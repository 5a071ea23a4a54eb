//! No descriptor leaks from the datagram, Unix-socket, vectored, plain
//! read/write and deadline operations: one test (its own process), so that
//! the count of `/proc/self/fd` is not disturbed by other tests.

mod common;

use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::time::Duration;

use common::{fd_count, next, port};
use ringport::{op, Address, BackendKind};
use socket2::{Domain, Socket, Type};

fn exercise(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    // UDP: a pooled receive and sends to the sender, then a cancel.
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = server.local_addr().unwrap();
    let udp = port.associate(server, 1).unwrap();
    let recv = port.submit(op::RecvFromPooled::new(&udp)).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..10 {
        client.send_to(b"dgram", to).unwrap();
        let mut c = next(&port);
        let from = c.address().unwrap().to_sock_addr().unwrap();
        port.recycle(c.take_buf().unwrap());
        port.submit(op::SendTo::new(&udp, b"back".to_vec(), from))
            .unwrap();
        next(&port).result().unwrap();
    }
    port.cancel(recv).unwrap();
    assert!(next(&port).is_cancelled());
    // Unix: accept, connect to the path, vectored send and receive.
    let path = std::env::temp_dir().join(format!("ringport-leak-{}-{kind}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = port
        .associate(UnixListener::bind(&path).unwrap(), 2)
        .unwrap();
    port.submit(op::Accept::new(&l)).unwrap();
    let s = port
        .associate(Socket::new(Domain::UNIX, Type::STREAM, None).unwrap(), 3)
        .unwrap();
    port.submit(op::Connect::new(
        &s,
        Address::Path(path.clone()).to_sock_addr().unwrap(),
    ))
    .unwrap();
    let mut accepted = None;
    for _ in 0..2 {
        let mut c = next(&port);
        if c.kind() == op::OpKind::Accept {
            accepted = Some(c.take_accepted().unwrap());
        } else {
            c.result().unwrap();
        }
    }
    let acc = port.associate(accepted.unwrap().socket, 4).unwrap();
    port.submit(op::SendVectored::new(
        &s,
        vec![b"ab".to_vec(), b"cd".to_vec()],
    ))
    .unwrap();
    assert_eq!(next(&port).result().unwrap(), 4);
    port.submit(op::RecvVectored::new(&acc, vec![Vec::with_capacity(4)]))
        .unwrap();
    assert_eq!(next(&port).result().unwrap(), 4);
    // A receive that times out, a datagram pair, a pipe-like stream.
    port.submit(op::Recv::new(&acc, Vec::with_capacity(4)).deadline(Duration::from_millis(5)))
        .unwrap();
    assert_eq!(next(&port).error_code(), Some(libc::ETIMEDOUT));
    let (a, _b) = UnixDatagram::pair().unwrap();
    let a = port.associate(a, 5).unwrap();
    let id = port
        .submit(op::RecvFrom::new(&a, Vec::with_capacity(8)))
        .unwrap();
    port.cancel(id).unwrap();
    assert!(next(&port).is_cancelled());
    let (r, mut w) = UnixStream::pair().unwrap();
    let r = port.associate(r, 6).unwrap();
    w.write_all(b"x").unwrap();
    port.submit(op::Read::new(&r, Vec::with_capacity(8)))
        .unwrap();
    assert_eq!(next(&port).result().unwrap(), 1);
    drop((udp, l, s, acc, a, r));
    std::fs::remove_file(path).unwrap();
}

#[test]
fn no_descriptor_leaks_from_the_newer_operations() {
    let before = fd_count();
    for kind in [BackendKind::IoUring, BackendKind::Epoll] {
        exercise(kind);
        let now = fd_count();
        assert_eq!(
            now,
            before,
            "{kind}: {} descriptors leaked",
            now as isize - before as isize
        );
    }
}
