//! What a dequeue returns: the completion key, the per-I/O user value, the
//! operation kind, its result and the buffer it owned.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

/// Identifies one posted operation, for [`CompletionPort::cancel`].
///
/// An `OpId` is never reused while the operation it names is outstanding, and a
/// stale `OpId` (of an operation that already completed) cancels nothing.
///
/// [`CompletionPort::cancel`]: crate::CompletionPort::cancel
///
/// # Examples
///
/// ```
/// use ringport::{CompletionPort, OpId};
/// use std::time::Duration;
///
/// let port = CompletionPort::new(0)?;
/// let id: OpId = port.timeout(Duration::from_secs(60), 0, 7)?;
/// port.cancel(id)?;
/// let c = port.get(None)?;
/// assert!(c.is_cancelled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpId(pub(crate) u64);

impl OpId {
    /// The id carried by completions that had no posted operation (user packets).
    pub const NONE: OpId = OpId(0);

    /// The raw value (index and generation), useful for logging.
    ///
    /// ```
    /// assert_eq!(ringport::OpId::NONE.as_u64(), 0);
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({}#{})", self.0 as u32, self.0 >> 32)
    }
}

/// The kind of operation a completion belongs to (the seeds' `OPERATION_TYPE`).
///
/// ```
/// use ringport::OpKind;
/// assert_eq!(OpKind::Recv.name(), "recv");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// A user packet from [`CompletionPort::post`](crate::CompletionPort::post).
    Packet,
    /// An accepted connection (AcceptEx).
    Accept,
    /// An outgoing connection (ConnectEx).
    Connect,
    /// A receive into a caller-supplied buffer (WSARecv).
    Recv,
    /// A receive into a buffer taken from the port's pool, reposted by the
    /// port after every completion while [`Completion::more`] is true.
    RecvPooled,
    /// A send that completes with the bytes actually sent (WSASend).
    Send,
    /// A send the port continues until every byte is sent or an error occurs.
    SendAll,
    /// A positional read from a file (ReadFile with OVERLAPPED offset).
    ReadAt,
    /// A positional write to a file (WriteFile with OVERLAPPED offset).
    WriteAt,
    /// A timer.
    Timeout,
    /// The close of a handle.
    Close,
}

impl OpKind {
    /// A short lowercase name, for logs.
    ///
    /// ```
    /// assert_eq!(ringport::OpKind::SendAll.name(), "send_all");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Packet => "packet",
            OpKind::Accept => "accept",
            OpKind::Connect => "connect",
            OpKind::Recv => "recv",
            OpKind::RecvPooled => "recv_pooled",
            OpKind::Send => "send",
            OpKind::SendAll => "send_all",
            OpKind::ReadAt => "read_at",
            OpKind::WriteAt => "write_at",
            OpKind::Timeout => "timeout",
            OpKind::Close => "close",
        }
    }
}

/// A connection produced by an accept operation, with both addresses, as
/// `AcceptEx` + `GetAcceptExSockaddrs` give them.
///
/// ```no_run
/// # fn f(c: &mut ringport::Completion) {
/// if let Some(acc) = c.take_accepted() {
///     println!("{} -> {}", acc.peer, acc.local);
///     let stream = std::net::TcpStream::from(acc.socket);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Accepted {
    /// The new socket, non-blocking and close-on-exec. Not yet associated
    /// with any port.
    pub socket: OwnedFd,
    /// The local address of the connection.
    pub local: SocketAddr,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// A finished operation (or a user packet), as dequeued by
/// [`CompletionPort::get`](crate::CompletionPort::get).
///
/// It carries the completion key of the handle (the per-handle data), the user
/// value given when the operation was posted (the per-I/O data), the operation
/// kind, the result with the OS error code kept, and the buffer the operation
/// owned, handed back whether the operation succeeded or not.
///
/// ```
/// use ringport::{CompletionPort, OpKind};
/// let port = CompletionPort::new(1)?;
/// port.post(5, 6, 7)?;
/// let c = port.get(None)?;
/// assert_eq!((c.key(), c.user(), c.kind()), (5, 6, OpKind::Packet));
/// assert_eq!(c.result()?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Completion {
    pub(crate) key: u64,
    pub(crate) user: u64,
    pub(crate) kind: OpKind,
    pub(crate) id: OpId,
    /// Bytes transferred (or the packet value), or a positive errno.
    pub(crate) result: Result<usize, i32>,
    pub(crate) buf: Option<Vec<u8>>,
    pub(crate) accepted: Option<Box<Accepted>>,
    pub(crate) more: bool,
    pub(crate) seq: u64,
}

