//! Timers a handler arms, for a connection or for the server: one-shot or
//! periodic, each a timeout operation on the port whose completion carries
//! the timer's number; a periodic one is armed again when it fires.

use std::io;
use std::time::Duration;

use ringport::{op, CompletionPort, OpId};

use crate::tag::Tag;

/// A timer armed with [`Connection::set_timer`](crate::Connection::set_timer),
/// [`Connection::set_periodic`](crate::Connection::set_periodic) or their
/// [`Connections`](crate::Connections) (server) counterparts; handed to
/// [`Handler::on_timer`](crate::Handler::on_timer) when it fires, and used to
/// cancel it.
///
/// ```
/// # fn f(conn: &ringport_server::Connection) -> std::io::Result<()> {
/// use std::time::Duration;
/// let login = conn.set_timer(Duration::from_secs(10))?;
/// // ... the client logged in:
/// conn.cancel_timer(login);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(pub(crate) u64);

/// Whose timers a table holds: where their completions go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owner {
    /// A connection's, with its completion key.
    Conn(u64),
    /// The server's.
    Server,
}

impl Owner {
    fn tag(self, n: u64) -> Tag {
        match self {
            Owner::Conn(_) => Tag::ConnTimer(n),
            Owner::Server => Tag::ServerTimer(n),
        }
    }
    fn key(self) -> u64 {
        match self {
            Owner::Conn(key) => key,
            Owner::Server => crate::id::SERVER_KEY,
        }
    }
}

struct Armed {
    id: u64,
    period: Option<Duration>,
    op: OpId,
}

/// The armed timers of one owner.
pub(crate) struct Timers {
    owner: Owner,
    next: u64,
    armed: Vec<Armed>,
}

impl Timers {
    pub(crate) fn new(owner: Owner) -> Self {
        Timers {
            owner,
            next: 0,
            armed: Vec::new(),
        }
    }

    fn submit(&self, port: &CompletionPort, id: u64, after: Duration) -> io::Result<OpId> {
        port.submit(
            op::Timeout::new(after)
                .key(self.owner.key())
                .user(self.owner.tag(id).user()),
        )
    }

    /// Arms a timer firing after `after`, then every `period` if given.
    pub(crate) fn arm(
        &mut self,
        port: &CompletionPort,
        after: Duration,
        period: Option<Duration>,
    ) -> io::Result<TimerId> {
        let id = self.next;
        let op = self.submit(port, id, after)?;
        self.next += 1;
        self.armed.push(Armed { id, period, op });
        Ok(TimerId(id))
    }

    /// Timer `n`'s operation completed (`cancelled` if it was cancelled):
    /// the timer to report, if it is still armed; a periodic one is armed
    /// again.
    pub(crate) fn fired(
        &mut self,
        port: &CompletionPort,
        n: u64,
        cancelled: bool,
    ) -> Option<TimerId> {
        if cancelled {
            return None;
        }
        let i = self.armed.iter().position(|a| a.id == n)?;
        match self.armed[i].period {
            Some(every) => match self.submit(port, n, every) {
                Ok(op) => self.armed[i].op = op,
                Err(e) => {
                    tracing::debug!("re-arming periodic timer {n}: {e}");
                    self.armed.swap_remove(i);
                }
            },
            None => {
                self.armed.swap_remove(i);
            }
        }
        Some(TimerId(n))
    }

    /// Cancels a timer; whether it was armed.
    pub(crate) fn cancel(&mut self, port: &CompletionPort, id: TimerId) -> bool {
        let Some(i) = self.armed.iter().position(|a| a.id == id.0) else {
            return false;
        };
        let _ = port.cancel(self.armed.swap_remove(i).op);
        true
    }

    /// Cancels every timer.
    pub(crate) fn cancel_all(&mut self, port: &CompletionPort) {
        for a in self.armed.drain(..) {
            let _ = port.cancel(a.op);
        }
    }
}
