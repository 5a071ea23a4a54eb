//! The C boundary: every `extern "C"` function, every read or write through
//! a caller's pointer, every raw system call. All of the crate's unsafe code
//! is in this module; the logic it calls (`registry`, `io`, `dequeue`,
//! `sync`) is safe Rust.
//!
//! Rules every function here follows:
//! * its body runs inside `guard`, so a Rust panic becomes a failure
//!   return with `ERROR_INTERNAL_ERROR`, never an unwind into C;
//! * a NULL pointer, an unknown handle or a closed socket is a failure
//!   return (`FALSE`, `SOCKET_ERROR`, `NULL`) with the Win32 code set,
//!   never a dereference;
//! * memory a caller hands to an operation (a `WSABUF`'s bytes, an
//!   `OVERLAPPED`, an AcceptEx output buffer) is used under Win32's
//!   contract: it stays valid until the operation's completion has been
//!   dequeued.

#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)] // The contract of each is Win32's, documented in PORTING.md.

pub mod file;
pub mod native;
pub mod port;
pub mod socket;
pub mod thread;

use std::ffi::c_void;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::lock_api::RawReentrantMutex;
use parking_lot::{RawMutex, RawThreadId};
use ringport::RawBuf;

use crate::error::{self, code};

/// Win32 `BOOL`.
pub type BOOL = i32;
/// Win32 `DWORD` (32 bits, as on Windows).
pub type DWORD = u32;
/// `TRUE`.
pub const TRUE: BOOL = 1;
/// `FALSE`.
pub const FALSE: BOOL = 0;
/// `SOCKET_ERROR`.
pub const SOCKET_ERROR: i32 = -1;
/// `INVALID_SOCKET`.
pub const INVALID_SOCKET: usize = usize::MAX;
/// `INFINITE`.
pub const INFINITE: DWORD = 0xFFFF_FFFF;

/// Win32 `OVERLAPPED`, Win64 layout (32 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct OVERLAPPED {
    /// The NTSTATUS of the operation (`STATUS_PENDING` while in flight).
    pub Internal: usize,
    /// Bytes transferred.
    pub InternalHigh: usize,
    /// File offset, low half.
    pub Offset: u32,
    /// File offset, high half.
    pub OffsetHigh: u32,
    /// An event (unused by completion ports).
    pub hEvent: usize,
}

/// Winsock `WSABUF`.
#[repr(C)]
#[derive(Debug)]
pub struct WSABUF {
    /// Bytes at `buf`.
    pub len: u32,
    /// The memory.
    pub buf: *mut u8,
}

/// Win32 `OVERLAPPED_ENTRY` (`GetQueuedCompletionStatusEx`).
#[repr(C)]
#[derive(Debug)]
pub struct OVERLAPPED_ENTRY {
    /// The completion key.
    pub lpCompletionKey: usize,
    /// The OVERLAPPED (or a packet's value).
    pub lpOverlapped: *mut OVERLAPPED,
    /// The NTSTATUS of the operation.
    pub Internal: usize,
    /// Bytes transferred.
    pub dwNumberOfBytesTransferred: DWORD,
}

/// Win32 `GUID`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GUID {
    /// First 32 bits.
    pub Data1: u32,
    /// Next 16.
    pub Data2: u16,
    /// Next 16.
    pub Data3: u16,
    /// The last 64.
    pub Data4: [u8; 8],
}

/// Runs an FFI body; a panic becomes `fail` with `ERROR_INTERNAL_ERROR`.
pub(crate) fn guard<T>(fail: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        error::set(code::ERROR_INTERNAL_ERROR);
        fail
    })
}

/// Sets the last error and returns `ret`.
pub(crate) fn fail<T>(err: u32, ret: T) -> T {
    error::set(err);
    ret
}

