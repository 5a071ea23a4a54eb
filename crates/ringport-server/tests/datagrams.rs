//! The server's datagram socket over real UDP sockets: echo with the
//! sender's address (IPv4, and IPv6 where the host has ::1), truncation
//! reported, the reply-send limit under a slow handler, no descriptor left
//! after stop.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use ringport::{Address, BackendKind};
use ringport_server::{DatagramHandler, DatagramSocket};

use common::*;

/// Echoes each datagram to its sender; remembers the senders it saw.
struct UdpEcho {
    senders: Arc<Mutex<HashSet<Address>>>,
}

impl DatagramHandler for UdpEcho {
    type State = ();
    fn on_start(&self, _: &DatagramSocket) {}
    fn on_datagram(&self, socket: &DatagramSocket, _: &(), from: &Address, data: Vec<u8>) {
        self.senders.lock().unwrap().insert(from.clone());
        socket
            .send_to(data, from)
            .expect("an echo within the limit");
    }
}

/// A datagram carrying its number, then bytes that depend on it.
fn numbered(n: u32, len: usize) -> Vec<u8> {
    let mut d = n.to_be_bytes().to_vec();
    d.extend(pattern(u64::from(n), len - 4));
    d
}

/// One datagram from `c` (a blocking receive with a timeout may be
/// interrupted; it is retried, as `read_exact` retries reads).
fn recv_from(c: &UdpSocket, buf: &mut [u8]) -> (usize, SocketAddr) {
    loop {
        match c.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            got => return got.expect("a datagram within the limit"),
        }
    }
}

fn client(on: IpAddr) -> UdpSocket {
    let c = UdpSocket::bind(SocketAddr::new(on, 0)).unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    c
}

/// `rounds` windows of `window` datagrams of varied sizes, each window's
/// echoes collected (in any order: workers run datagrams in parallel)
/// and compared with what was sent.
fn echo_many(kind: BackendKind, ip: IpAddr) {
    let Some(b) = builder(kind) else { return };
    let senders = Arc::new(Mutex::new(HashSet::new()));
    let server = b
        .bind(ip)
        .udp(UdpEcho {
            senders: senders.clone(),
        })
        .start(Echo)
        .unwrap();
    let to = server.udp_addr().expect("a datagram socket");
    assert_eq!(to, server.local_addr(), "same address and port number");
    let c = client(ip);
    let (rounds, window) = (100u32, 32u32);
    let mut bytes = 0u64;
    let mut back = vec![0; 2048];
    for r in 0..rounds {
        let mut sent = HashSet::new();
        for i in 0..window {
            let n = r * window + i;
            let d = numbered(n, 4 + (n as usize * 7) % 1200);
            bytes += d.len() as u64;
            c.send_to(&d, to).unwrap();
            sent.insert(d);
        }
        for _ in 0..window {
            let (len, from) = recv_from(&c, &mut back);
            assert_eq!(from, to, "the reply comes from the server's socket");
            assert!(sent.remove(&back[..len]), "an echo that was not sent");
        }
        assert!(sent.is_empty());
    }
    let total = u64::from(rounds * window);
    wait_for("every reply send completed", || {
        server.stats().datagrams_out == total
    });
    let stats = server.stop();
    assert_eq!(stats.datagrams_in, total);
    assert_eq!(stats.datagram_bytes_in, bytes);
    assert_eq!(stats.datagram_bytes_out, bytes);
    assert_eq!((stats.datagrams_dropped, stats.datagrams_truncated), (0, 0));
    let want: HashSet<Address> = [Address::Ip(c.local_addr().unwrap())].into();
    assert_eq!(*senders.lock().unwrap(), want, "the sender's address");
}

fn udp_echo_ipv4(kind: BackendKind) {
    echo_many(kind, "127.0.0.1".parse().unwrap());
}

fn udp_echo_ipv6(kind: BackendKind) {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no ::1 here");
        return;
    }
    echo_many(kind, "::1".parse().unwrap());
}

