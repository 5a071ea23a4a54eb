//! `ringport echo`: the echo server of seeds 002 and 003 (port 5150) on the
//! server framework, and the pieces `ringport log` shares with it: server
//! flags, starting with clear errors, waiting for Ctrl-C/SIGTERM, stopping.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use ringport::{Address, BackendKind};
use ringport_server::{
    Connection, DatagramHandler, DatagramSocket, DisconnectReason, Handler, Server, ServerBuilder,
};

use crate::observe::{ObserveArgs, Observers};
use crate::recent::RecentMessages;

/// Flags of `ringport echo`.
///
/// ```text
/// ringport echo --bind 127.0.0.1 --port 5150 --workers 8 --idle-timeout 30s
/// ringport echo --port 0 --udp --unix /tmp/echo.sock
/// ```
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Listen on this port (0 = any free port).
    #[arg(long, short, default_value_t = 5150)]
    pub port: u16,
}

/// Server settings shared by `ringport echo` and `ringport log`.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Listen on this address (0.0.0.0 = every interface, as INADDR_ANY).
    #[arg(long, default_value = "0.0.0.0", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Worker threads (default: 2 × CPUs).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Workers running at once, the port's concurrency value (0 = CPUs).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub concurrency: usize,
    /// Accepts kept posted on the listener (MAX_POST_ACCEPT).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub accepts: usize,
    /// Size of each receive buffer, in bytes (buffers are pooled, shared by
    /// all connections).
    #[arg(long, default_value_t = 32 * 1024, value_name = "BYTES")]
    pub recv_buffer: usize,
    /// Refuse connections beyond this many.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Close connections idle for this long (e.g. 30s, 500ms, 2m).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Option<Duration>,
    /// Also serve UDP, on the same port number as TCP (with --port 0: the
    /// port TCP got).
    #[arg(long)]
    pub udp: bool,
    /// Also listen on a Unix stream socket at PATH, served like TCP (the
    /// file is removed at stop; a stale one from a dead run is replaced).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Stop reading a client whose unsent data exceeds this many bytes.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub send_queue_limit: usize,
    /// Leave Nagle's algorithm on (TCP_NODELAY off).
    #[arg(long)]
    pub no_nodelay: bool,
    /// Send TCP keepalive probes after this much idle time.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub keepalive: Option<Duration>,
    /// Completion port backend: uring or epoll (default: automatic, or
    /// RINGPORT_BACKEND).
    #[arg(long, value_name = "uring|epoll")]
    pub backend: Option<BackendKind>,
    /// Longest time a stop may take (queued data gets most of it to flush).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub stop_deadline: Duration,
    #[command(flatten)]
    pub observe: ObserveArgs,
}

impl ServerArgs {
    /// The server builder these flags describe, listening on `port`.
    pub fn builder(&self, port: u16) -> ServerBuilder {
        let mut b = Server::builder()
            .addr(SocketAddr::new(self.bind, port))
            .concurrency(self.concurrency)
            .accepts(self.accepts)
            .recv_buffer_size(self.recv_buffer)
            .send_queue_limit(self.send_queue_limit)
            .nodelay(!self.no_nodelay)
            .keepalive(self.keepalive)
            .stop_deadline(self.stop_deadline);
        if let Some(n) = self.workers {
            b = b.workers(n);
        }
        if let Some(n) = self.max_connections {
            b = b.max_connections(n);
        }
        if let Some(d) = self.idle_timeout {
            b = b.idle_timeout(d);
        }
        if let Some(k) = self.backend {
            b = b.backend(k);
        }
        if let Some(path) = &self.unix {
            b = b.listen_unix(path);
        }
        b
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (try 500ms, 30s, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Starts `handler` with `builder` and serves until Ctrl-C or SIGTERM, then
/// stops and prints the final stats. The first line on stdout is
/// `listening on ADDR (backend: NAME)`, then one line per extra listener:
/// `listening on udp ADDR`, `listening on unix PATH`. A port already taken
/// or an address
/// that cannot be bound is reported on stderr with exit code 2, and so is a
/// stats socket or metrics address that cannot be used. `observe` starts
/// the stats socket and metrics endpoint (`recent`: `ringport log`'s
/// message list for the stats socket).
pub fn serve<H: Handler>(
    name: &str,
    addr: SocketAddr,
    builder: ServerBuilder,
    handler: H,
    observe: &ObserveArgs,
    recent: Option<Arc<RecentMessages>>,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("installing the Ctrl-C/SIGTERM handler")?;
    let server = match builder.start(handler) {
        Ok(s) => s,
        Err(e) if is_address_problem(&e) => {
            eprintln!("ringport {name}: cannot listen on {addr}: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e).context("starting the server"),
    };
    let observers = match Observers::start(observe, name, &server, recent) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringport {name}: {e:#}");
            server.stop();
            return Ok(ExitCode::from(2));
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "listening on {} (backend: {})",
            server.local_addr(),
            server.backend()
        )?;
        if let Some(udp) = server.udp_addr() {
            writeln!(out, "listening on udp {udp}")?;
        }
        if let Some(path) = server.unix_path() {
            writeln!(out, "listening on unix {}", path.display())?;
        }
        out.flush()?;
    }
    // Wait for Ctrl-C / SIGTERM (the handler lives as long as the process).
    let _ = rx.recv();
    tracing::info!("stopping");
    observers.stop();
    let stats = server.stop();
    let mut out = std::io::stdout().lock();
    writeln!(out, "final stats: {stats}")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// An IPv6 address on a host without IPv6 (Linux errno).
const EAFNOSUPPORT: i32 = 97;

fn is_address_problem(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        AddrInUse | AddrNotAvailable | PermissionDenied | InvalidInput
    ) || e.raw_os_error() == Some(EAFNOSUPPORT)
}

/// The datagram echo: every datagram back to its sender (dropped and
/// counted when too many replies are in flight).
struct UdpEcho;

impl DatagramHandler for UdpEcho {
    type State = ();

    fn on_start(&self, socket: &DatagramSocket) {
        tracing::debug!("udp echo on {}", socket.local_addr());
    }

    fn on_datagram(&self, socket: &DatagramSocket, _: &(), from: &Address, data: Vec<u8>) {
        if let Err(e) = socket.send_to(data, from) {
            tracing::debug!(peer = %from, "udp echo: {e}");
        }
    }
}

/// The echo handler: every byte back, in order; connects and disconnects
/// logged at info level.
struct Echo;

impl Handler for Echo {
    type State = ();

    fn on_connect(&self, conn: &Connection, first: Option<Vec<u8>>) {
        tracing::info!(id = %conn.id(), peer = %conn.peer_address(), "connected");
        if let Some(data) = first.filter(|d| !d.is_empty()) {
            self.on_data(conn, &mut (), data);
        }
    }

    fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
        if let Err(e) = conn.send(data) {
            tracing::debug!(id = %conn.id(), "echo: {e}");
        }
    }

    fn on_disconnect(&self, conn: &Connection, _: (), reason: &DisconnectReason) {
        tracing::info!(id = %conn.id(), peer = %conn.peer_address(), %reason, "disconnected");
    }
}

/// Runs the subcommand; returns the process exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = SocketAddr::new(args.server.bind, args.port);
    let mut builder = args.server.builder(args.port);
    if args.server.udp {
        builder = builder.udp(UdpEcho);
    }
    serve("echo", addr, builder, Echo, &args.server.observe, None)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
