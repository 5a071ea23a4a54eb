//! Receives: into a caller's buffer (`WSARecv`), or into buffers from the
//! port's pool as data arrives (stays posted; an idle connection pins no
//! buffer). Both run one at a time per handle, in post order (the read
//! lane).

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};

use super::{no_fd, Head, Lane, Op, Out, Record, Step};
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::buf::{Buf, IoBufMut};
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::uring::{clamp_len, on_target, with_total_cap, LowerCx};
use crate::sys::Reaped;

/// A receive into the spare capacity of a buffer (`WSARecv`): the
/// completion's result is the number of bytes received, and its buffer is
/// the one given, extended by them; `Ok(0)` means the peer closed its side.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Write;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// client.write_all(b"hi")?;
/// port.submit(op::Recv::new(&conn, Vec::with_capacity(64)).user(7))?;
/// let mut c = port.get(None)?;
/// assert_eq!((c.user(), c.data()), (7, &b"hi"[..]));
/// let buf: Vec<u8> = c.take_buf().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Recv(pub(super) Record);

impl Recv {
    /// A receive on `socket` into the spare capacity of `buf`
    /// (`buf.len()..buf.capacity()`). Posting fails with `InvalidInput` if
    /// there is none: a zero-byte receive could not be told from a close.
    pub fn new(socket: &Handle, buf: impl IoBufMut) -> Recv {
        Recv(Record {
            head: Head::on(socket),
            op: super::AnyOp::Recv(RecvOp {
                buf: Buf::writable(buf),
            }),
        })
    }
}

pub(crate) struct RecvOp {
    buf: Buf,
}

impl Op for RecvOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Recv::CODE, "RECV")];

    fn check(&mut self) -> Result<(), &'static str> {
        super::room(&mut self.buf)
    }
    fn lane(&self) -> Option<Lane> {
        Some(Lane::Read)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let (ptr, len) = self.buf.spare().ok_or(-libc::EINVAL)?;
        let len = clamp_len(len);
        Ok(on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Recv::new(fd, ptr, len).build()))
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        epoll::recv_into(fd, &mut self.buf)
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        Some(&mut self.buf)
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}

/// A receive that stays posted and takes a buffer from the port's pool only
/// when data arrives, so idle connections pin no memory. Each chunk of data
/// completes with [`Completion::more`](crate::Completion::more) set and a
/// pooled buffer (give it back with
/// [`CompletionPort::recycle`](crate::CompletionPort::recycle)); the op ends
/// with one final completion: `Ok(0)` at end of stream, an error, or
/// cancelled, or — with a budget ([`up_to`](Self::up_to)) — `Ok(n)` once it
/// delivered `n` bytes. On io_uring this is a multishot receive into a
/// provided-buffer ring.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Write;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// port.submit(op::RecvPooled::new(&conn))?;
/// client.write_all(b"chunk")?;
/// let mut c = port.get(None)?;
/// assert!(c.more());
/// assert_eq!(c.data(), b"chunk");
/// port.recycle(c.take_buf().unwrap());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RecvPooled(pub(super) Record);

impl RecvPooled {
    /// A pooled receive on `socket`.
    pub fn new(socket: &Handle) -> RecvPooled {
        RecvPooled(Record {
            head: Head::on(socket),
            op: super::AnyOp::RecvPooled(RecvPooledOp {
                budget: usize::MAX,
                delivered: 0,
                read: 0,
            }),
        })
    }

