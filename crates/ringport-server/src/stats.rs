//! Counters the server keeps while it runs, readable in-process at any time.
//!
//! The counters touched per message (bytes in and out, completions) live in
//! one cache line per worker: a worker adds to its own with a plain load and
//! store (it is their only writer), so workers share no counter cache line
//! and pay no locked instruction per message. Any other thread adds to a
//! shared slot with `fetch_add`. A snapshot sums the slots. Adding bytes in
//! (out) also counts one message in (out): a chunk handed to the handler
//! (a send completed), in the same slot.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// The counters this thread is a worker of (their address) and its slot.
    static SLOT: Cell<(usize, usize)> = const { Cell::new((0, usize::MAX)) };
}

/// Which per-message counter to add to.
#[derive(Clone, Copy)]
pub(crate) enum Hot {
    BytesIn,
    BytesOut,
    Completions,
}

/// One worker's per-message counters, alone in their cache line(s).
#[derive(Default)]
#[repr(align(128))]
struct HotSlot {
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    completions: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
}

impl HotSlot {
    fn get(&self, which: Hot) -> &AtomicU64 {
        match which {
            Hot::BytesIn => &self.bytes_in,
            Hot::BytesOut => &self.bytes_out,
            Hot::Completions => &self.completions,
        }
    }

    /// The message counter that goes with a byte counter.
    fn messages(&self, which: Hot) -> Option<&AtomicU64> {
        match which {
            Hot::BytesIn => Some(&self.messages_in),
            Hot::BytesOut => Some(&self.messages_out),
            Hot::Completions => None,
        }
    }
}

/// Adds `n` to a counter only this thread writes: no locked instruction.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// The live counters (relaxed atomics; a snapshot is consistent per field,
/// not across fields).
pub(crate) struct Counters {
    /// One slot per worker, then the slot shared by every other thread.
    hot: Box<[HotSlot]>,
    pub connections_total: AtomicU64,
    pub peer_closed: AtomicU64,
    pub resets: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub read_timeouts: AtomicU64,
    pub write_timeouts: AtomicU64,
    pub shutdown_closes: AtomicU64,
    pub local_closes: AtomicU64,
    pub local_errors: AtomicU64,
    pub accept_exhausted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub accepts_posted: AtomicU64,
    pub rejected: AtomicU64,
    pub read_pauses: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub datagram_bytes_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub datagram_bytes_out: AtomicU64,
    pub datagrams_truncated: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub datagram_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn new(workers: usize) -> Self {
        let z = AtomicU64::default;
        Counters {
            hot: (0..=workers).map(|_| HotSlot::default()).collect(),
            connections_total: z(),
            peer_closed: z(),
            resets: z(),
            idle_timeouts: z(),
            read_timeouts: z(),
            write_timeouts: z(),
            shutdown_closes: z(),
            local_closes: z(),
            local_errors: z(),
            accept_exhausted: z(),
            accept_errors: z(),
            accepts_posted: z(),
            rejected: z(),
            read_pauses: z(),
            connects: z(),
            connect_failures: z(),
            datagrams_in: z(),
            datagram_bytes_in: z(),
            datagrams_out: z(),
            datagram_bytes_out: z(),
            datagrams_truncated: z(),
            datagrams_dropped: z(),
            datagram_errors: z(),
        }
    }

    fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Makes the calling thread the only writer of worker slot `index`.
    pub(crate) fn enter_worker(&self, index: usize) {
        SLOT.with(|s| s.set((self.addr(), index)));
    }

