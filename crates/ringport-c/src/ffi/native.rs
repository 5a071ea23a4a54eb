//! The native C API (`include/ringport.h`): the port without Win32's
//! types. Functions return 0 (or a count) on success and `-errno` on
//! failure; completions carry `-errno` in `result`.

use std::ffi::{c_char, c_int, c_void};
use std::os::fd::IntoRawFd;

use ringport::{op, CompletionPort, GetError, OpKind};

use super::{guard, raw_buf, read_sockaddr};
use crate::dequeue::{self, Dequeued};
use crate::io::{self, PostError};
use crate::registry::{self, Object};

/// What `ringport_get` fills in (`ringport_completion` in C).
#[repr(C)]
#[derive(Debug)]
pub struct ringport_completion {
    /// The completion key of the descriptor (a packet's key).
    pub key: u64,
    /// The per-I/O value given when the operation was posted.
    pub user: *mut c_void,
    /// Bytes transferred (a packet: its value; an accept: the new
    /// descriptor), or `-errno` (`-ECANCELED` for a cancelled operation).
    pub result: i64,
    /// Which operation (`RINGPORT_OP_*`).
    pub op: u32,
}

fn op_code(kind: OpKind) -> u32 {
    match kind {
        OpKind::Packet => 0,
        OpKind::Recv => 1,
        OpKind::Send | OpKind::SendAll => 2,
        OpKind::Accept => 3,
        OpKind::Connect => 4,
        OpKind::ReadAt => 5,
        OpKind::WriteAt => 6,
        _ => 99,
    }
}

fn completion(d: Dequeued) -> ringport_completion {
    let result = match (d.result, d.accepted) {
        (Ok(_), Some(acc)) => i64::from(acc.socket.into_raw_fd()),
        (Ok(n), None) => n as i64,
        (Err(e), _) => -i64::from(e),
    };
    ringport_completion {
        key: d.key as u64,
        user: d.overlapped as *mut c_void,
        result,
        op: op_code(d.kind),
    }
}

fn port_of(port: *mut c_void) -> Result<CompletionPort, c_int> {
    registry::port(port as usize).ok_or(-libc::EBADF)
}

fn errno_of_post(e: PostError) -> c_int {
    match e {
        PostError::NotAssociated => -libc::EBADF,
        PostError::Refused(_) => -libc::EINVAL,
    }
}

/// Creates a port (`concurrency` 0: one per CPU); NULL on failure.
///
/// ```c
/// ringport_port *port = ringport_port_new(0);
/// ```
#[no_mangle]
pub extern "C" fn ringport_port_new(concurrency: u32) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        match CompletionPort::new(concurrency as usize) {
            Ok(p) => registry::insert(Object::Port(p)) as *mut c_void,
            Err(_) => std::ptr::null_mut(),
        }
    })
}

/// Shuts a port down and frees it.
///
/// ```c
/// ringport_port_free(port);
/// ```
#[no_mangle]
pub extern "C" fn ringport_port_free(port: *mut c_void) -> c_int {
    guard(-libc::EINVAL, || match registry::port(port as usize) {
        Some(p) => {
            registry::remove(port as usize);
            p.shutdown();
            0
        }
        None => -libc::EBADF,
    })
}

/// The backend the port runs on: `"io_uring"` or `"epoll"` (NULL for an
/// unknown port).
///
/// ```c
/// printf("backend: %s\n", ringport_port_backend(port));
/// ```
#[no_mangle]
pub extern "C" fn ringport_port_backend(port: *mut c_void) -> *const c_char {
    guard(std::ptr::null(), || match registry::port(port as usize) {
        Some(p) => match p.backend() {
            ringport::BackendKind::IoUring => c"io_uring".as_ptr(),
            _ => c"epoll".as_ptr(),
        },
        None => std::ptr::null(),
    })
}

/// The port's concurrency value (0 for an unknown port).
///
/// ```c
/// unsigned n = ringport_port_concurrency(port);
/// ```
#[no_mangle]
pub extern "C" fn ringport_port_concurrency(port: *mut c_void) -> u32 {
    guard(0, || {
        registry::port(port as usize).map_or(0, |p| p.concurrency() as u32)
    })
}

/// Threads waiting on the port now (in `ringport_get` or
/// `GetQueuedCompletionStatus`).
///
/// ```c
/// while (ringport_port_waiting(port) < 2) sched_yield();
/// ```
#[no_mangle]
pub extern "C" fn ringport_port_waiting(port: *mut c_void) -> u32 {
    guard(0, || {
        registry::port(port as usize).map_or(0, |p| p.waiting_threads() as u32)
    })
}

