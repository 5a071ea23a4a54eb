//! `CreateIoCompletionPort`, `GetQueuedCompletionStatus(Ex)`,
//! `PostQueuedCompletionStatus` and `CloseHandle`.

use std::ffi::c_void;
use std::time::Duration;

use ringport::op::Packet;
use ringport::{CompletionPort, GetError, OpKind};

use super::{
    become_connection, close_fd, fail, guard, set_status, write_sockaddr, BOOL, DWORD, FALSE,
    INFINITE, OVERLAPPED, OVERLAPPED_ENTRY, TRUE,
};
use crate::dequeue::{self, Dequeued};
use crate::error::{self, code};
use crate::registry::{self, Finish, Object};
use crate::{io, sync};

/// `CreateIoCompletionPort`: with `FileHandle == INVALID_HANDLE_VALUE`,
/// creates a port that lets `NumberOfConcurrentThreads` threads run at once
/// (0: one per CPU), on io_uring where it can be set up, else on epoll
/// (`RINGPORT_BACKEND=uring|epoll` forces one); otherwise associates the
/// socket or file with `ExistingCompletionPort` (a new port if NULL) under
/// `CompletionKey`, and returns the port. NULL on failure.
///
/// ```c
/// HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 2);
/// CreateIoCompletionPort((HANDLE)sock, port, (ULONG_PTR)ctx, 0);
/// ```
#[no_mangle]
pub extern "C" fn CreateIoCompletionPort(
    FileHandle: *mut c_void,
    ExistingCompletionPort: *mut c_void,
    CompletionKey: usize,
    NumberOfConcurrentThreads: DWORD,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let file = FileHandle as usize;
        let existing = ExistingCompletionPort as usize;
        if file == registry::INVALID_HANDLE {
            if existing != 0 {
                return fail(code::ERROR_INVALID_PARAMETER, std::ptr::null_mut());
            }
            return match CompletionPort::new(NumberOfConcurrentThreads as usize) {
                Ok(port) => registry::insert(Object::Port(port)) as *mut c_void,
                Err(e) => fail(
                    error::win32_from_errno(error::errno_of(&e)),
                    std::ptr::null_mut(),
                ),
            };
        }
        let Some(fd) = registry::as_fd(file) else {
            return fail(code::ERROR_INVALID_HANDLE, std::ptr::null_mut());
        };
        let (port_handle, port) = if existing == 0 {
            match CompletionPort::new(NumberOfConcurrentThreads as usize) {
                Ok(port) => (registry::insert(Object::Port(port.clone())), port),
                Err(e) => {
                    return fail(
                        error::win32_from_errno(error::errno_of(&e)),
                        std::ptr::null_mut(),
                    )
                }
            }
        } else {
            match registry::port(existing) {
                Some(p) => (existing, p),
                None => return fail(code::ERROR_INVALID_HANDLE, std::ptr::null_mut()),
            }
        };
        if port.is_shut_down() {
            return fail(code::ERROR_INVALID_HANDLE, std::ptr::null_mut());
        }
        if registry::is_associated(fd) {
            // A handle belongs to one port, once.
            return fail(code::ERROR_INVALID_PARAMETER, std::ptr::null_mut());
        }
        let Some(owned) = super::own_fd(fd) else {
            return fail(code::ERROR_INVALID_HANDLE, std::ptr::null_mut());
        };
        match registry::associate(&port, owned, CompletionKey as u64) {
            Ok(()) => port_handle as *mut c_void,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                fail(code::ERROR_INVALID_PARAMETER, std::ptr::null_mut())
            }
            Err(e) => fail(
                error::win32_from_errno(error::errno_of(&e)),
                std::ptr::null_mut(),
            ),
        }
    })
}

/// A Win32 wait in milliseconds as a timeout.
pub(crate) fn timeout_of(ms: DWORD) -> Option<Duration> {
    (ms != INFINITE).then(|| Duration::from_millis(ms.into()))
}

