//! Winsock: `WSAStartup`, `WSASocket`, `WSAAccept`, `closesocket`,
//! `WSARecv`/`WSASend` (and `WSARecvFrom`/`WSASendTo`), `WSAIoctl` with
//! the extension functions `AcceptEx`, `GetAcceptExSockaddrs` and
//! `ConnectEx`, and the last-error calls.
//!
//! A `SOCKET` holds the descriptor number; `bind`, `listen`, `accept`,
//! `setsockopt`, `htons`… are the C library's, called on it directly.

use std::ffi::c_void;
use std::os::fd::RawFd;

use ringport::op;

use super::{
    close_fd, errno, fail, fd_is_open, guard, raw_buf, read_sockaddr, set_status, BOOL, DWORD,
    FALSE, GUID, INVALID_SOCKET, OVERLAPPED, SOCKET_ERROR, TRUE, WSABUF,
};
use crate::error::{self, code};
use crate::io::{self, PostError};
use crate::registry::{self, AcceptTarget, Finish};

/// Winsock `WSADATA`, Win64 layout.
#[repr(C)]
pub struct WSADATA {
    /// The version the caller will use.
    pub wVersion: u16,
    /// The highest version supported.
    pub wHighVersion: u16,
    /// Obsolete.
    pub iMaxSockets: u16,
    /// Obsolete.
    pub iMaxUdpDg: u16,
    /// Obsolete.
    pub lpVendorInfo: *mut i8,
    /// A description.
    pub szDescription: [u8; 257],
    /// A status.
    pub szSystemStatus: [u8; 129],
}

/// `WSAStartup`: nothing to start on Linux; fills `lpWSAData`, returns 0.
///
/// ```c
/// WSADATA wsa; if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 1;
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSAStartup(wVersionRequested: u16, lpWSAData: *mut WSADATA) -> i32 {
    guard(code::WSAEFAULT as i32, || {
        // SAFETY: NULL-checked by as_mut; the caller's WSADATA.
        let Some(data) = (unsafe { lpWSAData.as_mut() }) else {
            return code::WSAEFAULT as i32;
        };
        data.wVersion = wVersionRequested.min(0x0202);
        data.wHighVersion = 0x0202;
        data.iMaxSockets = 0;
        data.iMaxUdpDg = 0;
        data.lpVendorInfo = std::ptr::null_mut();
        data.szDescription = [0; 257];
        data.szSystemStatus = [0; 129];
        let desc = b"ringport Winsock on Linux";
        data.szDescription[..desc.len()].copy_from_slice(desc);
        data.szSystemStatus[..7].copy_from_slice(b"Running");
        0
    })
}

/// `WSACleanup`: returns 0.
///
/// ```c
/// WSACleanup();
/// ```
#[no_mangle]
pub extern "C" fn WSACleanup() -> i32 {
    0
}

/// `WSAGetLastError`: the calling thread's last error (as `GetLastError`).
///
/// ```c
/// if (WSARecv(s, &b, 1, NULL, &flags, &ov, NULL) == SOCKET_ERROR && WSAGetLastError() != WSA_IO_PENDING) fail();
/// ```
#[no_mangle]
pub extern "C" fn WSAGetLastError() -> i32 {
    error::last() as i32
}

/// `WSASetLastError`.
///
/// ```c
/// WSASetLastError(0);
/// ```
#[no_mangle]
pub extern "C" fn WSASetLastError(iError: i32) {
    error::set(iError as u32);
}

