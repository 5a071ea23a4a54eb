//! Counters the server keeps while it runs, readable in-process at any time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters (relaxed atomics; a snapshot is consistent per field,
/// not across fields).
#[derive(Default)]
pub(crate) struct Counters {
    pub connections_total: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub completions: AtomicU64,
    pub peer_closed: AtomicU64,
    pub resets: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub shutdown_closes: AtomicU64,
    pub local_closes: AtomicU64,
    pub local_errors: AtomicU64,
    pub accept_exhausted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub rejected: AtomicU64,
    pub read_pauses: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, connections: usize) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections,
            connections_total: get(&self.connections_total),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            completions: get(&self.completions),
            peer_closed: get(&self.peer_closed),
            resets: get(&self.resets),
            idle_timeouts: get(&self.idle_timeouts),
            shutdown_closes: get(&self.shutdown_closes),
            local_closes: get(&self.local_closes),
            local_errors: get(&self.local_errors),
            accept_exhausted: get(&self.accept_exhausted),
            accept_errors: get(&self.accept_errors),
            rejected: get(&self.rejected),
            read_pauses: get(&self.read_pauses),
        }
    }
}

/// A snapshot of a server's counters ([`Server::stats`](crate::Server::stats)).
///
/// Disconnects are counted by [reason](crate::DisconnectReason); errors by
/// kind: accepts refused for lack of descriptors (`EMFILE`/`ENFILE`), other
/// accept failures, connections rejected over the connection limit, local
/// I/O errors.
///
/// ```
/// let stats = ringport_server::Stats::default();
/// assert_eq!(stats.connections, 0);
/// println!("{stats}");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Bytes received from clients.
    pub bytes_in: u64,
    /// Bytes sent to clients.
    pub bytes_out: u64,
    /// Completions dequeued from the port by the workers.
    pub completions: u64,
    /// Disconnects: closed by the peer (FIN).
    pub peer_closed: u64,
    /// Disconnects: reset by the peer (RST), or a send to a vanished peer.
    pub resets: u64,
    /// Disconnects: idle longer than the idle timeout.
    pub idle_timeouts: u64,
    /// Disconnects: closed because the server stopped.
    pub shutdown_closes: u64,
    /// Disconnects: closed by the application ([`Connection::close`](crate::Connection::close)).
    pub local_closes: u64,
    /// Disconnects: a local I/O error other than a reset.
    pub local_errors: u64,
    /// Accepts that failed for lack of descriptors or memory (backed off).
    pub accept_exhausted: u64,
    /// Accepts that failed for another reason.
    pub accept_errors: u64,
    /// Connections refused because `max_connections` was reached.
    pub rejected: u64,
    /// Times a connection stopped being read because its send queue was
    /// over the limit (flow control).
    pub read_pauses: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections: {} open, {} total; bytes: {} in, {} out; completions: {}; \
             disconnects: {} closed by peer, {} reset, {} idle timeout, {} shutdown, \
             {} closed locally, {} error; accept: {} out of descriptors, {} failed, \
             {} rejected; read pauses: {}",
            self.connections,
            self.connections_total,
            self.bytes_in,
            self.bytes_out,
            self.completions,
            self.peer_closed,
            self.resets,
            self.idle_timeouts,
            self.shutdown_closes,
            self.local_closes,
            self.local_errors,
            self.accept_exhausted,
            self.accept_errors,
            self.rejected,
            self.read_pauses,
        )
    }
}
