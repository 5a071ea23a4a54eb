//! What the application implements: callbacks for connect, data, sent and
//! disconnect, and why a connection ended.

use std::fmt;
use std::io;

use crate::conn::Connection;

/// The application side of a server (the seeds' `_DoAccept`, `_DoRecv`,
/// `_DoSend` and `RemoveContext`, as callbacks).
///
/// One handler serves every connection; it is shared by the worker threads.
/// For one connection the callbacks never run at the same time and come in
/// order: `on_connect` first, then data and sent notifications in the order
/// the port completed them, and `on_disconnect` last, exactly once. Callbacks
/// of different connections run in parallel on the workers. They should not
/// block for long: a blocked callback holds a worker.
///
/// ```
/// use ringport_server::{Connection, DisconnectReason, Handler};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_data(&self, conn: &Connection, data: Vec<u8>) {
///         let _ = conn.send(data); // queued in order; partial sends finished
///     }
///     fn on_disconnect(&self, conn: &Connection, reason: &DisconnectReason) {
///         println!("{} left: {reason}", conn.peer_addr());
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// A client connected. `first_data` holds the first bytes it sent when
    /// the server was built with
    /// [`first_data(true)`](crate::ServerBuilder::first_data) (AcceptEx with
    /// a receive buffer), otherwise `None`. The default passes non-empty
    /// first data to [`on_data`](Self::on_data).
    fn on_connect(&self, conn: &Connection, first_data: Option<Vec<u8>>) {
        if let Some(data) = first_data.filter(|d| !d.is_empty()) {
            self.on_data(conn, data);
        }
    }

    /// Bytes arrived from the client. The buffer is the handler's: pass it to
    /// [`Connection::send`] to echo it without a copy.
    fn on_data(&self, conn: &Connection, data: Vec<u8>);

    /// `bytes` of one [`Connection::send`] were all sent.
    fn on_sent(&self, conn: &Connection, bytes: usize) {
        let _ = (conn, bytes);
    }

    /// The connection ended; nothing more will be called for it.
    fn on_disconnect(&self, conn: &Connection, reason: &DisconnectReason) {
        let _ = (conn, reason);
    }
}

/// Why a connection ended.
///
/// Unlike IOCP, which reports a reset by the peer and a local cancel alike
/// (`ERROR_NETNAME_DELETED`), each cause has its own variant.
///
/// ```
/// use ringport_server::DisconnectReason;
/// assert_eq!(DisconnectReason::PeerClosed.to_string(), "closed by peer");
/// assert!(DisconnectReason::Reset.is_abnormal());
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The peer closed its side (FIN; a receive of 0 bytes). Data still
    /// queued for it was sent first.
    PeerClosed,
    /// The peer reset the connection (RST), or vanished while we sent.
    Reset,
    /// Nothing was received or sent for longer than the idle timeout (the
    /// seeds' `WAIT_TIMEOUT` and liveness probe).
    IdleTimeout,
    /// The server stopped.
    Shutdown,
    /// The application closed it ([`Connection::close`] or
    /// [`Connection::abort`]).
    Closed,
    /// A local I/O error.
    Error(io::Error),
}

impl DisconnectReason {
    /// A short, stable name: `peer-closed`, `reset`, `idle-timeout`,
    /// `shutdown`, `closed`, `error`.
    ///
    /// ```
    /// assert_eq!(ringport_server::DisconnectReason::Shutdown.name(), "shutdown");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            DisconnectReason::PeerClosed => "peer-closed",
            DisconnectReason::Reset => "reset",
            DisconnectReason::IdleTimeout => "idle-timeout",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::Closed => "closed",
            DisconnectReason::Error(_) => "error",
        }
    }

    /// Whether the connection ended other than by an orderly close from
    /// either side or by shutdown.
    ///
    /// ```
    /// assert!(!ringport_server::DisconnectReason::PeerClosed.is_abnormal());
    /// ```
    pub fn is_abnormal(&self) -> bool {
        matches!(
            self,
            DisconnectReason::Reset | DisconnectReason::IdleTimeout | DisconnectReason::Error(_)
        )
    }

    /// Classifies an error from a receive or send.
    pub(crate) fn from_os(code: i32) -> Self {
        match code {
            libc::ECONNRESET | libc::EPIPE => DisconnectReason::Reset,
            _ => DisconnectReason::Error(io::Error::from_raw_os_error(code)),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::PeerClosed => f.write_str("closed by peer"),
            DisconnectReason::Reset => f.write_str("reset by peer"),
            DisconnectReason::IdleTimeout => f.write_str("idle timeout"),
            DisconnectReason::Shutdown => f.write_str("server shutdown"),
            DisconnectReason::Closed => f.write_str("closed by server"),
            DisconnectReason::Error(e) => write!(f, "error: {e}"),
        }
    }
}