    /// Adds to a per-message counter.
    #[inline]
    pub(crate) fn add_hot(&self, which: Hot, n: u64) {
        let (addr, index) = SLOT.with(Cell::get);
        let shared = self.hot.len() - 1;
        if addr == self.addr() && index < shared {
            // Only this thread writes this slot: no locked instruction.
            let slot = &self.hot[index];
            bump(slot.get(which), n);
            if let Some(m) = slot.messages(which) {
                bump(m, 1);
            }
        } else {
            let slot = &self.hot[shared];
            slot.get(which).fetch_add(n, Ordering::Relaxed);
            if let Some(m) = slot.messages(which) {
                m.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn sum(&self, which: Hot) -> u64 {
        self.sum_of(|s| s.get(which))
    }

    fn sum_of(&self, field: impl Fn(&HotSlot) -> &AtomicU64) -> u64 {
        self.hot
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, connections: usize) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            connections,
            connections_total: get(&self.connections_total),
            bytes_in: self.sum(Hot::BytesIn),
            bytes_out: self.sum(Hot::BytesOut),
            completions: self.sum(Hot::Completions),
            messages_in: self.sum_of(|s| &s.messages_in),
            messages_out: self.sum_of(|s| &s.messages_out),
            peer_closed: get(&self.peer_closed),
            resets: get(&self.resets),
            idle_timeouts: get(&self.idle_timeouts),
            read_timeouts: get(&self.read_timeouts),
            write_timeouts: get(&self.write_timeouts),
            shutdown_closes: get(&self.shutdown_closes),
            local_closes: get(&self.local_closes),
            local_errors: get(&self.local_errors),
            accept_exhausted: get(&self.accept_exhausted),
            accept_errors: get(&self.accept_errors),
            accepts_posted: get(&self.accepts_posted),
            rejected: get(&self.rejected),
            read_pauses: get(&self.read_pauses),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            datagrams_in: get(&self.datagrams_in),
            datagram_bytes_in: get(&self.datagram_bytes_in),
            datagrams_out: get(&self.datagrams_out),
            datagram_bytes_out: get(&self.datagram_bytes_out),
            datagrams_truncated: get(&self.datagrams_truncated),
            datagrams_dropped: get(&self.datagrams_dropped),
            datagram_errors: get(&self.datagram_errors),
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
    /// Messages received: chunks of data handed to
    /// [`Handler::on_data`](crate::Handler::on_data).
    pub messages_in: u64,
    /// Messages sent: sends completed.
    pub messages_out: u64,
    /// Disconnects: closed by the peer (FIN).
    pub peer_closed: u64,
    /// Disconnects: reset by the peer (RST), or a send to a vanished peer.
    pub resets: u64,
    /// Disconnects: idle longer than the idle timeout.
    pub idle_timeouts: u64,
    /// Disconnects: nothing received for longer than the read deadline.
    pub read_timeouts: u64,
    /// Disconnects: queued data stuck for longer than the write deadline.
    pub write_timeouts: u64,
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
    /// Accept operations posted on the listener: one per accepted
    /// connection plus the initial ones for single accepts, one per
    /// (re)start for a multishot accept (io_uring).
    pub accepts_posted: u64,
    /// Connections refused because `max_connections` was reached.
    pub rejected: u64,
    /// Times a connection stopped being read because it held too much
    /// (flow control): its receive used up the room under the limit, or was
    /// cancelled because the handler's sends went over it.
    pub read_pauses: u64,
    /// Outbound connections asked for ([`Connections::connect`](crate::Connections::connect)).
    pub connects: u64,
    /// Outbound connections that could not be made (refused, timed out,
    /// stopped).
    pub connect_failures: u64,
    /// Datagrams received whole and handed to
    /// [`DatagramHandler::on_datagram`](crate::DatagramHandler::on_datagram).
    pub datagrams_in: u64,
    /// Bytes of the datagrams counted in `datagrams_in`.
    pub datagram_bytes_in: u64,
    /// Datagrams sent ([`DatagramSocket::send_to`](crate::DatagramSocket::send_to) completed).
    pub datagrams_out: u64,
    /// Bytes of the datagrams counted in `datagrams_out`.
    pub datagram_bytes_out: u64,
    /// Datagrams longer than a receive buffer's room, handed to
    /// [`DatagramHandler::on_truncated`](crate::DatagramHandler::on_truncated).
    pub datagrams_truncated: u64,
    /// Reply datagrams dropped because the sends in flight held the
    /// datagram send limit.
    pub datagrams_dropped: u64,
    /// Datagram sends that failed, and receives that ended with an error.
    pub datagram_errors: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections: {} open, {} total; bytes: {} in, {} out; \
             messages: {} in, {} out; completions: {}; \
             disconnects: {} closed by peer, {} reset, {} idle timeout, {} read timeout, \
             {} write timeout, {} shutdown, {} closed locally, {} error; accept: {} out of \
             descriptors, {} failed, {} posted, {} rejected; read pauses: {}; outbound: {} \
             connects, {} failed; datagrams: {} in ({} bytes), {} out ({} bytes), {} \
             truncated, {} dropped, {} errors",
            self.connections,
            self.connections_total,
            self.bytes_in,
            self.bytes_out,
            self.messages_in,
            self.messages_out,
            self.completions,
            self.peer_closed,
            self.resets,
            self.idle_timeouts,
            self.read_timeouts,
            self.write_timeouts,
            self.shutdown_closes,
            self.local_closes,
            self.local_errors,
            self.accept_exhausted,
            self.accept_errors,
            self.accepts_posted,
            self.rejected,
            self.read_pauses,
            self.connects,
            self.connect_failures,
            self.datagrams_in,
            self.datagram_bytes_in,
            self.datagrams_out,
            self.datagram_bytes_out,
            self.datagrams_truncated,
            self.datagrams_dropped,
            self.datagram_errors,
        )
    }
}
