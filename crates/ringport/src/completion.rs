//! What a dequeue returns: the completion key and the handle's context (the
//! per-handle data), the per-I/O user value, the operation kind, its result,
//! and the buffer it owned; and [`Outcome`], the same by kind.

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::addr::Address;
use crate::handle::{Handle, HandleInner, Origin};
use crate::op::{OpKind, Out, Shape};
use crate::sys::buf::{Buf, Buffer};
use crate::sys::OpId;

/// A connection produced by an accept, with both addresses, as `AcceptEx` +
/// `GetAcceptExSockaddrs` give them.
///
/// ```no_run
/// # fn f(c: &mut ringport::Completion) -> std::io::Result<()> {
/// let acc = c.take_accepted()?;
/// println!("{} -> {}", acc.peer_address, acc.local_address);
/// let stream = std::net::TcpStream::from(acc.socket);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Accepted {
    /// The new socket, close-on-exec. Not yet associated with any port.
    pub socket: OwnedFd,
    /// The local IP address of the connection (`0.0.0.0:0` for a Unix
    /// socket: see [`local_address`](Self::local_address)).
    pub local: SocketAddr,
    /// The peer's IP address (`0.0.0.0:0` for a Unix socket: see
    /// [`peer_address`](Self::peer_address)).
    pub peer: SocketAddr,
    /// The local address, of any family (a Unix listener's path or
    /// abstract name).
    pub local_address: Address,
    /// The peer's address, of any family (a Unix client is most often
    /// [`Address::Unnamed`]).
    pub peer_address: Address,
}

/// What a completion says happened, by the kind of its operation: the view
/// to `match` on. Every variant that had a buffer hands it back.
///
/// ```
/// use ringport::{CompletionPort, Outcome};
/// use ringport::op::Packet;
/// let port = CompletionPort::new(1)?;
/// port.post(Packet::new(9))?;
/// match port.get(None)?.take_outcome() {
///     Outcome::Packet(value) => assert_eq!(value, 9),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// A user packet, with its value.
    Packet(usize),
    /// A connection was accepted.
    Accepted(Accepted),
    /// A connection was accepted with its first data (`n` bytes, in the
    /// buffer; 0 if the client closed without sending).
    AcceptedWithData(Accepted, usize, Buffer),
    /// A connect succeeded.
    Connected,
    /// `n` bytes were received (or read) into the buffer; 0 means the
    /// peer closed its side (or the end of the file).
    Received(usize, Buffer),
    /// A datagram of `n` bytes was received into the buffer from the
    /// address.
    ReceivedFrom(usize, Buffer, Address),
    /// `n` bytes were sent (or written) from the buffer.
    Sent(usize, Buffer),
    /// A timer expired.
    TimerExpired,
    /// The sending side was shut.
    ShutDown,
    /// The handle was closed; no completion of it follows.
    HandleClosed,
    /// The operation failed (or was cancelled:
    /// [`io::ErrorKind`] aside, `raw_os_error()` is `ECANCELED`); its
    /// buffer, if it had one, comes back.
    Failed(io::Error, Option<Buffer>),
}

/// A finished operation (or a user packet), as dequeued by
/// [`CompletionPort::get`](crate::CompletionPort::get).
///
/// It carries the completion key of the handle and the handle's context
/// (the per-handle data), the user value given when the operation was
/// posted (the per-I/O data), the operation kind, the result with the OS
/// error code kept, and the buffer the operation owned, handed back whether
/// the operation succeeded or not.
///
/// ```
/// use ringport::{CompletionPort, OpKind};
/// use ringport::op::Packet;
/// let port = CompletionPort::new(1)?;
/// port.post(Packet::new(7).key(5).user(6))?;
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
    /// Bytes transferred (or the packet value), when `errno` is 0.
    pub(crate) value: usize,
    /// The positive errno of a failed operation; 0 for success (a result
    /// as two fields, not a `Result`, keeps a completion at 88 bytes).
    pub(crate) errno: i32,
    pub(crate) buf: Option<Buf>,
    /// What few completions have: an accepted connection, a datagram's
    /// sender (boxed: every completion is moved through the ready queue,
    /// and its size is paid on each move).
    pub(crate) extra: Option<Box<Extra>>,
    pub(crate) more: bool,
    pub(crate) seq: u64,
    /// The handle's way back and its context.
    pub(crate) origin: Option<Arc<Origin>>,
}

/// The rarer parts of a completion.
#[derive(Debug)]
pub(crate) enum Extra {
    Accepted(Accepted),
    From(Address),
}

impl Completion {
    /// A user packet's completion.
    pub(crate) fn packet(key: u64, user: u64, value: usize) -> Self {
        Completion {
            key,
            user,
            kind: OpKind::Packet,
            id: OpId::NONE,
            value,
            errno: 0,
            buf: None,
            extra: None,
            more: false,
            seq: 0,
            origin: None,
        }
    }

