//! The backends and the contract they keep.
//!
//! The port's front end (`shared.rs`, `sched.rs`) owns the queue of finished
//! operations, the waiting threads and the concurrency limit; a backend only
//! moves operations to the kernel and reports them back. The contract:
//!
//! * `start(id)`: the operation `id` is in the op table (`arena`). The backend
//!   begins it: io_uring lowers it to an SQE (submitted now, or at the next
//!   `flush`/`poll` when `defer` is set); epoll tries the syscall at once and,
//!   on `EAGAIN`, waits for readiness. A backend never fails `start`: an error
//!   becomes the operation's completion.
//! * Every started operation is reported exactly once per result through
//!   [`Shared::complete`], with the kernel's result (`>= 0`, or `-errno`) and
//!   whether more results follow for the same id. Before reporting a
//!   successful receive the backend commits the bytes the kernel wrote into
//!   the op's buffer (the only place a buffer length grows past initialised
//!   memory). Until that report the op's memory belongs to the kernel: nothing
//!   frees, moves or reuses it.
//! * `cancel(id)` / `cancel_handle(h)` / `cancel_all()` ask the kernel to stop;
//!   the operations still complete once each, usually with `-ECANCELED`.
//! * `poll(timeout)` is called by one thread at a time (the front end's poller
//!   token). It submits what is pending, waits at most `timeout` for at least
//!   one completion or a `wake`, and reports what it reaped.
//! * `wake()` makes a current or the next `poll` return soon; it is sticky.
//!
//! Kernel vocabulary (SQE, CQE, epoll_event) stays below this module.

use std::io;
use std::mem;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use crate::completion::OpId;
use crate::handle::HandleInner;
use crate::op::OpData;
use crate::shared::Shared;

pub(crate) mod arena;
pub(crate) mod epoll;
pub(crate) mod trim;
pub(crate) mod uring;

pub use crate::builder::BackendKind;

/// What every backend provides. See the module docs for the contract.
pub(crate) trait Backend: Send + Sync {
    /// Prepares a freshly associated handle (epoll registers the descriptor).
    fn register(&self, sh: &Shared, handle: &std::sync::Arc<HandleInner>) -> io::Result<()>;
    /// Forgets a handle whose descriptor is about to be closed.
    fn deregister(&self, sh: &Shared, handle: &HandleInner);
    /// Begins operation `id`. `defer` allows batching the submission.
    fn start(&self, sh: &Shared, id: OpId, defer: bool);
    /// Puts a new operation in the op table and begins it; `None` when the
    /// table is full. The default is `insert` then `start`; a backend may
    /// lower the op under the slot lock `insert` already holds.
    fn start_new(&self, sh: &Shared, op: OpData, defer: bool) -> Option<OpId> {
        let id = sh.arena.insert(op)?;
        self.start(sh, id, defer);
        Some(id)
    }
    /// Asks the kernel to stop operation `id`.
    fn cancel(&self, sh: &Shared, id: OpId);
    /// Asks the kernel to stop every operation on `handle`.
    fn cancel_handle(&self, sh: &Shared, handle: &HandleInner);
    /// Submits what `start` deferred.
    fn flush(&self) -> io::Result<()>;
    /// Reaps completions, waiting at most `timeout`. One caller at a time.
    fn poll(&self, sh: &Shared, timeout: Option<Duration>) -> io::Result<()>;
    /// Makes the current or next `poll` return.
    fn wake(&self);
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
    /// Whether the calling thread may `poll` (single-thread io_uring ports
    /// are polled by their owner only).
    pub(crate) fn can_poll_here(&self) -> bool {
        match self {
            Driver::Uring(d) => d.can_poll_here(),
            Driver::Epoll(_) => true,
        }
    }

    /// Whether nobody can reap this port's operations any more (the owner
    /// of a single-thread io_uring port has exited).
    pub(crate) fn orphaned(&self) -> bool {
        match self {
            Driver::Uring(d) => d.owner_gone(),
            Driver::Epoll(_) => false,
        }
    }

    pub(crate) fn kind(&self) -> BackendKind {
        match self {
            Driver::Uring(_) => BackendKind::IoUring,
            Driver::Epoll(_) => BackendKind::Epoll,
        }
    }
}

impl Backend for Driver {
    fn register(&self, sh: &Shared, handle: &std::sync::Arc<HandleInner>) -> io::Result<()> {
        dispatch!(self, d => d.register(sh, handle))
    }
    fn deregister(&self, sh: &Shared, handle: &HandleInner) {
        dispatch!(self, d => d.deregister(sh, handle))
    }
    fn start(&self, sh: &Shared, id: OpId, defer: bool) {
        dispatch!(self, d => d.start(sh, id, defer))
    }
    fn start_new(&self, sh: &Shared, op: OpData, defer: bool) -> Option<OpId> {
        dispatch!(self, d => d.start_new(sh, op, defer))
    }
    fn cancel(&self, sh: &Shared, id: OpId) {
        dispatch!(self, d => d.cancel(sh, id))
    }
    fn cancel_handle(&self, sh: &Shared, handle: &HandleInner) {
        dispatch!(self, d => d.cancel_handle(sh, handle))
    }
    fn flush(&self) -> io::Result<()> {
        dispatch!(self, d => d.flush())
    }
    fn poll(&self, sh: &Shared, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(self, d => d.poll(sh, timeout))
    }
    fn wake(&self) {
        dispatch!(self, d => d.wake())
    }
}

