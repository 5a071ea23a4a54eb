//! Files and pipes: `CreateFileA`, `ReadFile`/`WriteFile` (at
//! `OVERLAPPED.Offset` on files),
//! and `CancelIo`/`CancelIoEx` (for sockets too).

use std::ffi::{c_char, c_void};
use std::os::fd::RawFd;

use ringport::op;

use super::{
    errno, fail, fd_is_open, guard, raw_buf, set_status, BOOL, DWORD, FALSE, OVERLAPPED, TRUE,
};
use crate::error::{self, code};
use crate::io::{self, PostError};
use crate::registry;

const GENERIC_READ: DWORD = 0x8000_0000;
const GENERIC_WRITE: DWORD = 0x4000_0000;
const CREATE_NEW: DWORD = 1;
const CREATE_ALWAYS: DWORD = 2;
const OPEN_EXISTING: DWORD = 3;
const OPEN_ALWAYS: DWORD = 4;
const TRUNCATE_EXISTING: DWORD = 5;

/// `CreateFileA` for regular files: access (`GENERIC_READ`,
/// `GENERIC_WRITE`) and disposition (`CREATE_NEW`, `CREATE_ALWAYS`,
/// `OPEN_EXISTING`, `OPEN_ALWAYS`, `TRUNCATE_EXISTING`) as on Windows;
/// sharing, security and flags (`FILE_FLAG_OVERLAPPED`) are not needed.
/// The handle holds the descriptor; `INVALID_HANDLE_VALUE` on failure.
///
/// ```c
/// HANDLE f = CreateFileA("log.bin", GENERIC_WRITE, 0, NULL, CREATE_ALWAYS,
///                        FILE_FLAG_OVERLAPPED, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn CreateFileA(
    lpFileName: *const c_char,
    dwDesiredAccess: DWORD,
    _dwShareMode: DWORD,
    _lpSecurityAttributes: *mut c_void,
    dwCreationDisposition: DWORD,
    _dwFlagsAndAttributes: DWORD,
    _hTemplateFile: *mut c_void,
) -> *mut c_void {
    let invalid = usize::MAX as *mut c_void;
    guard(invalid, || {
        if lpFileName.is_null() {
            return fail(code::ERROR_INVALID_PARAMETER, invalid);
        }
        let access = match (
            dwDesiredAccess & GENERIC_READ != 0,
            dwDesiredAccess & GENERIC_WRITE != 0,
        ) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            _ => libc::O_RDONLY,
        };
        let create = match dwCreationDisposition {
            CREATE_NEW => libc::O_CREAT | libc::O_EXCL,
            CREATE_ALWAYS => libc::O_CREAT | libc::O_TRUNC,
            OPEN_EXISTING => 0,
            OPEN_ALWAYS => libc::O_CREAT,
            TRUNCATE_EXISTING => libc::O_TRUNC,
            _ => return fail(code::ERROR_INVALID_PARAMETER, invalid),
        };
        // SAFETY: a NUL-terminated path (CreateFileA's contract).
        let fd = unsafe { libc::open(lpFileName, access | create | libc::O_CLOEXEC, 0o644) };
        if fd < 0 {
            return fail(error::win32_from_errno(errno()), invalid);
        }
        fd as usize as *mut c_void
    })
}

/// The descriptor of a file handle, or the error.
fn file_fd(h: *mut c_void) -> Result<RawFd, u32> {
    registry::as_fd(h as usize)
        .filter(|fd| fd_is_open(*fd))
        .ok_or(code::ERROR_INVALID_HANDLE)
}

/// The Win32 code for a file operation the port would not take.
fn post_error(e: PostError) -> u32 {
    match e {
        PostError::NotAssociated => code::ERROR_INVALID_PARAMETER,
        PostError::Refused(c) => c,
    }
}

/// Whether reads and writes on `fd` go to an offset (a regular file or a
/// block device); pipes, sockets and terminals ignore `Offset`, as on
/// Windows.
fn has_offsets(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the zeroed stat buffer only.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0
            && matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFBLK)
    }
}

/// The offset an OVERLAPPED names.
fn offset_of(ov: &OVERLAPPED) -> u64 {
    u64::from(ov.OffsetHigh) << 32 | u64::from(ov.Offset)
}