/// `WSASocketA` (and `WSASocketW`, `WSASocket`): a socket, close-on-exec;
/// the protocol info, group and flags (`WSA_FLAG_OVERLAPPED`) are not
/// needed on Linux. `INVALID_SOCKET` on failure.
///
/// ```c
/// SOCKET s = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
/// ```
#[no_mangle]
pub extern "C" fn WSASocketA(
    af: i32,
    kind: i32,
    protocol: i32,
    _lpProtocolInfo: *mut c_void,
    _g: u32,
    _dwFlags: DWORD,
) -> usize {
    guard(INVALID_SOCKET, || {
        // SAFETY: socket(2) takes integers only.
        let fd = unsafe { libc::socket(af, kind | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return fail(error::wsa_from_errno(errno()), INVALID_SOCKET);
        }
        fd as usize
    })
}

/// `WSASocketW`: as [`WSASocketA`].
///
/// ```c
/// SOCKET s = WSASocketW(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
/// ```
#[no_mangle]
pub extern "C" fn WSASocketW(
    af: i32,
    kind: i32,
    protocol: i32,
    lpProtocolInfo: *mut c_void,
    g: u32,
    dwFlags: DWORD,
) -> usize {
    WSASocketA(af, kind, protocol, lpProtocolInfo, g, dwFlags)
}

/// `WSAAccept` without a condition function: a blocking accept (the running
/// slot is free while it waits). `INVALID_SOCKET` on failure.
///
/// ```c
/// SOCKET c = WSAAccept(listener, NULL, NULL, NULL, 0);
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSAAccept(
    s: usize,
    addr: *mut libc::sockaddr,
    addrlen: *mut i32,
    lpfnCondition: *mut c_void,
    _dwCallbackData: usize,
) -> usize {
    guard(INVALID_SOCKET, || {
        if !lpfnCondition.is_null() {
            return fail(code::WSAEOPNOTSUPP, INVALID_SOCKET);
        }
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, INVALID_SOCKET);
        };
        let r = crate::sync::blocking(|| {
            // SAFETY: addr/addrlen are NULL or the caller's buffer and its
            // length (accept(2)'s contract, which WSAAccept shares).
            unsafe { libc::accept4(fd, addr, addrlen.cast(), libc::SOCK_CLOEXEC) }
        });
        if r < 0 {
            return fail(error::wsa_from_errno(errno()), INVALID_SOCKET);
        }
        r as usize
    })
}

/// `closesocket`: operations in flight on the socket complete as cancelled
/// (`ERROR_OPERATION_ABORTED`), and the descriptor is closed after the last
/// of them, so its number is never reused under them. `SOCKET_ERROR` with
/// `WSAENOTSOCK` for a socket that is not open.
///
/// ```c
/// closesocket(s);
/// ```
#[no_mangle]
pub extern "C" fn closesocket(s: usize) -> i32 {
    guard(SOCKET_ERROR, || {
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, SOCKET_ERROR);
        };
        match io::close(fd) {
            io::Closing::Associated | io::Closing::AcceptTarget => 0,
            io::Closing::Plain => match close_fd(fd) {
                Ok(()) => 0,
                Err(_) => fail(code::WSAENOTSOCK, SOCKET_ERROR),
            },
        }
    })
}

/// The error for an operation the port would not take.
fn post_error(fd: RawFd, e: PostError) -> u32 {
    match e {
        PostError::NotAssociated if !fd_is_open(fd) => code::WSAENOTSOCK,
        // Overlapped I/O here completes through a port only.
        PostError::NotAssociated => code::WSAEINVAL,
        PostError::Refused(c) => c,
    }
}

/// The buffers of a WSABUF array.
///
/// # Safety
/// `bufs` is NULL or points at `count` WSABUFs.
unsafe fn wsabufs<'a>(bufs: *const WSABUF, count: DWORD) -> Option<&'a [WSABUF]> {
    if bufs.is_null() || count == 0 {
        return None;
    }
    // SAFETY: per the caller.
    Some(unsafe { std::slice::from_raw_parts(bufs, count as usize) })
}

