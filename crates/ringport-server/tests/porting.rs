//! What porting a real server needs, over real sockets on both backends:
//! typed per-connection state, timers, blocking work, outbound connections,
//! broadcast, read and write deadlines.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringport::BackendKind;
use ringport_server::{ConnId, Connection, Connections, DisconnectReason, Handler, TimerId};

use common::*;

/// What the handlers of this file report.
#[derive(Debug, PartialEq)]
enum Note {
    Connected(ConnId, SocketAddr),
    /// A connection ended: its id, the bytes its state counted, its timer
    /// ticks, and the reason.
    Ended(ConnId, u64, u32, &'static str),
    Timer(ConnId, TimerId),
    ServerTimer(TimerId),
    ConnectFailed(ConnId, std::io::ErrorKind),
    /// The handler is inside its blocking section.
    Blocking,
}

struct Notes(Mutex<Sender<Note>>);

impl Notes {
    fn new() -> (Arc<Notes>, Receiver<Note>) {
        let (tx, rx) = channel();
        (Arc::new(Notes(Mutex::new(tx))), rx)
    }
    fn note(&self, n: Note) {
        let _ = self.0.lock().unwrap().send(n);
    }
}

fn recv(rx: &Receiver<Note>) -> Note {
    rx.recv_timeout(LIMIT).expect("a note within the limit")
}

/// Each connection's own state.
struct Client {
    id: ConnId,
    bytes: u64,
    ticks: u32,
    periodic: Option<TimerId>,
}

/// Echoes; `block` blocks 500 ms (freeing the slot if `free_slot`);
/// `tick` starts a periodic timer that is cancelled after 3 ticks; `later`
/// arms a one-shot timer; `shout X` broadcasts X to the others in a shared
/// buffer; `ping` answers `pong`.
struct Porting {
    notes: Arc<Notes>,
    free_slot: bool,
    greet: Option<Vec<u8>>,
}

impl Handler for Porting {
    type State = Client;

    fn on_connect(&self, conn: &Connection, _first: Option<Vec<u8>>) -> Client {
        self.notes
            .note(Note::Connected(conn.id(), conn.peer_addr()));
        if let Some(g) = &self.greet {
            conn.send(g.clone()).unwrap();
        }
        Client {
            id: conn.id(),
            bytes: 0,
            ticks: 0,
            periodic: None,
        }
    }

    fn on_data(&self, conn: &Connection, client: &mut Client, data: Vec<u8>) {
        assert_eq!(client.id, conn.id(), "another connection's state");
        client.bytes += data.len() as u64;
        match &data[..] {
            b"block" => {
                let _slot = self.free_slot.then(|| conn.blocking());
                self.notes.note(Note::Blocking);
                std::thread::sleep(Duration::from_millis(500));
                conn.send(b"done".as_slice()).unwrap();
            }
            b"tick" => {
                client.periodic = Some(conn.set_periodic(Duration::from_millis(10)).unwrap())
            }
            b"later" => {
                conn.set_timer(Duration::from_millis(20)).unwrap();
            }
            b"ping" => conn.send(b"pong".as_slice()).unwrap(),
            d if d.starts_with(b"shout ") => {
                let msg: Arc<[u8]> = d[6..].into();
                let reached = conn.connections().broadcast(msg, Some(conn.id()));
                conn.send(format!("reached {reached}").into_bytes())
                    .unwrap();
            }
            _ => conn.send(data).unwrap(),
        }
    }

    fn on_timer(&self, conn: &Connection, client: &mut Client, timer: TimerId) {
        self.notes.note(Note::Timer(conn.id(), timer));
        if Some(timer) == client.periodic {
            client.ticks += 1;
            if client.ticks == 3 {
                // Before the third `t` leaves: a client that read it knows
                // the timer is cancelled.
                assert!(conn.cancel_timer(timer));
            }
            conn.send(b"t".as_slice()).unwrap();
        } else {
            conn.send(b"L".as_slice()).unwrap();
        }
    }

    fn on_disconnect(&self, conn: &Connection, client: Client, reason: &DisconnectReason) {
        self.notes.note(Note::Ended(
            conn.id(),
            client.bytes,
            client.ticks,
            reason.name(),
        ));
    }

    fn on_server_timer(&self, server: &Connections, timer: TimerId) {
        self.notes.note(Note::ServerTimer(timer));
        server.broadcast(b"S".as_slice(), None);
    }

