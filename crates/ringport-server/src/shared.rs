//! What the workers and the [`Server`](crate::Server) handle share: the
//! connections' environment, the acceptors, the datagram socket, and the
//! count of workers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::acceptor::Acceptor;
use crate::conn::ServerEnv;
use crate::datagram::Datagrams;

/// State shared by the workers and the [`Server`](crate::Server) handle.
pub(crate) struct Shared {
    pub env: Arc<ServerEnv>,
    /// One per listener: the TCP one first, then a Unix one.
    pub acceptors: Vec<Acceptor>,
    pub datagrams: Option<Datagrams>,
    /// Workers that have not taken their exit packet yet.
    pub workers_alive: AtomicUsize,
    /// Workers still in their loop (for stop's wait).
    pub workers_running: AtomicUsize,
}

impl Shared {
    /// Counts `n` workers that will never run (their thread did not start).
    pub(crate) fn forget_workers(&self, n: usize) {
        self.workers_alive.fetch_sub(n, Ordering::SeqCst);
        self.workers_running.fetch_sub(n, Ordering::SeqCst);
    }
}
