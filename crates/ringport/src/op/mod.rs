//! The operations, one family per file: each file holds an operation's
//! public builder (what a caller posts with
//! [`CompletionPort::submit`](crate::CompletionPort::submit)), its state
//! while it is in flight, its result rules, and how each backend runs it
//! (the io_uring request it lowers to; the epoll plan and non-blocking try).
//!
//! Adding an operation is one file and one line in the list below. Nothing
//! outside this module matches on the kind of an operation, except to
//! dispatch.
//!
//! ```
//! use ringport::{op, CompletionPort};
//! use std::time::Duration;
//!
//! let port = CompletionPort::new(1)?;
//! port.submit(op::Timeout::new(Duration::from_millis(1)).key(3).user(4))?;
//! let c = port.get(None)?;
//! assert_eq!((c.kind(), c.key(), c.user()), (op::OpKind::Timeout, 3, 4));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Deadlines
//!
//! Every operation takes a deadline (`deadline(after)` on its builder):
//! past it, the operation is cancelled and completes with `ETIMEDOUT`,
//! its buffer handed back. A connect timeout is a connect with a deadline.
//!
//! ```
//! use ringport::{op, CompletionPort};
//! use std::time::Duration;
//! let port = CompletionPort::new(1)?;
//! let l = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let _client = std::net::TcpStream::connect(l.local_addr()?)?;
//! let conn = port.associate(l.accept()?.0, 1)?;
//! // Nothing arrives: the receive times out, buffer returned.
//! let recv = op::Recv::new(&conn, Vec::with_capacity(8));
//! port.submit(recv.deadline(Duration::from_millis(10)))?;
//! let mut c = port.get(None)?;
//! assert_eq!(c.error_code(), Some(libc::ETIMEDOUT));
//! assert!(c.take_buf::<Vec<u8>>().is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod accept;
mod connect;
mod dgram;
mod file;
mod packet;
mod recv;
mod send;
mod shutdown;
mod stream;
mod timeout;
mod vectored;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use io_uring::squeue::Entry;
use io_uring::types::Timespec;

pub use accept::Accept;
pub use connect::Connect;
pub use dgram::{RecvFrom, RecvFromPooled, SendTo};
pub use file::{ReadAt, WriteAt};
pub use packet::Packet;
pub use recv::{Recv, RecvPooled};
pub use send::{Send, SendAll};
pub use shutdown::Shutdown;
pub use stream::{Read, Write};
pub use timeout::Timeout;
pub use vectored::{RecvVectored, SendVectored, MAX_BUFFERS};

use crate::addr::Address;
use crate::completion::Accepted;
use crate::handle::{Handle, HandleInner};
use crate::pool::BufPool;
use crate::sys::buf::Buf;
use crate::sys::epoll::{Attempt, Plan};
use crate::sys::uring::LowerCx;
use crate::sys::{Reaped, SysOp};