/// The calling thread's `errno`.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Whether `fd` is an open descriptor.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Takes ownership of an open descriptor the caller hands over.
pub(crate) fn own_fd(fd: RawFd) -> Option<OwnedFd> {
    if !fd_is_open(fd) {
        return None;
    }
    // SAFETY: the descriptor is open, and the caller gives it to the port
    // (CreateIoCompletionPort's association); it is closed only through
    // this owner from now on.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `close(2)`; the errno on failure.
pub(crate) fn close_fd(fd: RawFd) -> Result<(), i32> {
    // SAFETY: closing a number owns no Rust memory; a descriptor the port
    // owns is never passed here (associated ones go through the registry).
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Makes `target` refer to `conn`'s socket (`dup2`), closing `conn`.
pub(crate) fn become_connection(conn: OwnedFd, target: RawFd) -> Result<(), i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: `target` is an accept socket reserved for this accept (no
    // other accept can take it, and closesocket on it was deferred), so
    // replacing it closes nothing anyone else owns.
    let r = unsafe { libc::dup2(conn.as_raw_fd(), target) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A caller's buffer as an operation's buffer: `len` bytes filled, `cap`
/// in all.
///
/// # Safety
/// `ptr..ptr+cap` stays valid and untouched by the caller until the
/// operation's completion is dequeued (Win32's overlapped contract).
pub(crate) unsafe fn raw_buf(ptr: *mut u8, len: usize, cap: usize) -> RawBuf {
    // SAFETY: passed on from the caller.
    unsafe { RawBuf::new(ptr, len, cap) }
}

/// Writes the fields of an OVERLAPPED that Windows keeps up to date.
///
/// # Safety
/// `ov` is NULL or points at a live OVERLAPPED.
pub(crate) unsafe fn set_status(ov: *mut OVERLAPPED, status: u32, bytes: usize) {
    // SAFETY: per the caller; `as_mut` checks for NULL.
    if let Some(ov) = unsafe { ov.as_mut() } {
        ov.Internal = status as usize;
        ov.InternalHigh = bytes;
    }
}

/// Reads a `sockaddr` of `len` bytes into an IP address.
///
/// # Safety
/// `sa` is NULL or points at `len` readable bytes.
pub(crate) unsafe fn read_sockaddr(sa: *const libc::sockaddr, len: i32) -> Option<SocketAddr> {
    if sa.is_null() || len < 2 {
        return None;
    }
    let mut storage: libc::sockaddr_storage =
        // SAFETY: all-zero is a valid sockaddr_storage.
        unsafe { std::mem::zeroed() };
    let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `n` bytes of `sa` are readable (caller), and fit in storage.
    unsafe {
        std::ptr::copy_nonoverlapping(sa.cast::<u8>(), (&raw mut storage).cast::<u8>(), n);
    }
    // SAFETY: storage is initialised and `n` bytes long at most its size.
    let addr = unsafe { socket2::SockAddr::new(storage_of(storage), n as libc::socklen_t) };
    addr.as_socket()
}

fn storage_of(s: libc::sockaddr_storage) -> socket2::SockAddrStorage {
    let mut out = socket2::SockAddrStorage::zeroed();
    // SAFETY: both are the platform's sockaddr_storage, the same size.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&raw const s).cast::<u8>(),
            (&raw mut out).cast::<u8>(),
            std::mem::size_of::<libc::sockaddr_storage>()
                .min(std::mem::size_of::<socket2::SockAddrStorage>()),
        );
    }
    out
}

/// Writes an address as a `sockaddr` into `slot` bytes at `dst` (the rest
/// zeroed); its length, or 0 if it does not fit.
///
/// # Safety
/// `dst..dst+slot` is writable.
pub(crate) unsafe fn write_sockaddr(addr: SocketAddr, dst: *mut u8, slot: usize) -> usize {
    let sa = socket2::SockAddr::from(addr);
    let len = sa.len() as usize;
    if len > slot {
        return 0;
    }
    // SAFETY: `slot` bytes at `dst` are writable (caller); `len <= slot`.
    unsafe {
        std::ptr::write_bytes(dst, 0, slot);
        std::ptr::copy_nonoverlapping(sa.as_ptr().cast::<u8>(), dst, len);
    }
    len
}

/// Unlocks a reentrant mutex the calling thread holds.
pub(crate) fn unlock_reentrant(m: &RawReentrantMutex<RawMutex, RawThreadId>) {
    debug_assert!(m.is_owned_by_current_thread());
    // SAFETY: the caller checked that this thread holds it.
    unsafe { m.unlock() }
}

/// A pointer a new thread receives.
pub(crate) struct SendPtr(pub *mut c_void);
// SAFETY: the pointer is the C caller's, handed to the thread it creates
// (CreateThread's lpParameter); what it points at is the caller's to share.
unsafe impl Send for SendPtr {}