/// `WSARecv`: with an OVERLAPPED, posts a receive and returns
/// `SOCKET_ERROR` with `WSA_IO_PENDING`; the completion (on the port the
/// socket is associated with) says how many bytes arrived, 0 when the peer
/// closed. Several WSABUFs are filled in order (one vectored receive).
/// Without an OVERLAPPED, receives now (blocking). Completion routines are not
/// supported (`WSAEOPNOTSUPP`).
///
/// ```c
/// DWORD flags = 0;
/// if (WSARecv(s, &io->buf, 1, NULL, &flags, &io->ov, NULL) == SOCKET_ERROR
///     && WSAGetLastError() != WSA_IO_PENDING) fail();
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSARecv(
    s: usize,
    lpBuffers: *mut WSABUF,
    dwBufferCount: DWORD,
    lpNumberOfBytesRecvd: *mut DWORD,
    lpFlags: *mut DWORD,
    lpOverlapped: *mut OVERLAPPED,
    lpCompletionRoutine: *mut c_void,
) -> i32 {
    guard(SOCKET_ERROR, || {
        if !lpCompletionRoutine.is_null() {
            return fail(code::WSAEOPNOTSUPP, SOCKET_ERROR);
        }
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, SOCKET_ERROR);
        };
        // SAFETY: WSARecv's contract: `dwBufferCount` WSABUFs.
        let Some(bufs) = (unsafe { wsabufs(lpBuffers, dwBufferCount) }) else {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        };
        if lpOverlapped.is_null() {
            // SAFETY: WSABUFs describe the caller's writable memory.
            return unsafe { recv_now(fd, bufs, lpNumberOfBytesRecvd, lpFlags) };
        }
        if bufs.iter().any(|b| b.buf.is_null() && b.len > 0) {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        }
        if bufs.iter().all(|b| b.len == 0) || bufs.len() > op::MAX_BUFFERS {
            // A zero-byte receive (readiness only) is not supported.
            return fail(code::WSAEINVAL, SOCKET_ERROR);
        }
        // SAFETY: overlapped contract: the buffers and the OVERLAPPED stay
        // valid until the completion is dequeued.
        let mut raw: Vec<_> = bufs
            .iter()
            .map(|b| unsafe { raw_buf(b.buf, 0, b.len as usize) })
            .collect();
        // SAFETY: non-NULL, the caller's OVERLAPPED.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let ov = lpOverlapped as usize;
        let posted = if raw.len() == 1 {
            let buf = raw.pop().expect("one buffer");
            io::submit(fd, ov, None, |h| op::Recv::new(h, buf).user(ov as u64))
        } else {
            io::submit(fd, ov, None, |h| {
                op::RecvVectored::new(h, raw).user(ov as u64)
            })
        };
        match posted {
            Ok(_) => fail(code::ERROR_IO_PENDING, SOCKET_ERROR),
            Err(e) => fail(post_error(fd, e), SOCKET_ERROR),
        }
    })
}

/// A blocking receive into WSABUFs.
///
/// # Safety
/// The WSABUFs describe writable memory; the out-pointers are NULL or valid.
unsafe fn recv_now(fd: RawFd, bufs: &[WSABUF], got: *mut DWORD, flags: *mut DWORD) -> i32 {
    let iov: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.buf.cast(),
            iov_len: b.len as usize,
        })
        .collect();
    let n = crate::sync::blocking(|| {
        // SAFETY: the iovecs describe the caller's writable buffers.
        unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as i32) }
    });
    if n < 0 {
        return fail(error::wsa_from_errno(errno()), SOCKET_ERROR);
    }
    // SAFETY: NULL or the caller's out-parameters.
    unsafe {
        if let Some(got) = got.as_mut() {
            *got = n as DWORD;
        }
        if let Some(flags) = flags.as_mut() {
            *flags = 0;
        }
    }
    0
}

/// `WSASend`: with an OVERLAPPED, posts a send of every byte of the WSABUFs
/// and returns `SOCKET_ERROR` with `WSA_IO_PENDING`; it completes, as on
/// Windows, once all of them are sent (or with the error that stopped it).
/// The bytes are sent from the caller's memory (several WSABUFs as one
/// vectored send; more than 1024 are copied into one buffer first).
/// Without an OVERLAPPED, sends now (blocking).
///
/// ```c
/// if (WSASend(s, &io->buf, 1, NULL, 0, &io->ov, NULL) == SOCKET_ERROR
///     && WSAGetLastError() != WSA_IO_PENDING) fail();
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSASend(
    s: usize,
    lpBuffers: *mut WSABUF,
    dwBufferCount: DWORD,
    lpNumberOfBytesSent: *mut DWORD,
    _dwFlags: DWORD,
    lpOverlapped: *mut OVERLAPPED,
    lpCompletionRoutine: *mut c_void,
) -> i32 {
    guard(SOCKET_ERROR, || {
        if !lpCompletionRoutine.is_null() {
            return fail(code::WSAEOPNOTSUPP, SOCKET_ERROR);
        }
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, SOCKET_ERROR);
        };
        // SAFETY: WSASend's contract: `dwBufferCount` WSABUFs.
        let Some(bufs) = (unsafe { wsabufs(lpBuffers, dwBufferCount) }) else {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        };
        if bufs.iter().any(|b| b.buf.is_null() && b.len > 0) {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        }
        if lpOverlapped.is_null() {
            // SAFETY: WSABUFs describe the caller's readable memory.
            return unsafe { send_now(fd, bufs, lpNumberOfBytesSent) };
        }
        // SAFETY: non-NULL, the caller's OVERLAPPED.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let ov = lpOverlapped as usize;
        let posted = if let [b] = bufs {
            // SAFETY: overlapped contract: the bytes stay valid and
            // unchanged until the completion is dequeued.
            let buf = unsafe { raw_buf(b.buf, b.len as usize, b.len as usize) };
            io::submit(fd, ov, None, |h| op::SendAll::new(h, buf).user(ov as u64))
        } else if bufs.len() <= op::MAX_BUFFERS {
            // SAFETY: as above, for each WSABUF.
            let raw: Vec<_> = bufs
                .iter()
                .map(|b| unsafe { raw_buf(b.buf, b.len as usize, b.len as usize) })
                .collect();
            io::submit(fd, ov, None, |h| {
                op::SendVectored::new(h, raw).user(ov as u64)
            })
        } else {
            // SAFETY: the WSABUFs describe readable bytes.
            let all = unsafe { gather(bufs) };
            io::submit(fd, ov, None, |h| op::SendAll::new(h, all).user(ov as u64))
        };
        match posted {
            Ok(_) => fail(code::ERROR_IO_PENDING, SOCKET_ERROR),
            Err(e) => fail(post_error(fd, e), SOCKET_ERROR),
        }
    })
}