/// Generates the list's types: [`OpKind`], the table's `AnyOp`, and the
/// dispatch from `AnyOp` to each operation's [`Op`] impl.
macro_rules! ops {
    (
        ops: { $( $(#[$doc:meta])* $kind:ident($name:literal) => $ty:ty, )* }
        others: { $( $(#[$odoc:meta])* $okind:ident($oname:literal) => $oshape:ident, )* }
    ) => {
        /// The kind of operation a completion belongs to (the seeds'
        /// `OPERATION_TYPE`).
        ///
        /// ```
        /// use ringport::OpKind;
        /// assert_eq!(OpKind::RecvPooled.to_string(), "recv_pooled");
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum OpKind {
            $( $(#[$doc])* $kind, )*
            $( $(#[$odoc])* $okind, )*
        }

        impl OpKind {
            /// What its completion reports (see [`Shape`]).
            pub(crate) fn shape(self) -> Shape {
                match self {
                    $( OpKind::$kind => <$ty as Op>::SHAPE, )*
                    $( OpKind::$okind => Shape::$oshape, )*
                }
            }

            /// A short lowercase name, for logs.
            ///
            /// ```
            /// assert_eq!(ringport::OpKind::SendAll.name(), "send_all");
            /// ```
            pub fn name(self) -> &'static str {
                match self {
                    $( OpKind::$kind => $name, )*
                    $( OpKind::$okind => $oname, )*
                }
            }
        }

        /// An operation in the table, whichever it is.
        pub(crate) enum AnyOp {
            $( $kind($ty), )*
        }

        impl AnyOp {
            fn kind(&self) -> OpKind {
                match self { $( AnyOp::$kind(_) => OpKind::$kind, )* }
            }
            fn check(&mut self) -> Result<(), &'static str> {
                match self { $( AnyOp::$kind(op) => op.check(), )* }
            }
            fn lane(&self) -> Option<Lane> {
                match self { $( AnyOp::$kind(op) => op.lane(), )* }
            }
            fn own_fd(&self) -> Option<RawFd> {
                match self { $( AnyOp::$kind(op) => op.own_fd(), )* }
            }
            fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
                match self { $( AnyOp::$kind(op) => op.lower(cx), )* }
            }
            fn plan(&mut self, fd: Option<RawFd>) -> Plan {
                match self { $( AnyOp::$kind(op) => op.plan(fd), )* }
            }
            fn attempt(&mut self, fd: RawFd, pool: &BufPool) -> Attempt {
                match self { $( AnyOp::$kind(op) => op.attempt(fd, pool), )* }
            }
            fn try_first(&mut self, cx: &LowerCx) -> bool {
                match self { $( AnyOp::$kind(op) => op.try_first(cx), )* }
            }
            fn filling(&mut self) -> Option<&mut Buf> {
                match self { $( AnyOp::$kind(op) => op.filling(), )* }
            }
            fn makes_fd(&self) -> bool {
                match self { $( AnyOp::$kind(op) => op.makes_fd(), )* }
            }
            fn on_result(&mut self, r: &mut Reaped, stop: &dyn Fn() -> bool) -> Step {
                match self { $( AnyOp::$kind(op) => op.on_result(r, stop), )* }
            }
            fn finish(self, res: i32) -> Out {
                match self { $( AnyOp::$kind(op) => op.finish(res), )* }
            }
        }

        /// Every io_uring opcode the operations lower to (probed when a
        /// port is set up).
        pub(crate) fn opcodes() -> &'static [(u8, &'static str)] {
            static ALL: std::sync::OnceLock<Vec<(u8, &'static str)>> =
                std::sync::OnceLock::new();
            ALL.get_or_init(|| {
                let mut all = Vec::new();
                $( all.extend_from_slice(<$ty as Op>::OPCODES); )*
                all.sort_unstable();
                all.dedup();
                all
            })
        }
    };
}

ops! {
    ops: {
        /// An accepted connection (AcceptEx).
        Accept("accept") => accept::AcceptOp,
        /// An outgoing connection (ConnectEx).
        Connect("connect") => connect::ConnectOp,
        /// A receive into a caller-supplied buffer (WSARecv).
        Recv("recv") => recv::RecvOp,
        /// A receive into buffers taken from the port's pool, which stays
        /// posted: one completion per chunk of data.
        RecvPooled("recv_pooled") => recv::RecvPooledOp,
        /// A send that completes with the bytes actually sent (WSASend).
        Send("send") => send::SendOp,
        /// A send the port continues until every byte is sent.
        SendAll("send_all") => send::SendAllOp,
        /// A positional read from a file (ReadFile with an offset).
        ReadAt("read_at") => file::ReadAtOp,
        /// A positional write to a file (WriteFile with an offset).
        WriteAt("write_at") => file::WriteAtOp,
        /// A timer.
        Timeout("timeout") => timeout::TimeoutOp,
        /// A receive of one datagram with its sender's address
        /// (WSARecvFrom).
        RecvFrom("recv_from") => dgram::RecvFromOp,
        /// A receive of datagrams into buffers from the port's pool, which
        /// stays posted: one completion per datagram, with its sender.
        RecvFromPooled("recv_from_pooled") => dgram::RecvFromPooledOp,
        /// A send of one datagram to an address (WSASendTo).
        SendTo("send_to") => dgram::SendToOp,
        /// A read without an offset (ReadFile on a pipe).
        Read("read") => stream::ReadOp,
        /// A write without an offset (WriteFile on a pipe).
        Write("write") => stream::WriteOp,
        /// A send of several buffers as one (WSASend with several WSABUFs).
        SendVectored("send_vectored") => vectored::SendVectoredOp,
        /// A receive into several buffers (WSARecv with several WSABUFs).
        RecvVectored("recv_vectored") => vectored::RecvVectoredOp,
        /// The end of the sending side of a connection (`shutdown(SHUT_WR)`,
        /// DisconnectEx's first half).
        Shutdown("shutdown") => shutdown::ShutdownOp,
    }
    others: {
        /// A user packet ([`Packet`], PostQueuedCompletionStatus).
        Packet("packet") => Packet,
        /// The close of a handle
        /// ([`CompletionPort::close`](crate::CompletionPort::close)): the
        /// last completion of that handle.
        Close("close") => HandleClosed,
    }
}

/// What a successful completion of an operation reports: the variant of
/// [`Outcome`](crate::Outcome) it becomes. Each operation states its own
/// ([`Op::SHAPE`]), so the completion needs no list of operation kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A user packet's value.
    Packet,
    /// An accepted connection, with the first data if it waited for some.
    Accepted,
    /// A connection made.
    Connected,
    /// Bytes received or read into the buffer.
    Received,
    /// A datagram received, with its sender.
    ReceivedFrom,
    /// Bytes sent or written from the buffer.
    Sent,
    /// A timer's expiry.
    TimerExpired,
    /// The sending side shut down.
    ShutDown,
    /// A handle's close.
    HandleClosed,
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which per-handle lane an operation occupies: operations of one lane run
/// one at a time, in the order they were posted, so data is never
/// reordered or interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Read = 0,
    Write = 1,
}

/// What a kernel result means for an operation (its result rules).
pub(crate) enum Step {
    /// Start the current stage again, or the next stage (the rest of a
    /// partial send, the first data of an accept, a pooled receive that ran
    /// out of buffers).
    Restart,
    /// Hand this out as one completion of an op that stays posted; `armed`:
    /// the kernel keeps the op going, else the port starts it again (unless
    /// it was asked to stop, which then ends it as cancelled, or `end` says
    /// it is done: then it ends with that result).
    More {
        out: Out,
        armed: bool,
        end: Option<i32>,
    },
    /// The op is done, with this result.
    Final(i32),
    /// The kernel posts another result for this stage (a zero-copy send's
    /// notification): nothing to do until it comes.
    Wait,
}

/// What a completion carries besides its header.
pub(crate) struct Out {
    pub result: Result<usize, i32>,
    pub buf: Option<Buf>,
    pub accepted: Option<Box<Accepted>>,
    /// Where a datagram came from.
    pub addr: Option<Address>,
}

impl Out {
    /// A result and nothing else.
    pub(crate) fn result(res: i32) -> Out {
        Out {
            result: if res < 0 { Err(-res) } else { Ok(res as usize) },
            buf: None,
            accepted: None,
            addr: None,
        }
    }

    /// A result and the op's buffer.
    pub(crate) fn with_buf(res: i32, buf: Buf) -> Out {
        Out {
            buf: Some(buf),
            ..Out::result(res)
        }
    }
}

/// One operation: how it runs on each backend and what its results mean.
/// Implemented by each type of the list; the table holds them as `AnyOp`.
pub(crate) trait Op {
    /// The io_uring opcodes it lowers to.
    const OPCODES: &'static [(u8, &'static str)];
    /// What its successful completion reports.
    const SHAPE: Shape;
    /// Whether it can be posted as it is (why not, if not).
    fn check(&mut self) -> Result<(), &'static str> {
        Ok(())
    }
    /// The lane it occupies on its handle, if any.
    fn lane(&self) -> Option<Lane> {
        None
    }
    /// The descriptor its current stage works on, if not its handle's (the
    /// accepted socket during an accept's first-data stage).
    fn own_fd(&self) -> Option<RawFd> {
        None
    }
    /// io_uring: the request for the current stage, or its result now.
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32>;
    /// epoll: how the current stage runs, on `fd` (its handle's, or its
    /// own).
    fn plan(&mut self, fd: Option<RawFd>) -> Plan;
    /// epoll: one non-blocking try of the current stage (for
    /// [`Plan::Io`]).
    fn attempt(&mut self, _fd: RawFd, _pool: &BufPool) -> Attempt {
        Attempt::Done(-libc::EINVAL)
    }
    /// io_uring: try the current stage with [`attempt`](Self::attempt)
    /// before making it a request (see `SysOp::try_first`).
    fn try_first(&mut self, _cx: &LowerCx) -> bool {
        false
    }
    /// The buffer whose spare capacity the current stage fills.
    fn filling(&mut self) -> Option<&mut Buf> {
        None
    }
    /// Whether a successful result of the current stage is a new
    /// descriptor.
    fn makes_fd(&self) -> bool {
        false
    }
    /// What a kernel result for the current stage means. `stop()` says
    /// whether the op was asked to stop; ask it only where the answer
    /// changes what happens (it may be a cache miss).
    fn on_result(&mut self, r: &mut Reaped, _stop: &dyn Fn() -> bool) -> Step {
        Step::Final(r.res)
    }
    /// The final completion's payload, for the op's last result `res`.
    fn finish(self, res: i32) -> Out;
}

/// Whether a receive's buffer has room: a zero-byte receive could not be
/// told from the peer's close.
fn room(buf: &mut Buf) -> Result<(), &'static str> {
    if buf.has_spare() {
        Ok(())
    } else {
        Err("the buffer has no spare capacity to receive into")
    }
}

/// Fails a lowering whose op has no descriptor (its handle was closed).
pub(crate) fn no_fd() -> i32 {
    -libc::EBADF
}

/// The header every posted operation has: what it works on, the values a
/// completion hands back, and what the port tracks of it. Public only
/// because the sealed [`Operation`] trait names it.
#[doc(hidden)]
pub struct Head {
    pub(crate) handle: Option<Arc<HandleInner>>,
    pub(crate) key: u64,
    pub(crate) user: u64,
    /// Asked to stop (cancel, close, shutdown): a pooled receive is not
    /// reposted, a send is not continued.
    pub(crate) cancelled: bool,
    /// Completions handed out so far (the chunks of a pooled receive).
    pub(crate) seq: u64,
    /// The builders' `deadline`, if one was set (boxed: few ops have one,
    /// and a record is moved several times between `submit` and the
    /// table, so every byte of it is paid on each move).
    pub(crate) deadline: Option<Box<Deadline>>,
}

/// When an op must be done by: then it is cancelled and completes with
/// `ETIMEDOUT`.
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    /// io_uring: what is left until `at`, read by the kernel when the
    /// linked timeout is submitted (boxed: it stays put).
    pub(crate) left: Timespec,
}