/// What the truncation handler reports.
#[derive(Debug, PartialEq)]
enum Got {
    Whole(Address, Vec<u8>),
    Truncated(Address, Vec<u8>),
}

struct Report(Mutex<Sender<Got>>);

impl DatagramHandler for Report {
    type State = ();
    fn on_start(&self, _: &DatagramSocket) {}
    fn on_datagram(&self, _: &DatagramSocket, _: &(), from: &Address, data: Vec<u8>) {
        let _ = self.0.lock().unwrap().send(Got::Whole(from.clone(), data));
    }
    fn on_truncated(&self, _: &DatagramSocket, _: &(), from: &Address, part: Vec<u8>) {
        let _ = self
            .0
            .lock()
            .unwrap()
            .send(Got::Truncated(from.clone(), part));
    }
}

fn a_truncated_datagram_is_reported(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (tx, rx) = channel();
    let server = b
        .recv_buffer_size(1024)
        .udp(Report(Mutex::new(tx)))
        .start(Echo)
        .unwrap();
    let to = server.udp_addr().unwrap();
    let c = client("127.0.0.1".parse().unwrap());
    let me = Address::Ip(c.local_addr().unwrap());
    let long = pattern(1, 2000);
    c.send_to(&long, to).unwrap();
    let got = rx.recv_timeout(LIMIT).expect("the long datagram reported");
    let (from, part) = match got {
        Got::Truncated(from, part) => (from, part),
        Got::Whole(_, d) => panic!(
            "a 2000-byte datagram into 1 KiB buffers reported as whole ({} bytes)",
            d.len()
        ),
    };
    assert_eq!(from, me);
    assert!(
        !part.is_empty() && part.len() < long.len(),
        "{}",
        part.len()
    );
    assert_eq!(part, long[..part.len()], "the part that fitted");
    // The receive goes on after a truncated datagram.
    c.send_to(b"short", to).unwrap();
    assert_eq!(
        rx.recv_timeout(LIMIT).unwrap(),
        Got::Whole(me, b"short".to_vec())
    );
    let stats = server.stop();
    assert_eq!((stats.datagrams_truncated, stats.datagrams_in), (1, 1));
}

/// For each datagram, tries `REPLIES` replies of `REPLY` bytes, and
/// records the most memory the sends in flight held.
struct Burst {
    most_in_flight: AtomicUsize,
    refused: AtomicUsize,
}

const REPLIES: usize = 16;
const REPLY: usize = 4096;
const SEND_LIMIT: usize = 5 * REPLY;

struct BurstHandler(Arc<Burst>);

impl DatagramHandler for BurstHandler {
    type State = ();
    fn on_start(&self, _: &DatagramSocket) {}
    fn on_datagram(&self, socket: &DatagramSocket, _: &(), from: &Address, _: Vec<u8>) {
        for i in 0..REPLIES {
            let reply = vec![i as u8; REPLY];
            if socket.send_to(reply, from).is_err() {
                self.0.refused.fetch_add(1, Ordering::Relaxed);
            }
            self.0
                .most_in_flight
                .fetch_max(socket.in_flight(), Ordering::Relaxed);
        }
    }
}

/// One worker: while it runs the handler, no send completion is taken, so
/// the replies of one datagram pile up in flight; over the limit they are
/// dropped and counted, and the memory in flight never passes the limit.
fn the_reply_send_limit_holds(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let burst = Arc::new(Burst {
        most_in_flight: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
    });
    let server = b
        .workers(1)
        .datagram_send_limit(SEND_LIMIT)
        .udp(BurstHandler(burst.clone()))
        .start(Echo)
        .unwrap();
    let to = server.udp_addr().unwrap();
    let c = client("127.0.0.1".parse().unwrap());
    let floods = 200;
    for i in 0..floods {
        c.send_to(&[i as u8; 8], to).unwrap();
    }
    wait_for("every datagram handled", || {
        let s = server.stats();
        s.datagrams_in == floods && s.datagrams_out + s.datagrams_dropped == floods * REPLIES as u64
    });
    let socket = server.datagram_socket().unwrap().clone();
    wait_for("nothing in flight", || socket.in_flight() == 0);
    let stats = server.stop();
    let most = burst.most_in_flight.load(Ordering::Relaxed);
    assert!(
        most <= SEND_LIMIT,
        "{most} bytes in flight over {SEND_LIMIT}"
    );
    assert!(stats.datagrams_dropped > 0, "nothing dropped: {stats}");
    assert_eq!(
        stats.datagrams_dropped,
        burst.refused.load(Ordering::Relaxed) as u64,
        "every drop is counted and refused to the handler"
    );
}

