//! What happens to a connection, as it waits in the connection's inbox
//! ([`Event`]) and as the callback it turns into ([`Action`]).

use std::io;

use crate::reason::DisconnectReason;
use crate::timer::TimerId;

/// What came back of a finished send.
pub(crate) struct SentBuf {
    /// Bytes the send was asked to send.
    pub len: usize,
    /// Memory its buffer counted for while queued.
    pub mem: usize,
    /// The buffer, when it is a `Vec` (given back to the pool).
    pub vec: Option<Vec<u8>>,
}

/// What happened to a connection, waiting for its callbacks to run.
pub(crate) enum Event {
    Connect(Option<Vec<u8>>),
    Data(Vec<u8>),
    Sent(Result<usize, i32>, SentBuf),
    RecvEnd(Result<usize, i32>),
    Timer(TimerId),
    Disconnect(DisconnectReason),
    ConnectFailed(io::Error),
}

/// What remains of an event once the connection's state was updated for
/// it: the callback to run, without the connection's lock.
pub(crate) enum Action {
    Connect(Option<Vec<u8>>),
    Data(Vec<u8>),
    /// A buffer to give back to the pool (data after the connection closed,
    /// or a sent buffer), and the bytes to report to `on_sent`.
    Sent(Option<Vec<u8>>, Option<usize>),
    Timer(TimerId),
    Disconnect(DisconnectReason),
    ConnectFailed(io::Error),
    Nothing,
}

impl Action {
    /// Whether the connection is gone once this action ran.
    pub(crate) fn is_last(&self) -> bool {
        matches!(self, Action::Disconnect(_) | Action::ConnectFailed(_))
    }
}