impl Head {
    /// The header of an op on `handle`.
    pub(crate) fn on(handle: &Handle) -> Head {
        Head {
            handle: Some(handle.inner.clone()),
            key: handle.key(),
            user: 0,
            cancelled: false,
            seq: 0,
            deadline: None,
        }
    }

    /// The header of an op on no handle (a timer).
    pub(crate) fn bare() -> Head {
        Head {
            handle: None,
            key: 0,
            user: 0,
            cancelled: false,
            seq: 0,
            deadline: None,
        }
    }

    /// Whether a cancellation result is the deadline's: the deadline has
    /// passed, and nobody else asked the op to stop.
    fn timed_out(&self) -> bool {
        self.deadline
            .as_ref()
            .is_some_and(|d| Instant::now() >= d.at)
            && !self.cancelled
            && !self
                .handle
                .as_ref()
                .is_some_and(|h| h.closed.load(Ordering::Acquire))
    }
}

/// A posted operation as the op table holds it. Public only because the
/// sealed [`Operation`] trait names it.
#[doc(hidden)]
pub struct Record {
    pub(crate) head: Head,
    pub(crate) op: AnyOp,
}

impl Record {
    pub(crate) fn kind(&self) -> OpKind {
        self.op.kind()
    }

    pub(crate) fn lane(&self) -> Option<Lane> {
        self.op.lane()
    }

