//! Win32 completion ports for C and C++ programs on Linux, on ringport.
//!
//! This crate builds `libringport_c.a` and `libringport_c.so` with two C
//! APIs over one [`ringport::CompletionPort`] per port:
//!
//! * the Win32 calls an IOCP server makes (`CreateIoCompletionPort`,
//!   `GetQueuedCompletionStatus(Ex)`, `PostQueuedCompletionStatus`,
//!   `WSARecv`, `WSASend`, `AcceptEx`, `ConnectEx`, `ReadFile`,
//!   `WriteFile`, `CancelIoEx`, `closesocket`, threads, events, critical
//!   sections…), with Windows' return conventions, behind the headers in
//!   `include/win32/` (`windows.h`, `winsock2.h`, `mswsock.h`,
//!   `winerror.h`);
//! * a native API in `include/ringport.h` (ports, descriptors and
//!   `-errno` results).
//!
//! The port behind them keeps the promises Windows makes and other Linux
//! emulations do not: `NumberOfConcurrentThreads` is honoured (at most that
//! many workers run, the last to wait is released first, and a worker that
//! blocks in `Sleep`, `WaitForSingleObject` or a contended
//! `EnterCriticalSection` gives its slot to another), and io_uring is chosen
//! at run time with the epoll emulation taking over where it is blocked
//! (`RINGPORT_BACKEND=uring|epoll` forces one).
//!
//! `docs/PORTING.md` maps each call and says what differs on Linux.
//!
//! # Layout
//! * `ffi`: every `extern "C"` function and all of the crate's unsafe code;
//! * `registry`: what a `HANDLE` or `SOCKET` names;
//! * `io`: posting, cancelling and closing; `dequeue`: completions as
//!   Win32 reports them;
//! * `sync`: threads, events, critical sections and the running slot;
//! * `error`: last errors and the Linux → Win32 code mapping.
//!
//! The Rust items are the C functions of [`ffi`], documented with C
//! examples; the modules behind them are private.
//!
//! ```
//! // From Rust they are plain `extern "C"` functions.
//! use ringport_c::ffi::port::{CloseHandle, CreateIoCompletionPort};
//! let port = CreateIoCompletionPort(usize::MAX as *mut _, std::ptr::null_mut(), 0, 1);
//! assert!(!port.is_null());
//! assert_eq!(CloseHandle(port), 1);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(unsafe_code)]

mod dequeue;
mod error;
#[allow(unsafe_code)]
pub mod ffi;
mod io;
mod registry;
mod sync;
