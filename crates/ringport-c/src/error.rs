//! Win32 error codes: the thread's last error (`GetLastError`,
//! `WSAGetLastError`: one value per thread, as on Windows), and how Linux
//! errors map to them.
//!
//! Two mappings, because Windows reports one failure two ways: a Winsock
//! call that fails at once sets a `WSAE*` code ([`wsa_from_errno`]); an
//! operation that fails later is reported by `GetQueuedCompletionStatus`
//! with an `ERROR_*` code, the one the seeds test for
//! ([`win32_from_errno`]: `ECONNRESET` is `ERROR_NETNAME_DELETED`, a cancel
//! `ERROR_OPERATION_ABORTED`), and in `OVERLAPPED.Internal` as an NTSTATUS
//! ([`ntstatus_from_errno`]).

use std::cell::Cell;
use std::io;

/// The Win32 and Winsock codes this library sets.
#[allow(missing_docs, dead_code)] // the full set, as winerror.h has it
pub mod code {
    pub const ERROR_SUCCESS: u32 = 0;
    pub const ERROR_INVALID_FUNCTION: u32 = 1;
    pub const ERROR_FILE_NOT_FOUND: u32 = 2;
    pub const ERROR_ACCESS_DENIED: u32 = 5;
    pub const ERROR_INVALID_HANDLE: u32 = 6;
    pub const ERROR_NOT_ENOUGH_MEMORY: u32 = 8;
    pub const ERROR_GEN_FAILURE: u32 = 31;
    pub const ERROR_HANDLE_EOF: u32 = 38;
    pub const ERROR_NOT_SUPPORTED: u32 = 50;
    pub const ERROR_NETNAME_DELETED: u32 = 64;
    pub const ERROR_FILE_EXISTS: u32 = 80;
    pub const ERROR_INVALID_PARAMETER: u32 = 87;
    pub const ERROR_BROKEN_PIPE: u32 = 109;
    pub const ERROR_SEM_TIMEOUT: u32 = 121;
    pub const ERROR_MORE_DATA: u32 = 234;
    pub const ERROR_ALREADY_EXISTS: u32 = 183;
    pub const WAIT_TIMEOUT: u32 = 258;
    pub const ERROR_ABANDONED_WAIT_0: u32 = 735;
    pub const ERROR_OPERATION_ABORTED: u32 = 995;
    pub const ERROR_IO_INCOMPLETE: u32 = 996;
    pub const ERROR_IO_PENDING: u32 = 997;
    pub const ERROR_NOT_FOUND: u32 = 1168;
    pub const ERROR_CONNECTION_REFUSED: u32 = 1225;
    pub const ERROR_ADDRESS_ALREADY_ASSOCIATED: u32 = 1227;
    pub const ERROR_NETWORK_UNREACHABLE: u32 = 1231;
    pub const ERROR_HOST_UNREACHABLE: u32 = 1232;
    pub const ERROR_CONNECTION_ABORTED: u32 = 1236;
    pub const ERROR_INTERNAL_ERROR: u32 = 1359;

