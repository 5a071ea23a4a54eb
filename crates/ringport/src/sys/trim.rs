//! Giving the C allocator's free memory back once a burst of traffic is
//! over.
//!
//! A burst (many connections, large messages) makes the port allocate
//! receive buffers beyond what its pool keeps; the application frees them
//! when it is done, but glibc's malloc returns freed memory to the system
//! only from the top of each arena's heap, and any block allocated during
//! the burst and still alive (a pooled buffer, a connection's state) pins
//! everything below it. Measured after three runs of 200 connections × 4 MiB
//! echoes, 129 of the 135 MiB the server's arenas held were free memory,
//! with the pool already bounded (see `buf.rs`). So once the pool has had
//! to allocate [`TRIM_AFTER`] bytes of fresh buffers, a poller about to
//! wait for longer than [`IDLE`] waits at most that long; if nothing came,
//! the burst is over, and the port asks malloc to release the free pages
//! of every arena (`malloc_trim`). Under sustained traffic the poller never
//! waits that long with nothing to do, so this runs once per burst, when
//! the port is idle. Other allocators (musl, a `#[global_allocator]`) are
//! left alone: musl has no trim, and the others return memory themselves.

use std::time::{Duration, Instant};

use crate::pool::BufPool;

/// Bytes of fresh pool buffers after which a trim is due.
pub(crate) const TRIM_AFTER: usize = 32 << 20;
/// How long the port must be idle before it trims.
pub(crate) const IDLE: Duration = Duration::from_millis(200);

/// The wait of a poller about to block for `timeout`: at most [`IDLE`] when
/// a trim is due, and then when the shortened wait began.
pub(crate) fn wait(
    pool: &BufPool,
    timeout: Option<Duration>,
) -> (Option<Duration>, Option<Instant>) {
    match timeout {
        Some(t) if t <= IDLE => (timeout, None),
        _ if pool.trim_due() => (Some(IDLE), Some(Instant::now())),
        _ => (timeout, None),
    }
}

/// After a wait that `wait` shortened (at `began`): trims if it lasted
/// [`IDLE`] and nothing came (`idle`).
pub(crate) fn after_wait(pool: &BufPool, began: Instant, idle: bool) {
    if idle && began.elapsed() >= IDLE && pool.take_trim() {
        release_free_memory();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: `malloc_trim` only returns free pages of malloc's own arenas
    // to the system (madvise); it takes each arena's lock, touches no
    // memory that is allocated, and is safe to call from any thread.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        "idle after a burst: malloc_trim released memory: {}",
        released != 0
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
