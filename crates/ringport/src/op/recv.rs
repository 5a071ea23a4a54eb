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
use crate::sys::uring::{clamp_len, on_target, LowerCx};
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
/// cancelled. On io_uring this is a multishot receive into a provided-buffer
/// ring.
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
            op: super::AnyOp::RecvPooled(RecvPooledOp),
        })
    }
}

pub(crate) struct RecvPooledOp;

impl Op for RecvPooledOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::RecvMulti::CODE, "RECV")];

    fn lane(&self) -> Option<Lane> {
        Some(Lane::Read)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        // At most one pool buffer's worth per completion.
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::RecvMulti::new(fd, cx.buf_group)
                .len(cx.recv_len)
                .build()),
        )
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, pool: &BufPool) -> Attempt {
        epoll::recv_pooled(fd, pool)
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
        Step::More {
            out: Out {
                result: Ok(r.res as usize),
                buf: r.pooled.take().map(Buf::Vec),
                accepted: None,
            },
            armed: r.more,
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
        let mut op = RecvPooledOp;
        match op.on_result(&mut reaped(5, true), &|| false) {
            Step::More { out, armed } => {
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
        let mut op = RecvPooledOp;
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
        let mut op = RecvPooledOp;
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