    pub const WSAEINTR: u32 = 10004;
    pub const WSAEBADF: u32 = 10009;
    pub const WSAEACCES: u32 = 10013;
    pub const WSAEFAULT: u32 = 10014;
    pub const WSAEINVAL: u32 = 10022;
    pub const WSAEMFILE: u32 = 10024;
    pub const WSAEWOULDBLOCK: u32 = 10035;
    pub const WSAEINPROGRESS: u32 = 10036;
    pub const WSAEALREADY: u32 = 10037;
    pub const WSAENOTSOCK: u32 = 10038;
    pub const WSAEDESTADDRREQ: u32 = 10039;
    pub const WSAEMSGSIZE: u32 = 10040;
    pub const WSAEPROTOTYPE: u32 = 10041;
    pub const WSAENOPROTOOPT: u32 = 10042;
    pub const WSAEPROTONOSUPPORT: u32 = 10043;
    pub const WSAESOCKTNOSUPPORT: u32 = 10044;
    pub const WSAEOPNOTSUPP: u32 = 10045;
    pub const WSAEAFNOSUPPORT: u32 = 10047;
    pub const WSAEADDRINUSE: u32 = 10048;
    pub const WSAEADDRNOTAVAIL: u32 = 10049;
    pub const WSAENETDOWN: u32 = 10050;
    pub const WSAENETUNREACH: u32 = 10051;
    pub const WSAENETRESET: u32 = 10052;
    pub const WSAECONNABORTED: u32 = 10053;
    pub const WSAECONNRESET: u32 = 10054;
    pub const WSAENOBUFS: u32 = 10055;
    pub const WSAEISCONN: u32 = 10056;
    pub const WSAENOTCONN: u32 = 10057;
    pub const WSAESHUTDOWN: u32 = 10058;
    pub const WSAETIMEDOUT: u32 = 10060;
    pub const WSAECONNREFUSED: u32 = 10061;
    pub const WSAEHOSTUNREACH: u32 = 10065;

    pub const STATUS_SUCCESS: u32 = 0;
    pub const STATUS_PENDING: u32 = 0x0000_0103;
    pub const STATUS_UNSUCCESSFUL: u32 = 0xC000_0001;
    pub const STATUS_INVALID_HANDLE: u32 = 0xC000_0008;
    pub const STATUS_INVALID_PARAMETER: u32 = 0xC000_000D;
    pub const STATUS_IO_TIMEOUT: u32 = 0xC000_00B5;
    pub const STATUS_CANCELLED: u32 = 0xC000_0120;
    pub const STATUS_CONNECTION_RESET: u32 = 0xC000_020D;
    pub const STATUS_CONNECTION_REFUSED: u32 = 0xC000_0236;
    pub const STATUS_CONNECTION_ABORTED: u32 = 0xC000_0241;
}

use code::*;

thread_local! {
    static LAST: Cell<u32> = const { Cell::new(0) };
}

/// Sets the calling thread's last error (`SetLastError`).
pub fn set(code: u32) {
    LAST.with(|l| l.set(code));
}

/// The calling thread's last error (`GetLastError`).
pub fn last() -> u32 {
    LAST.with(Cell::get)
}

/// The Winsock code for a Linux error of a call that failed at once.
pub fn wsa_from_errno(errno: i32) -> u32 {
    match errno {
        libc::EINTR => WSAEINTR,
        libc::EBADF => WSAENOTSOCK,
        libc::EACCES | libc::EPERM => WSAEACCES,
        libc::EFAULT => WSAEFAULT,
        libc::EINVAL => WSAEINVAL,
        libc::EMFILE | libc::ENFILE => WSAEMFILE,
        libc::EAGAIN => WSAEWOULDBLOCK,
        libc::EINPROGRESS => WSAEINPROGRESS,
        libc::EALREADY => WSAEALREADY,
        libc::ENOTSOCK => WSAENOTSOCK,
        libc::EDESTADDRREQ => WSAEDESTADDRREQ,
        libc::EMSGSIZE => WSAEMSGSIZE,
        libc::EPROTOTYPE => WSAEPROTOTYPE,
        libc::ENOPROTOOPT => WSAENOPROTOOPT,
        libc::EPROTONOSUPPORT => WSAEPROTONOSUPPORT,
        libc::ESOCKTNOSUPPORT => WSAESOCKTNOSUPPORT,
        libc::EOPNOTSUPP => WSAEOPNOTSUPP,
        libc::EAFNOSUPPORT => WSAEAFNOSUPPORT,
        libc::EADDRINUSE => WSAEADDRINUSE,
        libc::EADDRNOTAVAIL => WSAEADDRNOTAVAIL,
        libc::ENETDOWN => WSAENETDOWN,
        libc::ENETUNREACH => WSAENETUNREACH,
        libc::ENETRESET => WSAENETRESET,
        libc::ECONNABORTED => WSAECONNABORTED,
        libc::ECONNRESET | libc::EPIPE => WSAECONNRESET,
        libc::ENOBUFS | libc::ENOMEM => WSAENOBUFS,
        libc::EISCONN => WSAEISCONN,
        libc::ENOTCONN => WSAENOTCONN,
        libc::ESHUTDOWN => WSAESHUTDOWN,
        libc::ETIMEDOUT => WSAETIMEDOUT,
        libc::ECONNREFUSED => WSAECONNREFUSED,
        libc::EHOSTUNREACH => WSAEHOSTUNREACH,
        libc::ECANCELED => ERROR_OPERATION_ABORTED,
        _ => WSAEINVAL,
    }
}