/// What Win32 reports for one completion.
pub(crate) struct Reported {
    pub ok: bool,
    pub bytes: DWORD,
    pub key: usize,
    pub overlapped: *mut OVERLAPPED,
    /// The Win32 error of a failed operation.
    pub error: u32,
    /// The NTSTATUS for `OVERLAPPED.Internal`.
    pub status: u32,
}

/// Results that are not Linux errors: a read at the end of a file, a read
/// of a pipe whose writer closed.
const END_OF_FILE: i32 = -1;
const BROKEN_PIPE: i32 = -2;

/// Finishes a dequeued completion the way Windows reports it: an AcceptEx's
/// accept socket becomes the connection and the addresses go into its
/// output buffer; the OVERLAPPED's Internal fields are written.
pub(crate) fn report(d: Dequeued) -> Reported {
    let overlapped = d.overlapped as *mut OVERLAPPED;
    let mut result = d.result;
    if let Some(Finish::From { addr, len }) = d.finish {
        // SAFETY: WSARecvFrom's contract: lpFrom and lpFromlen stay valid
        // until the completion is dequeued (now); *lpFromlen is the room.
        unsafe { write_from(d.from, addr, len) };
    }
    if let Some(Finish::Accept(t)) = d.finish {
        let closed = registry::release_accept_target(t.socket);
        if closed {
            // closesocket was called on the accept socket meanwhile: the
            // accept ends as cancelled and the socket is closed now.
            drop(d.accepted);
            let _ = close_fd(t.socket);
            result = Err(libc::ECANCELED);
        } else if let (Ok(_), Some(acc)) = (result, d.accepted) {
            let (local, peer) = (acc.local, acc.peer);
            match become_connection(acc.socket, t.socket) {
                Ok(()) => {
                    let base = t.buffer as *mut u8;
                    // SAFETY: AcceptEx's contract: the output buffer holds
                    // data_len + local_len + remote_len bytes and stays
                    // valid until this completion is dequeued (now).
                    unsafe {
                        write_sockaddr(local, base.add(t.data_len), t.local_len);
                        write_sockaddr(peer, base.add(t.data_len + t.local_len), t.remote_len);
                    }
                }
                Err(e) => result = Err(e),
            }
        }
    }
    if d.kind == OpKind::ReadAt && result == Ok(0) {
        // ReadFile past the end of a file fails on Windows,
        result = Err(END_OF_FILE);
    }
    if d.kind == OpKind::Read && result == Ok(0) {
        // and so does ReadFile on a pipe whose writer closed.
        result = Err(BROKEN_PIPE);
    }
    let key = d.key;
    let reported = match result {
        Ok(n) => Reported {
            ok: true,
            bytes: n as DWORD,
            key,
            overlapped,
            error: 0,
            status: code::STATUS_SUCCESS,
        },
        Err(END_OF_FILE) => Reported {
            ok: false,
            bytes: 0,
            key,
            overlapped,
            error: code::ERROR_HANDLE_EOF,
            status: 0xC000_0011, // STATUS_END_OF_FILE
        },
        Err(BROKEN_PIPE) => Reported {
            ok: false,
            bytes: 0,
            key,
            overlapped,
            error: code::ERROR_BROKEN_PIPE,
            status: 0xC000_014B, // STATUS_PIPE_BROKEN
        },
        Err(e) => Reported {
            ok: false,
            bytes: 0,
            key,
            overlapped,
            error: error::win32_from_errno(e),
            status: error::ntstatus_from_errno(e),
        },
    };
    if d.kind != OpKind::Packet {
        // SAFETY: an operation's OVERLAPPED stays valid until its
        // completion is dequeued, which is now; a packet's "OVERLAPPED" is
        // whatever value was posted and is never written through.
        unsafe { set_status(overlapped, reported.status, reported.bytes as usize) };
    }
    reported
}

