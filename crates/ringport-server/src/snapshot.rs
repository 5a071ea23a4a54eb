//! A look at a running server from another thread: [`Monitor`] takes a
//! [`Snapshot`] — counters, the port's threads and operations, the accept
//! back-off and the busiest connections.
//!
//! A snapshot costs the workers nothing but reads of what they already
//! keep: the counters are relaxed atomics (per worker for the per-message
//! ones), each connection's bytes are a relaxed counter it keeps anyway
//! (`conn_meter`), and the busiest connections are chosen here, on the
//! thread that asks, walking the registry one shard read lock at a time
//! (the locks a worker takes only to add or remove a connection, or to
//! look one up that is not in its cache).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::Connection;
use crate::id::ConnId;
use crate::server::Server;
use crate::shared::Shared;
use crate::stats::Stats;
use crate::BackendKind;

/// Takes [`Snapshot`]s of a running server from any thread (cheap to
/// clone). Get one with [`Server::monitor`].
///
/// ```
/// use ringport_server::{Connection, Handler, Server, SortBy};
///
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
///     fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
///         let _ = conn.send(data);
///     }
/// }
/// let server = Server::builder().bind("127.0.0.1".parse()?).start(Echo)?;
/// let monitor = server.monitor();
/// let snap = std::thread::spawn(move || monitor.snapshot(10, SortBy::Bytes)).join().unwrap();
/// assert_eq!(snap.stats.connections, 0);
/// assert_eq!(snap.backend, server.backend());
/// server.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

/// How [`Monitor::snapshot`] picks the connections it lists.
///
/// ```
/// use ringport_server::SortBy;
/// assert_eq!("queue".parse::<SortBy>(), Ok(SortBy::SendQueue));
/// assert_eq!(SortBy::Age.name(), "age");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    /// Most bytes moved (in + out) first.
    #[default]
    Bytes,
    /// Oldest first.
    Age,
    /// Most bytes waiting to be sent first.
    SendQueue,
}

impl SortBy {
    /// `bytes`, `age` or `queue`.
    ///
    /// ```
    /// assert_eq!(ringport_server::SortBy::Bytes.name(), "bytes");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Bytes => "bytes",
            SortBy::Age => "age",
            SortBy::SendQueue => "queue",
        }
    }

    /// The next order (bytes, age, queue, bytes...).
    ///
    /// ```
    /// use ringport_server::SortBy;
    /// assert_eq!(SortBy::Bytes.next(), SortBy::Age);
    /// assert_eq!(SortBy::SendQueue.next(), SortBy::Bytes);
    /// ```
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Bytes => SortBy::Age,
            SortBy::Age => SortBy::SendQueue,
            SortBy::SendQueue => SortBy::Bytes,
        }
    }
}

impl std::str::FromStr for SortBy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bytes" => Ok(SortBy::Bytes),
            "age" => Ok(SortBy::Age),
            "queue" => Ok(SortBy::SendQueue),
            other => Err(format!("unknown order {other:?} (bytes, age, queue)")),
        }
    }
}

/// A running server at one moment ([`Monitor::snapshot`]). Fields are read
/// one by one with relaxed loads: each is exact, the set is not taken
/// atomically.
///
/// ```
/// # fn f(monitor: &ringport_server::Monitor) {
/// let snap = monitor.snapshot(5, ringport_server::SortBy::Bytes);
/// println!(
///     "{} up {:?}: {} connections, {} bytes in",
///     snap.backend, snap.uptime, snap.stats.connections, snap.stats.bytes_in
/// );
/// for c in &snap.busiest {
///     println!("{} {} in {} out", c.peer, c.bytes_in, c.bytes_out);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The completion port's backend.
    pub backend: BackendKind,
    /// Time since the server started.
    pub uptime: Duration,
    /// Worker threads the server runs.
    pub workers: usize,
    /// Threads running completions now (at most the port's concurrency).
    pub workers_running: usize,
    /// Threads waiting for completions now.
    pub workers_waiting: usize,
    /// Operations posted on the port and not finally completed.
    pub outstanding: usize,
    /// The counters ([`Server::stats`]).
    pub stats: Stats,
    /// The accept back-off (descriptor exhaustion).
    pub accept_backoff: AcceptBackoff,
    /// The connections first in the order asked for, at most as many as
    /// asked for.
    pub busiest: Vec<ConnSnapshot>,
}

