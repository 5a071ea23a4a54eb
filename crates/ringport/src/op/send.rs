//! Sends: once (`WSASend`, completing with the bytes actually sent), or
//! until every byte is sent (the seeds' `BytesSEND` bookkeeping). Sends of
//! one handle run one at a time, in post order (the write lane), so their
//! bytes never interleave.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};

use super::{no_fd, Head, Lane, Op, Out, Record, Shape, Step};
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::buf::{Buf, IoBuf};
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::uring::{clamp_len, on_target, LowerCx};
use crate::sys::Reaped;

/// A send of a buffer (`WSASend`); it completes with the bytes actually
/// sent, which may be fewer (see [`SendAll`]).
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Read;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// port.submit(op::Send::new(&conn, b"hey".to_vec()))?;
/// assert_eq!(port.get(None)?.result()?, 3);
/// let mut got = [0; 3];
/// client.read_exact(&mut got)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Send(pub(super) Record);

impl Send {
    /// A send of `buf` on `socket`.
    pub fn new(socket: &Handle, buf: impl IoBuf) -> Send {
        Send(Record {
            head: Head::on(socket),
            op: super::AnyOp::Send(SendOp {
                buf: Buf::read_only(buf),
                tried: false,
            }),
        })
    }
}

pub(crate) struct SendOp {
    buf: Buf,
    /// Tried with a syscall already (io_uring tries once, then submits).
    tried: bool,
}

/// The request sending `bytes`, `flags` (and never `SIGPIPE`).
fn lower_send(cx: &LowerCx, bytes: &[u8], flags: i32) -> Result<Entry, i32> {
    let (ptr, len) = (bytes.as_ptr(), clamp_len(bytes.len()));
    Ok(
        on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Send::new(fd, ptr, len)
            .flags(libc::MSG_NOSIGNAL | flags)
            .build()),
    )
}

fn plan_send() -> Plan {
    Plan::Io {
        dir: epoll::WRITE,
        must_try: false,
    }
}

impl Op for SendOp {
    const SHAPE: Shape = Shape::Sent;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Send::CODE, "SEND")];

    fn lane(&self) -> Option<Lane> {
        Some(Lane::Write)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        lower_send(cx, self.buf.bytes(), 0)
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        plan_send()
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        self.tried = true;
        epoll::send(fd, self.buf.bytes())
    }
    fn try_first(&mut self, _cx: &LowerCx) -> bool {
        !self.tried
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}

/// A send that the port continues after partial sends until every byte of
/// the buffer is sent; it completes once, with the buffer's length or the
/// first error. On io_uring the kernel itself continues a partial send
/// (`MSG_WAITALL`), so the rest goes out without waiting for a thread to
/// reap the partial result.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Read;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// // A shared buffer: a broadcast sends one to many clients without copies.
/// let shared = bytes::Bytes::from_static(b"to everyone");
/// port.submit(op::SendAll::new(&conn, shared.clone()).user(1))?;
/// let mut c = port.get(None)?;
/// assert_eq!(c.result()?, 11);
/// assert_eq!(c.take_buf::<bytes::Bytes>(), Some(shared));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SendAll(pub(super) Record);

impl SendAll {
    /// A send of all of `buf` on `socket`.
    pub fn new(socket: &Handle, buf: impl IoBuf) -> SendAll {
        SendAll(Record {
            head: Head::on(socket),
            op: super::AnyOp::SendAll(SendAllOp {
                buf: Buf::read_only(buf),
                sent: 0,
                tried: false,
                zc_sent: None,
            }),
        })
    }
}

pub(crate) struct SendAllOp {
    buf: Buf,
    /// Bytes sent so far.
    sent: usize,
    /// Tried with a syscall already: the rest of a partial try goes to the
    /// kernel as a request (the socket buffer is full).
    tried: bool,
    /// A zero-copy send's result, held until the kernel's notification
    /// says it is done with the buffer.
    zc_sent: Option<i32>,
}

impl SendAllOp {
    fn rest(&self) -> &[u8] {
        let bytes = self.buf.bytes();
        &bytes[self.sent.min(bytes.len())..]
    }

    /// Whether what is left goes out zero-copy (io_uring `SEND_ZC`).
    fn zero_copy(&self, cx: &LowerCx) -> bool {
        cx.zero_copy_above
            .is_some_and(|min| self.rest().len() >= min)
    }

    /// The rules for the bytes a send got out (or its error).
    fn sent(&mut self, res: i32, stop: &dyn Fn() -> bool) -> Step {
        if res <= 0 {
            return Step::Final(res);
        }
        self.sent += res as usize;
        if self.sent >= self.buf.len() {
            Step::Final(res)
        } else if stop() {
            // Cut short: the bytes already sent are lost to the caller's
            // view, as with any cancelled send.
            Step::Final(-libc::ECANCELED)
        } else {
            Step::Restart
        }
    }
}

