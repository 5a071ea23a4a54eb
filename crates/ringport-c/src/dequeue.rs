//! Dequeuing: a port's completions as Win32 sees them (`lpOverlapped`, the
//! completion key, bytes or an error), with the per-descriptor tracking
//! undone and the `Close` completions, which Windows does not have,
//! skipped.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ringport::{Accepted, Completion, CompletionPort, GetError, OpKind};
use std::net::SocketAddr;

use crate::registry::{Finish, Tracker};

/// One dequeued completion.
#[derive(Debug)]
pub struct Dequeued {
    /// The completion key.
    pub key: usize,
    /// The user value: the OVERLAPPED's address (a packet's, as posted).
    pub overlapped: usize,
    /// The operation (`Packet` for a posted packet).
    pub kind: OpKind,
    /// Bytes transferred (a packet's value), or the Linux error.
    pub result: Result<usize, i32>,
    /// An accept's connection.
    pub accepted: Option<Accepted>,
    /// A datagram's sender.
    pub from: Option<SocketAddr>,
    /// What the completion must finish (an AcceptEx's accept socket, a
    /// WSARecvFrom's address).
    pub finish: Option<Finish>,
}

impl Dequeued {
    fn from(mut c: Completion) -> Option<Dequeued> {
        if c.kind() == OpKind::Close {
            return None;
        }
        let tracked = c.context::<Tracker>().and_then(|t| t.untrack(c.id()));
        let accepted = if c.kind() == OpKind::Accept {
            c.take_accepted().ok()
        } else {
            None
        };
        Some(Dequeued {
            key: c.key() as usize,
            overlapped: c.user() as usize,
            kind: c.kind(),
            result: c
                .error_code()
                .map_or_else(|| Ok(c.result().unwrap_or(0)), Err),
            accepted,
            from: c.address().and_then(|a| a.ip()),
            finish: tracked.and_then(|t| t.finish),
        })
    }
}

/// The time left until `deadline` (`None`: no deadline).
fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Dequeues one completion (`GetQueuedCompletionStatus`), waiting at most
/// `timeout`.
///
///
/// # Errors
/// As [`CompletionPort::get`].
pub fn one(port: &CompletionPort, timeout: Option<Duration>) -> Result<Dequeued, GetError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(d) = Dequeued::from(port.get(left(deadline))?) {
            return Ok(d);
        }
    }
}

thread_local! {
    /// The batch buffer of `many`, kept per thread.
    static BATCH: RefCell<Vec<Completion>> = const { RefCell::new(Vec::new()) };
}

/// Dequeues up to `max` completions (`GetQueuedCompletionStatusEx`) into
/// `out`, waiting at most `timeout` for the first.
///
///
/// # Errors
/// As [`CompletionPort::get_many`].
pub fn many(
    port: &CompletionPort,
    max: usize,
    timeout: Option<Duration>,
    out: &mut Vec<Dequeued>,
) -> Result<(), GetError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    BATCH.with(|b| {
        let mut batch = b.borrow_mut();
        loop {
            batch.clear();
            port.get_many(&mut batch, max.max(1), left(deadline))?;
            out.extend(batch.drain(..).filter_map(Dequeued::from));
            if !out.is_empty() {
                return Ok(());
            }
        }
    })
}