    /// A handle's `Close` completion.
    pub(crate) fn close(handle: &Arc<HandleInner>, user: u64) -> Self {
        Completion {
            kind: OpKind::Close,
            origin: Some(handle.origin.clone()),
            ..Completion::packet(handle.key, user, 0)
        }
    }

    /// An operation's completion.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn of_op(
        kind: OpKind,
        id: OpId,
        key: u64,
        user: u64,
        seq: u64,
        more: bool,
        handle: Option<&Arc<HandleInner>>,
        out: Out,
    ) -> Self {
        Completion {
            origin: handle.map(|h| h.origin.clone()),
            key,
            user,
            kind,
            id,
            value: out.result.unwrap_or(0),
            errno: out.result.err().unwrap_or(0),
            buf: out.buf,
            extra: match (out.accepted, out.addr) {
                (Some(acc), _) => Some(Box::new(Extra::Accepted(*acc))),
                (None, Some(from)) => Some(Box::new(Extra::From(from))),
                (None, None) => None,
            },
            more,
            seq,
        }
    }

    /// The completion key of the handle the operation was posted on (for a
    /// timer or a packet: the one it was given).
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

    /// Bytes transferred, or the error. For a receive, `Ok(0)` means the
    /// peer closed its side (FIN); a reset is `ECONNRESET`; a cancelled
    /// operation is `ECANCELED` (see [`is_cancelled`](Self::is_cancelled)).
    /// For a packet it is the value given to `post`; for an accept or a
    /// connect it is 0 on success (or the number of first bytes received by
    /// an accept with first data).
    pub fn result(&self) -> io::Result<usize> {
        self.res().map_err(io::Error::from_raw_os_error)
    }

    /// The OS error code, if the operation failed.
    pub fn error_code(&self) -> Option<i32> {
        (self.errno != 0).then_some(self.errno)
    }

    /// The result as the kernel gave it: bytes, or a positive errno.
    fn res(&self) -> Result<usize, i32> {
        match self.errno {
            0 => Ok(self.value),
            e => Err(e),
        }
    }

    /// Whether the operation was cancelled (by `cancel`, by closing its
    /// handle or by shutdown) before it could finish.
    pub fn is_cancelled(&self) -> bool {
        self.errno == libc::ECANCELED
    }

    /// Whether the port keeps this operation posted (pooled receives,
    /// multishot accepts): more completions with the same [`OpId`] follow.
    pub fn more(&self) -> bool {
        self.more
    }

    /// The position of this completion among those of its operation: 0, 1,
    /// 2, … for the chunks of a pooled receive, in the order the data
    /// arrived on the socket, and the final completion last; 0 for other
    /// operations. Completions of one operation may be dequeued by
    /// different threads, in any order; `seq` lets a multi-threaded server
    /// put them back in order.
    ///
    /// ```
    /// # let port = ringport::CompletionPort::new(1)?;
    /// port.post(ringport::op::Packet::new(0))?;
    /// assert_eq!(port.get(None)?.seq(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The bytes of the operation's buffer: what a receive got (or the
    /// first data of an accept), what a send sent; empty if it had none.
    pub fn data(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], Buf::bytes)
    }

    /// Takes the operation's buffer, as the type it was posted with (for a
    /// pooled receive, a `Vec<u8>`). `None` if it had none, it was taken, or
    /// it is not a `B`.
    ///
    /// ```
    /// # use std::io::Write;
    /// # use ringport::op;
    /// # let port = ringport::CompletionPort::new(1)?;
    /// # let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let mut peer = std::net::TcpStream::connect(l.local_addr()?)?;
    /// # let conn = port.associate(l.accept()?.0, 1)?;
    /// # peer.write_all(b"x")?;
    /// port.submit(op::Recv::new(&conn, Vec::with_capacity(8)))?;
    /// let mut c = port.get(None)?;
    /// let buf: Vec<u8> = c.take_buf().expect("the receive's buffer");
    /// assert_eq!(buf, b"x");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn take_buf<B: 'static>(&mut self) -> Option<B> {
        match self.buf.take()?.take::<B>() {
            Ok(b) => Some(b),
            Err(buf) => {
                self.buf = Some(buf);
                None
            }
        }
    }

    /// The address a datagram came from ([`op::RecvFrom`](crate::op::RecvFrom),
    /// [`op::RecvFromPooled`](crate::op::RecvFromPooled), `WSARecvFrom`'s
    /// `lpFrom`); `None` for other operations, and for a receive that got
    /// nothing.
    ///
    /// ```
    /// use ringport::{op, CompletionPort};
    /// use std::net::UdpSocket;
    /// let port = CompletionPort::new(1)?;
    /// let server = UdpSocket::bind("127.0.0.1:0")?;
    /// let client = UdpSocket::bind("127.0.0.1:0")?;
    /// client.send_to(b"ping", server.local_addr()?)?;
    /// let h = port.associate(server, 1)?;
    /// port.submit(op::RecvFrom::new(&h, Vec::with_capacity(64)))?;
    /// let c = port.get(None)?;
    /// assert_eq!(c.data(), b"ping");
    /// assert_eq!(c.address().and_then(|a| a.ip()), Some(client.local_addr()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn address(&self) -> Option<&Address> {
        match self.extra.as_deref()? {
            Extra::From(from) => Some(from),
            Extra::Accepted(_) => None,
        }
    }

    /// Takes the accepted connection out, if there is one.
    fn take_accepted_inner(&mut self) -> Option<Accepted> {
        match self.extra.take().map(|e| *e) {
            Some(Extra::Accepted(acc)) => Some(acc),
            other => {
                self.extra = other.map(Box::new);
                None
            }
        }
    }

    /// Takes the accepted connection out of an accept's completion; the
    /// accept's error if it failed; `InvalidInput` for another kind, or if
    /// it was taken already.
    pub fn take_accepted(&mut self) -> io::Result<Accepted> {
        self.result()?;
        self.take_accepted_inner().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no accepted connection in this {} completion", self.kind),
            )
        })
    }

    /// The context the handle was associated with
    /// ([`CompletionPort::associate_with`](crate::CompletionPort::associate_with)),
    /// if it has one of type `T`: the per-handle data, without a lookup.
    pub fn context<T: Any>(&self) -> Option<&T> {
        self.origin.as_ref()?.context.as_ref()?.downcast_ref()
    }

    /// The handle the operation was posted on, to post the next operation
    /// on it without looking it up; `None` for packets and timers, and once
    /// the application has no `Handle` of it any more (dropped or closed).
    pub fn handle(&self) -> Option<Handle> {
        Handle::revive(&self.origin.as_ref()?.handle)
    }

    /// What happened, by kind: the completion's result, buffer and accepted
    /// connection in one value to `match` on (they are taken out of the
    /// completion; key, user value, context and handle stay).
    pub fn take_outcome(&mut self) -> Outcome {
        let buf = self.buf.take().map(Buffer);
        let n = match self.res() {
            Ok(n) => n,
            Err(e) => return Outcome::Failed(io::Error::from_raw_os_error(e), buf),
        };
        let accepted = self.take_accepted_inner();
        let buffer = |buf: Option<Buffer>| buf.unwrap_or_else(|| Buffer(Buf::Vec(Vec::new())));
        match (self.kind.shape(), accepted) {
            (Shape::Packet, _) => Outcome::Packet(n),
            (Shape::Accepted, Some(acc)) => match buf {
                Some(data) => Outcome::AcceptedWithData(acc, n, data),
                None => Outcome::Accepted(acc),
            },
            (Shape::Connected, _) => Outcome::Connected,
            (Shape::Received, _) => Outcome::Received(n, buffer(buf)),
            (Shape::ReceivedFrom, _) => {
                let from = match self.extra.take().map(|e| *e) {
                    Some(Extra::From(from)) => from,
                    _ => Address::Unnamed,
                };
                Outcome::ReceivedFrom(n, buffer(buf), from)
            }
            (Shape::Sent, _) => Outcome::Sent(n, buffer(buf)),
            (Shape::TimerExpired, _) => Outcome::TimerExpired,
            (Shape::ShutDown, _) => Outcome::ShutDown,
            (Shape::HandleClosed, _) => Outcome::HandleClosed,
            (Shape::Accepted, None) => Outcome::Failed(
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} completion without its result (taken already?)",
                        self.kind
                    ),
                ),
                buf,
            ),
        }
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
            .field("buf_len", &self.buf.as_ref().map(Buf::len))
            .field("extra", &self.extra)
            .field("more", &self.more)
            .field("seq", &self.seq)
            .finish()
    }
}

/// Why [`CompletionPort::get`](crate::CompletionPort::get) returned no
/// completion.
///
/// Converts into an [`io::Error`] (`TimedOut`, or `NotConnected` for a
/// closed port) for callers that use `?` in an `io::Result` function.
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

#[cfg(test)]
mod tests {
    use super::Completion;

    /// Every completion is moved through the ready queue (post, pop, the
    /// caller's vector): its size is paid on each move. The common fields
    /// are inline; the rare ones (accepted connection, datagram sender)
    /// are boxed, the handle's way back and its context share one pointer.
    #[test]
    fn a_completion_stays_small() {
        let size = std::mem::size_of::<Completion>();
        assert!(size <= 88, "Completion is {size} bytes");
    }
}