/// `ReadFile`: with an OVERLAPPED (the file associated with a port), posts
/// a read of `nNumberOfBytesToRead` bytes at `Offset`/`OffsetHigh` (a pipe
/// or socket: where it is, the offset ignored) and returns FALSE with
/// `ERROR_IO_PENDING`; its completion fails with `ERROR_HANDLE_EOF` at the
/// end of a file, `ERROR_BROKEN_PIPE` once a pipe's writer closed. Without
/// one, reads now.
///
/// ```c
/// OVERLAPPED ov = {0}; ov.Offset = 4096;
/// ReadFile(f, buf, sizeof buf, NULL, &ov); /* FALSE, ERROR_IO_PENDING */
/// ```
#[no_mangle]
pub unsafe extern "C" fn ReadFile(
    hFile: *mut c_void,
    lpBuffer: *mut c_void,
    nNumberOfBytesToRead: DWORD,
    lpNumberOfBytesRead: *mut DWORD,
    lpOverlapped: *mut OVERLAPPED,
) -> BOOL {
    guard(FALSE, || {
        let fd = match file_fd(hFile) {
            Ok(fd) => fd,
            Err(e) => return fail(e, FALSE),
        };
        if lpBuffer.is_null() || nNumberOfBytesToRead == 0 {
            return fail(code::ERROR_INVALID_PARAMETER, FALSE);
        }
        // SAFETY: NULL or the caller's OVERLAPPED.
        let Some(ov) = (unsafe { lpOverlapped.as_mut() }) else {
            let n = crate::sync::blocking(|| {
                // SAFETY: the caller's buffer of that many writable bytes.
                unsafe { libc::read(fd, lpBuffer, nNumberOfBytesToRead as usize) }
            });
            if n < 0 {
                return fail(error::win32_from_errno(errno()), FALSE);
            }
            // SAFETY: NULL or the caller's out-parameter.
            if let Some(out) = unsafe { lpNumberOfBytesRead.as_mut() } {
                *out = n as DWORD;
            }
            return TRUE;
        };
        let at = offset_of(ov);
        // SAFETY: overlapped contract: the buffer stays valid until the
        // completion is dequeued.
        let buf = unsafe { raw_buf(lpBuffer.cast(), 0, nNumberOfBytesToRead as usize) };
        // SAFETY: the caller's OVERLAPPED, non-NULL.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let key = lpOverlapped as usize;
        let posted = if has_offsets(fd) {
            io::submit(fd, key, None, |h| {
                op::ReadAt::new(h, buf).at(at).user(key as u64)
            })
        } else {
            io::submit(fd, key, None, |h| op::Read::new(h, buf).user(key as u64))
        };
        match posted {
            Ok(_) => fail(code::ERROR_IO_PENDING, FALSE),
            Err(e) => fail(post_error(e), FALSE),
        }
    })
}

/// `WriteFile`: with an OVERLAPPED (the file associated with a port), posts
/// a write at `Offset`/`OffsetHigh` (a pipe or socket: the offset ignored)
/// and returns FALSE with `ERROR_IO_PENDING`. Without one, writes now.
///
/// ```c
/// OVERLAPPED ov = {0}; ov.Offset = 0;
/// WriteFile(f, data, len, NULL, &ov); /* FALSE, ERROR_IO_PENDING */
/// ```
#[no_mangle]
pub unsafe extern "C" fn WriteFile(
    hFile: *mut c_void,
    lpBuffer: *const c_void,
    nNumberOfBytesToWrite: DWORD,
    lpNumberOfBytesWritten: *mut DWORD,
    lpOverlapped: *mut OVERLAPPED,
) -> BOOL {
    guard(FALSE, || {
        let fd = match file_fd(hFile) {
            Ok(fd) => fd,
            Err(e) => return fail(e, FALSE),
        };
        if lpBuffer.is_null() && nNumberOfBytesToWrite > 0 {
            return fail(code::ERROR_INVALID_PARAMETER, FALSE);
        }
        let len = nNumberOfBytesToWrite as usize;
        // SAFETY: NULL or the caller's OVERLAPPED.
        let Some(ov) = (unsafe { lpOverlapped.as_mut() }) else {
            let n = crate::sync::blocking(|| {
                // SAFETY: the caller's buffer of that many readable bytes.
                unsafe { libc::write(fd, lpBuffer, len) }
            });
            if n < 0 {
                return fail(error::win32_from_errno(errno()), FALSE);
            }
            // SAFETY: NULL or the caller's out-parameter.
            if let Some(out) = unsafe { lpNumberOfBytesWritten.as_mut() } {
                *out = n as DWORD;
            }
            return TRUE;
        };
        let at = offset_of(ov);
        // SAFETY: overlapped contract: the bytes stay valid and unchanged
        // until the completion is dequeued.
        let buf = unsafe { raw_buf(lpBuffer.cast_mut().cast(), len, len) };
        // SAFETY: the caller's OVERLAPPED, non-NULL.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let key = lpOverlapped as usize;
        let posted = if has_offsets(fd) {
            io::submit(fd, key, None, |h| {
                op::WriteAt::new(h, buf).at(at).user(key as u64)
            })
        } else {
            io::submit(fd, key, None, |h| op::Write::new(h, buf).user(key as u64))
        };
        match posted {
            Ok(_) => fail(code::ERROR_IO_PENDING, FALSE),
            Err(e) => fail(post_error(e), FALSE),
        }
    })
}

/// `CancelIoEx`: cancels the operation posted with `lpOverlapped` on
/// `hFile` (every one if NULL); each still completes, with
/// `ERROR_OPERATION_ABORTED`. FALSE with `ERROR_NOT_FOUND` if none is in
/// flight with that OVERLAPPED.
///
/// ```c
/// CancelIoEx((HANDLE)s, &io->ov);
/// ```
#[no_mangle]
pub extern "C" fn CancelIoEx(hFile: *mut c_void, lpOverlapped: *mut OVERLAPPED) -> BOOL {
    guard(FALSE, || {
        let Some(fd) = registry::as_fd(hFile as usize) else {
            return fail(code::ERROR_INVALID_HANDLE, FALSE);
        };
        let which = (!lpOverlapped.is_null()).then_some(lpOverlapped as usize);
        match io::cancel(fd, which) {
            Ok(()) => TRUE,
            Err(e) if e == code::ERROR_INVALID_HANDLE && fd_is_open(fd) => {
                // Open but not associated: nothing of ours is in flight.
                if which.is_some() {
                    fail(code::ERROR_NOT_FOUND, FALSE)
                } else {
                    TRUE
                }
            }
            Err(e) => fail(e, FALSE),
        }
    })
}

/// `CancelIo`: cancels every operation in flight on `hFile` (Windows
/// cancels only the calling thread's; here all of them).
///
/// ```c
/// CancelIo((HANDLE)s);
/// ```
#[no_mangle]
pub extern "C" fn CancelIo(hFile: *mut c_void) -> BOOL {
    CancelIoEx(hFile, std::ptr::null_mut())
}
