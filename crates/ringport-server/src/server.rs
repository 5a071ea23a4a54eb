//! The running server's handle: its address, backend, stats, connections,
//! and stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringport::BackendKind;

use crate::connections::Connections;
use crate::datagram::DatagramSocket;
use crate::shared::Shared;
use crate::stats::Stats;

/// A running server (the seeds' `CIOCPModel` after `Start`).
///
/// Dropping it stops it as [`stop`](Self::stop) does.
///
/// ```
/// use ringport_server::{Connection, Handler, Server};
/// use std::io::{Read, Write};
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
/// let mut client = std::net::TcpStream::connect(server.local_addr())?;
/// client.write_all(b"ping")?;
/// let mut back = [0; 4];
/// client.read_exact(&mut back)?;
/// assert_eq!(&back, b"ping");
/// drop(client);
/// let stats = server.stop();
/// assert_eq!(stats.bytes_out, 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    pub(crate) shared: Arc<Shared>,
    pub(crate) workers: Vec<JoinHandle<()>>,
    pub(crate) local_addr: SocketAddr,
    pub(crate) stopped: bool,
}

impl Server {
    /// The address the server listens on (with the actual port when port 0
    /// was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the datagram socket, when the server serves UDP
    /// ([`ServerBuilder::udp`](crate::ServerBuilder::udp)).
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// if let Some(udp) = server.udp_addr() {
    ///     println!("listening on udp {udp}");
    /// }
    /// # }
    /// ```
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.datagram_socket().map(DatagramSocket::local_addr)
    }

    /// The datagram socket, when the server serves UDP: to send datagrams
    /// from outside the handler.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server, peer: std::net::SocketAddr) {
    /// if let Some(socket) = server.datagram_socket() {
    ///     let _ = socket.send_to(b"announce".to_vec(), &peer.into());
    /// }
    /// # }
    /// ```
    pub fn datagram_socket(&self) -> Option<&DatagramSocket> {
        self.shared.datagrams.as_ref().map(|d| d.socket())
    }

    /// The path of the Unix stream listener, when the server has one
    /// ([`ServerBuilder::listen_unix`](crate::ServerBuilder::listen_unix)).
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// if let Some(path) = server.unix_path() {
    ///     println!("listening on unix {}", path.display());
    /// }
    /// # }
    /// ```
    pub fn unix_path(&self) -> Option<&Path> {
        self.shared.acceptors.iter().find_map(|a| a.unix_path())
    }

    /// The backend of the server's completion port.
    pub fn backend(&self) -> BackendKind {
        self.shared.env.port.backend()
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let env = &self.shared.env;
        env.counters.snapshot(env.registry.len())
    }

    /// The registry of live connections.
    pub fn connections(&self) -> Connections {
        Connections {
            env: self.shared.env.clone(),
        }
    }

    /// Stops the server within the builder's stop deadline and returns the
    /// final counters. See [`stop_within`](Self::stop_within).
    pub fn stop(self) -> Stats {
        let deadline = self.shared.env.config.stop_deadline;
        self.stop_within(deadline)
    }

    /// Stops the server (the seeds' `Stop`): stops accepting; stops reading
    /// and lets queued sends flush for most of `deadline`; then closes what
    /// remains abortively; every connection is reported with
    /// [`DisconnectReason::Shutdown`](crate::DisconnectReason::Shutdown) (unless it ended otherwise first);
    /// the workers are told to exit with one packet each and joined; the
    /// port is shut down and every descriptor closed. Returns within
    /// `deadline` unless a callback blocks.
    pub fn stop_within(mut self, deadline: Duration) -> Stats {
        self.stop_inner(deadline)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let deadline = self.shared.env.config.stop_deadline;
            self.stop_inner(deadline);
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.backend())
            .field("connections", &self.shared.env.registry.len())
            .finish()
    }
}