    /// Ends by itself once it has delivered `max` bytes: flow control for a
    /// consumer with room for `max` more bytes (it posts the next receive
    /// when it has room again). Neither backend reads further ahead: io_uring
    /// caps the kernel's receive at what is left of `max`, epoll reads no
    /// more than that. The last chunk may take the total past `max` by less
    /// than one pool buffer. The final completion is then `Ok(n)`, `n > 0`
    /// the bytes delivered (at most `i32::MAX`); `Ok(0)` still means end of
    /// stream. Posting fails with `InvalidInput` when `max` is 0.
    ///
    /// ```
    /// use ringport::{op, CompletionPort};
    /// use std::io::Write;
    /// let port = CompletionPort::new(1)?;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = std::net::TcpStream::connect(l.local_addr()?)?;
    /// let conn = port.associate(l.accept()?.0, 1)?;
    /// client.write_all(&[7; 100])?;
    /// port.submit(op::RecvPooled::new(&conn).up_to(10))?;
    /// let mut got = 0;
    /// loop {
    ///     let c = port.get(None)?;
    ///     if !c.more() {
    ///         assert_eq!(c.result()?, got); // ended by its budget
    ///         break;
    ///     }
    ///     got += c.data().len();
    /// }
    /// assert!(got >= 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn up_to(mut self, max: usize) -> RecvPooled {
        if let super::AnyOp::RecvPooled(op) = &mut self.0.op {
            op.budget = max;
        }
        self
    }
}

/// Chunks one arming of a multishot receive delivers at most before the
/// port arms it again (where the kernel can cap it: see `lower`).
const CHUNKS_PER_ARM: u32 = 16;

pub(crate) struct RecvPooledOp {
    /// Bytes it may deliver (`usize::MAX`: no budget).
    budget: usize,
    /// Bytes delivered so far.
    delivered: usize,
    /// Bytes epoll's tries have read so far (ahead of `delivered` while
    /// their chunks wait to be reported).
    read: usize,
}

impl RecvPooledOp {
    fn left(&self, counted: usize) -> usize {
        self.budget.saturating_sub(counted)
    }
}

