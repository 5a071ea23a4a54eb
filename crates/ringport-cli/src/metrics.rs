//! `--metrics ADDR`: `GET /metrics` in the Prometheus text format
//! (version 0.0.4), `ringport_`-prefixed.
//!
//! A small handler thread on a std `TcpListener`, one request at a time,
//! `Connection: close`. No HTTP crate: a scrape is one short GET every few
//! seconds, and this answers it in a page of code with nothing to keep up
//! to date; the thread only reads the counters (relaxed atomics and the
//! registry's shard read locks), so it never blocks a worker. A client that
//! stalls holds the thread for at most [`IO_TIMEOUT`].

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use crate::stats_wire::WireSnapshot;

/// How long one client may take to send its request or read the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const HEAD_MAX: usize = 8192;

/// Takes a snapshot (no connections listed).
pub type Source = Arc<dyn Fn() -> WireSnapshot + Send + Sync>;

/// The running endpoint; [`stop`](Self::stop) it (dropping it stops it too).
pub struct MetricsEndpoint {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Listens on `addr` (port 0: any free port; see [`addr`](Self::addr)).
    pub fn start(addr: SocketAddr, source: Source) -> anyhow::Result<MetricsEndpoint> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("listening for metrics on {addr}"))?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("ringport-metrics".into())
                .spawn(move || serve(&listener, &stopping, &source))
                .context("starting the metrics thread")?
        };
        Ok(MetricsEndpoint {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stopping.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
            let _ = t.join();
        }
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn serve(listener: &TcpListener, stopping: &AtomicBool, source: &Source) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            Ok(s) => {
                if let Err(e) = answer(s, source) {
                    tracing::debug!("metrics: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads one request head and answers it.
fn answer(mut s: TcpStream, source: &Source) -> std::io::Result<()> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > HEAD_MAX {
            return respond(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            );
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = render(&source());
            respond(
                &mut s,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
        }
        ("GET", _) => respond(&mut s, "404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(&mut s, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(s: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

/// The snapshot in the Prometheus text format.
pub fn render(w: &WireSnapshot) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP ringport_{name} {help}");
        let _ = writeln!(out, "# TYPE ringport_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "ringport_{name}{labels} {value}");
        }
    };
    let one = |v: f64| [(String::new(), v)];
    let labelled = |label: &str, pairs: &[(&str, u64)]| -> Vec<(String, f64)> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), *v as f64))
            .collect()
    };
    metric(
        "info",
        "gauge",
        "The server and its completion port backend (always 1).",
        &[(
            format!("{{server=\"{}\",backend=\"{}\"}}", w.server, w.backend),
            1.0,
        )],
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &one(w.uptime_s),
    );
    metric(
        "connections_open",
        "gauge",
        "Connections open now.",
        &one(w.connections.open as f64),
    );
    metric(
        "connections_total",
        "counter",
        "Connections accepted since start.",
        &one(w.connections.total as f64),
    );
    metric(
        "bytes_in_total",
        "counter",
        "Bytes received from clients.",
        &one(w.bytes.inbound as f64),
    );
    metric(
        "bytes_out_total",
        "counter",
        "Bytes sent to clients.",
        &one(w.bytes.outbound as f64),
    );
    metric(
        "messages_in_total",
        "counter",
        "Chunks of data handed to the handler.",
        &one(w.messages.inbound as f64),
    );
    metric(
        "messages_out_total",
        "counter",
        "Sends completed.",
        &one(w.messages.outbound as f64),
    );
    metric(
        "completions_total",
        "counter",
        "Completions the workers dequeued.",
        &one(w.completions as f64),
    );
    metric(
        "disconnects_total",
        "counter",
        "Disconnects by reason.",
        &labelled("reason", &w.disconnects.by_reason()),
    );
    metric(
        "errors_total",
        "counter",
        "Errors by kind.",
        &labelled("kind", &w.errors.by_kind()),
    );
    metric(
        "read_pauses_total",
        "counter",
        "Times a connection stopped being read (flow control).",
        &one(w.read_pauses as f64),
    );
    metric(
        "workers",
        "gauge",
        "Worker threads.",
        &one(w.workers as f64),
    );
    metric(
        "workers_running",
        "gauge",
        "Workers running completions.",
        &one(w.workers_running as f64),
    );
    metric(
        "workers_waiting",
        "gauge",
        "Workers waiting for completions.",
        &one(w.workers_waiting as f64),
    );
    metric(
        "outstanding_operations",
        "gauge",
        "Operations posted and not finally completed.",
        &one(w.outstanding as f64),
    );
    metric(
        "accept_backoff",
        "gauge",
        "1 while accepting is backed off for lack of descriptors.",
        &one(f64::from(u8::from(w.accept_backoff.backing_off))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_help_and_type() {
        let mut w = WireSnapshot {
            server: "echo".into(),
            backend: "epoll".into(),
            ..WireSnapshot::default()
        };
        w.bytes.inbound = 1234;
        w.disconnects.reset = 2;
        let text = render(&w);
        assert!(
            text.contains("# TYPE ringport_bytes_in_total counter\nringport_bytes_in_total 1234\n"),
            "{text}"
        );
        assert!(
            text.contains("ringport_disconnects_total{reason=\"reset\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ringport_info{server=\"echo\",backend=\"epoll\"} 1\n"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("ringport_"), "{line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
