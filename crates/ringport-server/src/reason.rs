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
    /// Nothing was received for longer than the read deadline
    /// ([`ServerBuilder::read_timeout`](crate::ServerBuilder::read_timeout)).
    ReadTimeout,
    /// Queued data made no progress for longer than the write deadline
    /// ([`ServerBuilder::write_timeout`](crate::ServerBuilder::write_timeout)):
    /// the peer does not read.
    WriteTimeout,
    /// The server stopped.
    Shutdown,
    /// The application closed it ([`Connection::close`](crate::Connection::close) or
    /// [`Connection::abort`](crate::Connection::abort)).
    Closed,
    /// A local I/O error.
    Error(io::Error),
}

impl DisconnectReason {
    /// A short, stable name: `peer-closed`, `reset`, `idle-timeout`,
    /// `read-timeout`, `write-timeout`, `shutdown`, `closed`, `error`.
    ///
    /// ```
    /// assert_eq!(ringport_server::DisconnectReason::Shutdown.name(), "shutdown");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            DisconnectReason::PeerClosed => "peer-closed",
            DisconnectReason::Reset => "reset",
            DisconnectReason::IdleTimeout => "idle-timeout",
            DisconnectReason::ReadTimeout => "read-timeout",
            DisconnectReason::WriteTimeout => "write-timeout",
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
            DisconnectReason::Reset
                | DisconnectReason::IdleTimeout
                | DisconnectReason::ReadTimeout
                | DisconnectReason::WriteTimeout
                | DisconnectReason::Error(_)
        )
    }

    /// The error an outbound connection that ended this way before it was
    /// established reports.
    pub(crate) fn to_connect_error(&self) -> io::Error {
        let kind = match self {
            DisconnectReason::IdleTimeout
            | DisconnectReason::ReadTimeout
            | DisconnectReason::WriteTimeout => io::ErrorKind::TimedOut,
            DisconnectReason::Shutdown | DisconnectReason::Closed => io::ErrorKind::Interrupted,
            DisconnectReason::Reset => io::ErrorKind::ConnectionReset,
            DisconnectReason::PeerClosed => io::ErrorKind::ConnectionAborted,
            DisconnectReason::Error(e) => e.kind(),
        };
        io::Error::new(kind, format!("connect: {self}"))
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
            DisconnectReason::ReadTimeout => f.write_str("read deadline passed"),
            DisconnectReason::WriteTimeout => f.write_str("write deadline passed"),
            DisconnectReason::Shutdown => f.write_str("server shutdown"),
            DisconnectReason::Closed => f.write_str("closed by server"),
            DisconnectReason::Error(e) => write!(f, "error: {e}"),
        }
    }
}