impl Op for RecvPooledOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::RecvMulti::CODE, "RECV")];

    fn check(&mut self) -> Result<(), &'static str> {
        if self.budget == 0 {
            return Err("a pooled receive of at most 0 bytes");
        }
        Ok(())
    }
    fn lane(&self) -> Option<Lane> {
        Some(Lane::Read)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        let left = clamp_len(self.left(self.delivered)).max(1);
        // At most one pool buffer's worth per completion.
        let len = cx.recv_len.min(left);
        if !cx.recv_total_cap {
            if self.budget == usize::MAX {
                return Ok(
                    on_target!(target, fd => opcode::RecvMulti::new(fd, cx.buf_group)
                    .len(len)
                    .build()),
                );
            }
            // A budget without the kernel's cap: one receive at a time,
            // each asking for no more than what is left.
            return Ok(
                on_target!(target, fd => opcode::Recv::new(fd, std::ptr::null_mut(), len)
                    .buf_group(cx.buf_group)
                    .build())
                .flags(io_uring::squeue::Flags::BUFFER_SELECT),
            );
        }
        // The kernel caps the multishot receive at what is left of the
        // budget, and at most CHUNKS_PER_ARM buffers' worth per arming:
        // a multishot receive that keeps finding data is requeued by the
        // kernel after 32 receives, and on a socket reset with that much
        // unread data it then waits for a readiness event that never comes
        // (its final completion is lost; Linux 6.18). Armed again by the
        // port, it reads on and ends.
        let cap = left.min(cx.recv_len.saturating_mul(CHUNKS_PER_ARM));
        let multi = on_target!(target, fd => opcode::RecvMulti::new(fd, cx.buf_group)
            .len(len)
            .build());
        Ok(with_total_cap(multi, cap))
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, pool: &BufPool) -> Attempt {
        let left = self.left(self.read);
        if left == 0 {
            // The chunk that used the budget up ended the op's stay.
            return Attempt::Done(-libc::EINVAL);
        }
        let tried = epoll::recv_pooled(fd, pool, left);
        if let Attempt::Chunk { res, .. } = &tried {
            self.read = self.read.saturating_add(*res as usize);
        }
        tried
    }
    fn on_result(&mut self, r: &mut Reaped, stop: &dyn Fn() -> bool) -> Step {
        if r.res == -libc::ENOBUFS {
            // Out of provided buffers: post again, unless asked to stop.
            return if stop() {
                Step::Final(-libc::ECANCELED)
            } else {
                Step::Restart
            };
        }
        if r.res <= 0 {
            return Step::Final(r.res);
        }
        self.delivered = self.delivered.saturating_add(r.res as usize);
        let spent = !r.more && self.delivered >= self.budget;
        Step::More {
            out: Out {
                result: Ok(r.res as usize),
                buf: r.pooled.take().map(Buf::Vec),
                accepted: None,
                addr: None,
            },
            armed: r.more,
            end: spent.then(|| i32::try_from(self.delivered).unwrap_or(i32::MAX)),
        }
    }
    fn finish(self, res: i32) -> Out {
        Out::result(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaped(res: i32, more: bool) -> Reaped {
        Reaped {
            res,
            more,
            pooled: (res > 0).then(|| vec![7; res as usize]),
            fd: None,
        }
    }

    #[test]
    fn a_chunk_is_handed_out_and_the_receive_stays_posted() {
        let mut op = RecvPooledOp {
            budget: usize::MAX,
            delivered: 0,
            read: 0,
        };
        match op.on_result(&mut reaped(5, true), &|| false) {
            Step::More { out, armed, .. } => {
                assert!(armed);
                assert_eq!(out.result, Ok(5));
                assert_eq!(out.buf.map(|b| b.bytes().to_vec()), Some(vec![7; 5]));
            }
            _ => panic!("a chunk is handed out"),
        }
        // The kernel stopped it: the port re-arms (decided by the engine).
        assert!(matches!(
            op.on_result(&mut reaped(3, false), &|| true),
            Step::More { armed: false, .. }
        ));
    }

    #[test]
    fn out_of_buffers_reposts_unless_stopping() {
        let mut op = RecvPooledOp {
            budget: usize::MAX,
            delivered: 0,
            read: 0,
        };
        let enobufs = || Reaped::res(-libc::ENOBUFS);
        assert!(matches!(
            op.on_result(&mut enobufs(), &|| false),
            Step::Restart
        ));
        assert!(matches!(
            op.on_result(&mut enobufs(), &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
    }

    #[test]
    fn end_of_stream_and_errors_end_it() {
        let mut op = RecvPooledOp {
            budget: usize::MAX,
            delivered: 0,
            read: 0,
        };
        assert!(matches!(
            op.on_result(&mut reaped(0, false), &|| false),
            Step::Final(0)
        ));
        assert!(matches!(
            op.on_result(&mut Reaped::res(-libc::ECONNRESET), &|| false),
            Step::Final(r) if r == -libc::ECONNRESET
        ));
        assert_eq!(op.finish(0).result, Ok(0));
    }

    #[test]
    fn a_receive_returns_its_buffer_whatever_the_result() {
        let op = RecvOp {
            buf: Buf::writable(Vec::with_capacity(8)),
        };
        let out = op.finish(-libc::ECANCELED);
        assert_eq!(out.result, Err(libc::ECANCELED));
        assert!(out.buf.is_some());
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn a_budgeted_receive_ends_with_what_it_delivered() {
        let mut op = RecvPooledOp {
            budget: 10,
            delivered: 0,
            read: 0,
        };
        let chunk = |n: i32, more| Reaped {
            res: n,
            more,
            pooled: Some(vec![0; n as usize]),
            fd: None,
        };
        assert!(matches!(
            op.on_result(&mut chunk(6, false), &|| false),
            Step::More {
                armed: false,
                end: None,
                ..
            }
        ));
        assert!(matches!(
            op.on_result(&mut chunk(6, false), &|| false),
            Step::More {
                armed: false,
                end: Some(12),
                ..
            }
        ));
    }

    #[test]
    fn a_zero_budget_is_refused() {
        let mut op = RecvPooledOp {
            budget: 0,
            delivered: 0,
            read: 0,
        };
        assert!(op.check().is_err());
    }
}