/// A blocking send of WSABUFs.
///
/// # Safety
/// The WSABUFs describe readable memory; `sent` is NULL or valid.
unsafe fn send_now(fd: RawFd, bufs: &[WSABUF], sent: *mut DWORD) -> i32 {
    let mut iov: Vec<libc::iovec> = bufs
        .iter()
        .map(|b| libc::iovec {
            iov_base: b.buf.cast(),
            iov_len: b.len as usize,
        })
        .collect();
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    let n = crate::sync::blocking(|| {
        // SAFETY: the iovecs describe the caller's readable buffers.
        unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) }
    });
    if n < 0 {
        return fail(error::wsa_from_errno(errno()), SOCKET_ERROR);
    }
    // SAFETY: NULL or the caller's out-parameter.
    if let Some(sent) = unsafe { sent.as_mut() } {
        *sent = n as DWORD;
    }
    0
}

/// `SIO_GET_EXTENSION_FUNCTION_POINTER`.
const SIO_GET_EXTENSION_FUNCTION_POINTER: DWORD = 0xC800_0006;

/// `WSAID_ACCEPTEX`.
const WSAID_ACCEPTEX: GUID = GUID {
    Data1: 0xb536_7df1,
    Data2: 0xcbac,
    Data3: 0x11cf,
    Data4: [0x95, 0xca, 0x00, 0x80, 0x5f, 0x48, 0xa1, 0x92],
};
/// `WSAID_GETACCEPTEXSOCKADDRS`.
const WSAID_GETACCEPTEXSOCKADDRS: GUID = GUID {
    Data1: 0xb536_7df2,
    ..WSAID_ACCEPTEX
};
/// `WSAID_CONNECTEX`.
const WSAID_CONNECTEX: GUID = GUID {
    Data1: 0x25a2_07b9,
    Data2: 0xddf3,
    Data3: 0x4660,
    Data4: [0x8e, 0xe9, 0x76, 0xe5, 0x8c, 0x74, 0x06, 0x3e],
};

