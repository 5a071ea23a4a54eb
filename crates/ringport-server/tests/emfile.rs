//! Descriptor exhaustion: with a low RLIMIT_NOFILE the server neither spins
//! nor dies when accept fails with EMFILE; it keeps serving its clients and
//! accepts again once descriptors free up. The server runs in a child
//! process (this test binary, re-executed) so the limit is its own.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ringport::BackendKind;
use ringport_server::{Connection, Handler, Server};

use common::LIMIT;

const CHILD_ENV: &str = "RINGPORT_EMFILE_CHILD";
/// Descriptors the child may open beyond those it has at start.
const HEADROOM: u64 = 16;
const CLIENTS: usize = 40;

/// Echoes, and prints `conn PORT` for each client it accepts.
struct Announce;
impl Handler for Announce {
    type State = ();
    fn on_connect(&self, conn: &Connection, _first: Option<Vec<u8>>) {
        println!("conn {}", conn.peer_addr().port());
    }
    fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
        let _ = conn.send(data);
    }
}

/// The child: lowers its descriptor limit, serves, answers `stats` on
/// stdin, stops at end of input.
#[test]
fn emfile_child() {
    let Ok(backend) = std::env::var(CHILD_ENV) else {
        return; // only runs as the child of `server_survives_emfile`
    };
    let kind: BackendKind = backend.parse().unwrap();
    let start = || {
        Server::builder()
            .backend(kind)
            .bind("127.0.0.1".parse().unwrap())
            .workers(2)
            .start(Announce)
            .unwrap()
    };
    let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    // The limit is lowered before the server starts: io_uring's multishot
    // accept checks the limit that was in force when it was posted. A first
    // server, stopped at once, shows how many descriptors a server needs.
    let probe = start();
    let open = open_fds();
    probe.stop();
    let limit = rustix::process::Rlimit {
        current: Some(open + HEADROOM),
        maximum: Some(open + HEADROOM),
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).unwrap();
    let server = start();
    // After a line break: the harness has printed "test emfile_child ... ".
    println!("\nport {}", server.local_addr().port());
    for line in std::io::stdin().lock().lines() {
        if line.unwrap().trim() == "stats" {
            let s = server.stats();
            println!("stats {} {}", s.accept_exhausted, s.connections);
        }
    }
    let s = server.stop();
    println!("final {} {}", s.accept_exhausted, s.connections_total);
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn server_survives_emfile(kind: BackendKind) {
    if common::builder(kind).is_none() {
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emfile_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, kind.name())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_with = |rx: &Receiver<String>, prefix: &str| -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("a line from the child");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    };
    // Lines of one kind arrive in order; `conn` lines may come before or
    // after a `stats` answer, so they are collected separately.
    let port: u16 = next_with(&rx, "port ").parse().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(LIMIT)).unwrap();
            c
        })
        .collect();

    let mut accepted = std::collections::HashSet::new();
    let mut pending_lines = Vec::new();
    let stats = |stdin: &mut std::process::ChildStdin,
                 rx: &Receiver<String>,
                 conns: &mut Vec<String>|
     -> (u64, usize) {
        writeln!(stdin, "stats").unwrap();
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("a stats answer");
            if let Some(rest) = line.strip_prefix("stats ") {
                let mut it = rest.split(' ');
                return (
                    it.next().unwrap().parse().unwrap(),
                    it.next().unwrap().parse().unwrap(),
                );
            }
            conns.push(line);
        }
    };
    // Wait until the server ran out of descriptors and reported every
    // connection it could accept.
    let deadline = Instant::now() + LIMIT;
    let open = loop {
        let (exhausted, open) = stats(&mut stdin, &rx, &mut pending_lines);
        for l in pending_lines.drain(..) {
            if let Some(p) = l.strip_prefix("conn ") {
                accepted.insert(p.parse::<u16>().unwrap());
            }
        }
        if exhausted > 0 && accepted.len() == open {
            break open;
        }
        assert!(Instant::now() < deadline, "the server never hit EMFILE");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(open > 0 && open < CLIENTS, "{open} of {CLIENTS} accepted");

    // Out of descriptors, the server must not spin: measure its CPU time.
    let pid = child.id();
    let tick = 100.0; // USER_HZ
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = (cpu_ticks(pid) - c0) as f64 / tick / t0.elapsed().as_secs_f64();
    eprintln!(
        "{kind}: {open} accepted of {CLIENTS}; server CPU while out of descriptors: {:.0}%",
        cpu * 100.0
    );
    assert!(cpu < 0.2, "server used {:.0}% CPU", cpu * 100.0);

    // Accepted clients are still served.
    let port_of = |c: &TcpStream| c.local_addr().unwrap().port();
    for c in clients
        .iter_mut()
        .filter(|c| accepted.contains(&port_of(c)))
    {
        c.write_all(b"ping").unwrap();
        let mut back = [0; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
    }

    // Free descriptors: close some accepted clients; the rest get accepted.
    let (closing, kept): (Vec<TcpStream>, Vec<TcpStream>) = clients
        .into_iter()
        .partition(|c| accepted.contains(&port_of(c)));
    drop(closing);
    let waiting: Vec<TcpStream> = kept
        .into_iter()
        .filter(|c| !accepted.contains(&port_of(c)))
        .take(open.min(8))
        .collect();
    for mut c in waiting {
        c.write_all(b"late").unwrap();
        let mut back = [0; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"late", "a client waiting in the backlog is served");
    }

    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "the child server exited cleanly");
}

both_backends!(server_survives_emfile);
