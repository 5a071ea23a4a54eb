//! Windows-style I/O completion ports for Linux.
//!
//! A completion port is a queue of finished operations. Sockets and files are
//! associated with it under a *completion key*; operations posted on them
//! (accept, connect, recv, send, read/write at an offset, timeout, close)
//! own their buffers until their completion is dequeued; worker threads
//! dequeue completions one at a time or in batches, at most `concurrency` of
//! them running at once, the most recent waiter first. User packets wake
//! workers and stop them. This is the model of the Windows IOCP
//! (`CreateIoCompletionPort`, `GetQueuedCompletionStatus(Ex)`,
//! `PostQueuedCompletionStatus`, `CancelIoEx`), done on Linux:
//!
//! * **io_uring** does the I/O in the kernel, as IOCP does, when it can be set
//!   up with every operation the port needs;
//! * **epoll** emulates it otherwise (old kernels, container seccomp
//!   profiles, `kernel.io_uring_disabled`): an operation is tried at once and,
//!   if it would block, performed by the port when the descriptor is ready.
//!
//! The choice is automatic (logged with `tracing` when it falls back), can be
//! forced with [`Builder::backend`] or `RINGPORT_BACKEND=uring|epoll`, and is
//! reported by [`CompletionPort::backend`].
//!
//! # Example: the seeds' echo worker
//!
//! ```
//! use ringport::{CompletionPort, OpKind};
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! let port = CompletionPort::new(0)?;
//! let listener = port.associate(TcpListener::bind("127.0.0.1:0")?, 0)?;
//! let addr = ringport::local_addr(&listener)?;
//! port.accept(&listener, 0)?;
//!
//! let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
//!     let mut s = TcpStream::connect(addr)?;
//!     s.write_all(b"ping")?;
//!     let mut back = [0; 4];
//!     s.read_exact(&mut back)?;
//!     Ok(back.to_vec())
//! });
//!
//! let mut conns = Vec::new();
//! loop {
//!     let mut c = port.get(None)?;
//!     match c.kind() {
//!         OpKind::Accept => {
//!             let acc = c.take_accepted().expect("accepted socket");
//!             let conn = port.associate(acc.socket, 1)?;
//!             port.recv(&conn, Vec::with_capacity(4096), 0)?;
//!             conns.push(conn);
//!         }
//!         OpKind::Recv if c.result()? > 0 => {
//!             let data = c.take_buf().unwrap();
//!             port.send_all(&conns[0], data, 0)?;
//!         }
//!         OpKind::SendAll => break,
//!         _ => unreachable!(),
//!     }
//! }
//! assert_eq!(client.join().unwrap()?, b"ping");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/ARCHITECTURE.md` for how threads, rings and queues fit together.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod buf;
mod builder;
mod completion;
mod handle;
mod op;
mod port;

mod sched;
mod shared;
mod short_lock;
mod sys;

pub use builder::{BackendKind, Builder};
pub use completion::{Accepted, Completion, GetError, OpId, OpKind};
pub use handle::Handle;
pub use port::{Batch, Blocking, CompletionPort};

/// The local address of an associated socket (`getsockname`).
///
/// ```
/// let port = ringport::CompletionPort::new(0)?;
/// let l = port.associate(std::net::TcpListener::bind("127.0.0.1:0")?, 0)?;
/// assert!(ringport::local_addr(&l)?.port() != 0);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// When the descriptor is not an IP socket.
pub fn local_addr(handle: &Handle) -> std::io::Result<std::net::SocketAddr> {
    sys::socket_addr(handle, false)
}

/// The peer address of an associated, connected socket (`getpeername`).
///
/// # Errors
/// When the socket is not connected or not an IP socket.
pub fn peer_addr(handle: &Handle) -> std::io::Result<std::net::SocketAddr> {
    sys::socket_addr(handle, true)
}