    /// Whether it can be posted as it is (`InvalidInput` saying why not).
    pub(crate) fn check(&mut self) -> std::io::Result<()> {
        self.op
            .check()
            .map_err(|why| std::io::Error::new(std::io::ErrorKind::InvalidInput, why))
    }

    /// Whether the op was asked to stop: cancelled, or its handle closed
    /// (the latter not for an accepted socket's first-data stage, which no
    /// longer works on the handle).
    pub(crate) fn is_stopping(&self, port_closed: bool) -> bool {
        port_closed
            || self.head.cancelled
            || (self.op.own_fd().is_none()
                && self
                    .head
                    .handle
                    .as_ref()
                    .is_some_and(|h| h.closed.load(Ordering::Acquire)))
    }

    /// The result rules for one kernel result.
    pub(crate) fn on_result(&mut self, r: &mut Reaped, port_closed: bool) -> Step {
        // Split borrows: the rules see the op, `stop` sees the header.
        let Record { head, op } = self;
        let own_fd = op.own_fd();
        let stop = || {
            port_closed
                || head.cancelled
                || (own_fd.is_none()
                    && head
                        .handle
                        .as_ref()
                        .is_some_and(|h| h.closed.load(Ordering::Acquire)))
        };
        op.on_result(r, &stop)
    }

