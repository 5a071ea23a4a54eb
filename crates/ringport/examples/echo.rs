//! The seed echo server (seeds 002 and 003), translated.
//!
//! Port 5150 by default, 2 × CPUs worker threads on one completion port. Each
//! accepted socket is associated with the port under its own completion key;
//! every connection runs the seed's state machine: recv → send (continuing a
//! partial send from `BytesSEND` until `BytesRECV` bytes are echoed) → recv,
//! and it is closed on 0 bytes or an error. Accepts are kept posted (the
//! seeds' AcceptEx), one replenished per accepted connection.
//!
//! ```text
//! cargo run --release --example echo -- [--bind ADDR] [--port 5150] [--workers N]
//! ```
//! The first line printed is `listening on ADDR (backend: io_uring|epoll)`.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use ringport::op;
use ringport::{CompletionPort, Handle, OpKind};
use socket2::{Domain, Socket, Type};

/// Completion key of the listening socket; connections get keys from 1.
const LISTENER: u64 = 0;
/// Accepts kept posted (the seeds' MAX_POST_ACCEPT).
const POSTED_ACCEPTS: usize = 10;
/// Receive buffer per connection (the seeds' DATA_BUFSIZE).
const BUF_SIZE: usize = 8192;

struct Config {
    bind: IpAddr,
    port: u16,
    workers: usize,
}

fn parse_args() -> Result<Config, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cfg = Config {
        bind: IpAddr::from([0, 0, 0, 0]),
        port: 5150,
        workers: 2 * cpus,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bind" => cfg.bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "--port" => cfg.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--workers" => {
                cfg.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?;
                cfg.workers = cfg.workers.max(1);
            }
            "-h" | "--help" => {
                println!("usage: echo [--bind ADDR] [--port 5150] [--workers N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(cfg)
}

/// The seeds' per-handle data: every live connection by completion key.
struct Server {
    port: CompletionPort,
    listener: Handle,
    conns: RwLock<HashMap<u64, Handle>>,
    next_key: AtomicU64,
}

impl Server {
    fn conn(&self, key: u64) -> Option<Handle> {
        self.conns.read().get(&key).cloned()
    }

    fn drop_conn(&self, key: u64) {
        // Dropping the last Handle closes the socket.
        self.conns.write().remove(&key);
    }

    fn worker(&self) {
        loop {
            let mut c = match self.port.get(None) {
                Ok(c) => c,
                Err(_) => return, // the port was shut down
            };
            match c.kind() {
                OpKind::Accept => self.on_accept(&mut c),
                OpKind::Recv => self.on_recv(&mut c),
                OpKind::Send => self.on_send(&mut c),
                OpKind::Packet => return, // the seeds' exit packet
                _ => {}
            }
        }
    }

    fn on_accept(&self, c: &mut ringport::Completion) {
        // Replenish the accept that just completed.
        if let Err(e) = self.port.submit(op::Accept::new(&self.listener)) {
            eprintln!("re-posting accept failed: {e}");
        }
        let Ok(acc) = c.take_accepted() else {
            eprintln!("accept failed: {:?}", c.result());
            return;
        };
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        match self.port.associate(acc.socket, key) {
            Ok(conn) => {
                self.conns.write().insert(key, conn.clone());
                if let Err(e) = self
                    .port
                    .submit(op::Recv::new(&conn, Vec::with_capacity(BUF_SIZE)))
                {
                    eprintln!("recv on {}: {e}", acc.peer);
                    self.drop_conn(key);
                }
            }
            Err(e) => eprintln!("associate {}: {e}", acc.peer),
        }
    }

    fn on_recv(&self, c: &mut ringport::Completion) {
        let key = c.key();
        match c.result() {
            Ok(n) if n > 0 => {
                // BytesRECV = n, BytesSEND = 0: echo what came in.
                let buf = c.take_buf::<Vec<u8>>().expect("recv returns its buffer");
                match self.conn(key) {
                    Some(conn) if self.port.submit(op::Send::new(&conn, buf)).is_ok() => {}
                    _ => self.drop_conn(key),
                }
            }
            _ => self.drop_conn(key), // 0 bytes: the client closed; or an error
        }
    }

    fn on_send(&self, c: &mut ringport::Completion) {
        let key = c.key();
        let Ok(sent) = c.result() else {
            self.drop_conn(key);
            return;
        };
        let mut buf = c.take_buf::<Vec<u8>>().expect("send returns its buffer");
        let Some(conn) = self.conn(key) else { return };
        let posted = if sent < buf.len() {
            // BytesSEND < BytesRECV: send the rest.
            buf.drain(..sent);
            self.port.submit(op::Send::new(&conn, buf))
        } else {
            // Everything echoed: post the next receive.
            buf.clear();
            self.port.submit(op::Recv::new(&conn, buf))
        };
        if posted.is_err() {
            self.drop_conn(key);
        }
    }
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cfg) {
        eprintln!("echo: {e}");
        std::process::exit(if e.kind() == std::io::ErrorKind::AddrInUse {
            2
        } else {
            1
        });
    }
}

fn run(cfg: Config) -> std::io::Result<()> {
    let addr = SocketAddr::new(cfg.bind, cfg.port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;

    // One worker: let io_uring run single-issuer (the worker is the only
    // thread that dequeues).
    let port = CompletionPort::builder()
        .single_thread(cfg.workers == 1)
        .build()?;
    let local = socket.local_addr()?.as_socket().expect("an IP address");
    let listener = port.associate(socket, LISTENER)?;
    println!("listening on {local} (backend: {})", port.backend());
    std::io::stdout().flush()?;

    let server = Arc::new(Server {
        port,
        listener,
        conns: RwLock::new(HashMap::new()),
        next_key: AtomicU64::new(LISTENER + 1),
    });
    for _ in 0..POSTED_ACCEPTS {
        server.port.submit(op::Accept::new(&server.listener))?;
    }
    let workers: Vec<_> = (0..cfg.workers)
        .map(|_| {
            let s = server.clone();
            std::thread::spawn(move || s.worker())
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}
