//! The acceptor: keeps accepts posted on a listener (one multishot accept
//! on io_uring, otherwise a number of single ones replenished as they
//! complete), sets accepted connections up, and backs off when the process
//! is out of descriptors (`EMFILE`/`ENFILE`): a failed accept is parked and
//! retried after a growing delay, one at a time, so a lack of descriptors
//! costs no CPU while existing connections are served.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use ringport::{op, Accepted, BackendKind, Completion, Handle};
use socket2::{SockRef, TcpKeepalive};

use crate::conn::{Connection, ServerEnv};
use crate::conn_state::CloseMode;
use crate::id::SERVER_KEY;
use crate::listener::ListenerKind;
use crate::reason::DisconnectReason;
use crate::stats::Counters;
use crate::tag::Tag;

const BACKOFF_START_MS: u64 = 10;
const BACKOFF_MAX_MS: u64 = 500;

/// A listener and its accept back-off state.
pub(crate) struct Acceptor {
    listener: Mutex<Option<Handle>>,
    /// The listener's number: its accepts' tags carry it.
    index: u64,
    kind: ListenerKind,
    /// Accepts that failed and wait for the retry timer.
    parked: AtomicUsize,
    retry_pending: AtomicBool,
    /// The first accepts were posted (by a worker).
    armed: AtomicBool,
    backoff_ms: AtomicU64,
}

impl Acceptor {
    /// The acceptor of `listener`, the server's listener number `index`.
    pub(crate) fn new(listener: Handle, index: u64, kind: ListenerKind) -> Self {
        Acceptor {
            listener: Mutex::new(Some(listener)),
            index,
            kind,
            parked: AtomicUsize::new(0),
            retry_pending: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            backoff_ms: AtomicU64::new(BACKOFF_START_MS),
        }
    }

    /// The back-off state for a snapshot: whether a retry timer runs, the
    /// accepts waiting for it, and the delay the next back-off would take.
    pub(crate) fn backoff(&self) -> (bool, usize, u64) {
        (
            self.retry_pending.load(Ordering::Relaxed),
            self.parked.load(Ordering::Relaxed),
            self.backoff_ms.load(Ordering::Relaxed),
        )
    }

    /// Asks a worker to post the first accepts.
    ///
    /// A worker, not the thread that starts the server, posts them: on
    /// io_uring the kernel runs a multishot accept's work for each
    /// connection on the thread that submitted it, which would wake the
    /// application's thread once per accepted connection.
    pub(crate) fn start(&self, env: &ServerEnv) -> io::Result<()> {
        env.port.post(
            op::Packet::new(0)
                .key(SERVER_KEY)
                .user(Tag::AcceptStart(self.index).user()),
        )
    }

    /// Posts the first accepts (on a worker).
    pub(crate) fn post_first(&self, env: &ServerEnv) {
        let posted = if multishot(env) {
            1
        } else {
            env.config.accepts
        };
        for _ in 0..posted {
            self.post(env);
        }
        self.armed.store(true, Ordering::SeqCst);
        env.notify_stop();
    }

    /// Whether the first accepts were posted: `start` waits for it.
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    /// The path of a Unix listener.
    pub(crate) fn unix_path(&self) -> Option<&std::path::Path> {
        match &self.kind {
            ListenerKind::Unix(file) => Some(file.path()),
            ListenerKind::Tcp => None,
        }
    }

    /// Stops accepting: cancels the accepts, lets go of the listener and
    /// removes a Unix listener's socket file.
    pub(crate) fn close(&self, env: &ServerEnv) {
        if let Some(listener) = self.listener.lock().take() {
            env.port.cancel_handle(&listener);
            if let ListenerKind::Unix(file) = &self.kind {
                file.remove();
            }
        }
    }

    fn post(&self, env: &ServerEnv) {
        if env.is_stopping() {
            return;
        }
        let posted = {
            let listener = self.listener.lock();
            let Some(l) = listener.as_ref() else {
                return;
            };
            let user = Tag::Accept(self.index).user();
            if multishot(env) {
                env.port.submit(op::Accept::new(l).multishot().user(user))
            } else if env.config.first_data {
                let buf = Vec::with_capacity(env.config.recv_buffer);
                env.port
                    .submit(op::Accept::new(l).first_data(buf).user(user))
            } else {
                env.port.submit(op::Accept::new(l).user(user))
            }
        };
        match posted {
            Ok(_) => Counters::add(&env.counters.accepts_posted, 1),
            Err(e) => {
                if !env.is_stopping() {
                    tracing::warn!("posting an accept failed: {e}; retrying later");
                    self.park(env);
                }
            }
        }
    }