    fn on_connect_failed(&self, id: ConnId, _peer: SocketAddr, error: std::io::Error) {
        self.notes.note(Note::ConnectFailed(id, error.kind()));
    }
}

fn porting(notes: &Arc<Notes>) -> Porting {
    Porting {
        notes: notes.clone(),
        free_slot: true,
        greet: None,
    }
}

fn connected(rx: &Receiver<Note>) -> ConnId {
    match recv(rx) {
        Note::Connected(id, _) => id,
        other => panic!("expected a connect, got {other:?}"),
    }
}

fn read_n(c: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    c.read_exact(&mut buf).unwrap();
    buf
}

fn each_connection_has_its_own_state(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    let mut clients: Vec<_> = (0..8).map(|_| client(server.local_addr())).collect();
    let ids: Vec<_> = clients.iter().map(|_| connected(&rx)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        for _ in 0..=i {
            let msg = pattern(i as u64, 100 + i);
            assert_eq!(round_trip(c, &msg), msg);
        }
    }
    for c in &clients {
        c.shutdown(Shutdown::Write).unwrap();
    }
    let mut ended: Vec<_> = (0..clients.len())
        .map(|_| match recv(&rx) {
            Note::Ended(id, bytes, _, reason) => {
                assert_eq!(reason, "peer-closed");
                (id, bytes)
            }
            other => panic!("expected an end, got {other:?}"),
        })
        .collect();
    ended.sort();
    let mut sizes: Vec<_> = ended.iter().map(|(_, b)| *b).collect();
    sizes.sort();
    let want: Vec<u64> = (0..8u64).map(|i| (i + 1) * (100 + i)).collect();
    assert_eq!(sizes, want, "each state counted its own connection's bytes");
    let mut ids = ids;
    ids.sort();
    assert_eq!(ended.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
    server.stop();
}

fn connection_timers_fire_repeat_and_cancel(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    let mut c = client(server.local_addr());
    let id = connected(&rx);
    c.write_all(b"later").unwrap();
    assert_eq!(read_n(&mut c, 1), b"L");
    c.write_all(b"tick").unwrap();
    assert_eq!(read_n(&mut c, 3), b"ttt");
    // Cancelled at its third tick: a fourth never comes, whatever was in
    // flight. A server timer five periods later is what comes next.
    server
        .connections()
        .set_timer(Duration::from_millis(50))
        .unwrap();
    assert_eq!(read_n(&mut c, 1), b"S", "a tick after the cancel");
    c.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut c, 4), b"pong");
    c.shutdown(Shutdown::Write).unwrap();
    loop {
        match recv(&rx) {
            Note::Timer(i, _) => assert_eq!(i, id),
            Note::ServerTimer(_) => {}
            Note::Ended(i, _, ticks, reason) => {
                assert_eq!((i, ticks, reason), (id, 3, "peer-closed"));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the cancel: {rest:?}");
    server.stop();
}

fn timers_end_with_their_connection(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    let mut c = client(server.local_addr());
    let id = connected(&rx);
    // A one-shot timer of 20 ms, then the client leaves at once.
    c.write_all(b"later").unwrap();
    drop(c);
    match recv(&rx) {
        Note::Ended(i, _, _, _) => assert_eq!(i, id),
        other => panic!("expected the end, got {other:?}"),
    }
    // A witness fired well after the connection's timer would have.
    let witness = server
        .connections()
        .set_timer(Duration::from_millis(100))
        .unwrap();
    assert_eq!(recv(&rx), Note::ServerTimer(witness));
    assert!(
        rx.try_recv().is_err(),
        "the ended connection's timer must not fire"
    );
    server.stop();
}

fn server_tick_reaches_every_client(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    let mut a = client(server.local_addr());
    let mut b2 = client(server.local_addr());
    connected(&rx);
    connected(&rx);
    let conns = server.connections();
    let tick = conns.set_periodic(Duration::from_millis(10)).unwrap();
    assert_eq!(read_n(&mut a, 3), b"SSS");
    assert_eq!(read_n(&mut b2, 3), b"SSS");
    assert!(conns.cancel_timer(tick));
    assert!(!conns.cancel_timer(tick));
    server.stop();
}

/// With concurrency 1 and two workers, a handler blocking 500 ms delays
/// another client's echo by about that much, unless it declares the
/// blocking call.
fn blocking_work_lets_other_clients_be_served(kind: BackendKind) {
    for free_slot in [true, false] {
        let Some(b) = builder(kind) else { return };
        let (notes, rx) = Notes::new();
        let mut h = porting(&notes);
        h.free_slot = free_slot;
        let server = b.workers(2).concurrency(1).start(h).unwrap();
        let mut slow = client(server.local_addr());
        let mut quick = client(server.local_addr());
        connected(&rx);
        connected(&rx);
        slow.write_all(b"block").unwrap();
        assert_eq!(recv(&rx), Note::Blocking);
        let t0 = Instant::now();
        assert_eq!(round_trip(&mut quick, b"x"), b"x");
        let took = t0.elapsed();
        if free_slot {
            assert!(
                took < Duration::from_millis(250),
                "echo took {took:?} beside a blocking call"
            );
        } else {
            // The control: the same without `blocking()` waits for it.
            assert!(
                took >= Duration::from_millis(250),
                "echo took only {took:?}"
            );
        }
        assert_eq!(read_n(&mut slow, 4), b"done");
        server.stop();
    }
}

fn outbound_connections_are_served_like_accepted_ones(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let mut h = porting(&notes);
    h.greet = Some(b"hello service".to_vec());
    let server = b.start(h).unwrap();
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let id = server
        .connections()
        .connect(service.local_addr().unwrap(), LIMIT)
        .unwrap();
    let (mut s, _) = service.accept().unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    assert_eq!(
        recv(&rx),
        Note::Connected(id, service.local_addr().unwrap())
    );
    assert_eq!(read_n(&mut s, 13), b"hello service");
    assert_eq!(round_trip(&mut s, b"echo me"), b"echo me");
    let conn = server.connections().get(id).expect("registered");
    assert_eq!(conn.local_addr(), s.peer_addr().unwrap());
    drop(s);
    match recv(&rx) {
        Note::Ended(i, bytes, _, reason) => assert_eq!((i, bytes, reason), (id, 7, "peer-closed")),
        other => panic!("expected the end, got {other:?}"),
    }
    let stats = server.stop();
    assert_eq!((stats.connects, stats.connect_failures), (1, 0));
}

fn outbound_connect_refused_is_reported(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let id = server.connections().connect(closed, LIMIT).unwrap();
    assert_eq!(
        recv(&rx),
        Note::ConnectFailed(id, std::io::ErrorKind::ConnectionRefused)
    );
    // Forgotten once its last callback returned.
    wait_for("the failed connection's removal", || {
        server.connections().get(id).is_none()
    });
    let stats = server.stop();
    assert_eq!((stats.connects, stats.connect_failures), (1, 1));
}

fn outbound_connect_times_out(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    // A service that never accepts, with its backlog full: further SYNs
    // are dropped, so a connect neither succeeds nor fails.
    let service = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    service
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    service.listen(0).unwrap();
    let addr = service.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    let t0 = Instant::now();
    let id = server
        .connections()
        .connect(addr, Duration::from_millis(200))
        .unwrap();
    assert_eq!(
        recv(&rx),
        Note::ConnectFailed(id, std::io::ErrorKind::TimedOut)
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "timed out after {took:?}"
    );
    let stats = server.stop();
    assert_eq!(stats.connect_failures, 1);
}

fn broadcast_skips_the_sender(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let server = b.start(porting(&notes)).unwrap();
    let mut clients: Vec<_> = (0..3).map(|_| client(server.local_addr())).collect();
    for _ in 0..3 {
        connected(&rx);
    }
    clients[0].write_all(b"shout news").unwrap();
    assert_eq!(read_n(&mut clients[0], 9), b"reached 2");
    assert_eq!(read_n(&mut clients[1], 4), b"news");
    assert_eq!(read_n(&mut clients[2], 4), b"news");
    // The sender got its answer and nothing else: its next reply is next.
    assert_eq!(round_trip(&mut clients[0], b"ping"), b"pong");
    server.stop();
}

fn read_deadline_closes_a_silent_client(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let mut h = porting(&notes);
    // The server talks to it, so it is not idle: only the read deadline
    // applies.
    h.greet = Some(b"hi".to_vec());
    let server = b
        .read_timeout(Duration::from_millis(150))
        .idle_timeout(Duration::from_secs(60))
        .start(h)
        .unwrap();
    let mut c = client(server.local_addr());
    let id = connected(&rx);
    let t0 = Instant::now();
    match recv(&rx) {
        Note::Ended(i, _, _, reason) => assert_eq!((i, reason), (id, "read-timeout")),
        other => panic!("expected the end, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert_eq!(read_n(&mut c, 2), b"hi");
    let stats = server.stop();
    assert_eq!((stats.read_timeouts, stats.idle_timeouts), (1, 0));
}

fn write_deadline_closes_a_client_that_does_not_read(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (notes, rx) = Notes::new();
    let mut h = porting(&notes);
    h.greet = Some(vec![7; 8 << 20]);
    let server = b
        .write_timeout(Duration::from_millis(150))
        .send_queue_limit(16 << 20)
        .start(h)
        .unwrap();
    // Keeps sending (so no read deadline or idleness is involved) but
    // never reads.
    let mut c = non_reading_client(server.local_addr());
    let id = connected(&rx);
    let give_up = Instant::now() + LIMIT;
    let ended = loop {
        if let Ok(n) = rx.try_recv() {
            break n;
        }
        assert!(
            Instant::now() < give_up,
            "no write deadline within the limit"
        );
        if c.write_all(b"ping").is_err() {
            break recv(&rx);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    match ended {
        Note::Ended(i, _, _, reason) => assert_eq!((i, reason), (id, "write-timeout")),
        other => panic!("expected the end, got {other:?}"),
    }
    let stats = server.stop();
    assert_eq!(stats.write_timeouts, 1);
}

both_backends!(
    each_connection_has_its_own_state,
    connection_timers_fire_repeat_and_cancel,
    timers_end_with_their_connection,
    server_tick_reaches_every_client,
    blocking_work_lets_other_clients_be_served,
    outbound_connections_are_served_like_accepted_ones,
    outbound_connect_refused_is_reported,
    outbound_connect_times_out,
    broadcast_skips_the_sender,
    read_deadline_closes_a_silent_client,
    write_deadline_closes_a_client_that_does_not_read,
);