/// Associates a descriptor with the port under `key`; the port owns it
/// from now on (close it with `ringport_close`).
///
/// ```c
/// ringport_associate(port, fd, (uint64_t)conn);
/// ```
#[no_mangle]
pub extern "C" fn ringport_associate(port: *mut c_void, fd: c_int, key: u64) -> c_int {
    guard(-libc::EINVAL, || {
        let port = match port_of(port) {
            Ok(p) => p,
            Err(e) => return e,
        };
        if registry::is_associated(fd) {
            return -libc::EEXIST;
        }
        let Some(owned) = super::own_fd(fd) else {
            return -libc::EBADF;
        };
        match registry::associate(&port, owned, key) {
            Ok(()) => 0,
            Err(e) => -crate::error::errno_of(&e),
        }
    })
}

/// Posts a packet.
///
/// ```c
/// ringport_post(port, 0, NULL, 0); /* wake a worker */
/// ```
#[no_mangle]
pub extern "C" fn ringport_post(
    port: *mut c_void,
    key: u64,
    user: *mut c_void,
    value: usize,
) -> c_int {
    guard(-libc::EINVAL, || {
        let port = match port_of(port) {
            Ok(p) => p,
            Err(e) => return e,
        };
        match port.post(op::Packet::new(value).key(key).user(user as u64)) {
            Ok(()) => 0,
            Err(_) => -libc::EBADF,
        }
    })
}

fn timeout(ms: c_int) -> Option<std::time::Duration> {
    (ms >= 0).then(|| std::time::Duration::from_millis(ms as u64))
}

fn get_errno(e: &GetError) -> c_int {
    match e {
        GetError::TimedOut => -libc::ETIMEDOUT,
        GetError::Closed => -libc::EBADF,
        GetError::Io(e) => -crate::error::errno_of(e),
    }
}

/// Dequeues one completion, waiting at most `timeout_ms` (negative:
/// forever): 0, `-ETIMEDOUT`, or `-EBADF` once the port is closed.
///
/// ```c
/// ringport_completion c;
/// if (ringport_get(port, &c, -1) == 0 && c.result < 0) handle_error(-c.result);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_get(
    port: *mut c_void,
    out: *mut ringport_completion,
    timeout_ms: c_int,
) -> c_int {
    guard(-libc::EINVAL, || {
        if out.is_null() {
            return -libc::EINVAL;
        }
        let h = port as usize;
        let port = match port_of(port) {
            Ok(p) => p,
            Err(e) => return e,
        };
        crate::sync::set_current_port(h, &port);
        match dequeue::one(&port, timeout(timeout_ms)) {
            Ok(d) => {
                // SAFETY: checked non-NULL; the caller's struct.
                unsafe { out.write(completion(d)) };
                0
            }
            Err(e) => get_errno(&e),
        }
    })
}

/// Dequeues up to `max` completions; how many, or `-errno` as
/// `ringport_get`.
///
/// ```c
/// ringport_completion cs[64];
/// int n = ringport_get_many(port, cs, 64, -1);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_get_many(
    port: *mut c_void,
    out: *mut ringport_completion,
    max: usize,
    timeout_ms: c_int,
) -> c_int {
    guard(-libc::EINVAL, || {
        if out.is_null() || max == 0 {
            return -libc::EINVAL;
        }
        let h = port as usize;
        let port = match port_of(port) {
            Ok(p) => p,
            Err(e) => return e,
        };
        crate::sync::set_current_port(h, &port);
        let mut got = Vec::new();
        if let Err(e) = dequeue::many(
            &port,
            max.min(i32::MAX as usize),
            timeout(timeout_ms),
            &mut got,
        ) {
            return get_errno(&e);
        }
        let n = got.len();
        for (i, d) in got.into_iter().enumerate() {
            // SAFETY: the caller's array of `max` entries; `i < n <= max`.
            unsafe { out.add(i).write(completion(d)) };
        }
        n as c_int
    })
}

fn posted(r: Result<ringport::OpId, PostError>) -> c_int {
    match r {
        Ok(_) => 0,
        Err(e) => errno_of_post(e),
    }
}

/// Posts a receive of up to `len` bytes into `buf` (valid until its
/// completion is dequeued); the completion's result is the bytes received,
/// 0 when the peer closed.
///
/// ```c
/// ringport_recv(fd, conn->buf, sizeof conn->buf, conn);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_recv(
    fd: c_int,
    buf: *mut c_void,
    len: usize,
    user: *mut c_void,
) -> c_int {
    guard(-libc::EINVAL, || {
        if buf.is_null() || len == 0 {
            return -libc::EINVAL;
        }
        // SAFETY: the caller keeps `len` bytes at `buf` valid until the
        // completion is dequeued (this API's contract).
        let b = unsafe { raw_buf(buf.cast(), 0, len) };
        let u = user as usize;
        posted(io::submit(fd, u, None, |h| {
            op::Recv::new(h, b).user(u as u64)
        }))
    })
}