/// `WSAIoctl`, for `SIO_GET_EXTENSION_FUNCTION_POINTER` with
/// `WSAID_ACCEPTEX`, `WSAID_GETACCEPTEXSOCKADDRS` or `WSAID_CONNECTEX`:
/// writes the function's address to `lpvOutBuffer`, as seed 004 obtains
/// AcceptEx. Other codes fail with `WSAEOPNOTSUPP`.
///
/// ```c
/// GUID guid = WSAID_ACCEPTEX; LPFN_ACCEPTEX fn; DWORD n;
/// WSAIoctl(listener, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid,
///          &fn, sizeof fn, &n, NULL, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSAIoctl(
    s: usize,
    dwIoControlCode: DWORD,
    lpvInBuffer: *mut c_void,
    cbInBuffer: DWORD,
    lpvOutBuffer: *mut c_void,
    cbOutBuffer: DWORD,
    lpcbBytesReturned: *mut DWORD,
    _lpOverlapped: *mut OVERLAPPED,
    _lpCompletionRoutine: *mut c_void,
) -> i32 {
    guard(SOCKET_ERROR, || {
        if registry::as_fd(s).is_none_or(|fd| !fd_is_open(fd)) {
            return fail(code::WSAENOTSOCK, SOCKET_ERROR);
        }
        if dwIoControlCode != SIO_GET_EXTENSION_FUNCTION_POINTER {
            return fail(code::WSAEOPNOTSUPP, SOCKET_ERROR);
        }
        if lpvInBuffer.is_null()
            || (cbInBuffer as usize) < std::mem::size_of::<GUID>()
            || lpvOutBuffer.is_null()
            || (cbOutBuffer as usize) < std::mem::size_of::<usize>()
        {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        }
        // SAFETY: at least a GUID's bytes are readable (checked size).
        let guid = unsafe { lpvInBuffer.cast::<GUID>().read_unaligned() };
        let f: usize = if guid == WSAID_ACCEPTEX {
            AcceptEx as *const () as usize
        } else if guid == WSAID_GETACCEPTEXSOCKADDRS {
            GetAcceptExSockaddrs as *const () as usize
        } else if guid == WSAID_CONNECTEX {
            ConnectEx as *const () as usize
        } else {
            return fail(code::WSAEINVAL, SOCKET_ERROR);
        };
        // SAFETY: room for a pointer (checked size); the caller's buffer.
        unsafe {
            lpvOutBuffer.cast::<usize>().write_unaligned(f);
            if let Some(n) = lpcbBytesReturned.as_mut() {
                *n = std::mem::size_of::<usize>() as DWORD;
            }
        }
        0
    })
}

/// Room Windows asks for each address in an AcceptEx buffer
/// (`sizeof(SOCKADDR_IN) + 16`).
const MIN_ADDRESS_ROOM: DWORD = 32;

/// `AcceptEx`: posts an accept on `sListenSocket` (associated with a port);
/// when a connection comes (and, if `dwReceiveDataLength > 0`, its first
/// data), `sAcceptSocket` becomes that connection, the data and both
/// addresses are in `lpOutputBuffer` (read them with
/// [`GetAcceptExSockaddrs`]), and the completion arrives on the listener's
/// port with the number of data bytes. Returns FALSE with
/// `ERROR_IO_PENDING`.
///
/// ```c
/// AcceptEx(listener, s, io->buf, 4096, sizeof(SOCKADDR_IN) + 16,
///          sizeof(SOCKADDR_IN) + 16, &n, &io->ov);
/// ```
#[no_mangle]
pub unsafe extern "C" fn AcceptEx(
    sListenSocket: usize,
    sAcceptSocket: usize,
    lpOutputBuffer: *mut c_void,
    dwReceiveDataLength: DWORD,
    dwLocalAddressLength: DWORD,
    dwRemoteAddressLength: DWORD,
    _lpdwBytesReceived: *mut DWORD,
    lpOverlapped: *mut OVERLAPPED,
) -> BOOL {
    guard(FALSE, || {
        let (Some(listener), Some(target)) = (
            registry::as_fd(sListenSocket),
            registry::as_fd(sAcceptSocket),
        ) else {
            return fail(code::WSAENOTSOCK, FALSE);
        };
        if !fd_is_open(target) || !fd_is_open(listener) {
            return fail(code::WSAENOTSOCK, FALSE);
        }
        if lpOverlapped.is_null() || lpOutputBuffer.is_null() {
            return fail(code::WSAEFAULT, FALSE);
        }
        if dwLocalAddressLength < MIN_ADDRESS_ROOM
            || dwRemoteAddressLength < MIN_ADDRESS_ROOM
            || registry::is_associated(target)
        {
            return fail(code::WSAEINVAL, FALSE);
        }
        let Some(port) = registry::with_fd(listener, |a| a.port.clone()) else {
            return fail(code::WSAEINVAL, FALSE);
        };
        if !registry::reserve_accept_target(target, &port) {
            // Another AcceptEx has this accept socket already.
            return fail(code::WSAEINVAL, FALSE);
        }
        let accept_target = AcceptTarget {
            socket: target,
            buffer: lpOutputBuffer as usize,
            data_len: dwReceiveDataLength as usize,
            local_len: dwLocalAddressLength as usize,
            remote_len: dwRemoteAddressLength as usize,
        };
        let first = (dwReceiveDataLength > 0).then(|| {
            // SAFETY: AcceptEx's contract: the output buffer stays valid
            // until the completion is dequeued; its first
            // `dwReceiveDataLength` bytes take the first data.
            unsafe { raw_buf(lpOutputBuffer.cast(), 0, dwReceiveDataLength as usize) }
        });
        // SAFETY: non-NULL, the caller's OVERLAPPED.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let ov = lpOverlapped as usize;
        let posted = io::submit(listener, ov, Some(Finish::Accept(accept_target)), |h| {
            let accept = op::Accept::new(h).user(ov as u64);
            match first {
                Some(buf) => accept.first_data(buf),
                None => accept,
            }
        });
        match posted {
            Ok(id) => {
                registry::set_accept_target_op(target, id);
                fail(code::ERROR_IO_PENDING, FALSE)
            }
            Err(e) => {
                registry::release_accept_target(target);
                fail(post_error(listener, e), FALSE)
            }
        }
    })
}

