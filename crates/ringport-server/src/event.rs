//! What happens to a connection, as it waits in the connection's inbox
//! ([`Event`]) and as the callback it turns into ([`Action`]).

use crate::reason::DisconnectReason;

/// What happened to a connection, waiting for its callbacks to run.
pub(crate) enum Event {
    Connect(Option<Vec<u8>>),
    Data(Vec<u8>),
    Sent(Result<usize, i32>, Option<Vec<u8>>),
    RecvEnd(Result<usize, i32>),
    Disconnect(DisconnectReason),
}

/// What remains of an event once the connection's state was updated for
/// it: the callback to run, without the connection's lock.
pub(crate) enum Action {
    Connect(Option<Vec<u8>>),
    Data(Vec<u8>),
    /// A buffer to give back to the pool (data after the connection closed,
    /// or a sent buffer), and the bytes to report to `on_sent`.
    Sent(Option<Vec<u8>>, Option<usize>),
    Disconnect(DisconnectReason),
    Nothing,
}
