//! Single-thread mode: a ring set up with `SINGLE_ISSUER | DEFER_TASKRUN`,
//! which only one thread (its *owner*) may enter. The owner is the first
//! thread that polls; the ring is created disabled and enabled by it. Other
//! threads still post: they copy SQEs into the ring and wake the owner through
//! an eventfd that has a read posted in the ring.

use std::cell::RefCell;
use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use io_uring::{opcode, squeue, types::Fd};

/// A small per-thread number, never 0.
fn thread_tag() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static TAG: u64 = NEXT.fetch_add(1, Ordering::Relaxed));
    TAG.with(|t| *t)
}

/// Flags set when the thread that owns them exits.
struct ExitFlags(Vec<Arc<AtomicBool>>);

impl Drop for ExitFlags {
    fn drop(&mut self) {
        for f in &self.0 {
            f.store(true, Ordering::Release);
        }
    }
}

thread_local!(static EXIT_FLAGS: RefCell<ExitFlags> = const { RefCell::new(ExitFlags(Vec::new())) });

pub(super) struct Owner {
    tag: AtomicU64,
    /// Set when the owner thread has exited: nobody can enter the ring again.
    gone: Arc<AtomicBool>,
    eventfd: OwnedFd,
    /// Where the kernel writes the eventfd counter; read by nobody.
    sink: Box<UnsafeCell<u64>>,
}

// SAFETY: `sink` is only written by the kernel (the eventfd read posted by
// `rearm`) and never read or written by Rust code; the other fields are
// thread-safe.
unsafe impl Sync for Owner {}

impl Owner {
    pub(super) fn new() -> io::Result<Owner> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Owner {
            tag: AtomicU64::new(0),
            gone: Arc::new(AtomicBool::new(false)),
            // SAFETY: `fd` was just created and is owned by nobody else.
            eventfd: unsafe { OwnedFd::from_raw_fd(fd) },
            sink: Box::new(UnsafeCell::new(0)),
        })
    }

    /// Whether the calling thread owns the ring.
    pub(super) fn is_current(&self) -> bool {
        self.tag.load(Ordering::Acquire) == thread_tag()
    }

    /// Whether the owner thread has exited.
    pub(super) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Whether no thread owns the ring yet.
    pub(super) fn unclaimed(&self) -> bool {
        self.tag.load(Ordering::Acquire) == 0
    }

    /// Claims the ring for the calling thread if nobody has; returns whether
    /// it was claimed now (the caller must then enable the ring and `rearm`).
    pub(super) fn claim(&self) -> io::Result<bool> {
        let me = thread_tag();
        match self
            .tag
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                let gone = self.gone.clone();
                let _ = EXIT_FLAGS.try_with(|f| f.borrow_mut().0.push(gone));
                Ok(true)
            }
            Err(owner) if owner == me => Ok(false),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this port was built single-threaded: only the thread that first \
                 called get may dequeue from it",
            )),
        }
    }

    /// The read that completes when another thread signals the eventfd.
    pub(super) fn rearm(&self, user_data: u64) -> squeue::Entry {
        opcode::Read::new(Fd(self.eventfd.as_raw_fd()), self.sink.get().cast(), 8)
            .build()
            .user_data(user_data)
    }

    /// Wakes the owner (the eventfd counter is sticky until read).
    pub(super) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to our eventfd.
        let rc = unsafe { libc::write(self.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                tracing::warn!("waking the ring's owner failed: {e}");
            }
        }
    }
}