/// Writes a datagram's sender into a WSARecvFrom's `lpFrom` (room in
/// `*lpFromlen`, which then holds the length).
///
/// # Safety
/// `addr` is NULL or points at `*len` writable bytes; `len` is NULL or a
/// valid `int`.
unsafe fn write_from(from: Option<std::net::SocketAddr>, addr: usize, len: usize) {
    // SAFETY: per the caller, NULL or a valid int.
    let (Some(from), Some(len)) = (from, unsafe { (len as *mut i32).as_mut() }) else {
        return;
    };
    if addr == 0 || *len <= 0 {
        return;
    }
    // SAFETY: per the caller, `*len` bytes at `addr` are writable.
    let n = unsafe { write_sockaddr(from, addr as *mut u8, *len as usize) };
    *len = n as i32;
}

/// `GetQueuedCompletionStatus`: dequeues one completion, waiting at most
/// `dwMilliseconds` (`INFINITE`: forever). TRUE for a successful operation
/// or a posted packet; FALSE with `*lpOverlapped` set for a failed one
/// (`GetLastError()`: `ERROR_NETNAME_DELETED` for a reset peer,
/// `ERROR_OPERATION_ABORTED` for a cancel, …); FALSE with `*lpOverlapped`
/// NULL and `WAIT_TIMEOUT` when nothing came in time
/// (`ERROR_ABANDONED_WAIT_0` once the port is closed).
///
/// ```c
/// DWORD n; ULONG_PTR key; LPOVERLAPPED ov;
/// if (!GetQueuedCompletionStatus(port, &n, &key, &ov, INFINITE) && ov == NULL)
///     return GetLastError();
/// ```
#[no_mangle]
pub unsafe extern "C" fn GetQueuedCompletionStatus(
    CompletionPort: *mut c_void,
    lpNumberOfBytesTransferred: *mut DWORD,
    lpCompletionKey: *mut usize,
    lpOverlapped: *mut *mut OVERLAPPED,
    dwMilliseconds: DWORD,
) -> BOOL {
    guard(FALSE, || {
        if lpNumberOfBytesTransferred.is_null()
            || lpCompletionKey.is_null()
            || lpOverlapped.is_null()
        {
            return fail(code::ERROR_INVALID_PARAMETER, FALSE);
        }
        // SAFETY: checked non-NULL; the caller's out-parameter.
        unsafe { *lpOverlapped = std::ptr::null_mut() };
        let h = CompletionPort as usize;
        let Some(port) = registry::port(h) else {
            return fail(code::ERROR_INVALID_HANDLE, FALSE);
        };
        sync::set_current_port(h, &port);
        match dequeue::one(&port, timeout_of(dwMilliseconds)) {
            Ok(d) => {
                let r = report(d);
                // SAFETY: out-parameters checked non-NULL above.
                unsafe {
                    *lpNumberOfBytesTransferred = r.bytes;
                    *lpCompletionKey = r.key;
                    *lpOverlapped = r.overlapped;
                }
                if r.ok {
                    TRUE
                } else {
                    fail(r.error, FALSE)
                }
            }
            Err(e) => fail(get_error(&e), FALSE),
        }
    })
}

/// The Win32 code for a dequeue that returned nothing.
pub(crate) fn get_error(e: &GetError) -> u32 {
    match e {
        GetError::TimedOut => code::WAIT_TIMEOUT,
        GetError::Closed => code::ERROR_ABANDONED_WAIT_0,
        GetError::Io(e) => error::win32_from_errno(error::errno_of(e)),
    }
}