impl Completion {
    pub(crate) fn packet(key: u64, user: u64, value: usize) -> Self {
        Completion {
            key,
            user,
            kind: OpKind::Packet,
            id: OpId::NONE,
            result: Ok(value),
            buf: None,
            accepted: None,
            more: false,
            seq: 0,
        }
    }

    /// The completion key of the handle the operation was posted on (0 for
    /// operations without a handle unless one was given).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The user value given when the operation was posted.
    pub fn user(&self) -> u64 {
        self.user
    }

    /// Which operation this is.
    pub fn kind(&self) -> OpKind {
        self.kind
    }

    /// The id returned when the operation was posted.
    pub fn id(&self) -> OpId {
        self.id
    }

    /// Bytes transferred, or the error. For a receive, `Ok(0)` means the peer
    /// closed its side (FIN); a reset is `ECONNRESET`; a cancelled operation is
    /// `ECANCELED` (see [`Completion::is_cancelled`]). For a packet it is the
    /// value given to `post`; for accept and connect it is 0 on success (or
    /// the number of first bytes received with `accept_with_data`).
    pub fn result(&self) -> io::Result<usize> {
        self.result.map_err(io::Error::from_raw_os_error)
    }

    /// The OS error code, if the operation failed.
    pub fn error_code(&self) -> Option<i32> {
        self.result.err()
    }

    /// Whether the operation was cancelled (by `cancel`, by closing its handle
    /// or by shutdown) before it could finish.
    pub fn is_cancelled(&self) -> bool {
        self.result == Err(libc::ECANCELED)
    }

    /// Whether the port keeps this operation posted (pooled receives): more
    /// completions with the same [`OpId`] will follow.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The position of this completion among those of its operation: 0, 1,
    /// 2, … for the chunks of a pooled receive, in the order the data arrived
    /// on the socket, and the final completion last; 0 for other operations.
    /// Completions of one operation may be dequeued by different threads, in
    /// any order; `seq` lets a multi-threaded server put them back in order.
    ///
    /// ```
    /// # let port = ringport::CompletionPort::new(1)?;
    /// port.post(0, 0, 0)?;
    /// assert_eq!(port.get(None)?.seq(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The buffer the operation owned. For receives its length was extended by
    /// the bytes received; for sends it is the buffer as given.
    pub fn buf(&self) -> Option<&Vec<u8>> {
        self.buf.as_ref()
    }

    /// Takes the buffer out of the completion.
    pub fn take_buf(&mut self) -> Option<Vec<u8>> {
        self.buf.take()
    }

    /// The bytes received by a receive (or first data of an accept), empty
    /// for other operations.
    pub fn data(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }

    /// Takes the accepted connection out of an accept completion.
    pub fn take_accepted(&mut self) -> Option<Accepted> {
        self.accepted.take().map(|a| *a)
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("key", &self.key)
            .field("user", &self.user)
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("result", &self.result())
            .field("buf_len", &self.buf.as_ref().map(Vec::len))
            .field("accepted", &self.accepted)
            .field("more", &self.more)
            .field("seq", &self.seq)
            .finish()
    }
}

/// Why [`CompletionPort::get`](crate::CompletionPort::get) returned no completion.
///
/// Converts into an [`io::Error`] (`TimedOut`, or `NotConnected` for a closed
/// port) for callers that use `?` in an `io::Result` function.
///
/// ```
/// use ringport::{CompletionPort, GetError};
/// use std::time::Duration;
/// let port = CompletionPort::new(1)?;
/// assert!(matches!(port.get(Some(Duration::ZERO)), Err(GetError::TimedOut)));
/// port.shutdown();
/// assert!(matches!(port.get(None), Err(GetError::Closed)));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub enum GetError {
    /// The timeout elapsed with nothing to dequeue (WAIT_TIMEOUT).
    TimedOut,
    /// The port was shut down; no more completions will come.
    Closed,
    /// The backend failed.
    Io(io::Error),
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::TimedOut => f.write_str("timed out waiting for a completion"),
            GetError::Closed => f.write_str("the completion port was shut down"),
            GetError::Io(e) => write!(f, "completion port backend failed: {e}"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<GetError> for io::Error {
    fn from(e: GetError) -> io::Error {
        match e {
            GetError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, e),
            GetError::Closed => io::Error::new(io::ErrorKind::NotConnected, e),
            GetError::Io(e) => e,
        }
    }
}
