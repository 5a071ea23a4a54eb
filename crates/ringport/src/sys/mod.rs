//! The backends: the layer that moves operations to the kernel and reports
//! their results. It depends on nothing above it; the front end gives it a
//! [`Sink`] (the op table, the buffer pool, where results go) and a resolved
//! [`Config`], and the ops in the table answer the questions of [`SysOp`].
//!
//! # The contract ([`Backend`])
//!
//! * `register(fd)` before a descriptor's first op; `deregister(fd, cx)`
//!   when it is about to be closed (no op on it is left).
//! * `start(cx, id, submit)`: op `id` is in the table; begin its current
//!   stage. io_uring lowers it ([`SysOp::lower`]) to a request, submitted
//!   now unless `submit` is [`Submit::Deferred`] (the caller then guarantees
//!   a `flush`); epoll runs its [`SysOp::plan`]: the syscall at once, and on
//!   `EAGAIN` again when the descriptor is ready; or a timer; or a file
//!   thread. `start` never fails: an error is the op's result.
//!   `start_new(cx, op, submit)` inserts and starts; `None` if the table is
//!   full.
//! * Every started stage is reported through [`Sink::complete`] exactly
//!   once per result (`more` says whether the kernel keeps it armed), after
//!   the backend did what only it may do: commit the bytes the kernel wrote
//!   into the op's buffer ([`SysOp::filling`]) and own a descriptor the
//!   kernel created ([`SysOp::makes_fd`]). Until that report the op's memory
//!   belongs to the kernel: nothing frees, moves or reuses it.
//! * `cancel(cx, id)` / `cancel_fd(cx, fd)` ask the kernel to stop one op /
//!   every op on a descriptor; each still completes once.
//! * `flush()` submits what was deferred. `poll(cx, timeout)` — one thread
//!   at a time — submits what is pending, waits at most `timeout` for a
//!   result or a `wake`, and reports what it reaped. `wake()` makes a
//!   current or the next `poll` return soon; it is sticky.
//! * `can_poll_here()`: whether this thread may poll (a single-thread ring:
//!   only its owner); `orphaned()`: nobody can reap any more (that owner
//!   exited).
//!
//! Kernel vocabulary (SQE, CQE, epoll_event) stays below this module.

pub(crate) mod buf;
pub(crate) mod epoll;
pub(crate) mod msg;
pub(crate) mod signal;
pub(crate) mod table;
pub(crate) mod trim;
pub(crate) mod uring;

use std::fmt;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use crate::pool::BufPool;
pub use table::OpId;
use table::Table;

/// The engine a port runs on.
///
/// ```
/// let port = ringport::CompletionPort::new(0)?;
/// println!("backend: {}", port.backend());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// The kernel performs the I/O (io_uring).
    IoUring,
    /// Readiness with edge-triggered epoll; the port performs the I/O.
    Epoll,
}

impl BackendKind {
    /// `"io_uring"` or `"epoll"`.
    ///
    /// ```
    /// assert_eq!(ringport::BackendKind::Epoll.name(), "epoll");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::IoUring => "io_uring",
            BackendKind::Epoll => "epoll",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" | "iouring" => Ok(BackendKind::IoUring),
            "epoll" => Ok(BackendKind::Epoll),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown backend {other:?} (expected uring or epoll)"),
            )),
        }
    }
}

/// The settings a backend is built with, resolved by the front end.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Submission queue entries (io_uring).
    pub entries: u32,
    /// Pooled-receive buffers and their size.
    pub pool_bufs: usize,
    pub pool_buf_size: usize,
    /// One thread dequeues (io_uring `SINGLE_ISSUER | DEFER_TASKRUN`).
    pub single_thread: bool,
    /// Wait for this many completions or this long (io_uring min-wait).
    pub coalesce: Option<(u32, Duration)>,
    /// The io_uring opcodes the ops lower to (probed at set-up).
    pub opcodes: &'static [(u8, &'static str)],
}

/// Whether a request goes to the kernel now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Submit {
    /// Now: the I/O starts inside the call that posts it.
    Now,
    /// With the next `flush` or `poll`, which the caller guarantees.
    Deferred,
}

