//! Gather sends and scatter receives (`WSASend` / `WSARecv` with several
//! `WSABUF`s): several buffers, one operation, one `sendmsg`/`recvmsg`.
//! A gather send runs in the handle's write lane and is continued until
//! every byte of every buffer is sent, so its bytes are never interleaved
//! with another send's.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};

use super::{no_fd, Head, Lane, Op, Out, Record, Step};
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::buf::{Buf, IoBuf, IoBufMut};
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::msg::Msg;
use crate::sys::uring::{on_target, LowerCx};
use crate::sys::Reaped;

/// Most buffers one vectored operation takes (the kernel's `IOV_MAX`).
pub const MAX_BUFFERS: usize = 1024;

/// Whether `n` buffers can be posted.
fn check_count(n: usize) -> Result<(), &'static str> {
    match n {
        0 => Err("a vectored operation needs at least one buffer"),
        n if n > MAX_BUFFERS => Err("a vectored operation takes at most 1024 buffers"),
        _ => Ok(()),
    }
}

/// A gather send: the buffers' bytes, in order, as one stream of bytes
/// (`WSASend` with several `WSABUF`s). The port continues it after partial
/// sends until every byte is sent; it completes once, with the total or
/// the first error, and hands back the `Vec` of buffers
/// ([`Completion::take_buf`](crate::Completion::take_buf) as `Vec<B>`).
/// Sends of one handle never interleave.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Read;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// let header = bytes::Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n");
/// let body = bytes::Bytes::from_static(b"hello");
/// port.submit(op::SendVectored::new(&conn, vec![header, body]))?;
/// let mut c = port.get(None)?;
/// assert_eq!(c.result()?, 24);
/// assert_eq!(c.take_buf::<Vec<bytes::Bytes>>().map(|v| v.len()), Some(2));
/// let mut got = [0; 24];
/// client.read_exact(&mut got)?;
/// assert_eq!(&got, b"HTTP/1.1 200 OK\r\n\r\nhello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SendVectored(pub(super) Record);

impl SendVectored {
    /// A send of all of `bufs`, in order, on `socket`. Posting fails with
    /// `InvalidInput` for no buffer or more than [`MAX_BUFFERS`].
    pub fn new<B: IoBuf>(socket: &Handle, bufs: Vec<B>) -> SendVectored {
        let count = bufs.len();
        SendVectored(Record {
            head: Head::on(socket),
            op: super::AnyOp::SendVectored(SendVectoredOp {
                bufs: Buf::many(bufs),
                count,
                msg: Msg::new(),
                sent: 0,
                tried: false,
            }),
        })
    }
}

pub(crate) struct SendVectoredOp {
    bufs: Buf,
    count: usize,
    /// Boxed: the kernel reads the header and its iovecs while the op is in
    /// flight.
    msg: Box<Msg>,
    /// Bytes sent so far.
    sent: usize,
    /// Tried with a syscall already (io_uring tries once, then submits).
    tried: bool,
}

/// `slices` without their first `skip` bytes.
fn skip_bytes(slices: &mut Vec<(*mut u8, usize)>, mut skip: usize) {
    let mut first = 0;
    for s in slices.iter_mut() {
        if skip < s.1 {
            *s = (s.0.wrapping_add(skip), s.1 - skip);
            break;
        }
        skip -= s.1;
        first += 1;
    }
    slices.drain(..first.min(slices.len()));
    slices.retain(|s| s.1 > 0);
}

impl SendVectoredOp {
    /// The header over what is left to send.
    fn prepare(&mut self) -> *mut libc::msghdr {
        let mut slices = Vec::with_capacity(self.count);
        self.bufs.slices(false, &mut slices);
        skip_bytes(&mut slices, self.sent);
        self.msg.prepare(slices)
    }
}

impl Op for SendVectoredOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::SendMsg::CODE, "SENDMSG")];

    fn check(&mut self) -> Result<(), &'static str> {
        check_count(self.count)
    }
    fn lane(&self) -> Option<Lane> {
        Some(Lane::Write)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        let hdr = self.prepare();
        Ok(on_target!(target, fd => opcode::SendMsg::new(fd, hdr)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
            .build()))
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::WRITE,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        self.tried = true;
        self.prepare();
        epoll::send_msg(fd, &self.msg)
    }
    fn try_first(&mut self) -> bool {
        !self.tried
    }
    fn on_result(&mut self, r: &mut Reaped, stop: &dyn Fn() -> bool) -> Step {
        if r.res <= 0 {
            return Step::Final(r.res);
        }
        self.sent += r.res as usize;
        if self.sent >= self.bufs.total() {
            Step::Final(r.res)
        } else if stop() {
            Step::Final(-libc::ECANCELED)
        } else {
            Step::Restart
        }
    }
    fn finish(self, res: i32) -> Out {
        let sent = i32::try_from(self.sent).unwrap_or(i32::MAX);
        Out::with_buf(if res < 0 { res } else { sent }, self.bufs)
    }
}

/// A scatter receive: one receive filling the spare capacities of several
/// buffers in order (`WSARecv` with several `WSABUF`s). It completes with
/// the bytes received (`Ok(0)`: the peer closed), and hands back the `Vec`
/// of buffers, each extended by what it got. On a datagram socket a
/// datagram longer than all the room fails with `EMSGSIZE`, the buffers
/// holding the part that fitted.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Write;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// client.write_all(b"headbody")?;
/// let parts = vec![Vec::with_capacity(4), Vec::with_capacity(16)];
/// port.submit(op::RecvVectored::new(&conn, parts))?;
/// let mut c = port.get(None)?;
/// assert_eq!(c.result()?, 8);
/// let parts: Vec<Vec<u8>> = c.take_buf().unwrap();
/// assert_eq!(parts, [b"head".to_vec(), b"body".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RecvVectored(pub(super) Record);

