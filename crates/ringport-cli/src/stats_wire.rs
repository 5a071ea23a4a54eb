//! What the stats socket sends: one JSON object per line, the server's
//! [`Snapshot`] as `ringport top` and scripts read it, and the requests it
//! answers.
//!
//! ```text
//! $ echo get | socat - UNIX-CONNECT:/tmp/echo.sock
//! {"server":"echo","backend":"io_uring","uptime_s":3.2,...,"busiest":[...]}
//! ```

use std::time::Duration;

use ringport_server::{Snapshot, SortBy};
use serde::{Deserialize, Serialize};

/// Connections listed when a request does not say.
pub const DEFAULT_TOP: usize = 20;
/// The most connections a request may ask for.
pub const MAX_TOP: usize = 1000;
/// The shortest interval a `watch` may ask for.
pub const MIN_WATCH: Duration = Duration::from_millis(50);

/// One snapshot as sent on the stats socket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WireSnapshot {
    /// `echo` or `log`.
    pub server: String,
    /// `io_uring` or `epoll`.
    pub backend: String,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Worker threads.
    pub workers: usize,
    /// Workers running completions now.
    pub workers_running: usize,
    /// Workers waiting for completions now.
    pub workers_waiting: usize,
    /// Operations posted on the port and not finally completed.
    pub outstanding: usize,
    /// Connections.
    pub connections: Connections,
    /// Bytes received and sent.
    pub bytes: InOut,
    /// Chunks handed to the handler, sends completed.
    pub messages: InOut,
    /// Completions the workers dequeued.
    pub completions: u64,
    /// Disconnects by reason.
    pub disconnects: Disconnects,
    /// Errors by kind.
    pub errors: Errors,
    /// Times a connection stopped being read (flow control).
    pub read_pauses: u64,
    /// The accept back-off.
    pub accept_backoff: Backoff,
    /// Latency p99 in microseconds, where the server measures it (the
    /// echo and log servers do not: always null for them).
    pub p99_us: Option<f64>,
    /// The order of `busiest`: `bytes`, `age` or `queue`.
    pub sort: String,
    /// The first connections in that order.
    pub busiest: Vec<WireConn>,
    /// `ringport log`: the most recent messages, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recent_messages: Option<Vec<LoggedMessage>>,
}

/// Connection counts.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    /// Open now.
    pub open: usize,
    /// Accepted since start.
    pub total: u64,
}

/// A pair of counters, received and sent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InOut {
    /// Received.
    #[serde(rename = "in")]
    pub inbound: u64,
    /// Sent.
    #[serde(rename = "out")]
    pub outbound: u64,
}

/// Disconnects by reason.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disconnects {
    /// Closed by the peer (FIN).
    pub peer_closed: u64,
    /// Reset by the peer.
    pub reset: u64,
    /// Idle timeout.
    pub idle_timeout: u64,
    /// Server shutdown.
    pub shutdown: u64,
    /// Closed by the server's handler.
    pub closed: u64,
    /// A local I/O error.
    pub error: u64,
}

impl Disconnects {
    /// Each reason with its count, in a fixed order.
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("peer_closed", self.peer_closed),
            ("reset", self.reset),
            ("idle_timeout", self.idle_timeout),
            ("shutdown", self.shutdown),
            ("closed", self.closed),
            ("error", self.error),
        ]
    }
}

/// Errors by kind.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errors {
    /// Accepts failed for lack of descriptors or memory.
    pub accept_exhausted: u64,
    /// Accepts failed otherwise.
    pub accept_failed: u64,
    /// Connections refused over the connection limit.
    pub rejected: u64,
    /// Connections ended by a local I/O error.
    pub local_io: u64,
}

impl Errors {
    /// Each kind with its count, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("accept_exhausted", self.accept_exhausted),
            ("accept_failed", self.accept_failed),
            ("rejected", self.rejected),
            ("local_io", self.local_io),
        ]
    }
}

/// The accept back-off.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Accepting is backed off (a retry timer runs).
    pub backing_off: bool,
    /// Accepts waiting for the retry.
    pub parked: usize,
    /// The delay of the next back-off, in milliseconds.
    pub next_delay_ms: u64,
}

/// One connection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct WireConn {
    /// The connection's id (`slot.generation`).
    pub id: String,
    /// The client's address.
    pub peer: String,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Seconds since it was accepted.
    pub age_s: f64,
    /// Bytes queued for sending.
    pub send_queue: usize,
}

/// One message `ringport log` received.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LoggedMessage {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// From whom.
    pub peer: String,
    /// What (escaped as on stdout, cut to a few hundred bytes).
    pub text: String,
}