    /// The final payload; a cancelled op interrupted by a signal reports
    /// the cancellation, one cancelled by its deadline `ETIMEDOUT`.
    pub(crate) fn finish(self, res: i32) -> (Head, OpKind, Out) {
        let res = if res == -libc::EINTR && self.head.cancelled {
            -libc::ECANCELED
        } else if matches!(-res, libc::ECANCELED | libc::EINTR) && self.head.timed_out() {
            -libc::ETIMEDOUT
        } else {
            res
        };
        let kind = self.op.kind();
        (self.head, kind, self.op.finish(res))
    }
}

impl SysOp for Record {
    fn fd(&self) -> Option<RawFd> {
        self.op
            .own_fd()
            .or_else(|| self.head.handle.as_ref().map(|h| h.fd.as_raw_fd()))
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        self.op.lower(cx)
    }
    fn plan(&mut self) -> Plan {
        let fd = self.fd();
        self.op.plan(fd)
    }
    fn attempt(&mut self, fd: RawFd, pool: &BufPool) -> Attempt {
        self.op.attempt(fd, pool)
    }
    fn try_first(&mut self, cx: &LowerCx) -> bool {
        self.op.try_first(cx)
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        self.op.filling()
    }
    fn makes_fd(&self) -> bool {
        self.op.makes_fd()
    }
    fn stopping(&self) -> bool {
        self.is_stopping(false)
    }
    fn deadline(&self) -> Option<Instant> {
        self.head.deadline.as_ref().map(|d| d.at)
    }
    fn link_timeout(&mut self) -> Option<Entry> {
        let d = self.head.deadline.as_mut()?;
        d.left = Timespec::from(d.at.saturating_duration_since(Instant::now()));
        Some(io_uring::opcode::LinkTimeout::new(&d.left).build())
    }
}

/// An operation a caller can post with
/// [`CompletionPort::submit`](crate::CompletionPort::submit): the builders
/// of this module.
pub trait Operation: sealed::Sealed {}

