//! No descriptor leaks: one test (its own process), so that the count of
//! `/proc/self/fd` is not disturbed by other tests running in parallel.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{fd_count, next, pair, port};
use ringport::op;
use ringport::{BackendKind, OpKind};

fn exercise(kind: BackendKind) {
    let Some(port) = port(kind, 2) else { return };
    // Accepted sockets, echoed data, closes, cancels.
    let l = port
        .associate(TcpListener::bind("127.0.0.1:0").unwrap(), 0)
        .unwrap();
    let addr = ringport::local_addr(&l).unwrap();
    for _ in 0..5 {
        port.submit(op::Accept::new(&l)).unwrap();
    }
    let mut clients: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut conns = Vec::new();
    for i in 0..5 {
        let mut c = next(&port);
        let acc = c.take_accepted().unwrap();
        let h = port.associate(acc.socket, i).unwrap();
        port.submit(op::Recv::new(&h, Vec::with_capacity(64)))
            .unwrap();
        conns.push(h);
    }
    for c in &mut clients {
        c.write_all(b"ping").unwrap();
    }
    for _ in 0..5 {
        let mut c = next(&port);
        assert_eq!(c.kind(), OpKind::Recv);
        port.submit(op::SendAll::new(
            &conns[c.key() as usize],
            c.take_buf::<Vec<u8>>().unwrap(),
        ))
        .unwrap();
    }
    for _ in 0..5 {
        assert_eq!(next(&port).kind(), OpKind::SendAll);
    }
    for c in &mut clients {
        let mut b = [0; 4];
        c.read_exact(&mut b).unwrap();
    }
    // An accept left pending on the listener, a recv pending on a connection,
    // one connection closed through the port, another by dropping its handle.
    port.submit(op::Accept::new(&l)).unwrap();
    port.submit(op::Recv::new(&conns[0], Vec::with_capacity(8)))
        .unwrap();
    port.submit(op::RecvPooled::new(&conns[1])).unwrap();
    port.close(conns.remove(2), 0).unwrap();
    drop(conns.remove(2));
    // An accepted-with-data connection that is never sent anything.
    port.submit(op::Accept::new(&l).first_data(Vec::with_capacity(8)))
        .unwrap();
    let _silent = TcpStream::connect(addr).unwrap();
    port.submit(op::Timeout::new(Duration::from_secs(3600)))
        .unwrap();
    let (_c, h) = pair(&port, 99);
    port.submit(op::Recv::new(&h, Vec::with_capacity(8)))
        .unwrap();
    // A file.
    let path = std::env::temp_dir().join(format!("ringport-leak-{}-{kind}", std::process::id()));
    let f = std::fs::File::create(&path).unwrap();
    let fh = port.associate(f, 5).unwrap();
    port.submit(op::WriteAt::new(&fh, b"abc".to_vec())).unwrap();
    std::fs::remove_file(&path).unwrap();
    drop(port); // with ops in flight and handles still held
    drop((conns, h, fh, l));
}

#[test]
fn no_descriptor_leaks_on_either_backend() {
    // `pair` keeps one listener per test thread: open it before counting.
    if let Some(p) = port(BackendKind::Epoll, 1) {
        drop(pair(&p, 0));
    }
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
