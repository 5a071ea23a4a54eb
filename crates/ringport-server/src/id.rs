//! Connection ids.

use std::fmt;

/// Identifies a connection for as long as the server runs; also its
/// completion key on the port. Ids of closed connections are not reused
/// (a slot's generation changes).
///
/// ```
/// # fn f(conn: &ringport_server::Connection) {
/// println!("connection {}", conn.id());
/// let raw: u64 = conn.id().as_u64();
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The raw value (the connection's completion key).
    ///
    /// ```
    /// # fn f(conn: &ringport_server::Connection) {
    /// assert!(conn.id().as_u64() >= 1 << 32, "connection keys are above the server's own");
    /// # }
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 & 0xffff_ffff, self.0 >> 32)
    }
}

/// The completion key of the listener and of the server's own timers and
/// packets; connection keys are all at least [`FIRST_CONN_KEY`] (see the
/// registry).
pub(crate) const SERVER_KEY: u64 = 0;
/// The completion key of the datagram socket.
pub(crate) const DATAGRAM_KEY: u64 = 1;
/// The smallest connection key.
pub(crate) const FIRST_CONN_KEY: u64 = 1 << 32;