/// The length of the `sockaddr` at `p` (by its family), at most `room`.
///
/// # Safety
/// `p` points at `room >= 2` readable bytes.
unsafe fn sockaddr_len(p: *const u8, room: usize) -> i32 {
    // SAFETY: at least the family's two bytes are readable.
    let family = unsafe { p.cast::<libc::sa_family_t>().read_unaligned() };
    let len = match i32::from(family) {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        _ => 0,
    };
    len.min(room) as i32
}

/// `GetAcceptExSockaddrs`: points `*LocalSockaddr` and `*RemoteSockaddr` at
/// the addresses a completed AcceptEx wrote into its output buffer (the
/// same lengths must be given as to AcceptEx).
///
/// ```c
/// SOCKADDR_IN *local, *peer; int llen, plen;
/// GetAcceptExSockaddrs(io->buf, 4096, sizeof(SOCKADDR_IN) + 16, sizeof(SOCKADDR_IN) + 16,
///                      (LPSOCKADDR *)&local, &llen, (LPSOCKADDR *)&peer, &plen);
/// ```
#[no_mangle]
pub unsafe extern "C" fn GetAcceptExSockaddrs(
    lpOutputBuffer: *mut c_void,
    dwReceiveDataLength: DWORD,
    dwLocalAddressLength: DWORD,
    dwRemoteAddressLength: DWORD,
    LocalSockaddr: *mut *mut libc::sockaddr,
    LocalSockaddrLength: *mut i32,
    RemoteSockaddr: *mut *mut libc::sockaddr,
    RemoteSockaddrLength: *mut i32,
) {
    guard((), || {
        if lpOutputBuffer.is_null() || dwLocalAddressLength < 2 || dwRemoteAddressLength < 2 {
            return fail(code::ERROR_INVALID_PARAMETER, ());
        }
        let base = lpOutputBuffer.cast::<u8>();
        // SAFETY: AcceptEx's buffer layout: data, local, remote, each as
        // long as the caller says (the same lengths given to AcceptEx).
        unsafe {
            let local = base.add(dwReceiveDataLength as usize);
            let remote = local.add(dwLocalAddressLength as usize);
            if let Some(p) = LocalSockaddr.as_mut() {
                *p = local.cast();
            }
            if let Some(n) = LocalSockaddrLength.as_mut() {
                *n = sockaddr_len(local, dwLocalAddressLength as usize);
            }
            if let Some(p) = RemoteSockaddr.as_mut() {
                *p = remote.cast();
            }
            if let Some(n) = RemoteSockaddrLength.as_mut() {
                *n = sockaddr_len(remote, dwRemoteAddressLength as usize);
            }
        }
    })
}

