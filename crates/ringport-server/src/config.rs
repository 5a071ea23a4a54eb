//! The settings a server runs with ([`ServerBuilder`](crate::ServerBuilder)
//! makes them).

use std::net::SocketAddr;
use std::time::Duration;

use ringport::BackendKind;

use crate::flow::FlowControl;

/// Settings that do not change while the server runs.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub addr: SocketAddr,
    pub workers: usize,
    pub concurrency: usize,
    pub accepts: usize,
    pub recv_buffer: usize,
    pub pool_buffers: usize,
    pub max_connections: usize,
    pub idle_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub send_queue_limit: usize,
    pub nodelay: bool,
    pub keepalive: Option<Duration>,
    pub backlog: i32,
    pub first_data: bool,
    pub backend: Option<BackendKind>,
    pub stop_deadline: Duration,
    pub datagram_send_limit: usize,
}

impl Config {
    /// The shortest of the deadlines the sweep checks, if any.
    pub(crate) fn shortest_deadline(&self) -> Option<Duration> {
        [self.idle_timeout, self.read_timeout, self.write_timeout]
            .into_iter()
            .flatten()
            .min()
    }

    /// The flow-control limit these settings give.
    pub(crate) fn flow(&self) -> FlowControl {
        FlowControl {
            limit: self.send_queue_limit,
            recv_buffer: self.recv_buffer,
        }
    }
}
