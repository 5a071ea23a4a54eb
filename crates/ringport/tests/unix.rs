//! Unix sockets, stream and datagram: connect to a path and to an abstract
//! name, accepted / local / peer addresses of every kind, datagrams with
//! path and unnamed senders, on both backends.

mod common;

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;

use common::{next, port};
use ringport::{op, Address, BackendKind, CompletionPort, Handle};
use socket2::{Domain, SockAddr, Socket, Type};

both_backends!(
    accept_on_a_path_reports_both_addresses,
    accept_on_an_abstract_name_reports_it,
    connect_to_a_path_then_echo,
    connect_to_an_abstract_name,
    connect_to_a_missing_path_fails,
    local_and_peer_address_of_both_families,
    datagrams_between_paths_carry_the_sender,
    a_datagram_from_an_unnamed_socket_says_unnamed,
    pooled_datagrams_on_a_unix_socket,
);

/// A fresh socket path in the temporary directory, removed first.
fn sock_path(tag: &str, kind: BackendKind) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ringport-unix-{}-{tag}-{kind}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// A unique abstract name.
fn abstract_name(tag: &str, kind: BackendKind) -> Vec<u8> {
    format!("ringport-{}-{tag}-{kind}", std::process::id()).into_bytes()
}

fn accept_one(port: &CompletionPort, l: &Handle) -> ringport::Accepted {
    port.submit(op::Accept::new(l)).unwrap();
    next(port).take_accepted().unwrap()
}

fn accept_on_a_path_reports_both_addresses(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let path = sock_path("acc", kind);
    let l = port
        .associate(UnixListener::bind(&path).unwrap(), 1)
        .unwrap();
    let _client = UnixStream::connect(&path).unwrap();
    let acc = accept_one(&port, &l);
    assert_eq!(acc.local_address, Address::Path(path.clone()));
    assert_eq!(acc.peer_address, Address::Unnamed);
    // A client bound to a path of its own is reported by it.
    let client_path = sock_path("acc-client", kind);
    let bound = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    bound.bind(&SockAddr::unix(&client_path).unwrap()).unwrap();
    bound.connect(&SockAddr::unix(&path).unwrap()).unwrap();
    let acc = accept_one(&port, &l);
    assert_eq!(acc.peer_address, Address::Path(client_path.clone()));
    std::fs::remove_file(path).unwrap();
    std::fs::remove_file(client_path).unwrap();
}

fn accept_on_an_abstract_name_reports_it(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let name = abstract_name("acc", kind);
    let addr = UnixAddr::from_abstract_name(&name).unwrap();
    let l = port
        .associate(UnixListener::bind_addr(&addr).unwrap(), 1)
        .unwrap();
    assert_eq!(l.local_address().unwrap(), Address::Abstract(name.clone()));
    let _client = UnixStream::connect_addr(&addr).unwrap();
    let acc = accept_one(&port, &l);
    assert_eq!(acc.local_address, Address::Abstract(name));
    assert_eq!(acc.peer_address, Address::Unnamed);
}

/// Connects an associated, unconnected Unix stream socket to `to`.
fn connect(port: &CompletionPort, to: &Address) -> (Handle, std::io::Result<usize>) {
    let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    let h = port.associate(s, 9).unwrap();
    port.submit(op::Connect::new(&h, to.to_sock_addr().unwrap()))
        .unwrap();
    let c = next(port);
    assert_eq!(c.kind(), op::OpKind::Connect);
    (h, c.result())
}

fn connect_to_a_path_then_echo(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let path = sock_path("conn", kind);
    let listener = UnixListener::bind(&path).unwrap();
    let (h, res) = connect(&port, &Address::Path(path.clone()));
    assert_eq!(res.unwrap(), 0);
    let (mut server, _) = listener.accept().unwrap();
    assert_eq!(h.peer_address().unwrap(), Address::Path(path.clone()));
    port.submit(op::SendAll::new(&h, b"over a path".to_vec()))
        .unwrap();
    assert_eq!(next(&port).result().unwrap(), 11);
    let mut got = [0u8; 11];
    server.read_exact(&mut got).unwrap();
    server.write_all(b"back").unwrap();
    port.submit(op::Recv::new(&h, Vec::with_capacity(16)))
        .unwrap();
    assert_eq!(next(&port).data(), b"back");
    std::fs::remove_file(path).unwrap();
}

