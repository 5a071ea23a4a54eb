//! Helpers shared by the integration tests: both backends, loopback pairs,
//! bounded waits and descriptor counting.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ringport::{BackendKind, Completion, CompletionPort, Handle};

/// Upper bound for any single wait in a test: generous, so a slow CI machine
/// passes, but a hang still fails instead of blocking the suite.
pub const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

/// Generates one `#[test]` per backend for each listed function, which takes
/// the backend as its argument.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name(ringport::BackendKind::IoUring) } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name(ringport::BackendKind::Epoll) } )*
        }
    };
}

/// A port on `kind`, or `None` (printed as a skip) when io_uring cannot be set
/// up on this machine. epoll must always work.
pub fn port(kind: BackendKind, concurrency: usize) -> Option<CompletionPort> {
    match CompletionPort::builder()
        .backend(kind)
        .concurrency(concurrency)
        .build()
    {
        Ok(p) => {
            assert_eq!(p.backend(), kind);
            Some(p)
        }
        Err(e) if kind == BackendKind::IoUring => {
            eprintln!("SKIPPED: io_uring unavailable here: {e}");
            None
        }
        Err(e) => panic!("the {kind} backend failed: {e}"),
    }
}

/// Dequeues one completion or fails the test after `LIMIT`.
pub fn next(port: &CompletionPort) -> Completion {
    port.get(LIMIT).expect("a completion within the limit")
}

/// A connected loopback pair: the client as a std stream, the server side
/// associated with `port` under `key`.
pub fn pair(port: &CompletionPort, key: u64) -> (TcpStream, Handle) {
    // One listener per test thread: a listener per pair would use up the
    // ephemeral ports when tests open thousands of pairs.
    thread_local! {
        static LISTENER: TcpListener = TcpListener::bind("127.0.0.1:0").expect("bind");
    }
    let (client, server) = LISTENER.with(|l| {
        let client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
        let (server, peer) = l.accept().expect("accept");
        assert_eq!(peer, client.local_addr().unwrap());
        (client, server)
    });
    client.set_read_timeout(LIMIT).unwrap();
    client.set_write_timeout(LIMIT).unwrap();
    (client, port.associate(server, key).expect("associate"))
}

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Makes the next close of `s` send a reset (SO_LINGER 0).
pub fn set_linger_zero(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}