/// `GetQueuedCompletionStatusEx`: dequeues up to `ulCount` completions into
/// `lpCompletionPortEntries`, waiting at most `dwMilliseconds` for the
/// first. Failed operations are entries too (their NTSTATUS in
/// `Internal`). `fAlertable` is ignored: there are no APCs.
///
/// ```c
/// OVERLAPPED_ENTRY e[64]; ULONG n;
/// if (GetQueuedCompletionStatusEx(port, e, 64, &n, INFINITE, FALSE))
///     for (ULONG i = 0; i < n; i++) handle(e[i].lpCompletionKey, e[i].lpOverlapped);
/// ```
#[no_mangle]
pub unsafe extern "C" fn GetQueuedCompletionStatusEx(
    CompletionPort: *mut c_void,
    lpCompletionPortEntries: *mut OVERLAPPED_ENTRY,
    ulCount: u32,
    ulNumEntriesRemoved: *mut u32,
    dwMilliseconds: DWORD,
    _fAlertable: BOOL,
) -> BOOL {
    guard(FALSE, || {
        if lpCompletionPortEntries.is_null() || ulNumEntriesRemoved.is_null() || ulCount == 0 {
            return fail(code::ERROR_INVALID_PARAMETER, FALSE);
        }
        // SAFETY: checked non-NULL.
        unsafe { *ulNumEntriesRemoved = 0 };
        let h = CompletionPort as usize;
        let Some(port) = registry::port(h) else {
            return fail(code::ERROR_INVALID_HANDLE, FALSE);
        };
        sync::set_current_port(h, &port);
        let mut out = Vec::new();
        if let Err(e) = dequeue::many(
            &port,
            ulCount as usize,
            timeout_of(dwMilliseconds),
            &mut out,
        ) {
            return fail(get_error(&e), FALSE);
        }
        let n = out.len();
        for (i, d) in out.into_iter().enumerate() {
            let r = report(d);
            // SAFETY: the caller's array holds `ulCount` entries and
            // `i < n <= ulCount` (many() returns at most `ulCount`).
            unsafe {
                lpCompletionPortEntries.add(i).write(OVERLAPPED_ENTRY {
                    lpCompletionKey: r.key,
                    lpOverlapped: r.overlapped,
                    Internal: r.status as usize,
                    dwNumberOfBytesTransferred: r.bytes,
                });
            }
        }
        // SAFETY: checked non-NULL.
        unsafe { *ulNumEntriesRemoved = n as u32 };
        TRUE
    })
}

/// `PostQueuedCompletionStatus`: queues a packet that a
/// `GetQueuedCompletionStatus` returns as (`dwNumberOfBytesTransferred`,
/// `dwCompletionKey`, `lpOverlapped`), TRUE; the seeds' way to stop workers.
///
/// ```c
/// PostQueuedCompletionStatus(port, 0, EXIT_CODE, NULL);
/// ```
#[no_mangle]
pub extern "C" fn PostQueuedCompletionStatus(
    CompletionPort: *mut c_void,
    dwNumberOfBytesTransferred: DWORD,
    dwCompletionKey: usize,
    lpOverlapped: *mut OVERLAPPED,
) -> BOOL {
    guard(FALSE, || {
        let Some(port) = registry::port(CompletionPort as usize) else {
            return fail(code::ERROR_INVALID_HANDLE, FALSE);
        };
        let packet = Packet::new(dwNumberOfBytesTransferred as usize)
            .key(dwCompletionKey as u64)
            .user(lpOverlapped as u64);
        match port.post(packet) {
            Ok(()) => TRUE,
            Err(_) => fail(code::ERROR_INVALID_HANDLE, FALSE),
        }
    })
}

/// `CloseHandle`: a port is shut down (waiting threads return FALSE with
/// `ERROR_ABANDONED_WAIT_0`; operations in flight are cancelled); a thread
/// handle is let go (the thread runs on); an event is destroyed; a socket
/// or file is closed as `closesocket` does.
///
/// ```c
/// CloseHandle(CreateThread(NULL, 0, worker, port, 0, NULL));
/// ```
#[no_mangle]
pub extern "C" fn CloseHandle(hObject: *mut c_void) -> BOOL {
    guard(FALSE, || {
        let h = hObject as usize;
        if h >= registry::FIRST_OBJECT {
            return match registry::remove(h) {
                Some(Object::Port(port)) => {
                    port.shutdown();
                    TRUE
                }
                Some(Object::Waitable(_)) => TRUE,
                None => fail(code::ERROR_INVALID_HANDLE, FALSE),
            };
        }
        let Some(fd) = registry::as_fd(h) else {
            return fail(code::ERROR_INVALID_HANDLE, FALSE);
        };
        match io::close(fd) {
            io::Closing::Associated | io::Closing::AcceptTarget => TRUE,
            io::Closing::Plain => match close_fd(fd) {
                Ok(()) => TRUE,
                Err(_) => fail(code::ERROR_INVALID_HANDLE, FALSE),
            },
        }
    })
}