/// `ConnectEx`: posts a connect of `s` (associated with a port; Windows
/// also wants it bound, Linux does not) to `name`; returns FALSE with
/// `ERROR_IO_PENDING`, and the completion says whether it connected
/// (`ERROR_CONNECTION_REFUSED`, …). Data to send with the connect is not
/// supported (`WSAEOPNOTSUPP`): post a `WSASend` once it completes.
///
/// ```c
/// ConnectEx(s, (SOCKADDR *)&addr, sizeof addr, NULL, 0, NULL, &io->ov);
/// ```
#[no_mangle]
pub unsafe extern "C" fn ConnectEx(
    s: usize,
    name: *const libc::sockaddr,
    namelen: i32,
    _lpSendBuffer: *mut c_void,
    dwSendDataLength: DWORD,
    _lpdwBytesSent: *mut DWORD,
    lpOverlapped: *mut OVERLAPPED,
) -> BOOL {
    guard(FALSE, || {
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, FALSE);
        };
        if lpOverlapped.is_null() {
            return fail(code::WSAEFAULT, FALSE);
        }
        if dwSendDataLength > 0 {
            return fail(code::WSAEOPNOTSUPP, FALSE);
        }
        // SAFETY: `name` is NULL or `namelen` readable bytes.
        let Some(addr) = (unsafe { read_sockaddr(name, namelen) }) else {
            return fail(code::WSAEFAULT, FALSE);
        };
        // SAFETY: non-NULL, the caller's OVERLAPPED.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let ov = lpOverlapped as usize;
        match io::submit(fd, ov, None, |h| op::Connect::new(h, addr).user(ov as u64)) {
            Ok(_) => fail(code::ERROR_IO_PENDING, FALSE),
            Err(e) => fail(post_error(fd, e), FALSE),
        }
    })
}

/// `WSAGetOverlappedResult` / `GetOverlappedResult` without waiting: the
/// outcome an OVERLAPPED records once its completion was dequeued.
/// FALSE with `WSA_IO_INCOMPLETE` while it is in flight.
///
/// ```c
/// DWORD n, flags;
/// if (WSAGetOverlappedResult(s, &io->ov, &n, FALSE, &flags)) use(n);
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSAGetOverlappedResult(
    _s: usize,
    lpOverlapped: *mut OVERLAPPED,
    lpcbTransfer: *mut DWORD,
    _fWait: BOOL,
    lpdwFlags: *mut DWORD,
) -> BOOL {
    guard(FALSE, || {
        // SAFETY: NULL or the caller's OVERLAPPED.
        let Some(ov) = (unsafe { lpOverlapped.as_ref() }) else {
            return fail(code::WSAEFAULT, FALSE);
        };
        if ov.Internal as u32 == code::STATUS_PENDING {
            return fail(code::ERROR_IO_INCOMPLETE, FALSE);
        }
        // SAFETY: NULL or the caller's out-parameters.
        unsafe {
            if let Some(n) = lpcbTransfer.as_mut() {
                *n = ov.InternalHigh as DWORD;
            }
            if let Some(f) = lpdwFlags.as_mut() {
                *f = 0;
            }
        }
        match ov.Internal as u32 {
            code::STATUS_SUCCESS => TRUE,
            code::STATUS_CANCELLED => fail(code::ERROR_OPERATION_ABORTED, FALSE),
            code::STATUS_CONNECTION_RESET => fail(code::WSAECONNRESET, FALSE),
            code::STATUS_CONNECTION_REFUSED => fail(code::WSAECONNREFUSED, FALSE),
            _ => fail(code::ERROR_GEN_FAILURE, FALSE),
        }
    })
}

/// The bytes of WSABUFs, copied into one buffer.
///
/// # Safety
/// Each WSABUF describes `len` readable bytes.
unsafe fn gather(bufs: &[WSABUF]) -> Vec<u8> {
    let mut all = Vec::new();
    for b in bufs.iter().filter(|b| b.len > 0) {
        // SAFETY: per the caller.
        all.extend_from_slice(unsafe { std::slice::from_raw_parts(b.buf, b.len as usize) });
    }
    all
}