impl RecvVectored {
    /// A receive on `socket` into the spare capacity of each of `bufs`, in
    /// order. Posting fails with `InvalidInput` for no buffer, more than
    /// [`MAX_BUFFERS`], or no spare capacity at all.
    pub fn new<B: IoBufMut>(socket: &Handle, bufs: Vec<B>) -> RecvVectored {
        let count = bufs.len();
        RecvVectored(Record {
            head: Head::on(socket),
            op: super::AnyOp::RecvVectored(RecvVectoredOp {
                bufs: Buf::many_writable(bufs),
                count,
                msg: Msg::new(),
            }),
        })
    }
}

pub(crate) struct RecvVectoredOp {
    bufs: Buf,
    count: usize,
    /// Boxed: the kernel reads the header and its iovecs while the op is in
    /// flight.
    msg: Box<Msg>,
}

impl RecvVectoredOp {
    /// The header over the buffers' spare capacities.
    fn prepare(&mut self) -> *mut libc::msghdr {
        let mut slices = Vec::with_capacity(self.count);
        self.bufs.slices(true, &mut slices);
        slices.retain(|s| s.1 > 0);
        self.msg.prepare(slices)
    }
}

impl Op for RecvVectoredOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::RecvMsg::CODE, "RECVMSG")];

    fn check(&mut self) -> Result<(), &'static str> {
        check_count(self.count)?;
        let mut slices = Vec::new();
        self.bufs.slices(true, &mut slices);
        if slices.iter().all(|s| s.1 == 0) {
            return Err("the buffers have no spare capacity to receive into");
        }
        Ok(())
    }
    fn lane(&self) -> Option<Lane> {
        Some(Lane::Read)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        let hdr = self.prepare();
        Ok(on_target!(target, fd => opcode::RecvMsg::new(fd, hdr).build()))
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        self.prepare();
        epoll::recv_msg(fd, &mut self.msg)
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        Some(&mut self.bufs)
    }
    fn on_result(&mut self, r: &mut Reaped, _stop: &dyn Fn() -> bool) -> Step {
        if r.res >= 0 && self.msg.flags() & libc::MSG_TRUNC != 0 {
            return Step::Final(-libc::EMSGSIZE);
        }
        Step::Final(r.res)
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_op(parts: Vec<Vec<u8>>) -> SendVectoredOp {
        SendVectoredOp {
            count: parts.len(),
            bufs: Buf::many(parts),
            msg: Msg::new(),
            sent: 0,
            tried: false,
        }
    }

    #[test]
    fn a_partial_gather_send_is_continued_from_where_it_stopped() {
        let mut s = send_op(vec![vec![1; 4], vec![2; 6]]);
        assert!(matches!(
            s.on_result(&mut Reaped::res(5), &|| false),
            Step::Restart
        ));
        let mut rest = Vec::new();
        s.bufs.slices(false, &mut rest);
        skip_bytes(&mut rest, s.sent);
        assert_eq!(rest.iter().map(|r| r.1).collect::<Vec<_>>(), [5]);
        assert!(matches!(
            s.on_result(&mut Reaped::res(5), &|| false),
            Step::Final(5)
        ));
        let out = s.finish(5);
        assert_eq!(out.result, Ok(10), "the total, not the last piece");
        let mut back = out.buf.unwrap();
        assert_eq!(back.total(), 10);
        let parts: Vec<Vec<u8>> = std::mem::replace(&mut back, Buf::Vec(Vec::new()))
            .take()
            .ok()
            .unwrap();
        assert_eq!(parts, [vec![1; 4], vec![2; 6]]);
    }

    #[test]
    fn a_partial_gather_send_asked_to_stop_ends_cancelled_with_its_buffers() {
        let mut s = send_op(vec![vec![1; 4], vec![2; 6]]);
        assert!(matches!(
            s.on_result(&mut Reaped::res(3), &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
        let out = s.finish(-libc::ECANCELED);
        assert_eq!(out.result, Err(libc::ECANCELED));
        assert!(out.buf.is_some());
    }

    #[test]
    fn skipping_bytes_drops_whole_and_cuts_partial_slices() {
        let base = std::ptr::null_mut::<u8>();
        let mut s = vec![(base, 3), (base, 0), (base, 4)];
        skip_bytes(&mut s, 5);
        assert_eq!(s, [(base.wrapping_add(2), 2)]);
        let mut all = vec![(base, 3)];
        skip_bytes(&mut all, 3);
        assert!(all.is_empty());
    }

    #[test]
    fn buffer_counts_outside_one_to_iov_max_are_refused() {
        assert!(send_op(Vec::new()).check().is_err());
        assert!(send_op(vec![Vec::new(); MAX_BUFFERS + 1]).check().is_err());
        assert!(send_op(vec![vec![1]; MAX_BUFFERS]).check().is_ok());
        let mut full = RecvVectoredOp {
            bufs: Buf::many_writable(vec![Vec::<u8>::new()]),
            count: 1,
            msg: Msg::new(),
        };
        assert!(full.check().is_err(), "no room at all");
    }
}
