//! What the application implements: callbacks for connect, data, sent,
//! timers and disconnect, each handed the connection's own state.

use std::any::Any;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::conn::{Connection, ServerEnv};
use crate::connections::Connections;
use crate::env::{AppState, Callbacks};
use crate::event::Action;
use crate::id::ConnId;
use crate::reason::DisconnectReason;
use crate::timer::TimerId;

/// The application side of a server (the seeds' `_DoAccept`, `_DoRecv`,
/// `_DoSend` and `RemoveContext`, as callbacks).
///
/// One handler serves every connection; it is shared by the worker threads.
/// Each connection has a value of the handler's [`State`](Self::State) type
/// (the seeds' `PER_HANDLE_DATA`): [`on_connect`](Self::on_connect) makes
/// it, every later callback of that connection gets it as `&mut`, and
/// [`on_disconnect`](Self::on_disconnect) gets it back. The server reaches
/// it without a lookup and without a lock shared with other connections.
///
/// For one connection the callbacks never run at the same time and come in
/// order: `on_connect` first, then data, sent and timer notifications in
/// the order they happened, and `on_disconnect` last, exactly once.
/// Callbacks of different connections run in parallel on the workers. They
/// should not block for long: a blocked callback holds a worker (see
/// [`Connection::blocking`] for calls that must block).
///
/// ```
/// use ringport_server::{Connection, DisconnectReason, Handler};
///
/// struct Echo;
/// impl Handler for Echo {
///     /// Bytes echoed to this client so far.
///     type State = u64;
///     fn on_connect(&self, _conn: &Connection, _first: Option<Vec<u8>>) -> u64 {
///         0
///     }
///     fn on_data(&self, conn: &Connection, echoed: &mut u64, data: Vec<u8>) {
///         *echoed += data.len() as u64;
///         let _ = conn.send(data); // queued in order; partial sends finished
///     }
///     fn on_disconnect(&self, conn: &Connection, echoed: u64, reason: &DisconnectReason) {
///         println!("{} left after {echoed} bytes: {reason}", conn.peer_addr());
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The per-connection state: `()` for none.
    type State: Send + 'static;

    /// A client connected (or an outbound connection made with
    /// [`Connections::connect`] is established): returns the connection's
    /// state. `first_data` holds the first bytes the client sent when the
    /// server was built with
    /// [`first_data(true)`](crate::ServerBuilder::first_data) (AcceptEx with
    /// a receive buffer), otherwise `None`.
    fn on_connect(&self, conn: &Connection, first_data: Option<Vec<u8>>) -> Self::State;

    /// Bytes arrived. The buffer is the handler's: pass it to
    /// [`Connection::send`] to echo it without a copy.
    fn on_data(&self, conn: &Connection, state: &mut Self::State, data: Vec<u8>);

    /// `bytes` of one [`Connection::send`] were all sent.
    fn on_sent(&self, conn: &Connection, state: &mut Self::State, bytes: usize) {
        let _ = (conn, state, bytes);
    }

    /// A timer of this connection ([`Connection::set_timer`],
    /// [`Connection::set_periodic`]) fired.
    ///
    /// ```
    /// use ringport_server::{Connection, Handler, TimerId};
    /// use std::time::Duration;
    ///
    /// /// Clients must say something within 10 s.
    /// struct Login;
    /// impl Handler for Login {
    ///     type State = Option<TimerId>;
    ///     fn on_connect(&self, conn: &Connection, _: Option<Vec<u8>>) -> Option<TimerId> {
    ///         conn.set_timer(Duration::from_secs(10)).ok()
    ///     }
    ///     fn on_data(&self, conn: &Connection, deadline: &mut Option<TimerId>, _: Vec<u8>) {
    ///         if let Some(t) = deadline.take() {
    ///             conn.cancel_timer(t);
    ///         }
    ///     }
    ///     fn on_timer(&self, conn: &Connection, _: &mut Option<TimerId>, _: TimerId) {
    ///         conn.abort(); // too slow
    ///     }
    /// }
    /// ```
    fn on_timer(&self, conn: &Connection, state: &mut Self::State, timer: TimerId) {
        let _ = (conn, state, timer);
    }

    /// The connection ended; nothing more will be called for it. Its state
    /// is handed back.
    fn on_disconnect(&self, conn: &Connection, state: Self::State, reason: &DisconnectReason) {
        let _ = (conn, state, reason);
    }

    /// A server timer ([`Connections::set_timer`],
    /// [`Connections::set_periodic`]) fired: a game server's tick.
    ///
    /// ```
    /// use ringport_server::{Connection, Connections, Handler, TimerId};
    ///
    /// struct Game;
    /// impl Handler for Game {
    ///     type State = ();
    ///     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
    ///     fn on_data(&self, _: &Connection, _: &mut (), _: Vec<u8>) {}
    ///     fn on_server_timer(&self, server: &Connections, _tick: TimerId) {
    ///         let world: std::sync::Arc<[u8]> = b"world state\n".as_slice().into();
    ///         server.broadcast(world, None);
    ///     }
    /// }
    /// ```
    fn on_server_timer(&self, server: &Connections, timer: TimerId) {
        let _ = (server, timer);
    }

    /// An outbound connection ([`Connections::connect`]) could not be made:
    /// `TimedOut` when its connect timeout passed first, `Interrupted` when
    /// the server stopped first, or the connect's own error. It never got a
    /// state; nothing more will be called for `id`.
    ///
    /// ```
    /// use ringport_server::{ConnId, Connection, Handler};
    /// use std::net::SocketAddr;
    ///
    /// struct Proxy;
    /// impl Handler for Proxy {
    ///     type State = ();
    ///     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
    ///     fn on_data(&self, _: &Connection, _: &mut (), _: Vec<u8>) {}
    ///     fn on_connect_failed(&self, id: ConnId, peer: SocketAddr, error: std::io::Error) {
    ///         eprintln!("backend {peer} ({id}) unreachable: {error}");
    ///     }
    /// }
    /// ```
    fn on_connect_failed(&self, id: ConnId, peer: SocketAddr, error: io::Error) {
        let _ = (id, peer, error);
    }
}