/// The accept back-off of a [`Snapshot`]: accepts that failed for lack of
/// descriptors wait for a retry timer whose delay doubles (10 ms to 500 ms)
/// until an accept succeeds.
///
/// ```
/// let b = ringport_server::AcceptBackoff::default();
/// assert!(!b.backing_off);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptBackoff {
    /// A retry timer is running: accepting is backed off.
    pub backing_off: bool,
    /// Accepts waiting for the retry timer.
    pub parked: usize,
    /// The delay the next back-off takes, in milliseconds.
    pub next_delay_ms: u64,
}

/// One connection in a [`Snapshot`].
///
/// ```
/// # fn f(c: &ringport_server::ConnSnapshot) {
/// println!("{} ({}): {} B in, {} B out, {} B queued, open {:?}",
///     c.peer, c.id, c.bytes_in, c.bytes_out, c.send_queue, c.age);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// The connection's id.
    pub id: ConnId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes received from the client (handed to the handler).
    pub bytes_in: u64,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Time since the connection was accepted.
    pub age: Duration,
    /// Bytes queued for sending and not yet sent.
    pub send_queue: usize,
}

impl Server {
    /// A [`Monitor`] of this server, for taking snapshots from any thread.
    /// It stays usable after the server stopped (the counters keep their
    /// final values, no connection is listed).
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// let monitor = server.monitor();
    /// std::thread::spawn(move || loop {
    ///     let snap = monitor.snapshot(0, ringport_server::SortBy::Bytes);
    ///     println!("{} connections", snap.stats.connections);
    ///     std::thread::sleep(std::time::Duration::from_secs(1));
    /// });
    /// # }
    /// ```
    pub fn monitor(&self) -> Monitor {
        Monitor {
            shared: self.shared.clone(),
        }
    }
}

impl Monitor {
    /// The server now, with at most `busiest` connections listed, the first
    /// ones in `order`. Chosen here, on the calling thread: the workers do
    /// no work for it.
    ///
    /// ```
    /// # fn f(monitor: &ringport_server::Monitor) {
    /// let snap = monitor.snapshot(20, ringport_server::SortBy::SendQueue);
    /// assert!(snap.busiest.len() <= 20);
    /// # }
    /// ```
    pub fn snapshot(&self, busiest: usize, order: SortBy) -> Snapshot {
        let env = &self.shared.env;
        let now_ms = env.now_ms();
        let (backing_off, parked, next_delay_ms) = self.shared.acceptors[0].backoff();
        Snapshot {
            backend: env.port.backend(),
            uptime: Duration::from_millis(now_ms),
            workers: env.config.workers,
            workers_running: env.port.running_threads(),
            workers_waiting: env.port.waiting_threads(),
            outstanding: env.port.outstanding(),
            stats: env.counters.snapshot(env.registry.len()),
            accept_backoff: AcceptBackoff {
                backing_off,
                parked,
                next_delay_ms,
            },
            busiest: if busiest == 0 {
                Vec::new()
            } else {
                self.busiest(busiest, order, now_ms)
            },
        }
    }

    fn busiest(&self, n: usize, order: SortBy, now_ms: u64) -> Vec<ConnSnapshot> {
        let env = &self.shared.env;
        let mut all = Vec::with_capacity(env.registry.len());
        env.registry
            .for_each(|c| all.push(conn_snapshot(c, now_ms)));
        let key = |c: &ConnSnapshot| match order {
            SortBy::Bytes => c.bytes_in.saturating_add(c.bytes_out),
            SortBy::Age => c.age.as_millis() as u64,
            SortBy::SendQueue => c.send_queue as u64,
        };
        let first = |a: &ConnSnapshot, b: &ConnSnapshot| key(b).cmp(&key(a)).then(a.id.cmp(&b.id));
        if all.len() > n {
            all.select_nth_unstable_by(n - 1, first);
            all.truncate(n);
        }
        all.sort_unstable_by(first);
        all
    }
}

fn conn_snapshot(c: &Connection, now_ms: u64) -> ConnSnapshot {
    let meter = &c.inner.meter;
    ConnSnapshot {
        id: c.id(),
        peer: c.peer_addr(),
        bytes_in: meter.bytes_in(),
        bytes_out: meter.bytes_out(),
        age: Duration::from_millis(now_ms.saturating_sub(meter.opened_ms())),
        send_queue: c.queued(),
    }
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("backend", &self.shared.env.port.backend())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::SortBy;

    #[test]
    fn orders_parse_and_cycle() {
        for o in [SortBy::Bytes, SortBy::Age, SortBy::SendQueue] {
            assert_eq!(o.name().parse::<SortBy>(), Ok(o));
            assert_ne!(o.next(), o);
        }
        assert!("size".parse::<SortBy>().is_err());
    }
}
