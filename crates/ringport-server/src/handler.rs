//! What the application implements: callbacks for connect, data, sent and
//! disconnect.

use crate::conn::Connection;
use crate::env::Callbacks;
use crate::event::Action;
use crate::reason::DisconnectReason;

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

/// Runs a [`Handler`]'s callbacks for the server's connections.
pub(crate) struct HandlerCallbacks<H>(pub H);

impl<H: Handler> Callbacks<Connection> for HandlerCallbacks<H> {
    fn run(&self, conn: &Connection, action: Action) {
        match action {
            Action::Connect(first) => self.0.on_connect(conn, first),
            Action::Data(buf) => self.0.on_data(conn, buf),
            Action::Sent(_, Some(n)) => self.0.on_sent(conn, n),
            Action::Disconnect(reason) => self.0.on_disconnect(conn, &reason),
            Action::Sent(_, None) | Action::Nothing => {}
        }
    }
}