/// What a backend needs of an op in the table.
pub(crate) trait SysOp: Send {
    /// The descriptor the current stage works on.
    fn fd(&self) -> Option<RawFd>;
    /// io_uring: the request for the current stage, or its result now.
    fn lower(&mut self, cx: &uring::LowerCx) -> Result<io_uring::squeue::Entry, i32>;
    /// epoll: how the current stage runs.
    fn plan(&mut self) -> epoll::Plan;
    /// epoll: one non-blocking try of the current stage on `fd`.
    fn attempt(&mut self, fd: RawFd, pool: &BufPool) -> epoll::Attempt;
    /// io_uring: whether to try the current stage with `attempt` before
    /// making it a request (a send that fits in the socket buffer is done
    /// by one syscall, as the ring would do it inline, without the ring's
    /// request and completion).
    fn try_first(&mut self) -> bool;
    /// The buffer whose spare capacity the current stage fills, if it does:
    /// the backend commits a successful result's bytes into it.
    fn filling(&mut self) -> Option<&mut buf::Buf>;
    /// Whether a successful result of the current stage is a new
    /// descriptor (the backend owns it as an `OwnedFd`).
    fn makes_fd(&self) -> bool;
    /// Whether the op was asked to stop (cancelled, or its handle closed).
    fn stopping(&self) -> bool;
}

/// A kernel result for the current stage of an op.
pub(crate) struct Reaped {
    /// `>= 0`, or `-errno`.
    pub res: i32,
    /// The kernel keeps the op armed (multishot): more results follow.
    pub more: bool,
    /// Data a pooled receive got, in a buffer from the pool.
    pub pooled: Option<Vec<u8>>,
    /// The descriptor the stage created (an accept).
    pub fd: Option<OwnedFd>,
}

#[cfg(test)]
impl Reaped {
    /// A result that carries nothing but itself (an error, a count).
    pub(crate) fn res(res: i32) -> Reaped {
        Reaped {
            res,
            more: false,
            pooled: None,
            fd: None,
        }
    }
}

/// What the front end gives a backend: the op table, the buffer pool, and
/// where results go.
pub(crate) trait Sink {
    type Op: SysOp;
    fn table(&self) -> &Table<Self::Op>;
    fn pool(&self) -> &BufPool;
    /// A result of op `id`; `commit` runs first on the op and the result,
    /// under the same slot lock (the backend commits received bytes and
    /// owns a new descriptor there).
    fn complete(&self, id: OpId, r: Reaped, commit: impl FnOnce(&mut Self::Op, &mut Reaped));
    /// Whether the calling thread is the poller (what it defers is
    /// submitted at the end of its reap).
    fn polling(&self) -> bool;
}

/// The backend contract. See the module docs.
pub(crate) trait Backend: Send + Sync {
    fn register(&self, fd: RawFd) -> io::Result<()>;
    fn deregister(&self, fd: RawFd, cx: &impl Sink);
    fn start(&self, cx: &impl Sink, id: OpId, submit: Submit);
    fn start_new<S: Sink>(&self, cx: &S, op: S::Op, submit: Submit) -> Option<OpId>;
    fn cancel(&self, cx: &impl Sink, id: OpId);
    fn cancel_fd(&self, cx: &impl Sink, fd: RawFd);
    fn flush(&self) -> io::Result<()>;
    fn poll(&self, cx: &impl Sink, timeout: Option<Duration>) -> io::Result<()>;
    fn wake(&self);
    fn can_poll_here(&self) -> bool;
    fn orphaned(&self) -> bool;
}

/// The backend a port runs on, dispatched statically.
// One per port, built once and never moved: the size difference is harmless.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    Uring(uring::Driver),
    Epoll(epoll::Driver),
}

macro_rules! dispatch {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Driver::Uring($d) => $e,
            Driver::Epoll($d) => $e,
        }
    };
}