/// Posts a send of all `len` bytes at `buf` (valid and unchanged until its
/// completion is dequeued).
///
/// ```c
/// ringport_send(fd, conn->buf, n, conn);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_send(
    fd: c_int,
    buf: *const c_void,
    len: usize,
    user: *mut c_void,
) -> c_int {
    guard(-libc::EINVAL, || {
        if buf.is_null() && len > 0 {
            return -libc::EINVAL;
        }
        // SAFETY: as ringport_recv, read-only.
        let b = unsafe { raw_buf(buf.cast_mut().cast(), len, len) };
        let u = user as usize;
        posted(io::submit(fd, u, None, |h| {
            op::SendAll::new(h, b).user(u as u64)
        }))
    })
}

/// Posts an accept on a listening descriptor; the completion's result is
/// the new connection's descriptor (not yet associated).
///
/// ```c
/// ringport_accept(listen_fd, NULL);
/// ```
#[no_mangle]
pub extern "C" fn ringport_accept(fd: c_int, user: *mut c_void) -> c_int {
    guard(-libc::EINVAL, || {
        let u = user as usize;
        posted(io::submit(fd, u, None, |h| {
            op::Accept::new(h).user(u as u64)
        }))
    })
}

/// Posts a connect of an associated socket.
///
/// ```c
/// ringport_connect(fd, (struct sockaddr *)&sin, sizeof sin, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_connect(
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    user: *mut c_void,
) -> c_int {
    guard(-libc::EINVAL, || {
        // SAFETY: NULL or `len` readable bytes.
        let Some(a) = (unsafe { read_sockaddr(addr, len as i32) }) else {
            return -libc::EINVAL;
        };
        let u = user as usize;
        posted(io::submit(fd, u, None, |h| {
            op::Connect::new(h, a).user(u as u64)
        }))
    })
}

/// Posts a read of up to `len` bytes at `offset` of an associated file.
///
/// ```c
/// ringport_read_at(fd, buf, 4096, 0, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_read_at(
    fd: c_int,
    buf: *mut c_void,
    len: usize,
    offset: u64,
    user: *mut c_void,
) -> c_int {
    guard(-libc::EINVAL, || {
        if buf.is_null() || len == 0 {
            return -libc::EINVAL;
        }
        // SAFETY: as ringport_recv.
        let b = unsafe { raw_buf(buf.cast(), 0, len) };
        let u = user as usize;
        posted(io::submit(fd, u, None, |h| {
            op::ReadAt::new(h, b).at(offset).user(u as u64)
        }))
    })
}

/// Posts a write of `len` bytes at `offset` of an associated file.
///
/// ```c
/// ringport_write_at(fd, data, n, 0, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ringport_write_at(
    fd: c_int,
    buf: *const c_void,
    len: usize,
    offset: u64,
    user: *mut c_void,
) -> c_int {
    guard(-libc::EINVAL, || {
        if buf.is_null() && len > 0 {
            return -libc::EINVAL;
        }
        // SAFETY: as ringport_send.
        let b = unsafe { raw_buf(buf.cast_mut().cast(), len, len) };
        let u = user as usize;
        posted(io::submit(fd, u, None, |h| {
            op::WriteAt::new(h, b).at(offset).user(u as u64)
        }))
    })
}

/// Cancels the operations on `fd` posted with `user` (all of them if
/// NULL); each completes with `-ECANCELED`. `-ENOENT` if none matched.
///
/// ```c
/// ringport_cancel(fd, NULL);
/// ```
#[no_mangle]
pub extern "C" fn ringport_cancel(fd: c_int, user: *mut c_void) -> c_int {
    guard(-libc::EINVAL, || {
        match io::cancel(fd, (!user.is_null()).then_some(user as usize)) {
            Ok(()) => 0,
            Err(crate::error::code::ERROR_NOT_FOUND) => -libc::ENOENT,
            Err(_) => -libc::EBADF,
        }
    })
}

/// Closes a descriptor: an associated one after its operations completed
/// (as cancelled).
///
/// ```c
/// ringport_close(fd);
/// ```
#[no_mangle]
pub extern "C" fn ringport_close(fd: c_int) -> c_int {
    guard(-libc::EINVAL, || match io::close(fd) {
        io::Closing::Plain => match super::close_fd(fd) {
            Ok(()) => 0,
            Err(e) => -e,
        },
        _ => 0,
    })
}