/// `WSARecvFrom`: with an OVERLAPPED, posts a receive of one datagram into
/// the first non-empty WSABUF and returns `SOCKET_ERROR` with
/// `WSA_IO_PENDING`; when it completes, the sender's address is in
/// `lpFrom` and its length in `*lpFromlen` (both must stay valid until
/// then, as on Windows). A datagram longer than the buffer completes with
/// `ERROR_MORE_DATA`. Completion routines are not supported.
///
/// ```c
/// DWORD flags = 0; int fromlen = sizeof io->from;
/// WSARecvFrom(s, &io->buf, 1, NULL, &flags, (SOCKADDR *)&io->from, &io->fromlen, &io->ov, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSARecvFrom(
    s: usize,
    lpBuffers: *mut WSABUF,
    dwBufferCount: DWORD,
    _lpNumberOfBytesRecvd: *mut DWORD,
    _lpFlags: *mut DWORD,
    lpFrom: *mut libc::sockaddr,
    lpFromlen: *mut i32,
    lpOverlapped: *mut OVERLAPPED,
    lpCompletionRoutine: *mut c_void,
) -> i32 {
    guard(SOCKET_ERROR, || {
        if !lpCompletionRoutine.is_null() {
            return fail(code::WSAEOPNOTSUPP, SOCKET_ERROR);
        }
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, SOCKET_ERROR);
        };
        // SAFETY: WSARecvFrom's contract: `dwBufferCount` WSABUFs.
        let Some(bufs) = (unsafe { wsabufs(lpBuffers, dwBufferCount) }) else {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        };
        if lpOverlapped.is_null() || (!lpFrom.is_null() && lpFromlen.is_null()) {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        }
        let Some(b) = bufs.iter().find(|b| b.len > 0 && !b.buf.is_null()) else {
            return fail(code::WSAEINVAL, SOCKET_ERROR);
        };
        // SAFETY: overlapped contract: the buffer, the address and the
        // OVERLAPPED stay valid until the completion is dequeued.
        let buf = unsafe { raw_buf(b.buf, 0, b.len as usize) };
        // SAFETY: non-NULL, the caller's OVERLAPPED.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let ov = lpOverlapped as usize;
        let finish = Finish::From {
            addr: lpFrom as usize,
            len: lpFromlen as usize,
        };
        match io::submit(fd, ov, Some(finish), |h| {
            op::RecvFrom::new(h, buf).user(ov as u64)
        }) {
            Ok(_) => fail(code::ERROR_IO_PENDING, SOCKET_ERROR),
            Err(e) => fail(post_error(fd, e), SOCKET_ERROR),
        }
    })
}

/// `WSASendTo`: with an OVERLAPPED, posts a send of one datagram (the
/// WSABUFs' bytes, copied into one buffer if there are several) to `lpTo`
/// and returns `SOCKET_ERROR` with `WSA_IO_PENDING`.
///
/// ```c
/// WSASendTo(s, &io->buf, 1, NULL, 0, (SOCKADDR *)&to, sizeof to, &io->ov, NULL);
/// ```
#[no_mangle]
pub unsafe extern "C" fn WSASendTo(
    s: usize,
    lpBuffers: *mut WSABUF,
    dwBufferCount: DWORD,
    _lpNumberOfBytesSent: *mut DWORD,
    _dwFlags: DWORD,
    lpTo: *const libc::sockaddr,
    iTolen: i32,
    lpOverlapped: *mut OVERLAPPED,
    lpCompletionRoutine: *mut c_void,
) -> i32 {
    guard(SOCKET_ERROR, || {
        if !lpCompletionRoutine.is_null() {
            return fail(code::WSAEOPNOTSUPP, SOCKET_ERROR);
        }
        let Some(fd) = registry::as_fd(s) else {
            return fail(code::WSAENOTSOCK, SOCKET_ERROR);
        };
        // SAFETY: WSASendTo's contract: `dwBufferCount` WSABUFs.
        let Some(bufs) = (unsafe { wsabufs(lpBuffers, dwBufferCount) }) else {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        };
        if lpOverlapped.is_null() || bufs.iter().any(|b| b.buf.is_null() && b.len > 0) {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        }
        // SAFETY: `lpTo` is NULL or `iTolen` readable bytes.
        let Some(to) = (unsafe { read_sockaddr(lpTo, iTolen) }) else {
            return fail(code::WSAEFAULT, SOCKET_ERROR);
        };
        // SAFETY: non-NULL, the caller's OVERLAPPED.
        unsafe { set_status(lpOverlapped, code::STATUS_PENDING, 0) };
        let ov = lpOverlapped as usize;
        let posted = if let [b] = bufs {
            // SAFETY: overlapped contract: the bytes stay valid and
            // unchanged until the completion is dequeued.
            let buf = unsafe { raw_buf(b.buf, b.len as usize, b.len as usize) };
            io::submit(fd, ov, None, |h| {
                op::SendTo::new(h, buf, to).user(ov as u64)
            })
        } else {
            // SAFETY: the WSABUFs describe readable bytes.
            let all = unsafe { gather(bufs) };
            io::submit(fd, ov, None, |h| {
                op::SendTo::new(h, all, to).user(ov as u64)
            })
        };
        match posted {
            Ok(_) => fail(code::ERROR_IO_PENDING, SOCKET_ERROR),
            Err(e) => fail(post_error(fd, e), SOCKET_ERROR),
        }
    })
}
