//! Thin wrappers over the few epoll and eventfd calls the backend makes.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Turns a C-style `-1`-on-error return into an `io::Result` (as mio's
/// `syscall!`). The caller writes the `unsafe` block itself, so that its
/// `// SAFETY:` comment sits at the call site it justifies.
macro_rules! syscall {
    ($e:expr) => {{
        let res = $e;
        if res == -1 {
            Err(::std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}
pub(crate) use syscall;

/// `epoll_data` of the waker; registrations are non-null pointers.
pub(crate) const WAKE_TOKEN: u64 = 0;

/// Creates an epoll instance (close-on-exec).
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers are passed.
    let fd = syscall!(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `fd` was just created and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `EPOLL_CTL_ADD` of `fd` with `events`, carrying `token`.
pub(crate) fn epoll_add(ep: &OwnedFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a live epoll_event the kernel only reads during the call.
    syscall!(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    Ok(())
}

/// `EPOLL_CTL_DEL` of `fd`; errors (already closed, never added) are ignored.
pub(crate) fn epoll_del(ep: &OwnedFd, fd: RawFd) {
    // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL (since 2.6.9).
    let _ = syscall!(unsafe {
        libc::epoll_ctl(
            ep.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd,
            std::ptr::null_mut(),
        )
    });
}

/// Waits for events; `ms < 0` waits forever. `EINTR` counts as no events.
/// Returns the events the kernel wrote at the start of `events`.
pub(crate) fn epoll_wait<'a>(
    ep: &OwnedFd,
    events: &'a mut [MaybeUninit<libc::epoll_event>],
    ms: i32,
) -> io::Result<&'a [libc::epoll_event]> {
    let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
    // SAFETY: `events` is a writable array of `max` epoll_events; the kernel
    // only writes into it during this call.
    let n = match syscall!(unsafe {
        libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr().cast(), max, ms)
    }) {
        Ok(n) => n as usize,
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => 0,
        Err(e) => return Err(e),
    };
    // SAFETY: epoll_wait initialised the first `n <= max` entries.
    Ok(unsafe { std::slice::from_raw_parts(events.as_ptr().cast(), n.min(events.len())) })
}

/// Sets `O_NONBLOCK` on a descriptor.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; no memory is involved.
    let flags = syscall!(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        syscall!(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// An eventfd that makes the poller's `epoll_wait` return. Sticky: a wake
/// stays pending until the poller sees it.
pub(crate) struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: no pointers are passed.
        let fd = syscall!(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(Waker {
            // SAFETY: `fd` was just created and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            pending: AtomicBool::new(false),
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the current or next wait return (one write per pending wake).
    pub(crate) fn wake(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. An eventfd write fails only
        // when the counter would overflow, and then a wake is pending anyway.
        let _ = syscall!(unsafe { libc::write(self.fd(), (&raw const one).cast(), 8) });
    }

    /// Called by the poller when the eventfd fired. The counter is drained
    /// *before* the flag is cleared: a wake that lands in between sees the
    /// flag still set and writes nothing, which is fine because the poller is
    /// on its way out of `poll`; a wake after the clear writes again. The other
    /// order could drain a wake's write while leaving the flag set, and every
    /// later wake would then return early with the poller asleep.
    pub(crate) fn reset(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; non-blocking.
        let _ = syscall!(unsafe { libc::read(self.fd(), (&raw mut n).cast(), 8) });
        self.pending.store(false, Ordering::Release);
    }
}
