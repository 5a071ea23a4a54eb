//! What the server's connections, acceptor and workers share: the port,
//! the settings, the counters, the registry of live connections, the
//! handler's callbacks, and the stop flag.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use ringport::CompletionPort;

use crate::config::Config;
use crate::event::Action;
use crate::id::ConnId;
use crate::registry::Registry;
use crate::stats::Counters;
use crate::timer::{Owner, TimerId, Timers};

/// A connection's application state, as the handler's type behind `Any`
/// (`None` before `on_connect` made it and after `on_disconnect` took it).
pub(crate) type AppState = Option<Box<dyn Any + Send>>;

/// Runs a connection's callbacks (the handler, behind the type `C` of the
/// connection it is given).
pub(crate) trait Callbacks<C>: Send + Sync {
    /// Runs the callback of `action` for `conn`, whose application state
    /// is `state`.
    fn run(&self, conn: &C, state: &mut AppState, action: Action);
    /// Runs the callback of a server timer.
    fn server_timer(&self, env: &Arc<Env<C>>, timer: TimerId);
}

/// The server's shared state; `C` is the connection type.
pub(crate) struct Env<C> {
    pub port: CompletionPort,
    pub config: Config,
    pub counters: Counters,
    pub registry: Registry<C>,
    pub callbacks: Box<dyn Callbacks<C>>,
    /// The server's own timers (the handler's ticks).
    pub timers: Mutex<Timers>,
    epoch: Instant,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
}

impl<C: Clone> Env<C> {
    pub(crate) fn new(
        port: CompletionPort,
        config: Config,
        callbacks: Box<dyn Callbacks<C>>,
    ) -> Self {
        Env {
            port,
            counters: Counters::new(config.workers),
            config,
            registry: Registry::new(),
            callbacks,
            timers: Mutex::new(Timers::new(Owner::Server)),
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
        }
    }

    /// Milliseconds since the server started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether the server is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Marks the server stopping: no connection is accepted or opened
    /// from now on.
    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// A connection's Disconnect callback ran: forget it.
    pub(crate) fn removed(&self, id: ConnId) {
        self.registry.remove(id);
        if self.is_stopping() {
            self.notify_stop();
        }
    }

    /// Wakes [`wait_until`](Self::wait_until).
    pub(crate) fn notify_stop(&self) {
        let _g = self.stop_lock.lock();
        self.stop_cv.notify_all();
    }

    /// Waits until `done` holds or `deadline` passes; `done` is checked
    /// again at each [`notify_stop`](Self::notify_stop). Returns `done()`.
    pub(crate) fn wait_until(&self, deadline: Instant, done: impl Fn() -> bool) -> bool {
        let mut g = self.stop_lock.lock();
        while !done() {
            if self.stop_cv.wait_until(&mut g, deadline).timed_out() {
                return done();
            }
        }
        true
    }
}