impl Op for SendAllOp {
    const SHAPE: Shape = Shape::Sent;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Send::CODE, "SEND")];

    fn lane(&self) -> Option<Lane> {
        Some(Lane::Write)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        if !self.zero_copy(cx) {
            return lower_send(cx, self.rest(), libc::MSG_WAITALL);
        }
        let rest = self.rest();
        let (ptr, len) = (rest.as_ptr(), clamp_len(rest.len()));
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::SendZc::new(fd, ptr, len)
                .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
                .build()),
        )
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        plan_send()
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        self.tried = true;
        epoll::send(fd, self.rest())
    }
    fn try_first(&mut self, cx: &LowerCx) -> bool {
        // A try would copy what zero-copy is meant not to.
        !self.tried && !self.zero_copy(cx)
    }
    fn on_result(&mut self, r: &mut Reaped, stop: &dyn Fn() -> bool) -> Step {
        if let Some(res) = self.zc_sent.take() {
            // The notification: the kernel no longer reads the buffer.
            return self.sent(res, stop);
        }
        if r.more {
            // A zero-copy send's result; its notification follows.
            self.zc_sent = Some(r.res);
            return Step::Wait;
        }
        self.sent(r.res, stop)
    }
    fn finish(self, res: i32) -> Out {
        let sent = i32::try_from(self.sent).unwrap_or(i32::MAX);
        Out::with_buf(if res < 0 { res } else { sent }, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(len: usize) -> SendAllOp {
        SendAllOp {
            buf: Buf::read_only(vec![1u8; len]),
            sent: 0,
            tried: false,
            zc_sent: None,
        }
    }

    fn zc_result(res: i32) -> Reaped {
        Reaped {
            more: true,
            ..Reaped::res(res)
        }
    }

    #[test]
    fn a_zero_copy_send_completes_only_at_its_notification() {
        let mut s = op(10);
        assert!(matches!(
            s.on_result(&mut zc_result(10), &|| false),
            Step::Wait
        ));
        // The notification (result 0, no more to come) ends it with the
        // bytes the send got out.
        assert!(matches!(
            s.on_result(&mut Reaped::res(0), &|| false),
            Step::Final(10)
        ));
        assert_eq!(s.finish(10).result, Ok(10));
    }

    #[test]
    fn a_partial_zero_copy_send_continues_after_its_notification() {
        let mut s = op(10);
        assert!(matches!(
            s.on_result(&mut zc_result(4), &|| false),
            Step::Wait
        ));
        assert!(matches!(
            s.on_result(&mut Reaped::res(0), &|| false),
            Step::Restart
        ));
        assert_eq!(s.rest().len(), 6);
        // A failed zero-copy send has no notification.
        assert!(matches!(
            s.on_result(&mut Reaped::res(-libc::EPIPE), &|| false),
            Step::Final(r) if r == -libc::EPIPE
        ));
    }

    #[test]
    fn zero_copy_is_chosen_by_size_and_skips_the_first_try() {
        let cx = |min| LowerCx {
            target: None,
            buf_group: 0,
            dgram_group: 1,
            recv_len: 0,
            recv_total_cap: false,
            zero_copy_above: min,
        };
        let mut s = op(100);
        assert!(s.zero_copy(&cx(Some(100))) && !s.try_first(&cx(Some(100))));
        assert!(!s.zero_copy(&cx(Some(101))) && s.try_first(&cx(Some(101))));
        assert!(!s.zero_copy(&cx(None)));
    }

    #[test]
    fn a_partial_send_is_continued_from_where_it_stopped() {
        let mut s = op(10);
        assert!(matches!(
            s.on_result(&mut Reaped::res(4), &|| false),
            Step::Restart
        ));
        assert_eq!(s.rest().len(), 6);
        assert!(matches!(
            s.on_result(&mut Reaped::res(6), &|| false),
            Step::Final(6)
        ));
        let out = s.finish(6);
        assert_eq!(out.result, Ok(10), "the whole buffer, not the last piece");
        assert_eq!(out.buf.map(|b| b.len()), Some(10));
    }

    #[test]
    fn a_partial_send_asked_to_stop_ends_cancelled() {
        let mut s = op(10);
        assert!(matches!(
            s.on_result(&mut Reaped::res(4), &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
        assert_eq!(s.finish(-libc::ECANCELED).result, Err(libc::ECANCELED));
    }

    #[test]
    fn an_error_ends_it_with_the_buffer() {
        let mut s = op(10);
        assert!(matches!(
            s.on_result(&mut Reaped::res(-libc::EPIPE), &|| false),
            Step::Final(r) if r == -libc::EPIPE
        ));
        let out = s.finish(-libc::EPIPE);
        assert_eq!(out.result, Err(libc::EPIPE));
        assert!(out.buf.is_some());
    }

    #[test]
    fn nothing_to_send_completes_with_zero() {
        let mut s = op(0);
        assert!(matches!(
            s.on_result(&mut Reaped::res(0), &|| false),
            Step::Final(0)
        ));
        assert_eq!(s.finish(0).result, Ok(0));
    }
}
