//! What a `HANDLE` or `SOCKET` names.
//!
//! * A socket or file is its descriptor: `SOCKET` and `(HANDLE)fd` hold the
//!   descriptor number, as the seeds' `(HANDLE)socket` casts expect. Once
//!   associated with a port, the port owns the descriptor ([`Associated`]);
//!   `closesocket`/`CloseHandle` drop that ownership, which cancels the
//!   descriptor's operations and closes it after the last of them completed,
//!   so its number is never reused under them.
//! * Ports, threads and events are objects in a table, under handle values
//!   far above any descriptor number ([`FIRST_OBJECT`]); an unknown value is
//!   looked up, never dereferenced, so it fails with `ERROR_INVALID_HANDLE`.

use std::collections::HashMap;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::{Mutex, RwLock};
use ringport::{CompletionPort, Handle, OpId};

use crate::sync::Waitable;

/// The first handle value given to an object; smaller values are
/// descriptors.
pub const FIRST_OBJECT: usize = 1 << 32;

/// `INVALID_HANDLE_VALUE`.
pub const INVALID_HANDLE: usize = usize::MAX;

/// An object a handle names.
#[derive(Clone)]
pub enum Object {
    /// A completion port.
    Port(CompletionPort),
    /// A thread or an event: something `WaitForSingleObject` waits on.
    Waitable(Arc<Waitable>),
}

static OBJECTS: LazyLock<RwLock<HashMap<usize, Object>>> = LazyLock::new(Default::default);
static NEXT: AtomicUsize = AtomicUsize::new(FIRST_OBJECT);

/// Enters an object; its handle value.
pub fn insert(object: Object) -> usize {
    let h = NEXT.fetch_add(4, Ordering::Relaxed);
    OBJECTS.write().insert(h, object);
    h
}

/// The object a handle names, if it names one.
pub fn object(h: usize) -> Option<Object> {
    OBJECTS.read().get(&h).cloned()
}

/// The port a handle names, if it names one.
pub fn port(h: usize) -> Option<CompletionPort> {
    match OBJECTS.read().get(&h) {
        Some(Object::Port(p)) => Some(p.clone()),
        _ => None,
    }
}

/// Takes an object out of the table (its handle is closed).
pub fn remove(h: usize) -> Option<Object> {
    OBJECTS.write().remove(&h)
}

/// The descriptor a handle value stands for, if it can be one.
pub fn as_fd(h: usize) -> Option<RawFd> {
    RawFd::try_from(h).ok().filter(|fd| *fd >= 0)
}

/// An operation in flight on an associated descriptor: the OVERLAPPED it
/// was posted with, and what its completion must finish.
pub struct Tracked {
    /// The port's id of the operation.
    pub id: OpId,
    /// The address of the caller's OVERLAPPED (0 for the native API's
    /// operations without one).
    pub overlapped: usize,
    /// What its completion must finish, if anything.
    pub finish: Option<Finish>,
}

/// What the completion of an operation must finish before Win32 sees it.
#[derive(Clone, Copy, Debug)]
pub enum Finish {
    /// An AcceptEx: where the connection and its addresses go.
    Accept(AcceptTarget),
    /// A WSARecvFrom: where the sender's address goes (`lpFrom`, and
    /// `lpFromlen`, which holds its room).
    From {
        /// `lpFrom`.
        addr: usize,
        /// `lpFromlen`.
        len: usize,
    },
}

/// Where an AcceptEx puts what it accepted: the caller's accept socket
/// (which becomes the connection) and its output buffer.
#[derive(Clone, Copy, Debug)]
pub struct AcceptTarget {
    /// The descriptor the caller made for the connection.
    pub socket: RawFd,
    /// `lpOutputBuffer`.
    pub buffer: usize,
    /// `dwReceiveDataLength`.
    pub data_len: usize,
    /// `dwLocalAddressLength`.
    pub local_len: usize,
    /// `dwRemoteAddressLength`.
    pub remote_len: usize,
}

/// The per-handle context of an associated descriptor: its operations in
/// flight, so that `CancelIoEx` can find them by OVERLAPPED.
#[derive(Default)]
pub struct Tracker {
    /// Operations posted and not yet dequeued.
    pub ops: Mutex<Vec<Tracked>>,
}

