//! The deadline sweep: a timer that goes round the live connections and
//! closes those idle for longer than the idle timeout, those that received
//! nothing for longer than the read deadline, and those whose queued data
//! made no progress for longer than the write deadline, each with its own
//! [`DisconnectReason`].

use std::io;
use std::time::Duration;

use ringport::op;

use crate::conn::{Connection, ServerEnv};
use crate::conn_state::CloseMode;
use crate::id::SERVER_KEY;
use crate::reason::DisconnectReason;
use crate::tag::Tag;

/// The sweep's period. An event since the previous round counts as
/// happening at this round, so a deadline is acted on between the deadline
/// and the deadline plus two periods after the last event.
fn interval(shortest: Duration) -> Duration {
    (shortest / 8).max(Duration::from_millis(5))
}

/// Arms the sweep's timer, if the server has any deadline.
pub(crate) fn arm(env: &ServerEnv) -> io::Result<()> {
    if let Some(shortest) = env.config.shortest_deadline() {
        env.port.submit(
            op::Timeout::new(interval(shortest))
                .key(SERVER_KEY)
                .user(Tag::Sweep.user()),
        )?;
    }
    Ok(())
}

/// Milliseconds of a deadline.
fn ms(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

/// One round: closes the connections past a deadline and arms the next
/// round.
pub(crate) fn run(env: &ServerEnv) {
    let now = env.now_ms();
    let idle = ms(env.config.idle_timeout);
    let read = ms(env.config.read_timeout);
    let write = ms(env.config.write_timeout);
    env.registry.for_each(|conn| {
        if let Some((reason, mode)) = past_deadline(conn, now, idle, read, write) {
            conn.close_with(reason, mode);
        }
    });
    if let Err(e) = arm(env) {
        tracing::debug!("deadline sweep timer: {e}");
    }
}

/// The deadline `conn` is past at `now`, if any, and how to close it.
fn past_deadline(
    conn: &Connection,
    now: u64,
    idle: Option<u64>,
    read: Option<u64>,
    write: Option<u64>,
) -> Option<(DisconnectReason, CloseMode)> {
    let clocks = conn.activity();
    if let Some(limit) = write {
        // Counted only while something is queued: from the send that found
        // the queue empty, or the last completed one.
        if conn.queued() == 0 {
            clocks.send.reset(now);
        } else if clocks.send.elapsed_ms(now) >= limit {
            return Some((DisconnectReason::WriteTimeout, CloseMode::Abortive));
        }
    }
    if let Some(limit) = read {
        if clocks.recv.elapsed_ms(now) >= limit {
            return Some((DisconnectReason::ReadTimeout, CloseMode::Idle));
        }
    }
    if let Some(limit) = idle {
        if clocks.any.elapsed_ms(now) >= limit {
            return Some((DisconnectReason::IdleTimeout, CloseMode::Idle));
        }
    }
    None
}
