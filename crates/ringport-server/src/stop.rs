//! Stopping a server: stop accepting, let queued sends flush, close what
//! remains, end the workers, close every descriptor.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::conn_state::CloseMode;
use crate::reason::DisconnectReason;
use crate::server::Server;
use crate::stats::Stats;
use crate::worker;

/// How long stop waits for the workers to take their exit packets.
const EXIT_GRACE: Duration = Duration::from_millis(500);

impl Server {
    /// See [`Server::stop_within`].
    pub(crate) fn stop_inner(&mut self, deadline: Duration) -> Stats {
        self.stopped = true;
        let sh = &self.shared;
        let env = &sh.env;
        let start = Instant::now();
        env.set_stopping();
        for a in &sh.acceptors {
            a.close(env);
        }
        if let Some(d) = &sh.datagrams {
            d.close();
        }
        env.registry
            .for_each(|c| c.close_with(DisconnectReason::Shutdown, CloseMode::Graceful));
        let empty = || env.registry.len() == 0;
        if !env.wait_until(start + deadline.mul_f64(0.8), empty) {
            env.registry
                .for_each(|c| c.close_with(DisconnectReason::Shutdown, CloseMode::Abortive));
            if !env.wait_until(start + deadline, empty) {
                tracing::warn!(
                    "stop: {} connections still had callbacks running at the deadline",
                    env.registry.len()
                );
            }
        }
        if !self.workers.is_empty() && worker::post_exit(sh).is_err() {
            env.port.shutdown();
        }
        // The exit packets normally end every worker at once; should one
        // not come out of `get` (a lost wake-up), shutting the port down
        // makes `get` fail in every thread.
        let exited = || sh.workers_running.load(Ordering::SeqCst) == 0;
        if !env.wait_until(Instant::now() + EXIT_GRACE, exited) {
            tracing::warn!("stop: workers did not take their exit packets; shutting the port down");
            env.port.shutdown();
        }
        for w in self.workers.drain(..) {
            if w.join().is_err() {
                tracing::error!("stop: a worker panicked");
            }
        }
        // Nobody runs callbacks any more: let go of what is left.
        for conn in env.registry.snapshot() {
            conn.release();
            env.registry.remove(conn.id());
        }
        env.port.shutdown();
        env.counters.snapshot(env.registry.len())
    }
}
