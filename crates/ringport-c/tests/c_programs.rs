//! The C side for real: the library is built with cargo, the C and C++
//! programs with gcc and g++ against the Win32 headers, and each runs on
//! both backends over loopback.
//!
//! * `api`, `native` and `concurrency` are self-checking C tests
//!   (`tests/c/`): Win32 return conventions and bad arguments; the native
//!   API of `ringport.h`; NumberOfConcurrentThreads.
//! * `fallback` forbids io_uring with seccomp from C: epoll takes over.
//! * `echo_server` (seed 003's shape): 50 clients, random sizes,
//!   byte-exact; `message_server` (seed 000's): messages printed, reset and
//!   orderly close told apart, workers stopped by posted packets;
//!   `iocp_model` (seed 004's CIOCPModel): 10 AcceptEx kept posted, first
//!   data and both addresses, EXIT_CODE packets and every worker waited for.
//! * `seed_003` and `seed_000`: the seed texts themselves, extracted from
//!   `shared/seeds` (found above this crate) with only the blog-formatting
//!   fixes and the Win64 edits, run in a private network namespace (they
//!   listen on fixed ports of every address; there only loopback exists).
//!
//! `RINGPORT_C_SANITIZE=address` builds the C programs with
//! AddressSanitizer (`tests/run.sh` runs the suite both ways).

mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use harness::{both_backends, Program, Server, LIMIT};
use ringport::BackendKind;

both_backends!(
    api,
    native,
    concurrency,
    echo_server_50_clients,
    message_server,
    iocp_model,
    seed_003,
    seed_000
);

fn api(kind: BackendKind) {
    let out = harness::run(Program::ApiTest, kind, &[]);
    assert_eq!(
        out.trim(),
        format!("api: ok (backend {})", harness::name(kind))
    );
}

fn native(kind: BackendKind) {
    let out = harness::run(Program::NativeTest, kind, &[]);
    assert_eq!(
        out.trim(),
        format!("native: ok (backend {})", harness::name(kind))
    );
}

fn concurrency(kind: BackendKind) {
    let out = harness::run(Program::ConcurrencyTest, kind, &[]);
    assert_eq!(
        out.trim(),
        format!("concurrency: ok (backend {})", harness::name(kind))
    );
}

#[test]
fn fallback() {
    let auto = harness::run_env(Program::FallbackTest, &[], &[]);
    let expected = if harness::uring_available() {
        "fallback: io_uring"
    } else {
        "fallback: epoll"
    };
    assert_eq!(auto.trim(), expected, "the automatic choice");
    let forbidden = harness::run_env(Program::FallbackTest, &["forbid"], &[]);
    assert_eq!(forbidden.trim(), "fallback: epoll", "io_uring forbidden");
    let forced = harness::run_env(
        Program::FallbackTest,
        &["forbid"],
        &[("RINGPORT_BACKEND", "uring")],
    );
    assert!(
        forced.trim().starts_with("fallback: refused"),
        "forcing io_uring where it is forbidden must fail: {forced}"
    );
}

/// One client of an echo server: `rounds` messages of random sizes (1 B to
/// 64 KiB), each read back byte-exact before the next is sent.
fn echo_client(mut s: TcpStream, seed: u64, rounds: usize) {
    s.set_read_timeout(LIMIT).unwrap();
    s.set_write_timeout(LIMIT).unwrap();
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..rounds {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = 1 + (rng % 65536) as usize;
        let msg: Vec<u8> = (0..len).map(|i| (rng as usize + i * 31) as u8).collect();
        s.write_all(&msg).unwrap();
        let mut back = vec![0; len];
        s.read_exact(&mut back).expect("the echo, within the limit");
        assert!(back == msg, "echo differs ({len} bytes, client {seed})");
    }
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the echoes");
}

/// 50 concurrent clients, byte-exact. They connect one after the other
/// (seed 003 listens with a backlog of 5, which 50 simultaneous connects
/// overflow: the kernel then resets some, as Windows refuses them), then
/// all talk at once.
fn fifty_clients(addr: SocketAddr) {
    let streams: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let clients: Vec<_> = streams
        .into_iter()
        .zip(1u64..)
        .map(|(s, i)| std::thread::spawn(move || echo_client(s, i, 8)))
        .collect();
    for c in clients {
        c.join().expect("an echo client failed");
    }
}

fn echo_server_50_clients(kind: BackendKind) {
    let mut server = Server::start(Program::EchoServer, kind, &["0"]);
    let line = server.expect_line("listening on ");
    let (addr, backend) = line
        .trim_start_matches("listening on ")
        .split_once(" backend ")
        .expect("listening on ADDR backend NAME");
    assert_eq!(backend, harness::name(kind));
    fifty_clients(addr.parse().unwrap());
}