impl WireSnapshot {
    /// The wire form of a server snapshot taken in `order`.
    pub fn new(server: &str, snap: &Snapshot, order: SortBy) -> Self {
        let s = &snap.stats;
        WireSnapshot {
            server: server.to_owned(),
            backend: snap.backend.to_string(),
            uptime_s: snap.uptime.as_secs_f64(),
            workers: snap.workers,
            workers_running: snap.workers_running,
            workers_waiting: snap.workers_waiting,
            outstanding: snap.outstanding,
            connections: Connections {
                open: s.connections,
                total: s.connections_total,
            },
            bytes: InOut {
                inbound: s.bytes_in,
                outbound: s.bytes_out,
            },
            messages: InOut {
                inbound: s.messages_in,
                outbound: s.messages_out,
            },
            completions: s.completions,
            disconnects: Disconnects {
                peer_closed: s.peer_closed,
                reset: s.resets,
                idle_timeout: s.idle_timeouts,
                shutdown: s.shutdown_closes,
                closed: s.local_closes,
                error: s.local_errors,
            },
            errors: Errors {
                accept_exhausted: s.accept_exhausted,
                accept_failed: s.accept_errors,
                rejected: s.rejected,
                local_io: s.local_errors,
            },
            read_pauses: s.read_pauses,
            accept_backoff: Backoff {
                backing_off: snap.accept_backoff.backing_off,
                parked: snap.accept_backoff.parked,
                next_delay_ms: snap.accept_backoff.next_delay_ms,
            },
            p99_us: None,
            sort: order.name().to_owned(),
            busiest: snap
                .busiest
                .iter()
                .map(|c| WireConn {
                    id: c.id.to_string(),
                    peer: c.peer.to_string(),
                    bytes_in: c.bytes_in,
                    bytes_out: c.bytes_out,
                    age_s: c.age.as_secs_f64(),
                    send_queue: c.send_queue,
                })
                .collect(),
            recent_messages: None,
        }
    }
}

/// A request line on the stats socket:
/// `get [sort=bytes|age|queue] [top=N]` answers once (an empty line is
/// `get`); `watch MS [sort=..] [top=..]` answers now and every MS
/// milliseconds until the next request or the end of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// `Some(interval)` for `watch`.
    pub watch: Option<Duration>,
    /// The order of the connection list.
    pub sort: SortBy,
    /// How many connections to list.
    pub top: usize,
}

impl Request {
    /// Parses one request line.
    ///
    /// # Errors
    /// A message for the client when the line is not a request.
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_whitespace();
        let mut req = Request {
            watch: None,
            sort: SortBy::Bytes,
            top: DEFAULT_TOP,
        };
        match words.next() {
            None | Some("get") => {}
            Some("watch") => {
                let ms: u64 = words
                    .next()
                    .and_then(|w| w.parse().ok())
                    .ok_or("watch needs an interval in milliseconds (watch 1000)")?;
                req.watch = Some(Duration::from_millis(ms).max(MIN_WATCH));
            }
            Some(other) => return Err(format!("unknown request {other:?} (get, watch MS)")),
        }
        for w in words {
            match w.split_once('=') {
                Some(("sort", v)) => req.sort = v.parse()?,
                Some(("top", v)) => {
                    let n: usize = v.parse().map_err(|_| format!("bad top={v:?}"))?;
                    req.top = n.min(MAX_TOP);
                }
                _ => return Err(format!("unknown option {w:?} (sort=, top=)")),
            }
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        let get = Request::parse("").unwrap();
        assert_eq!(
            (get.watch, get.sort, get.top),
            (None, SortBy::Bytes, DEFAULT_TOP)
        );
        let w = Request::parse("watch 250 sort=queue top=5000").unwrap();
        assert_eq!(w.watch, Some(Duration::from_millis(250)));
        assert_eq!((w.sort, w.top), (SortBy::SendQueue, MAX_TOP));
        assert_eq!(Request::parse("watch 1").unwrap().watch, Some(MIN_WATCH));
        assert!(Request::parse("watch").is_err());
        assert!(Request::parse("put").is_err());
        assert!(Request::parse("get sort=size").is_err());
        assert!(Request::parse("get top=-1").is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let mut w = WireSnapshot {
            server: "log".into(),
            ..WireSnapshot::default()
        };
        w.recent_messages = Some(vec![LoggedMessage {
            time: "t".into(),
            peer: "p".into(),
            text: "x".into(),
        }]);
        let line = serde_json::to_string(&w).unwrap();
        assert!(line.contains("\"in\":0"), "{line}");
        assert_eq!(serde_json::from_str::<WireSnapshot>(&line).unwrap(), w);
    }
}