/// The Win32 code `GetQueuedCompletionStatus` reports for an operation
/// that failed with a Linux error (and what file calls report).
pub fn win32_from_errno(errno: i32) -> u32 {
    match errno {
        libc::ECONNRESET | libc::EPIPE => ERROR_NETNAME_DELETED,
        libc::ECANCELED => ERROR_OPERATION_ABORTED,
        libc::ECONNREFUSED => ERROR_CONNECTION_REFUSED,
        libc::ETIMEDOUT => ERROR_SEM_TIMEOUT,
        libc::ENETUNREACH | libc::ENETDOWN => ERROR_NETWORK_UNREACHABLE,
        libc::EHOSTUNREACH => ERROR_HOST_UNREACHABLE,
        libc::ECONNABORTED => ERROR_CONNECTION_ABORTED,
        libc::EADDRINUSE => ERROR_ADDRESS_ALREADY_ASSOCIATED,
        libc::EMSGSIZE => ERROR_MORE_DATA,
        libc::EBADF => ERROR_INVALID_HANDLE,
        libc::EINVAL => ERROR_INVALID_PARAMETER,
        libc::ENOENT => ERROR_FILE_NOT_FOUND,
        libc::EEXIST => ERROR_FILE_EXISTS,
        libc::EACCES | libc::EPERM => ERROR_ACCESS_DENIED,
        libc::ENOMEM => ERROR_NOT_ENOUGH_MEMORY,
        libc::EOPNOTSUPP | libc::ENOSYS => ERROR_NOT_SUPPORTED,
        other => wsa_from_errno(other),
    }
}

/// The NTSTATUS an `OVERLAPPED.Internal` holds for a result (`errno` 0:
/// success).
pub fn ntstatus_from_errno(errno: i32) -> u32 {
    match errno {
        0 => STATUS_SUCCESS,
        libc::ECANCELED => STATUS_CANCELLED,
        libc::ECONNRESET | libc::EPIPE => STATUS_CONNECTION_RESET,
        libc::ECONNREFUSED => STATUS_CONNECTION_REFUSED,
        libc::ECONNABORTED => STATUS_CONNECTION_ABORTED,
        libc::ETIMEDOUT => STATUS_IO_TIMEOUT,
        libc::EBADF => STATUS_INVALID_HANDLE,
        libc::EINVAL => STATUS_INVALID_PARAMETER,
        _ => STATUS_UNSUCCESSFUL,
    }
}

/// The Linux error an `io::Error` from the port stands for (`EINVAL` for
/// the port's own refusals, `EBADF` for a closed handle or port).
pub fn errno_of(e: &io::Error) -> i32 {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    match e.kind() {
        io::ErrorKind::NotFound => libc::ENOENT,
        io::ErrorKind::AlreadyExists => libc::EEXIST,
        io::ErrorKind::TimedOut => libc::ETIMEDOUT,
        io::ErrorKind::NotConnected | io::ErrorKind::BrokenPipe => libc::EBADF,
        _ => libc::EINVAL,
    }
}
