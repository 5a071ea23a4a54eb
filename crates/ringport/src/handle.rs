//! An associated socket or file: the descriptor, its completion key (the
//! per-handle data) and the lanes that keep its operations in order.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;

use crate::completion::{Completion, OpId};
use crate::shared::Shared;
use crate::short_lock::ShortLock;
use crate::sys::{Backend, FdState};

/// The operations waiting for a lane to free up, and whether one runs.
#[derive(Default)]
pub(crate) struct LaneQueue {
    pub busy: bool,
    pub waiting: VecDeque<OpId>,
}

/// What the port tracks of a handle's operations, under one short lock.
#[derive(Default)]
pub(crate) struct OpsState {
    pub lanes: [LaneQueue; 2],
    /// Operations in the op table that work on this handle.
    pub ops: usize,
    /// `close` was called (a second call fails).
    pub close_called: bool,
    /// The `Close` completion, handed out when `ops` reaches 0: after every
    /// completion of the handle's operations.
    pub close: Option<Completion>,
}

pub(crate) struct HandleInner {
    pub fd: OwnedFd,
    pub key: u64,
    pub state: ShortLock<OpsState>,
    /// Set by close and cancel_handle: no new operation may start.
    pub closed: AtomicBool,
    /// Number of live `Handle` clones; at 0 the handle's ops are cancelled.
    pub users: AtomicUsize,
    pub sys: FdState,
    pub port: Weak<Shared>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        if let Some(sh) = self.port.upgrade() {
            sh.driver.deregister(&sh, self);
        }
        // While the number still names this descriptor, so that a new
        // descriptor given the same number can be associated at once.
        owners().remove(&self.fd.as_raw_fd());
        // `fd` closes here: no operation references it any more.
    }
}

/// The descriptors associated with a port in this process. A descriptor has
/// one owner, as a Windows handle has one completion port: associating a
/// number twice (possible only through `from_raw_fd`) is refused.
fn owners() -> parking_lot::MutexGuard<'static, HashSet<RawFd>> {
    static OWNERS: LazyLock<Mutex<HashSet<RawFd>>> = LazyLock::new(Mutex::default);
    OWNERS.lock()
}

/// A socket or file associated with a completion port under a completion key
/// (`CreateIoCompletionPort(handle, port, key)`).
///
/// The handle owns the descriptor. Clones share it. When the last clone is
/// dropped, the handle's outstanding operations are cancelled (each still
/// completes once, as cancelled) and the descriptor is closed once the last of
/// them has completed. [`CompletionPort::close`](crate::CompletionPort::close)
/// does the same explicitly and reports it as a completion.
///
/// ```
/// use ringport::CompletionPort;
/// use std::net::TcpListener;
/// let port = CompletionPort::new(0)?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let h = port.associate(listener, 42)?;
/// assert_eq!(h.key(), 42);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Handle {
    pub(crate) inner: Arc<HandleInner>,
}

impl Handle {
    /// Takes ownership of `fd` for a port, unless the descriptor is
    /// associated already: then it fails with `AlreadyExists` and leaves the
    /// descriptor open, since it belongs to the handle that has it.
    pub(crate) fn new(fd: OwnedFd, key: u64, port: Weak<Shared>) -> io::Result<Self> {
        let raw = fd.as_raw_fd();
        if !owners().insert(raw) {
            // Not ours to close: the `OwnedFd` was a second owner.
            let _ = fd.into_raw_fd();
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("descriptor {raw} is already associated with a completion port"),
            ));
        }
        Ok(Handle {
            inner: Arc::new(HandleInner {
                fd,
                key,
                state: ShortLock::new(OpsState::default()),
                closed: AtomicBool::new(false),
                users: AtomicUsize::new(1),
                sys: FdState::default(),
                port,
            }),
        })
    }

    /// The completion key given at association.
    pub fn key(&self) -> u64 {
        self.inner.key
    }

    /// Whether [`CompletionPort::close`](crate::CompletionPort::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.inner.users.fetch_add(1, Ordering::Relaxed);
        Handle {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.inner.users.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(sh) = self.inner.port.upgrade() {
                sh.cancel_handle(&self.inner);
            }
        }
    }
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

impl AsRawFd for Handle {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.fd.as_raw_fd()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("fd", &self.inner.fd.as_raw_fd())
            .field("key", &self.inner.key)
            .finish()
    }
}
