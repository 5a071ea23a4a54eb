//! Why a connection ended.

use std::fmt;
use std::io;

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