/// Runs a [`Handler`]'s callbacks for the server's connections, keeping
/// each connection's state as the handler's type behind `dyn Any`.
pub(crate) struct HandlerCallbacks<H>(pub H);

impl<H: Handler> HandlerCallbacks<H> {
    fn with_state(&self, state: &mut AppState, f: impl FnOnce(&mut H::State)) {
        if let Some(s) = state.as_mut().and_then(|s| s.downcast_mut::<H::State>()) {
            f(s);
        }
    }
}

impl<H: Handler> Callbacks<Connection> for HandlerCallbacks<H> {
    fn run(&self, conn: &Connection, state: &mut AppState, action: Action) {
        let h = &self.0;
        match action {
            Action::Connect(first) => {
                *state = Some(Box::new(h.on_connect(conn, first)) as Box<dyn Any + Send>);
            }
            Action::Data(buf) => self.with_state(state, |s| h.on_data(conn, s, buf)),
            Action::Sent(_, Some(n)) => self.with_state(state, |s| h.on_sent(conn, s, n)),
            Action::Timer(id) => self.with_state(state, |s| h.on_timer(conn, s, id)),
            Action::Disconnect(reason) => {
                if let Some(Ok(s)) = state.take().map(|s| s.downcast::<H::State>()) {
                    h.on_disconnect(conn, *s, &reason);
                }
            }
            Action::ConnectFailed(error) => h.on_connect_failed(conn.id(), conn.peer_addr(), error),
            Action::Sent(_, None) | Action::Nothing => {}
        }
    }

    fn server_timer(&self, env: &Arc<ServerEnv>, timer: TimerId) {
        self.0
            .on_server_timer(&Connections { env: env.clone() }, timer);
    }
}
