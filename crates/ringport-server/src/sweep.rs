//! The idle sweep: a timer that goes round the live connections and closes
//! those idle for longer than the idle timeout.

use std::io;
use std::time::Duration;

use ringport::op;

use crate::conn::ServerEnv;
use crate::conn_state::CloseMode;
use crate::id::SERVER_KEY;
use crate::reason::DisconnectReason;
use crate::tag::Tag;

/// The sweep's period. A connection active since the previous round
/// counts as active at this round, so it is closed between the timeout and
/// the timeout plus two periods after its last activity.
fn interval(idle: Duration) -> Duration {
    (idle / 8).max(Duration::from_millis(5))
}

/// Arms the sweep's timer, if the server has an idle timeout.
pub(crate) fn arm(env: &ServerEnv) -> io::Result<()> {
    if let Some(idle) = env.config.idle_timeout {
        env.port.submit(
            op::Timeout::new(interval(idle))
                .key(SERVER_KEY)
                .user(Tag::Sweep.user()),
        )?;
    }
    Ok(())
}

/// One round: closes the idle connections and arms the next round.
pub(crate) fn run(env: &ServerEnv) {
    let Some(idle) = env.config.idle_timeout else {
        return;
    };
    let now = env.now_ms();
    let limit = idle.as_millis() as u64;
    env.registry.for_each(|conn| {
        if conn.idle_ms(now) >= limit {
            conn.close_with(DisconnectReason::IdleTimeout, CloseMode::Idle);
        }
    });
    if let Err(e) = arm(env) {
        tracing::debug!("idle sweep timer: {e}");
    }
}
