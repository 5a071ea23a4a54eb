//! Close is the last word on a handle, and one descriptor has one owner:
//! the `Close` completion comes after every completion of the handle's
//! operations, a second `close` fails as a second `closesocket` does, and
//! a descriptor associated twice is refused without closing it under the
//! handle that owns it.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::{next, pair, port};
use ringport::op;
use ringport::{BackendKind, OpKind};

both_backends!(
    close_comes_after_every_cancelled_operation,
    close_comes_after_operations_still_in_the_kernel,
    a_second_close_fails,
    a_descriptor_associated_twice_is_refused_and_stays_open,
);

/// Several kinds of operation outstanding on one socket, then `close`: the
/// `Close` completion is the last of the handle's completions.
fn close_comes_after_every_cancelled_operation(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    for round in 0..20 {
        let (mut client, h) = pair(&port, 4);
        port.submit(op::Recv::new(&h, Vec::with_capacity(8)).user(1))
            .unwrap();
        port.submit(op::Recv::new(&h, Vec::with_capacity(8)).user(2))
            .unwrap();
        port.submit(op::RecvPooled::new(&h).user(3)).unwrap();
        port.close(h, 9).unwrap();
        let mut seen = Vec::new();
        loop {
            let c = next(&port);
            assert_eq!(c.key(), 4);
            if c.kind() == OpKind::Close {
                break;
            }
            assert!(c.is_cancelled() || c.result().is_ok(), "{c:?}");
            if !c.more() {
                seen.push(c.user());
            }
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            [1, 2, 3],
            "round {round}: every op ended before Close"
        );
        assert!(
            port.get(Some(Duration::from_millis(20))).is_err(),
            "round {round}: nothing of the handle after its Close"
        );
        let mut b = [0; 1];
        assert_eq!(client.read(&mut b).unwrap(), 0, "the socket was closed");
    }
}

/// Accepts wait in the kernel (io_uring) until the cancel reaches them: the
/// `Close` completion still waits for all ten.
fn close_comes_after_operations_still_in_the_kernel(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let l = port
        .associate(TcpListener::bind("127.0.0.1:0").unwrap(), 7)
        .unwrap();
    for i in 0..10 {
        port.submit(op::Accept::new(&l).user(i)).unwrap();
    }
    port.close(l, 99).unwrap();
    for i in 0..10 {
        let c = next(&port);
        assert_eq!(c.kind(), OpKind::Accept, "completion {i} of 11: {c:?}");
        assert!(c.is_cancelled());
    }
    let c = next(&port);
    assert_eq!((c.kind(), c.key(), c.user()), (OpKind::Close, 7, 99));
}

/// Windows fails a second `closesocket`; so does a second `close` through
/// another clone of the handle.
fn a_second_close_fails(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, h) = pair(&port, 1);
    let again = h.clone();
    port.close(h, 0).unwrap();
    let err = port.close(again, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(next(&port).kind(), OpKind::Close);
    assert!(
        port.get(Some(Duration::from_millis(20))).is_err(),
        "one Close completion only"
    );
}

/// The same descriptor number handed to `associate` twice (only possible by
/// lying with `from_raw_fd`) is refused, and the refusal closes nothing: the
/// first handle's socket still works.
fn a_descriptor_associated_twice_is_refused_and_stays_open(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let l = port
        .associate(TcpListener::bind("127.0.0.1:0").unwrap(), 1)
        .unwrap();
    let addr = ringport::local_addr(&l).unwrap();
    // SAFETY: deliberately a second owner of a live descriptor: the very
    // misuse under test. The port must not close it.
    let twin = unsafe { OwnedFd::from_raw_fd(l.as_raw_fd()) };
    let err = port.associate(twin, 2).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    // Another port refuses it too: a descriptor has one port.
    let other = common::port(kind, 1).unwrap();
    // SAFETY: as above.
    let twin = unsafe { OwnedFd::from_raw_fd(l.as_raw_fd()) };
    assert_eq!(
        other.associate(twin, 3).unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    // The listener still accepts.
    port.submit(op::Accept::new(&l).user(5)).unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    let mut c = next(&port);
    assert_eq!((c.kind(), c.user()), (OpKind::Accept, 5));
    assert!(c.take_accepted().is_ok());
    assert_eq!(ringport::local_addr(&l).unwrap(), addr);
}
