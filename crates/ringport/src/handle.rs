//! An associated socket or file: the descriptor, its completion key and
//! context (the per-handle data), and what the port tracks of its
//! operations (the lanes that keep them in order, their count, its close).
//!
//! # When the descriptor is closed
//! The record is shared by the `Handle` clones and the operations in flight
//! (each holds an `Arc`); the last `Handle` dropped (or given to `close`)
//! cancels the operations, and the descriptor closes when the record goes,
//! after the last of them completed. Completions hold only a weak reference
//! (and the context, if any): they do not keep the descriptor open.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Weak};

use parking_lot::Mutex;

use crate::engine::Engine;
use crate::short_lock::ShortLock;
use crate::sys::{Backend, OpId};

/// The operations waiting for a lane to free up, and whether one runs.
#[derive(Default)]
pub(crate) struct LaneQueue {
    pub busy: bool,
    pub waiting: VecDeque<OpId>,
}

/// What the port tracks of a handle, under one short lock.
#[derive(Default)]
pub(crate) struct OpsState {
    pub lanes: [LaneQueue; 2],
    /// Operations in the op table that work on this handle.
    pub ops: usize,
    /// Live `Handle` clones; at 0 the handle's operations are cancelled.
    pub users: usize,
    /// `close` was called (a second call fails).
    pub close_called: bool,
    /// The user value of the `Close` completion, handed out when `ops`
    /// reaches 0: after every completion of the handle's operations.
    pub close: Option<u64>,
}

/// An application value a handle carries (see
/// [`CompletionPort::associate_with`](crate::CompletionPort::associate_with)).
pub(crate) type Context = Arc<dyn std::any::Any + Send + Sync>;

/// What every completion of a handle carries back: the way to the handle
/// (weak: a completion does not keep the descriptor open) and the handle's
/// context, behind one pointer, so that a completion holds one reference
/// (one atomic increment per completion, and 8 bytes) for both.
pub(crate) struct Origin {
    pub handle: Weak<HandleInner>,
    pub context: Option<Context>,
}

pub(crate) struct HandleInner {
    pub fd: OwnedFd,
    pub key: u64,
    pub origin: Arc<Origin>,
    pub state: ShortLock<OpsState>,
    /// Set by close and cancel_handle: no new operation may start.
    pub closed: AtomicBool,
    pub port: Weak<Engine>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        if let Some(port) = self.port.upgrade() {
            port.driver.deregister(self.fd.as_raw_fd(), &*port);
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
/// completes once, as cancelled) and the descriptor is closed once the last
/// of them has completed. [`CompletionPort::close`](crate::CompletionPort::close)
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
    pub(crate) fn new(
        fd: OwnedFd,
        key: u64,
        context: Option<Context>,
        port: Weak<Engine>,
    ) -> io::Result<Self> {
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
            inner: Arc::new_cyclic(|me| HandleInner {
                fd,
                key,
                origin: Arc::new(Origin {
                    handle: me.clone(),
                    context,
                }),
                state: ShortLock::new(OpsState {
                    users: 1,
                    ..OpsState::default()
                }),
                closed: AtomicBool::new(false),
                port,
            }),
        })
    }

    /// A new `Handle` of a record a completion refers to, if the
    /// application still has one (a handle dropped or closed stays so).
    pub(crate) fn revive(inner: &Weak<HandleInner>) -> Option<Handle> {
        let inner = inner.upgrade()?;
        {
            let mut st = inner.state.lock();
            if st.users == 0 {
                return None;
            }
            st.users += 1;
        }
        Some(Handle { inner })
    }

    /// The completion key given at association.
    pub fn key(&self) -> u64 {
        self.inner.key
    }

    /// The context given at association
    /// ([`CompletionPort::associate_with`](crate::CompletionPort::associate_with)),
    /// if it is a `T`.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let h = port.associate_with(l, 1, String::from("listener"))?;
    /// assert_eq!(h.context::<String>().map(String::as_str), Some("listener"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn context<T: std::any::Any>(&self) -> Option<&T> {
        self.inner.origin.context.as_ref()?.downcast_ref()
    }

    /// The socket's local address (`getsockname`), of any family: IP, a
    /// Unix path, an abstract name, or unnamed.
    ///
    /// ```
    /// use ringport::Address;
    /// let port = ringport::CompletionPort::new(1)?;
    /// let path = std::env::temp_dir().join(format!("ringport-doc-la-{}", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let l = port.associate(std::os::unix::net::UnixListener::bind(&path)?, 1)?;
    /// assert_eq!(l.local_address()?, Address::Path(path.clone()));
    /// # std::fs::remove_file(path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the descriptor is not a socket (`ENOTSOCK`).
    pub fn local_address(&self) -> io::Result<crate::Address> {
        Ok(socket2::SockRef::from(self).local_addr()?.into())
    }

    /// The connected peer's address (`getpeername`), of any family.
    ///
    /// ```
    /// use ringport::Address;
    /// let port = ringport::CompletionPort::new(1)?;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let s = port.associate(std::net::TcpStream::connect(l.local_addr()?)?, 1)?;
    /// assert_eq!(s.peer_address()?, Address::Ip(l.local_addr()?));
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// assert_eq!(port.associate(a, 2)?.peer_address()?, Address::Unnamed);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the socket is not connected (`ENOTCONN`) or not a socket.
    pub fn peer_address(&self) -> io::Result<crate::Address> {
        Ok(socket2::SockRef::from(self).peer_addr()?.into())
    }

    /// Whether [`CompletionPort::close`](crate::CompletionPort::close) (or
    /// [`cancel_handle`](crate::CompletionPort::cancel_handle)) was called:
    /// no new operation may be posted.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let h = port.associate(std::net::TcpListener::bind("127.0.0.1:0")?, 0)?;
    /// port.cancel_handle(&h);
    /// assert!(h.is_closed());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.inner.state.lock().users += 1;
        Handle {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let last = {
            let mut st = self.inner.state.lock();
            st.users -= 1;
            st.users == 0
        };
        if !last {
            return;
        }
        match self.inner.port.upgrade() {
            // Cancels what is left; the record (and the descriptor) goes
            // when the last op has completed.
            Some(port) => port.cancel_handle(&self.inner),
            None => self.inner.closed.store(true, Ordering::Release),
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