impl Driver {
    /// The backend `wanted` (or the best available one), built for `cfg`.
    pub(crate) fn new(wanted: Option<BackendKind>, cfg: &Config) -> io::Result<Driver> {
        Ok(match wanted {
            Some(BackendKind::IoUring) => Driver::Uring(uring::Driver::new(cfg)?),
            Some(BackendKind::Epoll) => Driver::Epoll(epoll::Driver::new(cfg)?),
            None => match uring::Driver::new(cfg) {
                Ok(d) => Driver::Uring(d),
                Err(why) => {
                    tracing::warn!("io_uring unavailable ({why}); using the epoll backend");
                    Driver::Epoll(epoll::Driver::new(cfg)?)
                }
            },
        })
    }

    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            Driver::Uring(_) => BackendKind::IoUring,
            Driver::Epoll(_) => BackendKind::Epoll,
        }
    }
}

impl Backend for Driver {
    fn register(&self, fd: RawFd) -> io::Result<()> {
        dispatch!(self, d => d.register(fd))
    }
    fn deregister(&self, fd: RawFd, cx: &impl Sink) {
        dispatch!(self, d => d.deregister(fd, cx))
    }
    fn start(&self, cx: &impl Sink, id: OpId, submit: Submit) {
        dispatch!(self, d => d.start(cx, id, submit))
    }
    fn start_new<S: Sink>(&self, cx: &S, op: S::Op, submit: Submit) -> Option<OpId> {
        dispatch!(self, d => d.start_new(cx, op, submit))
    }
    fn cancel(&self, cx: &impl Sink, id: OpId) {
        dispatch!(self, d => d.cancel(cx, id))
    }
    fn cancel_fd(&self, cx: &impl Sink, fd: RawFd) {
        dispatch!(self, d => d.cancel_fd(cx, fd))
    }
    fn flush(&self) -> io::Result<()> {
        dispatch!(self, d => d.flush())
    }
    fn poll(&self, cx: &impl Sink, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(self, d => d.poll(cx, timeout))
    }
    fn wake(&self) {
        dispatch!(self, d => d.wake())
    }
    fn can_poll_here(&self) -> bool {
        dispatch!(self, d => d.can_poll_here())
    }
    fn orphaned(&self) -> bool {
        dispatch!(self, d => d.orphaned())
    }
}

/// Hands the kernel's result for op `id` to the front end, after doing what
/// only the backend may: growing the op's buffer by the bytes the kernel
/// wrote into it, and owning a descriptor an accept created.
///
/// # Safety
/// `res` must be the result the kernel (or the backend's own syscall) gave
/// for the current stage of op `id`: if the stage fills a buffer and
/// `res > 0`, exactly `res` bytes were written at the start of that buffer's
/// spare capacity and nothing writes there any more; if the stage makes a
/// descriptor and `res >= 0`, `res` is a new descriptor nobody else owns.
pub(crate) unsafe fn reap(cx: &impl Sink, id: OpId, res: i32, more: bool, pooled: Option<Vec<u8>>) {
    let r = Reaped {
        res,
        more,
        pooled,
        fd: None,
    };
    cx.complete(id, r, |op, r| {
        if r.res < 0 {
            return;
        }
        if op.makes_fd() {
            use std::os::fd::FromRawFd;
            // SAFETY: per this function's contract `res` is a descriptor
            // the stage just created and nothing else owns.
            r.fd = Some(unsafe { OwnedFd::from_raw_fd(r.res) });
        } else if let Some(buf) = op.filling().filter(|_| r.res > 0) {
            // SAFETY: per this function's contract the kernel wrote `res`
            // bytes at the start of this buffer's spare capacity, and no
            // longer touches it.
            unsafe { buf.grow(r.res as usize) };
        }
    });
}

/// The address the kernel wrote into `storage` (its first `len` bytes), as
/// an accept leaves it.
pub(crate) fn sock_addr(storage: socket2::SockAddrStorage, len: u32) -> socket2::SockAddr {
    let len = len.min(storage.size_of());
    // SAFETY: the storage is initialised throughout (zeroed when made, then
    // written by the kernel), and `len` is at most its size.
    unsafe { socket2::SockAddr::new(storage, len) }
}