fn connect_to_an_abstract_name(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let name = abstract_name("conn", kind);
    let listener = UnixListener::bind_addr(&UnixAddr::from_abstract_name(&name).unwrap()).unwrap();
    let (h, res) = connect(&port, &Address::Abstract(name.clone()));
    assert_eq!(res.unwrap(), 0);
    let (_server, peer) = listener.accept().unwrap();
    assert!(peer.is_unnamed());
    assert_eq!(h.peer_address().unwrap(), Address::Abstract(name));
    assert_eq!(h.local_address().unwrap(), Address::Unnamed);
}

fn connect_to_a_missing_path_fails(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (_h, res) = connect(&port, &Address::Path(sock_path("missing", kind)));
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ENOENT));
    // An abstract name nobody listens on: refused.
    let (_h, res) = connect(&port, &Address::Abstract(abstract_name("none", kind)));
    assert_eq!(res.unwrap_err().raw_os_error(), Some(libc::ECONNREFUSED));
}

fn local_and_peer_address_of_both_families(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap();
    let tcp = port
        .associate(std::net::TcpStream::connect(to).unwrap(), 1)
        .unwrap();
    assert_eq!(tcp.peer_address().unwrap(), Address::Ip(to));
    assert!(matches!(tcp.local_address().unwrap(), Address::Ip(a) if a.ip() == to.ip()));
    let (a, _b) = UnixStream::pair().unwrap();
    let a = port.associate(a, 2).unwrap();
    assert_eq!(a.local_address().unwrap(), Address::Unnamed);
    assert_eq!(a.peer_address().unwrap(), Address::Unnamed);
    let lone = port.associate(UnixDatagram::unbound().unwrap(), 3).unwrap();
    assert_eq!(
        lone.peer_address().unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN)
    );
}

fn datagrams_between_paths_carry_the_sender(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (server_path, client_path) = (sock_path("dg-s", kind), sock_path("dg-c", kind));
    let server = port
        .associate(UnixDatagram::bind(&server_path).unwrap(), 1)
        .unwrap();
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(common::LIMIT).unwrap();
    client.send_to(b"ping", &server_path).unwrap();
    port.submit(op::RecvFrom::new(&server, Vec::with_capacity(64)))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.data(), b"ping");
    let from = c.address().cloned().unwrap();
    assert_eq!(from, Address::Path(client_path.clone()));
    // The reply, to the address it came from.
    port.submit(op::SendTo::new(
        &server,
        b"pong".to_vec(),
        from.to_sock_addr().unwrap(),
    ))
    .unwrap();
    assert_eq!(next(&port).result().unwrap(), 4);
    let mut got = [0u8; 8];
    let (n, src) = client.recv_from(&mut got).unwrap();
    assert_eq!(
        (&got[..n], src.as_pathname()),
        (&b"pong"[..], Some(server_path.as_path()))
    );
    std::fs::remove_file(server_path).unwrap();
    std::fs::remove_file(client_path).unwrap();
}

fn a_datagram_from_an_unnamed_socket_says_unnamed(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let name = abstract_name("dg", kind);
    let addr = UnixAddr::from_abstract_name(&name).unwrap();
    let server = port
        .associate(UnixDatagram::bind_addr(&addr).unwrap(), 1)
        .unwrap();
    UnixDatagram::unbound()
        .unwrap()
        .send_to_addr(b"anon", &addr)
        .unwrap();
    port.submit(op::RecvFrom::new(&server, Vec::with_capacity(8)))
        .unwrap();
    let c = next(&port);
    assert_eq!(c.data(), b"anon");
    assert_eq!(c.address(), Some(&Address::Unnamed));
    assert_eq!(server.local_address().unwrap(), Address::Abstract(name));
}

fn pooled_datagrams_on_a_unix_socket(kind: BackendKind) {
    let Some(port) = port(kind, 1) else { return };
    let (a, b) = UnixDatagram::pair().unwrap();
    let h = port.associate(a, 1).unwrap();
    let id = port.submit(op::RecvFromPooled::new(&h)).unwrap();
    for i in 0..20u8 {
        b.send(&[i; 3]).unwrap();
    }
    for i in 0..20u8 {
        let mut c = next(&port);
        assert!(c.more());
        assert_eq!(c.data(), &[i; 3]);
        assert_eq!(c.address(), Some(&Address::Unnamed));
        port.recycle(c.take_buf().unwrap());
    }
    port.cancel(id).unwrap();
    assert!(next(&port).is_cancelled());
}
