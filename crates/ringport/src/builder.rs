//! Building a port: concurrency, backend choice and sizes.

use std::io;

use crate::engine::Engine;
use crate::pool::BufPool;
use crate::port::CompletionPort;
use crate::sys::{BackendKind, Config, Driver};

/// Configures and creates a [`CompletionPort`].
///
/// ```
/// use ringport::{BackendKind, CompletionPort};
/// let port = CompletionPort::builder()
///     .concurrency(2)
///     .backend(BackendKind::Epoll)
///     .build()?;
/// assert_eq!(port.backend(), BackendKind::Epoll);
/// assert_eq!(port.concurrency(), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    pub(crate) concurrency: usize,
    pub(crate) backend: Option<BackendKind>,
    pub(crate) entries: u32,
    pub(crate) pool_buf_size: usize,
    pub(crate) pool_bufs: usize,
    pub(crate) single_thread: bool,
    pub(crate) coalesce: Option<(u32, std::time::Duration)>,
    pub(crate) zero_copy_above: Option<usize>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            concurrency: 0,
            backend: None,
            entries: 1024,
            pool_buf_size: 8192,
            pool_bufs: 256,
            single_thread: false,
            coalesce: None,
            zero_copy_above: std::env::var("RINGPORT_SEND_ZC_ABOVE")
                .ok()
                .and_then(|v| v.trim().parse().ok()),
        }
    }
}

impl Builder {
    /// How many threads may run completions at once; 0 means the number of
    /// CPUs (`NumberOfConcurrentThreads`).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Forces a backend. Without it the port takes io_uring when it can be
    /// set up with every operation it needs, and epoll otherwise; the
    /// environment variable `RINGPORT_BACKEND=uring|epoll` overrides that
    /// automatic choice (but not this call).
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.backend = Some(kind);
        self
    }

    /// Submission queue size of the io_uring backend (default 1024; the
    /// completion queue is eight times larger). Ignored by epoll.
    pub fn entries(mut self, n: u32) -> Self {
        self.entries = n.max(8);
        self
    }

    /// Size of each buffer used by pooled receives (default 8 KiB).
    pub fn pool_buffer_size(mut self, n: usize) -> Self {
        self.pool_buf_size = n.clamp(64, 1 << 20);
        self
    }

    /// How many pooled-receive buffers the kernel may fill before the port
    /// hands them out (default 256, rounded up to a power of two).
    pub fn pool_buffers(mut self, n: usize) -> Self {
        self.pool_bufs = n.clamp(1, 32768).next_power_of_two();
        self
    }

    /// Promises that one thread only — the first to call `get` — will
    /// dequeue from this port (other threads may still post operations and
    /// packets, and shut it down). io_uring then runs with `SINGLE_ISSUER |
    /// DEFER_TASKRUN`, the set-up that makes a one-thread-per-core server
    /// cheapest. A second thread calling `get` gets an error. Shut the port
    /// down before the owner thread exits: operations still in flight after
    /// it has gone can never be reaped, so their buffers are leaked rather
    /// than freed. Ignored by epoll.
    ///
    /// ```
    /// let port = ringport::CompletionPort::builder().single_thread(true).build()?;
    /// port.post(ringport::op::Packet::new(0).user(1))?;
    /// assert_eq!(port.get(None)?.user(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn single_thread(mut self, yes: bool) -> Self {
        self.single_thread = yes;
        self
    }

    /// Coalesces completions: a thread waiting in the kernel is woken once
    /// `count` completions are ready, or `delay` after the first one,
    /// whichever comes first (interrupt coalescing, for completions). Under
    /// load this trades up to `delay` of latency for fewer wake-ups and
    /// larger batches; an idle port still waits for as long as `get` says.
    /// Off by default. Needs io_uring on Linux 6.12 (min-timeout waits);
    /// ignored elsewhere.
    ///
    /// ```
    /// use std::time::Duration;
    /// let port = ringport::CompletionPort::builder()
    ///     .coalesce(32, Duration::from_micros(50))
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn coalesce(mut self, count: usize, delay: std::time::Duration) -> Self {
        let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
        self.coalesce = (count > 1 && !delay.is_zero()).then_some((count, delay));
        self
    }

    /// Sends ([`op::SendAll`](crate::op::SendAll)) of at least `bytes`
    /// go out zero-copy on io_uring where the kernel has it (`SEND_ZC`,
    /// Linux 6.0): the kernel sends from the buffer itself instead of
    /// copying it, and the completion comes only once the kernel's
    /// notification says it is done with the buffer. Worth it for large
    /// buffers only. Off by default (the environment variable
    /// `RINGPORT_SEND_ZC_ABOVE=<bytes>` sets a default, for benchmarks);
    /// ignored on epoll.
    ///
    /// ```
    /// let port = ringport::CompletionPort::builder()
    ///     .send_zero_copy_above(32 * 1024)
    ///     .build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_zero_copy_above(mut self, bytes: usize) -> Self {
        self.zero_copy_above = Some(bytes.max(1));
        self
    }

    /// Creates the port.
    ///
    /// # Errors
    /// When the requested (or `RINGPORT_BACKEND`) backend cannot be set up,
    /// with the reason; when neither backend can.
    pub fn build(self) -> io::Result<CompletionPort> {
        let concurrency = if self.concurrency == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.concurrency
        };
        let wanted = match self.backend {
            Some(kind) => Some(kind),
            None => match std::env::var("RINGPORT_BACKEND") {
                Ok(v) if !v.trim().is_empty() => Some(v.parse()?),
                _ => None,
            },
        };
        let cfg = Config {
            entries: self.entries,
            pool_bufs: self.pool_bufs,
            pool_buf_size: self.pool_buf_size,
            single_thread: self.single_thread,
            coalesce: self.coalesce,
            zero_copy_above: self.zero_copy_above,
            opcodes: crate::op::opcodes(),
        };
        let driver = Driver::new(wanted, &cfg)?;
        let pool = BufPool::new(self.pool_buf_size, self.pool_bufs * 4);
        Ok(CompletionPort::from_engine(Engine::new(
            driver,
            concurrency,
            self.single_thread,
            pool,
        )))
    }
}
