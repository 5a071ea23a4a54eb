//! [`Connections`]: the application's view of the registry of live
//! connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringport::IoBuf;

use crate::conn::{Connection, ServerEnv};
use crate::id::ConnId;
use crate::outbound;
use crate::timer::TimerId;

/// The registry of a server's live connections (the seeds' client context
/// list), sharded so that no lock is shared by every packet. Cheap to clone;
/// usable from any thread.
///
/// ```
/// # fn f(server: &ringport_server::Server) {
/// let conns = server.connections();
/// println!("{} clients", conns.len());
/// let reached = conns.broadcast(b"server going down in 5 s\n".as_slice(), None);
/// # }
/// ```
#[derive(Clone)]
pub struct Connections {
    pub(crate) env: Arc<ServerEnv>,
}

impl Connections {
    /// Connections open now.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// println!("{} clients", server.connections().len());
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.env.registry.len()
    }

    /// Whether no connection is open.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// if server.connections().is_empty() { println!("nobody here"); }
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connection with this id, if it is still registered.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server, id: ringport_server::ConnId) {
    /// if let Some(conn) = server.connections().get(id) {
    ///     let _ = conn.send(b"found you\n".to_vec());
    /// }
    /// # }
    /// ```
    pub fn get(&self, id: ConnId) -> Option<Connection> {
        self.env.registry.get(id)
    }

    /// Every live connection (a copy of the list).
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// for conn in server.connections().snapshot() {
    ///     println!("{}", conn.peer_addr());
    /// }
    /// # }
    /// ```
    pub fn snapshot(&self) -> Vec<Connection> {
        self.env.registry.snapshot()
    }

    /// Calls `f` for each live connection, holding no lock while `f` runs.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// server.connections().for_each(|c| println!("{}", c.id()));
    /// # }
    /// ```
    pub fn for_each(&self, f: impl FnMut(&Connection)) {
        self.env.registry.for_each(f);
    }

    /// Sends `data` to every open connection except `skip` (the sender of
    /// a chat message), with [`Connection::try_send`](crate::Connection::try_send), skipping clients
    /// whose send queue is full; returns how many it was queued for. The
    /// buffer is shared, not copied per client: pass an `Arc<[u8]>` or a
    /// `bytes::Bytes` (each client's send holds a clone of it).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection, line: &[u8]) {
    /// use std::sync::Arc;
    /// let msg: Arc<[u8]> = line.into();
    /// let reached = conn.connections().broadcast(msg, Some(conn.id()));
    /// # }
    /// ```
    pub fn broadcast<B: IoBuf + Clone>(&self, data: B, skip: Option<ConnId>) -> usize {
        let mut n = 0;
        self.for_each(|c| {
            if Some(c.id()) != skip {
                n += usize::from(c.try_send(data.clone()).is_ok());
            }
        });
        n
    }

    /// Arms a one-shot server timer:
    /// [`Handler::on_server_timer`](crate::Handler::on_server_timer) runs
    /// on a worker after `after`, unless cancelled or the server stopped.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) -> std::io::Result<()> {
    /// let t = server.connections().set_timer(std::time::Duration::from_secs(60))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A port error (the server stopped).
    pub fn set_timer(&self, after: Duration) -> io::Result<TimerId> {
        self.env.timers.lock().arm(&self.env.port, after, None)
    }

    /// Arms a periodic server timer (a game server's tick):
    /// [`Handler::on_server_timer`](crate::Handler::on_server_timer) runs
    /// every `every` until cancelled or the server stops.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) -> std::io::Result<()> {
    /// let tick = server.connections().set_periodic(std::time::Duration::from_millis(50))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`set_timer`](Self::set_timer).
    pub fn set_periodic(&self, every: Duration) -> io::Result<TimerId> {
        self.env
            .timers
            .lock()
            .arm(&self.env.port, every, Some(every))
    }

    /// Cancels a server timer; returns whether it was armed.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) -> std::io::Result<()> {
    /// let conns = server.connections();
    /// let t = conns.set_timer(std::time::Duration::from_secs(60))?;
    /// assert!(conns.cancel_timer(t));
    /// # Ok(()) }
    /// ```
    pub fn cancel_timer(&self, timer: TimerId) -> bool {
        self.env.timers.lock().cancel(&self.env.port, timer)
    }

    /// Opens an outbound connection to `addr` (another service), served by
    /// the same workers and handler as accepted ones: once it is
    /// established, [`Handler::on_connect`](crate::Handler::on_connect)
    /// runs for it (with no first data) and it is read and closed like any
    /// other connection. If it cannot be established within `timeout`, or
    /// fails, [`Handler::on_connect_failed`](crate::Handler::on_connect_failed)
    /// runs instead (`TimedOut` for the timeout). Returns the connection's
    /// id at once.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) -> std::io::Result<()> {
    /// let db = server
    ///     .connections()
    ///     .connect("127.0.0.1:5432".parse().unwrap(), std::time::Duration::from_secs(3))?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When the socket cannot be created or the connect posted, or the
    /// server is stopping (`NotConnected`).
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<ConnId> {
        outbound::connect(&self.env, addr, timeout)
    }
}

impl Connection {
    /// The registry of the server this connection belongs to, e.g. to
    /// broadcast to every client from a callback.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection, data: std::sync::Arc<[u8]>) {
    /// conn.connections().for_each(|other| {
    ///     let _ = other.try_send(data.clone());
    /// });
    /// # }
    /// ```
    pub fn connections(&self) -> Connections {
        Connections {
            env: self.env().clone(),
        }
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("len", &self.len())
            .finish()
    }
}
