//! A Unix stream listener served by the same `Handler` as the TCP one:
//! echo with the connections' addresses, the socket file removed at stop,
//! a stale socket file replaced, a live one or a plain file refused, no
//! descriptor left after stop.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use ringport::{Address, BackendKind};
use ringport_server::{Connection, DisconnectReason, Handler};

use common::*;

/// A fresh socket path in the temporary directory (not created).
fn socket_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "ringport-server-{}-{tag}-{n}.sock",
        std::process::id()
    ))
}

/// Echoes; reports each connection's addresses when it connects, and its
/// bytes when it disconnects.
struct AddrEcho(Mutex<Sender<(Address, Address, Option<u64>)>>);

impl Handler for AddrEcho {
    type State = u64;
    fn on_connect(&self, conn: &Connection, _: Option<Vec<u8>>) -> u64 {
        let ev = (conn.local_address(), conn.peer_address().clone(), None);
        let _ = self.0.lock().unwrap().send(ev);
        0
    }
    fn on_data(&self, conn: &Connection, echoed: &mut u64, data: Vec<u8>) {
        *echoed += data.len() as u64;
        let _ = conn.send(data);
    }
    fn on_disconnect(&self, conn: &Connection, echoed: u64, _: &DisconnectReason) {
        let ev = (
            conn.local_address(),
            conn.peer_address().clone(),
            Some(echoed),
        );
        let _ = self.0.lock().unwrap().send(ev);
    }
}

fn unix_client(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the Unix listener");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

fn unix_echo_with_addresses(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let path = socket_path("echo");
    let (tx, rx) = channel();
    let server = b
        .listen_unix(&path)
        .start(AddrEcho(Mutex::new(tx)))
        .unwrap();
    assert_eq!(server.unix_path(), Some(path.as_path()));
    let mut c = unix_client(&path);
    let (local, peer, _) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(local, Address::Path(path.clone()));
    assert_eq!(peer, Address::Unnamed, "an unbound client");
    let mut total = 0u64;
    for i in 0..200u64 {
        let msg = pattern(i, 1 + (i as usize * 97) % 40_000);
        c.write_all(&msg).unwrap();
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert!(back == msg, "echo {i} differs");
        total += msg.len() as u64;
    }
    drop(c);
    let (_, _, echoed) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(echoed, Some(total));

    // A client bound to a path of its own is seen at that path.
    let client_path = socket_path("client");
    let s = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    s.bind(&socket2::SockAddr::unix(&client_path).unwrap())
        .unwrap();
    s.connect(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
    let (_, peer, _) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(peer, Address::Path(client_path.clone()));
    drop(s);
    let _ = std::fs::remove_file(&client_path);

    let (_, _, echoed) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(echoed, Some(0), "the bound client's disconnect");

    // TCP is served by the same handler meanwhile.
    let mut tcp = client(server.local_addr());
    assert_eq!(round_trip(&mut tcp, b"tcp too"), b"tcp too");
    let (local, peer, _) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(local, Address::Ip(server.local_addr()));
    assert_eq!(peer, Address::Ip(tcp.local_addr().unwrap()));
    drop(tcp);
    server.stop();
}

fn stop_removes_the_socket_file_and_every_descriptor(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let path = socket_path("stop");
    let before = fd_count();
    let server = b.listen_unix(&path).start(Echo).unwrap();
    assert!(path.exists());
    let mut c = unix_client(&path);
    c.write_all(b"x").unwrap();
    let mut back = [0; 1];
    c.read_exact(&mut back).unwrap();
    drop(c);
    server.stop();
    assert!(!path.exists(), "the socket file outlived the server");
    assert_eq!(fd_count(), before, "descriptors left after stop");
}

/// A socket file nobody listens on (a dead earlier run) is replaced.
fn a_stale_socket_file_is_replaced(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let path = socket_path("stale");
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the stale file is there");
    let server = b.listen_unix(&path).start(Echo).unwrap();
    let mut c = unix_client(&path);
    c.write_all(b"ok").unwrap();
    let mut back = [0; 2];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ok");
    drop(c);
    server.stop();
    assert!(!path.exists());
}

/// A live socket (another server) and a file that is not a socket are
/// left alone: start fails with `AddrInUse`.
fn a_live_socket_or_a_plain_file_is_refused(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let path = socket_path("live");
    let live = UnixListener::bind(&path).unwrap();
    let e = b.clone().listen_unix(&path).start(Echo).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");
    assert!(path.exists(), "the live server's socket file was removed");
    drop(live);
    std::fs::remove_file(&path).unwrap();

    let plain = socket_path("plain");
    std::fs::write(&plain, b"keep me").unwrap();
    let e = b.listen_unix(&plain).start(Echo).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
    std::fs::remove_file(&plain).unwrap();
}

both_backends!(
    unix_echo_with_addresses,
    stop_removes_the_socket_file_and_every_descriptor,
    a_stale_socket_file_is_replaced,
    a_live_socket_or_a_plain_file_is_refused,
);
