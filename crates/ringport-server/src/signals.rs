//! Stopping on SIGINT or SIGTERM (and SIGHUP), with no signal code in the
//! application: [`StopSignal`] and [`Server::stop_on`].
//!
//! The process-wide handler is installed once, through the `ctrlc` crate
//! (a safe API over a signal handler that writes to a pipe, read by its own
//! thread), and counts the signals it sees; any number of [`StopSignal`]s
//! wait for the count to pass the value it had when they were made, so a
//! signal that arrives before the wait begins is not lost.

use std::io;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::server::Server;
use crate::stats::Stats;

/// Signals seen since the handler was installed.
static SEEN: Mutex<u64> = Mutex::new(0);
static WAKE: Condvar = Condvar::new();
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// A stop request by signal: SIGINT (Ctrl-C), SIGTERM or SIGHUP received
/// after [`install`](Self::install) returned it.
///
/// ```no_run
/// use ringport_server::{Connection, Handler, Server, StopSignal};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type State = ();
/// #     fn on_connect(&self, _: &Connection, _: Option<Vec<u8>>) {}
/// #     fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) { let _ = conn.send(data); }
/// # }
/// let signal = StopSignal::install()?; // first, so no signal is missed
/// let server = Server::builder().port(7000).start(Echo)?;
/// let stats = server.stop_on(&signal); // serves until Ctrl-C or SIGTERM
/// println!("{stats}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct StopSignal {
    seen: u64,
}

impl StopSignal {
    /// Catches SIGINT, SIGTERM and SIGHUP in this process from now on
    /// (they no longer end it), and returns a stop request that any of them
    /// fulfils.
    ///
    /// ```
    /// let signal = ringport_server::StopSignal::install()?;
    /// assert!(!signal.wait_timeout(std::time::Duration::ZERO));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// When another part of the program installed a handler for these
    /// signals through `ctrlc` already, or the handler cannot be set up.
    pub fn install() -> io::Result<StopSignal> {
        let installed = INSTALLED.get_or_init(|| {
            ctrlc::set_handler(|| {
                *SEEN.lock() += 1;
                WAKE.notify_all();
            })
            .map_err(|e| e.to_string())
        });
        if let Err(e) = installed {
            return Err(io::Error::other(format!(
                "installing the stop-signal handler: {e}"
            )));
        }
        Ok(StopSignal { seen: *SEEN.lock() })
    }

    /// Waits for a stop signal.
    ///
    /// ```no_run
    /// let signal = ringport_server::StopSignal::install()?;
    /// signal.wait();
    /// println!("stopping");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait(&self) {
        let mut seen = SEEN.lock();
        while *seen == self.seen {
            WAKE.wait(&mut seen);
        }
    }

    /// Waits at most `timeout` for a stop signal; returns whether one came.
    ///
    /// ```
    /// let signal = ringport_server::StopSignal::install()?;
    /// let asked = signal.wait_timeout(std::time::Duration::from_millis(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seen = SEEN.lock();
        while *seen == self.seen {
            if WAKE.wait_until(&mut seen, deadline).timed_out() {
                return *seen != self.seen;
            }
        }
        true
    }
}

impl Server {
    /// Serves until `signal` comes (SIGINT, SIGTERM or SIGHUP), then stops
    /// as [`stop`](Self::stop) does and returns the final counters.
    ///
    /// ```no_run
    /// # fn f(server: ringport_server::Server) -> std::io::Result<()> {
    /// let signal = ringport_server::StopSignal::install()?;
    /// let stats = server.stop_on(&signal);
    /// # Ok(()) }
    /// ```
    pub fn stop_on(self, signal: &StopSignal) -> Stats {
        signal.wait();
        tracing::info!("stop signal received; stopping");
        self.stop()
    }
}
