//! Per-descriptor readiness state, and how an epoll event finds it safely.
//!
//! # Why an event never points at freed memory
//! Every watched descriptor has a [`Registration`] behind an `Arc`, and its
//! `epoll_event` carries `Arc::as_ptr`. The registry (indexed by descriptor
//! number) holds one reference while the descriptor is associated, or while
//! an accept-with-data waits for the first bytes of its accepted socket
//! (a *temporary* registration). When it goes, [`Core::remove`] deletes the
//! descriptor from epoll (`EPOLL_CTL_DEL`) and parks another reference on
//! the *retired* list. Only
//! the poller empties that list, at the start of `poll` and before it calls
//! `epoll_wait`: every entry on it was deleted from epoll before that wait
//! began, so the wait cannot return it; and every event returned by earlier
//! waits was handled before earlier `poll` calls returned (one poller at a
//! time). So an event's pointer is always to a live registration, and an
//! event crosses no lock but its own descriptor's.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::sys;
use crate::short_lock::ShortLock;
use crate::sys::OpId;

/// Index of the read direction in [`RegState`] (accept, recv).
pub(crate) const READ: usize = 0;
/// Index of the write direction (connect, send).
pub(crate) const WRITE: usize = 1;

/// A result waiting to be handed to the front end, in the order produced.
pub(crate) struct Report {
    pub id: OpId,
    pub res: i32,
    pub more: bool,
    pub pooled: Option<Vec<u8>>,
}

/// What is known about a descriptor and what waits on it. See the module
/// docs of `epoll` for the lost-wake-up argument.
#[derive(Default)]
pub(crate) struct RegState {
    /// Per direction: false once a syscall said `EAGAIN` (or a pooled
    /// receive emptied the socket) and no event came since. True initially
    /// (unknown).
    pub ready: [bool; 2],
    /// Per direction: ops waiting for readiness, first in first out.
    pub queue: [VecDeque<OpId>; 2],
    /// Results produced under the lock and not yet reported.
    pub reports: Vec<Report>,
    /// Some thread is reporting `reports` (outside the lock).
    pub reaping: bool,
    /// An event said the peer hung up or the socket failed (sticky, like
    /// the condition): reads go on until one returns end of stream or an
    /// error, never stopping at a short read.
    pub hung_up: bool,
}

/// A descriptor known to the epoll instance.
pub(crate) struct Registration {
    pub fd: RawFd,
    /// Watched only for one op (the first data of an accepted socket, not
    /// associated yet), and removed when that op's stage ends.
    pub temp: bool,
    /// Added to epoll and not yet deleted.
    registered: AtomicBool,
    pub state: Mutex<RegState>,
}

impl Registration {
    fn new(fd: RawFd, temp: bool) -> Arc<Self> {
        Arc::new(Registration {
            fd,
            temp,
            registered: AtomicBool::new(false),
            state: Mutex::new(RegState {
                ready: [true, true],
                ..RegState::default()
            }),
        })
    }

    /// The token an `epoll_event` carries for this registration.
    fn token(self: &Arc<Self>) -> u64 {
        Arc::as_ptr(self) as u64
    }

    /// The registration an event's token names.
    ///
    /// # Safety
    /// `token` must come from an event returned by the epoll instance during
    /// the current `poll` call (see the module docs: the registration is then
    /// still referenced by its owner or by the retired list).
    pub(crate) unsafe fn from_token(token: u64) -> Arc<Self> {
        let ptr = token as *const Registration;
        // SAFETY: per the contract `ptr` came from `Arc::as_ptr` of an `Arc`
        // that is still alive, so adding a reference and taking it is sound.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }
}

/// The epoll instance and the registrations waiting to be freed.
pub(crate) struct Core {
    pub ep: OwnedFd,
    retired: Mutex<Vec<Arc<Registration>>>,
}

impl Core {
    pub(crate) fn new() -> io::Result<Core> {
        Ok(Core {
            ep: sys::epoll_create()?,
            retired: Mutex::new(Vec::new()),
        })
    }

    /// Watches `fd` (edge-triggered) and returns its registration.
    pub(crate) fn add(&self, fd: RawFd, events: u32, temp: bool) -> io::Result<Arc<Registration>> {
        let reg = Registration::new(fd, temp);
        sys::epoll_add(&self.ep, fd, events | libc::EPOLLET as u32, reg.token())?;
        reg.registered.store(true, Ordering::Release);
        Ok(reg)
    }

    /// Stops watching `reg`'s descriptor (which must still be open) and keeps
    /// the registration alive until the poller's next `poll` begins.
    /// Idempotent.
    pub(crate) fn remove(&self, reg: &Arc<Registration>) {
        if reg.registered.swap(false, Ordering::AcqRel) {
            sys::epoll_del(&self.ep, reg.fd);
            self.retired.lock().push(reg.clone());
        }
    }

    /// The registrations it is now safe to free. Poller only, before it waits.
    pub(crate) fn take_retired(&self) -> Vec<Arc<Registration>> {
        let mut r = self.retired.lock();
        if r.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut *r)
        }
    }
}

/// Descriptors per chunk of the registry.
const CHUNK: usize = 1024;

/// The registrations by descriptor number: chunks of slots made on first
/// use and kept while the backend lives, so a lookup is an index and one
/// short lock.
pub(crate) struct Registry {
    chunks: Box<[OnceLock<Box<[RegSlot]>>]>,
}

/// One descriptor number's registration, if it is watched.
type RegSlot = ShortLock<Option<Arc<Registration>>>;

impl Registry {
    pub(crate) fn new() -> Self {
        // Up to 2^20 descriptors: Linux's own default ceiling (nr_open).
        Registry {
            chunks: (0..(1 << 20) / CHUNK).map(|_| OnceLock::new()).collect(),
        }
    }

    fn slot(&self, fd: RawFd, create: bool) -> Option<&RegSlot> {
        let i = usize::try_from(fd).ok()?;
        let chunk = self.chunks.get(i / CHUNK)?;
        let chunk = if create {
            chunk.get_or_init(|| (0..CHUNK).map(|_| ShortLock::new(None)).collect())
        } else {
            chunk.get()?
        };
        chunk.get(i % CHUNK)
    }

    /// The registration of `fd`, if it is watched.
    pub(crate) fn get(&self, fd: RawFd) -> Option<Arc<Registration>> {
        self.slot(fd, false)?.lock().clone()
    }

    /// Records `reg` for its descriptor; returns what was there (a stale
    /// temporary registration of a descriptor number now reused).
    pub(crate) fn insert(&self, reg: Arc<Registration>) -> io::Result<Option<Arc<Registration>>> {
        let slot = self.slot(reg.fd, true).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "descriptor number too large to watch",
            )
        })?;
        Ok(slot.lock().replace(reg))
    }

    /// Forgets the registration of `fd` if it is `reg`.
    pub(crate) fn remove(&self, reg: &Arc<Registration>) {
        if let Some(slot) = self.slot(reg.fd, false) {
            let mut s = slot.lock();
            if s.as_ref().is_some_and(|r| Arc::ptr_eq(r, reg)) {
                *s = None;
            }
        }
    }
}
