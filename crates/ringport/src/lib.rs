//! Windows-style I/O completion ports for Linux.
//!
//! A completion port is a queue of finished operations. Sockets and files are
//! associated with it under a *completion key* (and, if wanted, a context
//! value); operations posted on them ([`op`]: accept, connect, recv, send,
//! read/write at an offset, shutdown, timeout) own their buffers until
//! their completion is dequeued; worker threads
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
//! use ringport::{op, CompletionPort, Outcome};
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//!
//! let port = CompletionPort::new(0)?;
//! let listener = port.associate(TcpListener::bind("127.0.0.1:0")?, 0)?;
//! let addr = ringport::local_addr(&listener)?;
//! port.submit(op::Accept::new(&listener))?;
//!
//! let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
//!     let mut s = TcpStream::connect(addr)?;
//!     s.write_all(b"ping")?;
//!     let mut back = [0; 4];
//!     s.read_exact(&mut back)?;
//!     Ok(back.to_vec())
//! });
//!
//! // The connections (a handle dropped closes its socket).
//! let mut conns = Vec::new();
//! loop {
//!     let mut c = port.get(None)?;
//!     match c.take_outcome() {
//!         Outcome::Accepted(conn) => {
//!             let conn = port.associate(conn.socket, 1)?;
//!             port.submit(op::Recv::new(&conn, Vec::with_capacity(4096)))?;
//!             conns.push(conn);
//!         }
//!         // The completion hands back the handle it came from.
//!         Outcome::Received(n, data) if n > 0 => {
//!             if let Some(conn) = c.handle() {
//!                 port.submit(op::SendAll::new(&conn, data))?;
//!             }
//!         }
//!         Outcome::Sent(..) => break,
//!         // End of stream, or a failure: the connection is done.
//!         _ => break,
//!     }
//! }
//! assert_eq!(client.join().unwrap()?, b"ping");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sockets from elsewhere
//!
//! The port takes any descriptor: a `std::net` listener or stream, or a
//! socket made with [`socket2`] when it needs options first or must stay
//! unconnected for [`op::Connect`] (`socket2::Socket::new(..)`, then
//! [`CompletionPort::associate`]).
//!
//! See `docs/ARCHITECTURE.md` for how threads, rings and queues fit
//! together.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod addr;
mod builder;
mod completion;
mod engine;
mod handle;
pub mod op;
mod pool;
mod port;
mod sched;
mod short_lock;
mod signals;
mod sys;

pub use addr::Address;
pub use builder::Builder;
pub use completion::{Accepted, Completion, GetError, Outcome};
pub use handle::Handle;
pub use op::{OpKind, Operation};
pub use port::{Batch, Blocking, CompletionPort};
pub use signals::Signals;
pub use sys::buf::{Buffer, IoBuf, IoBufMut, RawBuf};
pub use sys::{BackendKind, OpId};

/// The local IP address of an associated socket (`getsockname`); for any
/// family (Unix sockets too) see [`Handle::local_address`].
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
    ip_addr(socket2::SockRef::from(handle).local_addr()?)
}

/// The peer IP address of an associated, connected socket (`getpeername`);
/// for any family see [`Handle::peer_address`].
///
/// ```
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let port = ringport::CompletionPort::new(0)?;
/// let c = port.associate(client, 0)?;
/// assert_eq!(ringport::peer_addr(&c)?, listener.local_addr()?);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// When the socket is not connected or not an IP socket.
pub fn peer_addr(handle: &Handle) -> std::io::Result<std::net::SocketAddr> {
    ip_addr(socket2::SockRef::from(handle).peer_addr()?)
}

fn ip_addr(a: socket2::SockAddr) -> std::io::Result<std::net::SocketAddr> {
    a.as_socket()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an IP socket"))
}