fn stop_leaves_no_descriptor(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let before = fd_count();
    let server = b
        .udp(UdpEcho {
            senders: Arc::default(),
        })
        .start(Echo)
        .unwrap();
    let c = client("127.0.0.1".parse().unwrap());
    c.send_to(b"one", server.udp_addr().unwrap()).unwrap();
    let mut back = [0; 8];
    assert_eq!(recv_from(&c, &mut back).0, 3);
    let mut tcp = common::client(server.local_addr());
    assert_eq!(round_trip(&mut tcp, b"two"), b"two");
    drop((tcp, c));
    server.stop();
    assert_eq!(fd_count(), before, "descriptors left after stop");
}

/// Serving UDP needs room in a receive buffer for a datagram's header and
/// sender's address: too small a buffer is refused at start.
fn too_small_buffers_are_refused(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let e = b
        .recv_buffer_size(100)
        .udp(UdpEcho {
            senders: Arc::default(),
        })
        .start(Echo)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

/// With port 0 the UDP socket takes the TCP listener's number; a number
/// given explicitly and taken for UDP fails with `AddrInUse`.
fn a_taken_udp_port_is_refused(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let e = b
        .port(port)
        .udp(UdpEcho {
            senders: Arc::default(),
        })
        .start(Echo);
    // The TCP port of that number may itself be taken by someone else.
    let e = e.expect_err("the UDP port is taken");
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
}

/// This thread's context switches so far.
fn my_context_switches() -> u64 {
    std::fs::read_to_string("/proc/thread-self/status")
        .unwrap()
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split(':').nth(1).unwrap().trim().parse::<u64>().unwrap())
        .sum()
}

/// The thread that started the server is not woken per datagram: on
/// io_uring the kernel runs a multishot receive's work on the thread that
/// submitted it, so a worker posts the receive, not `start`'s caller
/// (which, posting it, was woken about 0.2-0.4 times per datagram).
fn the_starting_thread_is_not_woken_per_datagram(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    let (to_starter, starter_rx) = channel::<()>();
    let (to_test, test_rx) = channel();
    let starter = std::thread::spawn(move || {
        let server = b
            .udp(UdpEcho {
                senders: Arc::default(),
            })
            .start(Echo)
            .unwrap();
        let first = my_context_switches();
        to_test.send(server.udp_addr().unwrap()).unwrap();
        starter_rx.recv().unwrap();
        let woken = my_context_switches() - first;
        server.stop();
        woken
    });
    let to = test_rx.recv_timeout(LIMIT).unwrap();
    let c = client("127.0.0.1".parse().unwrap());
    let mut back = [0; 64];
    let datagrams = 2000;
    for i in 0..datagrams / 10 {
        for j in 0..10u32 {
            c.send_to(&(i * 10 + j).to_be_bytes(), to).unwrap();
        }
        for _ in 0..10 {
            assert_eq!(recv_from(&c, &mut back).0, 4);
        }
    }
    to_starter.send(()).unwrap();
    let woken = starter.join().unwrap();
    assert!(
        woken < 20,
        "the starting thread was switched {woken} times for {datagrams} datagrams"
    );
}

both_backends!(
    the_starting_thread_is_not_woken_per_datagram,
    udp_echo_ipv4,
    udp_echo_ipv6,
    a_truncated_datagram_is_reported,
    the_reply_send_limit_holds,
    stop_leaves_no_descriptor,
    too_small_buffers_are_refused,
    a_taken_udp_port_is_refused,
);
