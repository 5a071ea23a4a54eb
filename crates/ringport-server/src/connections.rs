//! [`Connections`]: the application's view of the registry of live
//! connections.

use std::sync::Arc;

use crate::conn::{Connection, ServerEnv};
use crate::id::ConnId;

/// The registry of a server's live connections (the seeds' client context
/// list), sharded so that no lock is shared by every packet. Cheap to clone;
/// usable from any thread.
///
/// ```
/// # fn f(server: &ringport_server::Server) {
/// let conns = server.connections();
/// println!("{} clients", conns.len());
/// let reached = conns.broadcast(b"server going down in 5 s\n");
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

    /// Sends a copy of `data` to every open connection with
    /// [`Connection::try_send`], skipping clients whose send queue is full;
    /// returns how many it was queued for.
    ///
    /// ```
    /// # fn f(server: &ringport_server::Server) {
    /// let reached = server.connections().broadcast(b"hello all\n");
    /// # }
    /// ```
    pub fn broadcast(&self, data: &[u8]) -> usize {
        let mut n = 0;
        self.for_each(|c| n += usize::from(c.try_send(data).is_ok()));
        n
    }
}

impl Connection {
    /// The registry of the server this connection belongs to, e.g. to
    /// broadcast to every client from a callback.
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection, data: &[u8]) {
    /// conn.connections().for_each(|other| {
    ///     let _ = other.try_send(data);
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
