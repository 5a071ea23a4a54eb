//! Helpers shared by the server's integration tests: both backends, a
//! handler that records every callback, bounded waits, descriptor counts.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringport::{BackendKind, CompletionPort};
use ringport_server::{ConnId, Connection, DisconnectReason, Handler, Server, ServerBuilder};

/// Upper bound for any single wait: generous for slow CI, but a hang fails.
pub const LIMIT: Duration = Duration::from_secs(20);

/// One `#[test]` per backend for each listed function taking the backend.
/// The tests of one binary run one at a time, so that descriptor counts and
/// resident memory measure one test only.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() {
                let _one_at_a_time = $crate::common::serial();
                super::$name(ringport::BackendKind::IoUring)
            } )*
        }
        mod epoll {
            $( #[test] fn $name() {
                let _one_at_a_time = $crate::common::serial();
                super::$name(ringport::BackendKind::Epoll)
            } )*
        }
    };
}

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds the test binary's one-test-at-a-time lock.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server builder on `kind` bound to 127.0.0.1:0, or `None` (printed as a
/// skip) when that backend cannot be set up here.
pub fn builder(kind: BackendKind) -> Option<ServerBuilder> {
    match CompletionPort::builder().backend(kind).build() {
        Ok(p) => {
            p.shutdown();
            Some(
                Server::builder()
                    .backend(kind)
                    .bind("127.0.0.1".parse().unwrap())
                    .port(0)
                    .workers(4)
                    .concurrency(2),
            )
        }
        Err(e) => {
            eprintln!("SKIPPED: the {kind} backend is unavailable here: {e}");
            None
        }
    }
}

/// What the recording handler saw.
#[derive(Debug)]
pub enum Ev {
    Connect {
        id: ConnId,
        local: SocketAddr,
        peer: SocketAddr,
        first: Option<Vec<u8>>,
    },
    Data {
        id: ConnId,
        data: Vec<u8>,
    },
    Sent {
        id: ConnId,
        bytes: usize,
    },
    Disconnect {
        id: ConnId,
        reason: &'static str,
    },
}

/// A handler that reports every callback on a channel and, if `echo`,
/// sends the data back.
pub struct Recorder {
    pub tx: Mutex<Sender<Ev>>,
    pub echo: bool,
}

impl Recorder {
    pub fn new(echo: bool) -> (Recorder, Receiver<Ev>) {
        let (tx, rx) = channel();
        (
            Recorder {
                tx: Mutex::new(tx),
                echo,
            },
            rx,
        )
    }
    fn report(&self, ev: Ev) {
        let _ = self.tx.lock().unwrap().send(ev);
    }
}

impl Handler for Recorder {
    type State = ();
    fn on_connect(&self, conn: &Connection, first: Option<Vec<u8>>) {
        self.report(Ev::Connect {
            id: conn.id(),
            local: conn.local_addr(),
            peer: conn.peer_addr(),
            first,
        });
    }
    fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
        self.report(Ev::Data {
            id: conn.id(),
            data: data.clone(),
        });
        if self.echo {
            let _ = conn.send(data);
        }
    }
    fn on_sent(&self, conn: &Connection, _: &mut (), bytes: usize) {
        self.report(Ev::Sent {
            id: conn.id(),
            bytes,
        });
    }
    fn on_disconnect(&self, conn: &Connection, _: (), reason: &DisconnectReason) {
        self.report(Ev::Disconnect {
            id: conn.id(),
            reason: reason.name(),
        });
    }
}

/// The echo handler of the seeds.
pub struct Echo;
impl Handler for Echo {
    type State = ();
    fn on_connect(&self, conn: &Connection, first: Option<Vec<u8>>) {
        if let Some(data) = first.filter(|d| !d.is_empty()) {
            let _ = conn.send(data);
        }
    }
    fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
        let _ = conn.send(data);
    }
}

/// Receives the next event or fails after `LIMIT`.
pub fn next(rx: &Receiver<Ev>) -> Ev {
    rx.recv_timeout(LIMIT).expect("an event within the limit")
}

/// Skips data/sent events until a disconnect; returns its reason.
pub fn disconnect_reason(rx: &Receiver<Ev>) -> &'static str {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx
            .recv_timeout(left)
            .expect("a disconnect within the limit")
        {
            Ev::Disconnect { reason, .. } => return reason,
            _ => continue,
        }
    }
}

/// A client connected to `addr` with bounded timeouts.
pub fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_write_timeout(Some(LIMIT)).unwrap();
    s
}

/// A client that will not read: its receive buffer is made small before it
/// connects, so the server's sends to it stall after a few KiB instead of
/// filling megabytes of kernel buffers first.
pub fn non_reading_client(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).expect("connect");
    let s = TcpStream::from(s);
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.set_write_timeout(Some(LIMIT)).unwrap();
    s
}

/// Sends `data` and reads exactly as much back.
pub fn round_trip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident memory of this process, in KiB (VmRSS).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Polls `cond` until it holds or `LIMIT` passes (for conditions only
/// visible in counters); panics with `what` on timeout.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(2));
    }
}