/// Backend-private per-op state that must live as long as the op.
#[derive(Default)]
pub(crate) struct OpScratch {
    pub(crate) uring: uring::Scratch,
    pub(crate) epoll: epoll::Scratch,
}

/// Backend-private per-handle state.
#[derive(Default)]
pub(crate) struct FdState {
    pub(crate) uring: uring::FdState,
    pub(crate) epoll: epoll::FdState,
}

/// A socket address in the form the kernel reads and writes.
pub(crate) struct SockAddrBuf {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl Default for SockAddrBuf {
    fn default() -> Self {
        SockAddrBuf {
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid
            // (AF_UNSPEC) value.
            storage: unsafe { mem::zeroed() },
            len: mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }
}

impl SockAddrBuf {
    /// Encodes `addr` for `connect`.
    pub(crate) fn from_addr(addr: SocketAddr) -> Self {
        let mut buf = SockAddrBuf::default();
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // sockaddr_in; we write one plain-old-data value into it.
                unsafe { std::ptr::write((&raw mut buf.storage).cast(), sin) };
                buf.len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: as above, for sockaddr_in6.
                unsafe { std::ptr::write((&raw mut buf.storage).cast(), sin6) };
                buf.len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            }
        }
        buf
    }

    /// Decodes the address the kernel wrote, if it is IPv4 or IPv6.
    pub(crate) fn to_addr(&self) -> Option<SocketAddr> {
        match i32::from(self.storage.ss_family) {
            libc::AF_INET if self.len as usize >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, and
                // sockaddr_storage is aligned for it.
                let sin = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if self.len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    sin6.sin6_addr.s6_addr.into(),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// The local or peer address of a socket.
pub(crate) fn socket_addr(fd: &impl AsRawFd, peer: bool) -> io::Result<SocketAddr> {
    let mut buf = SockAddrBuf::default();
    let raw: RawFd = fd.as_raw_fd();
    let ptr = (&raw mut buf.storage).cast::<libc::sockaddr>();
    // SAFETY: `ptr`/`len` describe a live, writable sockaddr_storage.
    let rc = unsafe {
        if peer {
            libc::getpeername(raw, ptr, &mut buf.len)
        } else {
            libc::getsockname(raw, ptr, &mut buf.len)
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.to_addr()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP socket"))
}

/// Grows `buf` by the `n` bytes the kernel wrote into its spare capacity.
///
/// # Safety
/// The kernel must have written `n` bytes starting at `buf.as_ptr() + len`,
/// where `len` is `buf.len()`, and `len + n <= buf.capacity()`.
pub(crate) unsafe fn commit_received(buf: &mut Vec<u8>, n: usize) {
    let new_len = buf.len() + n;
    debug_assert!(new_len <= buf.capacity());
    // SAFETY: the caller guarantees those bytes were initialised by the kernel
    // and fit in the allocation.
    unsafe { buf.set_len(new_len.min(buf.capacity())) };
}

/// Hands the kernel's result for `id` to the front end, after doing what only
/// the backend may: growing a buffer by the bytes the kernel wrote into it,
/// and taking ownership of a descriptor an accept created.
///
/// # Safety
/// `res` must be the result the kernel (or the backend's own syscall) gave for
/// the current stage of operation `id`: if the op fills its buffer and `res >
/// 0`, exactly `res` bytes were written into the buffer's spare capacity; if
/// it is an accept's first stage and `res >= 0`, `res` is a new descriptor
/// that nothing else owns.
pub(crate) unsafe fn reap(sh: &Shared, id: OpId, res: i32, more: bool, pooled: Option<Vec<u8>>) {
    sh.complete_after(id, res, more, pooled, |op| {
        if res < 0 {
            return;
        }
        if op.fills_buf() {
            if let Some(buf) = op.buf.as_mut().filter(|_| res > 0) {
                // SAFETY: per this function's contract the kernel wrote `res`
                // bytes into the spare capacity of this very buffer.
                unsafe { commit_received(buf, res as usize) };
            }
        } else if op.kind == crate::completion::OpKind::Accept && op.accepted.is_none() {
            use std::os::fd::FromRawFd;
            // SAFETY: per this function's contract `res` is a descriptor the
            // accept just created and nothing else owns.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(res) };
            let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
            let peer = op
                .addr
                .as_ref()
                .and_then(|a| a.to_addr())
                .or_else(|| socket_addr(&fd, true).ok())
                .unwrap_or(unspecified);
            let local = socket_addr(&fd, false).unwrap_or(unspecified);
            op.accepted = Some(Box::new(crate::completion::Accepted {
                socket: fd,
                local,
                peer,
            }));
        }
    });
}