    /// Puts a failed accept aside and makes sure a retry timer runs: at most
    /// one accept is retried per backoff period.
    fn park(&self, env: &ServerEnv) {
        self.parked.fetch_add(1, Ordering::SeqCst);
        if self.retry_pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let ms = self.backoff_ms.load(Ordering::SeqCst);
        self.backoff_ms
            .store((ms * 2).min(BACKOFF_MAX_MS), Ordering::SeqCst);
        if let Err(e) = env.port.submit(
            op::Timeout::new(Duration::from_millis(ms))
                .key(SERVER_KEY)
                .user(Tag::AcceptRetry(self.index).user()),
        ) {
            self.retry_pending.store(false, Ordering::SeqCst);
            tracing::debug!("accept retry timer: {e}");
        }
    }

    /// The retry timer fired: post one parked accept.
    pub(crate) fn on_retry_timer(&self, env: &ServerEnv, c: &Completion) {
        self.retry_pending.store(false, Ordering::SeqCst);
        if c.is_cancelled() || env.is_stopping() {
            return;
        }
        let took = self
            .parked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if took.is_ok() {
            self.post(env);
        }
    }

    /// An accept completed: replenish, and set the connection up.
    pub(crate) fn on_accept(&self, env: &Arc<ServerEnv>, c: &mut Completion) {
        let Some(code) = c.error_code() else {
            if self.backoff_ms.swap(BACKOFF_START_MS, Ordering::SeqCst) != BACKOFF_START_MS {
                tracing::info!("accepting again");
            }
            let first = c.take_buf::<Vec<u8>>();
            let accepted = c.take_accepted().ok();
            // A multishot accept's results say `more`: it stays posted.
            if !c.more() {
                self.post(env);
            }
            for _ in 0..self.parked.swap(0, Ordering::SeqCst) {
                self.post(env);
            }
            if let Some(acc) = accepted {
                open(env, acc, first, matches!(self.kind, ListenerKind::Tcp));
            }
            return;
        };
        if c.is_cancelled() {
            return;
        }
        match code {
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                Counters::add(&env.counters.accept_exhausted, 1);
                if !self.retry_pending.load(Ordering::SeqCst) {
                    tracing::warn!(
                        "accept failed: {}; backing off",
                        io::Error::from_raw_os_error(code)
                    );
                }
                self.park(env);
            }
            libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO | libc::EPERM => {
                Counters::add(&env.counters.accept_errors, 1);
                self.post(env);
            }
            _ => {
                Counters::add(&env.counters.accept_errors, 1);
                tracing::warn!("accept failed: {}", io::Error::from_raw_os_error(code));
                self.park(env);
            }
        }
    }
}

/// One multishot accept instead of `accepts` single ones: where the
/// backend has it (io_uring) and no accept waits for first data.
fn multishot(env: &ServerEnv) -> bool {
    env.port.backend() == BackendKind::IoUring && !env.config.first_data
}

/// Sets up an accepted connection; the calling worker drains it first, so
/// `on_connect` comes before anything else.
/// `tcp`: the TCP options of the settings apply.
fn open(env: &Arc<ServerEnv>, acc: Accepted, first: Option<Vec<u8>>, tcp: bool) {
    if env.is_stopping() {
        return;
    }
    if env.registry.len() >= env.config.max_connections {
        Counters::add(&env.counters.rejected, 1);
        let _ = SockRef::from(&acc.socket).set_linger(Some(Duration::ZERO));
        return;
    }
    let sock = SockRef::from(&acc.socket);
    if tcp && env.config.nodelay {
        let _ = sock.set_tcp_nodelay(true);
    }
    if let Some(idle) = env.config.keepalive.filter(|_| tcp) {
        let _ = sock.set_keepalive(true);
        let _ = sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle));
    }
    let conn = env
        .registry
        .insert(|id| Connection::new(id, acc.local_address, acc.peer_address, env.clone(), first));
    Counters::add(&env.counters.connections_total, 1);
    // The connection is the socket's context: its completions reach it
    // without a lookup.
    match env
        .port
        .associate_with(acc.socket, conn.id().as_u64(), conn.clone())
    {
        Ok(h) => conn.attach(h),
        Err(e) => conn.close_with(DisconnectReason::Error(e), CloseMode::Abortive),
    }
    if env.is_stopping() {
        conn.close_with(DisconnectReason::Shutdown, CloseMode::Graceful);
    }
    conn.schedule_drain();
}