/// Reads the address from a "listening on 127.0.0.1:PORT" line.
fn listening_addr(server: &mut Server) -> SocketAddr {
    let line = server.expect_line("listening on 127.0.0.1:");
    let port: String = line["listening on 127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()))
}

/// Closes a connection with a reset (SO_LINGER 0).
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}

fn message_server(kind: BackendKind) {
    let mut server = Server::start(Program::MessageServer, kind, &["0"]);
    let addr = listening_addr(&mut server);
    let mut a = TcpStream::connect(addr).unwrap();
    a.write_all(b"hello from a").unwrap();
    let a_sock = server.expect_line("socket ");
    let a_sock = a_sock.split(' ').nth(1).unwrap().to_string();
    server.expect_line(&format!("message from {a_sock}: hello from a"));
    drop(a); // orderly close: a 0-byte completion
    server.expect_line(&format!("closing socket {a_sock} (closed: 0 bytes)"));

    let mut b = TcpStream::connect(addr).unwrap();
    b.write_all(b"hello from b").unwrap();
    let b_sock = server.expect_line("socket ");
    let b_sock = b_sock.split(' ').nth(1).unwrap().to_string();
    server.expect_line(&format!("message from {b_sock}: hello from b"));
    reset(b); // a reset: ERROR_NETNAME_DELETED
    server.expect_line(&format!(
        "closing socket {b_sock} (reset: ERROR_NETNAME_DELETED)"
    ));

    // End of input: one exit packet per worker, every worker waited for.
    server.close_stdin();
    let stopped = server.expect_line("stopped ");
    let (n, rest) = stopped["stopped ".len()..].split_once(" of ").unwrap();
    assert_eq!(format!("{n} workers"), rest, "every worker stopped");
    server.expect_exit_ok();
}

fn iocp_model(kind: BackendKind) {
    let mut server = Server::start(Program::IocpModel, kind, &["0"]);
    let line = server.expect_line("listening on 127.0.0.1:");
    assert!(line.ends_with("with 10 AcceptEx posted"), "{line}");
    let addr = listening_addr_from(&line);
    // More clients than accepts posted: each accept is replenished.
    let mut clients = Vec::new();
    for i in 0..15 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(LIMIT).unwrap();
        let first = format!("first {i}");
        c.write_all(first.as_bytes()).unwrap();
        let mut back = vec![0; first.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, first.as_bytes(), "the first data, echoed");
        let me = c.local_addr().unwrap();
        server.expect_line(&format!("accepted {me} local {addr} first data: {first}"));
        clients.push(c);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = format!("second {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    let mut clients = clients.into_iter();
    let first = clients.next().unwrap();
    let peer = first.local_addr().unwrap();
    reset(first);
    server.expect_line(&format!("client {peer} reset (ERROR_NETNAME_DELETED)"));
    let second = clients.next().unwrap();
    let peer = second.local_addr().unwrap();
    drop(second);
    server.expect_line(&format!("client {peer} disconnected"));
    server.close_stdin();
    server.expect_line("stop: workers all exited");
    server.expect_line("stopped");
    server.expect_exit_ok();
    drop(clients);
}

fn listening_addr_from(line: &str) -> SocketAddr {
    let port: String = line["listening on 127.0.0.1:".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()))
}

/// Seed 003's own text: the echo server on port 5150, 50 clients.
fn seed_003(kind: BackendKind) {
    let Some(mut server) = harness::seed_server(Program::Seed003, kind, "seed_003") else {
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], 5150));
    harness::wait_for_listener(addr, &mut server);
    fifty_clients(addr);
}

/// Seed 000's own text: the message server on port 5050.
fn seed_000(kind: BackendKind) {
    let Some(mut server) = harness::seed_server(Program::Seed000, kind, "seed_000") else {
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], 5050));
    harness::wait_for_listener(addr, &mut server);
    server.expect_line("连接进来"); // the probe connection
    server.expect_line("closing socket");
    let mut a = TcpStream::connect(addr).unwrap();
    a.write_all(b"seed message one").unwrap();
    server.expect_line("连接进来");
    server.expect_line("发送过来的消息：seed message one");
    drop(a);
    server.expect_line("closing socket");
    let mut b = TcpStream::connect(addr).unwrap();
    b.write_all(b"seed message two").unwrap();
    server.expect_line("连接进来");
    server.expect_line("发送过来的消息：seed message two");
    reset(b); // the ERROR_NETNAME_DELETED branch closes it too
    server.expect_line("closing socket");
}
