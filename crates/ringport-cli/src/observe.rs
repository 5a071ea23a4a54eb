//! `--stats-socket PATH` and `--metrics ADDR` of `ringport echo` and
//! `ringport log`: starting and stopping the stats socket and the metrics
//! endpoint beside a running server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ringport_server::{Monitor, Server};

use crate::metrics::MetricsEndpoint;
use crate::recent::RecentMessages;
use crate::stats_socket::StatsSocket;
use crate::stats_wire::WireSnapshot;

/// Flags to look at a running server.
///
/// ```text
/// ringport echo --stats-socket /tmp/echo.sock --metrics 127.0.0.1:9150
/// ```
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ObserveArgs {
    /// Answer JSON snapshots on this Unix socket (removed at stop); read it
    /// with `ringport top PATH`.
    #[arg(long, value_name = "PATH")]
    pub stats_socket: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0: any free
    /// port, logged at start).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
}

/// The stats socket and metrics endpoint of a running server.
pub struct Observers {
    socket: Option<StatsSocket>,
    metrics: Option<MetricsEndpoint>,
}

impl Observers {
    /// Starts what `args` asks for. `recent` is the message list of
    /// `ringport log` (sent with every stats-socket snapshot).
    pub fn start(
        args: &ObserveArgs,
        name: &str,
        server: &Server,
        recent: Option<Arc<RecentMessages>>,
    ) -> anyhow::Result<Observers> {
        let monitor = server.monitor();
        let socket = match &args.stats_socket {
            Some(path) => {
                let (monitor, name) = (monitor.clone(), name.to_owned());
                let source = Arc::new(move |order, top| {
                    let mut w = wire(&monitor, &name, order, top);
                    w.recent_messages = recent.as_ref().map(|r| r.list());
                    w
                });
                let s = StatsSocket::start(path, source)?;
                tracing::info!("stats socket on {}", path.display());
                Some(s)
            }
            None => None,
        };
        let metrics = match args.metrics {
            Some(addr) => {
                let name = name.to_owned();
                let source =
                    Arc::new(move || wire(&monitor, &name, ringport_server::SortBy::Bytes, 0));
                let m = MetricsEndpoint::start(addr, source)?;
                tracing::info!("metrics on http://{}/metrics", m.addr());
                Some(m)
            }
            None => None,
        };
        Ok(Observers { socket, metrics })
    }

    /// Stops both (the socket file is removed).
    pub fn stop(self) {
        if let Some(s) = self.socket {
            s.stop();
        }
        if let Some(m) = self.metrics {
            m.stop();
        }
    }
}

fn wire(monitor: &Monitor, name: &str, order: ringport_server::SortBy, top: usize) -> WireSnapshot {
    WireSnapshot::new(name, &monitor.snapshot(top, order), order)
}
