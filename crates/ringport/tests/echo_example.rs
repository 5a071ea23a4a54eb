//! The seed echo server (`examples/echo.rs`) as a real process: 200 concurrent
//! clients, random message sizes from 1 B to 64 KiB, every byte echoed back
//! in order, on each backend.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use ringport::BackendKind;

/// The example binary, built (or found up to date) by cargo next to this
/// test's directory: `cargo test --tests` does not build examples.
fn example_path() -> std::path::PathBuf {
    common::build_example("echo")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example on 127.0.0.1:0 and returns it with its address and the
/// backend it reported.
fn start(kind: BackendKind) -> (Server, SocketAddr, String) {
    let mut child = Command::new(example_path())
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .env("RINGPORT_BACKEND", kind.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run examples/echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "listening on 127.0.0.1:PORT (backend: NAME)"
    let rest = line.trim().strip_prefix("listening on ").expect(&line);
    let (addr, backend) = rest.split_once(' ').unwrap();
    (Server(child), addr.parse().unwrap(), backend.to_string())
}

fn echo_200_clients(kind: BackendKind) {
    if kind == BackendKind::IoUring && common::port(kind, 1).is_none() {
        return;
    }
    let (_server, addr, backend) = start(kind);
    assert_eq!(backend, format!("(backend: {kind})"));
    let clients: Vec<_> = (0..200u64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(common::LIMIT).unwrap();
                let mut rng = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut total = 0;
                for round in 0..8 {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let len = 1 + (rng % (64 * 1024)) as usize;
                    let msg = common::pattern(i * 1000 + round, len);
                    s.write_all(&msg).unwrap();
                    let mut got = vec![0; len];
                    s.read_exact(&mut got).unwrap();
                    assert!(got == msg, "client {i} round {round}: echo differs");
                    total += len;
                }
                total
            })
        })
        .collect();
    let bytes: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(bytes > 200 * 8);
}

both_backends!(echo_200_clients);