impl Tracker {
    /// Forgets a dequeued operation; what it tracked.
    pub fn untrack(&self, id: OpId) -> Option<Tracked> {
        let mut ops = self.ops.lock();
        let i = ops.iter().position(|t| t.id == id)?;
        Some(ops.swap_remove(i))
    }
}

/// A descriptor associated with a port.
pub struct Associated {
    /// The port's handle (it owns the descriptor).
    pub handle: Handle,
    /// The port.
    pub port: CompletionPort,
}

impl Associated {
    /// The operations in flight on it.
    pub fn tracker(&self) -> &Tracker {
        self.handle
            .context::<Tracker>()
            .expect("associated with a Tracker")
    }
}

static FDS: LazyLock<RwLock<HashMap<RawFd, Associated>>> = LazyLock::new(Default::default);

/// Associates a descriptor with a port under `key`; the port owns it from
/// now on.
///
/// # Errors
/// As [`CompletionPort::associate`] (`AlreadyExists` leaves the descriptor
/// open for its owner).
pub fn associate(port: &CompletionPort, fd: OwnedFd, key: u64) -> std::io::Result<()> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let handle = port.associate_with(fd, key, Tracker::default())?;
    FDS.write().insert(
        raw,
        Associated {
            handle,
            port: port.clone(),
        },
    );
    Ok(())
}

/// Runs `f` on the association of `fd`; `None` if it has none.
pub fn with_fd<R>(fd: RawFd, f: impl FnOnce(&Associated) -> R) -> Option<R> {
    FDS.read().get(&fd).map(f)
}

/// Whether `fd` is associated with a port.
pub fn is_associated(fd: RawFd) -> bool {
    FDS.read().contains_key(&fd)
}

/// Takes the association of `fd` out of the table (`closesocket`): once it
/// is dropped, the descriptor's operations are cancelled and it closes
/// after the last of them.
pub fn dissociate(fd: RawFd) -> Option<Associated> {
    FDS.write().remove(&fd)
}

/// Accept sockets an AcceptEx in flight will become: `closesocket` on one
/// cancels the accept instead of closing a number the accept will reuse.
static ACCEPT_TARGETS: LazyLock<Mutex<HashMap<RawFd, PendingAccept>>> =
    LazyLock::new(Default::default);

/// An accept socket an AcceptEx in flight holds.
pub struct PendingAccept {
    /// The accept operation and the listener's port.
    pub id: OpId,
    /// The port it was posted on.
    pub port: CompletionPort,
    /// `closesocket` was called on it: its completion closes it instead.
    pub closed: bool,
}

/// Reserves `fd` as the target of an accept; `false` if another accept
/// holds it already.
pub fn reserve_accept_target(fd: RawFd, port: &CompletionPort) -> bool {
    let mut t = ACCEPT_TARGETS.lock();
    if t.contains_key(&fd) {
        return false;
    }
    t.insert(
        fd,
        PendingAccept {
            id: OpId::NONE,
            port: port.clone(),
            closed: false,
        },
    );
    true
}

/// Records the accept operation holding `fd`.
pub fn set_accept_target_op(fd: RawFd, id: OpId) {
    if let Some(p) = ACCEPT_TARGETS.lock().get_mut(&fd) {
        p.id = id;
    }
}

/// Releases `fd` as an accept target; whether `closesocket` was called on
/// it meanwhile.
pub fn release_accept_target(fd: RawFd) -> bool {
    ACCEPT_TARGETS.lock().remove(&fd).is_some_and(|p| p.closed)
}

/// `closesocket` on an accept target: cancels its accept and marks it for
/// closing by the accept's completion. `false` if `fd` is no accept target.
pub fn close_accept_target(fd: RawFd) -> bool {
    let mut t = ACCEPT_TARGETS.lock();
    match t.get_mut(&fd) {
        Some(p) if p.port.is_shut_down() => {
            // No completion will come to close it: the caller closes it.
            t.remove(&fd);
            false
        }
        Some(p) => {
            p.closed = true;
            let _ = p.port.cancel(p.id);
            true
        }
        None => false,
    }
}