pub(crate) mod sealed {
    /// Keeps [`Operation`](super::Operation) to this crate's builders.
    pub trait Sealed {
        /// The table record the builder becomes.
        fn into_record(self) -> super::Record;
    }
}

/// A deadline too far to be represented is about a century away.
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);

/// Generates the builder methods every operation has.
macro_rules! builder {
    ($($ty:ident),* $(,)?) => {$(
        impl $ty {
            /// The per-I/O value its completion hands back
            /// ([`Completion::user`](crate::Completion::user)); 0 if not set.
            pub fn user(mut self, user: u64) -> Self {
                self.0.head.user = user;
                self
            }

            /// A deadline, counted from this call: if the operation has not
            /// completed `after` it, it is cancelled and completes with
            /// `ETIMEDOUT` (its buffer handed back, as always). On io_uring
            /// a linked timeout (`IORING_OP_LINK_TIMEOUT`) on each request
            /// it makes; on epoll a timer. An operation the kernel
            /// finishes first completes as usual. Example: see
            /// [the module docs](crate::op#deadlines).
            pub fn deadline(mut self, after: std::time::Duration) -> Self {
                let now = Instant::now();
                self.0.head.deadline = Some(Box::new(Deadline {
                    at: now.checked_add(after).unwrap_or(now + FAR_FUTURE),
                    left: Timespec::new(),
                }));
                self
            }
        }

        impl sealed::Sealed for $ty {
            fn into_record(self) -> Record {
                self.0
            }
        }

        impl Operation for $ty {}

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("key", &self.0.head.key)
                    .field("user", &self.0.head.user)
                    .finish()
            }
        }
    )*};
}

builder!(
    Accept,
    Connect,
    Recv,
    RecvPooled,
    Send,
    SendAll,
    ReadAt,
    WriteAt,
    Timeout,
    Shutdown,
    RecvFrom,
    RecvFromPooled,
    SendTo,
    Read,
    Write,
    SendVectored,
    RecvVectored,
);

#[cfg(test)]
mod deadline_tests {
    use super::sealed::Sealed;
    use super::*;
    use std::time::Duration;

    fn record(after: Duration) -> Record {
        Timeout::new(Duration::from_secs(1))
            .deadline(after)
            .into_record()
    }

    #[test]
    fn a_cancellation_past_the_deadline_is_a_time_out() {
        for res in [-libc::ECANCELED, -libc::EINTR] {
            let (_, _, out) = record(Duration::ZERO).finish(res);
            assert_eq!(out.result, Err(libc::ETIMEDOUT));
        }
    }

    #[test]
    fn a_cancel_asked_for_stays_a_cancel() {
        let mut r = record(Duration::ZERO);
        r.head.cancelled = true;
        assert_eq!(r.finish(-libc::ECANCELED).2.result, Err(libc::ECANCELED));
        // Before the deadline: whoever cancelled, it was not the deadline.
        let r = record(Duration::from_secs(60));
        assert_eq!(r.finish(-libc::ECANCELED).2.result, Err(libc::ECANCELED));
    }

    #[test]
    fn other_results_are_left_alone_and_no_deadline_means_no_link() {
        let (_, _, out) = record(Duration::ZERO).finish(-libc::ECONNRESET);
        assert_eq!(out.result, Err(libc::ECONNRESET));
        let mut plain = Timeout::new(Duration::from_secs(1)).into_record();
        assert!(plain.link_timeout().is_none());
        assert!(record(Duration::from_secs(1)).link_timeout().is_some());
    }
}

#[cfg(test)]
mod record_size {
    /// A record is moved several times between `submit` and the table and
    /// out of it again (about a dozen moves per operation): at 136 bytes
    /// each move was a `memcpy` call, a quarter of a timer's CPU time. At
    /// 128 bytes or less the compiler moves it with inline stores.
    #[test]
    fn a_record_is_moved_inline() {
        let size = std::mem::size_of::<super::Record>();
        assert!(size <= 128, "Record is {size} bytes");
    }
}
