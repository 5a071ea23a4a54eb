//! `ringport echo --udp --unix PATH` and `ringport log --udp` as real
//! processes: the `listening on` lines, echo over TCP, UDP and a Unix
//! socket at once, the socket file removed at SIGTERM and SIGINT, a stale
//! one replaced, datagrams printed with their sender.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::process::{kill_process, Pid, Signal};

use support::*;

fn udp_client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(LIMIT)).unwrap();
    c
}

/// The next stdout line (waiting for it).
fn next_line(r: &Running) -> String {
    r.lines.recv_timeout(LIMIT).expect("a line on stdout")
}

fn echo_on_tcp_udp_and_unix(backend: &str) {
    let path = socket_path("echo-unix");
    // A stale socket file from a dead earlier run is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let r = start(
        "echo",
        backend,
        &["--udp", "--unix", path.to_str().unwrap()],
    );
    assert_eq!(next_line(&r), format!("listening on udp {}", r.addr));
    assert_eq!(
        next_line(&r),
        format!("listening on unix {}", path.display())
    );

    close_client(echo_client(r.addr, 20, 3000));

    let c = udp_client();
    let mut back = vec![0; 2048];
    for i in 0..50u32 {
        let d: Vec<u8> = (0..(10 + i * 31)).map(|j| (i + j) as u8).collect();
        c.send_to(&d, r.addr).unwrap();
        let (n, from): (usize, SocketAddr) = c.recv_from(&mut back).expect("a udp echo");
        assert_eq!(from, r.addr);
        assert_eq!(&back[..n], &d[..], "udp echo {i}");
    }

    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(LIMIT)).unwrap();
    let msg: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let reader = {
        let mut u = u.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut back = vec![0; 50_000];
            u.read_exact(&mut back).unwrap();
            back
        })
    };
    u.write_all(&msg).unwrap();
    assert!(reader.join().unwrap() == msg, "unix echo differs");
    drop(u);

    // SIGTERM on one backend, SIGINT (Ctrl-C) on the other: either stop
    // removes the socket file.
    let sig = if backend == "uring" {
        Signal::TERM
    } else {
        Signal::INT
    };
    let mut r = r;
    kill_process(Pid::from_child(&r.child), sig).unwrap();
    let status = r.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let rest: Vec<String> = std::iter::from_fn(|| r.lines.recv_timeout(LIMIT).ok()).collect();
    let stats = rest
        .iter()
        .find(|l| l.starts_with("final stats:"))
        .unwrap_or_else(|| panic!("final stats printed: {rest:?}"));
    assert!(stats.contains("datagrams: 50 in"), "{stats}");
    assert!(!path.exists(), "the socket file outlived the server");
}

fn log_prints_datagrams(backend: &str) {
    let r = start("log", backend, &["--udp", "--recv-buffer", "1024"]);
    assert_eq!(next_line(&r), format!("listening on udp {}", r.addr));
    let c = udp_client();
    let me = c.local_addr().unwrap();
    c.send_to(b"hello\x01udp", r.addr).unwrap();
    let line = next_line(&r);
    let mut parts = line.splitn(3, ' ');
    let (ts, peer, msg) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert_eq!(peer, me.to_string());
    assert_eq!(msg, "hello\\x01udp");
    // Longer than a 1 KiB buffer's room: printed as truncated, not whole.
    c.send_to(&[b'z'; 2000], r.addr).unwrap();
    let line = next_line(&r);
    assert!(line.ends_with(" (truncated)"), "{line}");
    assert!(line.contains(&format!("{me} zzz")), "{line}");
    stop(r);
}

both_backends!(echo_on_tcp_udp_and_unix, log_prints_datagrams);
