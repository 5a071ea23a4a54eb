//! Bad input gets a clear error, never a panic.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use common::{next, pair, port};
use ringport::op;
use ringport::{BackendKind, GetError, OpKind};

both_backends!(
    posting_on_a_closed_handle_is_refused,
    recv_on_a_listener_fails_in_its_completion,
    recv_into_a_full_buffer_is_refused,
    zero_timeouts_complete_at_once,
    cancelling_a_completed_op_says_not_found,
    a_handle_of_another_port_is_refused,
    connect_to_a_bad_address_fails_in_its_completion,
    send_of_nothing_completes_with_zero,
);

fn posting_on_a_closed_handle_is_refused(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, h) = pair(&port, 1);
    let h2 = h.clone();
    port.close(h, 0).unwrap();
    assert_eq!(next(&port).kind(), OpKind::Close);
    assert!(h2.is_closed());
    let err = port
        .submit(op::Recv::new(&h2, Vec::with_capacity(8)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotConnected);
    assert!(port.submit(op::Send::new(&h2, vec![1])).is_err());
}

fn recv_on_a_listener_fails_in_its_completion(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let l = port
        .associate(TcpListener::bind("127.0.0.1:0").unwrap(), 1)
        .unwrap();
    port.submit(op::Recv::new(&l, Vec::with_capacity(8)))
        .unwrap();
    let mut c = next(&port);
    assert!(c.result().is_err(), "{c:?}");
    assert!(!c.is_cancelled());
    assert_eq!(c.take_buf::<Vec<u8>>().unwrap().capacity(), 8);
}

fn recv_into_a_full_buffer_is_refused(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, h) = pair(&port, 1);
    let mut full = b"full".to_vec();
    full.shrink_to_fit();
    for buf in [Vec::new(), full] {
        assert_eq!(buf.capacity(), buf.len());
        assert_eq!(
            port.submit(op::Recv::new(&h, buf.clone()))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            port.submit(op::ReadAt::new(&h, buf)).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(port.outstanding(), 0);
}

fn zero_timeouts_complete_at_once(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    port.submit(op::Timeout::new(Duration::ZERO).user(1))
        .unwrap();
    let c = next(&port);
    assert_eq!((c.kind(), c.result().unwrap()), (OpKind::Timeout, 0));
    assert!(matches!(
        port.get(Some(Duration::ZERO)),
        Err(GetError::TimedOut)
    ));
}

fn cancelling_a_completed_op_says_not_found(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let id = port
        .submit(op::Timeout::new(Duration::ZERO).user(1))
        .unwrap();
    next(&port);
    assert_eq!(port.cancel(id).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        port.cancel(ringport::OpId::NONE).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // A new op may reuse the slot: the stale id must not cancel it.
    let (_client, h) = pair(&port, 1);
    let fresh = port
        .submit(op::Recv::new(&h, Vec::with_capacity(8)))
        .unwrap();
    assert_ne!(fresh, id);
    assert!(port.cancel(id).is_err());
    assert!(matches!(
        port.get(Some(Duration::from_millis(30))),
        Err(GetError::TimedOut)
    ));
}

fn a_handle_of_another_port_is_refused(kind: BackendKind) {
    let (Some(a), Some(b)) = (port(kind, 1), port(kind, 1)) else {
        return;
    };
    let (_client, h) = pair(&a, 1);
    let err = b
        .submit(op::Recv::new(&h, Vec::with_capacity(8)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

fn connect_to_a_bad_address_fails_in_its_completion(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    // An IPv6 address on an IPv4 socket.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let h = port.associate(s, 1).unwrap();
    port.submit(op::Connect::new(
        &h,
        "[::1]:9".parse::<std::net::SocketAddr>().unwrap(),
    ))
    .unwrap();
    let c = next(&port);
    assert!(c.result().is_err(), "{c:?}");
}

fn send_of_nothing_completes_with_zero(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_client, h) = pair(&port, 1);
    port.submit(op::Send::new(&h, Vec::new())).unwrap();
    assert_eq!(next(&port).result().unwrap(), 0);
    port.submit(op::SendAll::new(&h, Vec::new())).unwrap();
    assert_eq!(next(&port).result().unwrap(), 0);
}
