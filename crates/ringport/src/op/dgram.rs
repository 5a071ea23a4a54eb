//! Datagrams with their addresses (`WSARecvFrom`, `WSASendTo`), on UDP
//! (IPv4, IPv6) and Unix datagram sockets: a receive into a caller's
//! buffer, a receive into pooled buffers that stays posted (on io_uring a
//! multishot `recvmsg` into the provided-buffer ring: an idle socket pins no
//! buffer, a burst costs one submission), and a send to an address.
//!
//! A datagram longer than the buffer is never a silent short read: the
//! completion fails with `EMSGSIZE` (`WSAEMSGSIZE`), and still carries the
//! part that fitted and the sender's address.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};
use socket2::SockAddr;

use super::{no_fd, Head, Lane, Op, Out, Record, Shape, Step};
use crate::addr::Address;
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::buf::{Buf, IoBuf, IoBufMut};
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::msg::{self, Msg};
use crate::sys::uring::{on_target, LowerCx};
use crate::sys::Reaped;

/// A receive of one datagram into the spare capacity of a buffer, with the
/// sender's address (`WSARecvFrom`): the result is the datagram's length,
/// the address is [`Completion::address`](crate::Completion::address). A
/// datagram longer than the spare capacity fails with `EMSGSIZE`; the
/// buffer then holds the part that fitted.
///
/// Several may be posted on one socket at once; each takes one datagram.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::net::UdpSocket;
///
/// let port = CompletionPort::new(1)?;
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"0123456789", server.local_addr()?)?;
/// let h = port.associate(server, 1)?;
/// port.submit(op::RecvFrom::new(&h, Vec::with_capacity(4)))?;
/// let c = port.get(None)?;
/// // Ten bytes into four: truncated, and said so.
/// assert_eq!(c.error_code(), Some(libc::EMSGSIZE));
/// assert_eq!(c.data(), b"0123");
/// assert_eq!(c.address().and_then(|a| a.ip()), Some(client.local_addr()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RecvFrom(pub(super) Record);

impl RecvFrom {
    /// A receive on `socket` into the spare capacity of `buf`. Posting
    /// fails with `InvalidInput` if there is none.
    pub fn new(socket: &Handle, buf: impl IoBufMut) -> RecvFrom {
        RecvFrom(Record {
            head: Head::on(socket),
            op: super::AnyOp::RecvFrom(RecvFromOp {
                buf: Buf::writable(buf),
                msg: Msg::from_any(),
            }),
        })
    }
}

pub(crate) struct RecvFromOp {
    buf: Buf,
    /// Boxed: the kernel reads the header and writes the address while the
    /// op is in flight.
    msg: Box<Msg>,
}

impl RecvFromOp {
    /// The header pointing at the buffer's spare capacity.
    fn prepare(&mut self) -> Option<*mut libc::msghdr> {
        let spare = self.buf.spare()?;
        Some(self.msg.prepare([spare]))
    }
}

/// A datagram result: `EMSGSIZE` if the kernel said it was cut short.
fn truncation(res: i32, flags: i32) -> i32 {
    if res >= 0 && flags & libc::MSG_TRUNC != 0 {
        -libc::EMSGSIZE
    } else {
        res
    }
}

/// Whether a datagram result came with the sender's address.
fn has_sender(res: i32) -> bool {
    res >= 0 || res == -libc::EMSGSIZE
}

impl Op for RecvFromOp {
    const SHAPE: Shape = Shape::ReceivedFrom;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::RecvMsg::CODE, "RECVMSG")];

    fn check(&mut self) -> Result<(), &'static str> {
        super::room(&mut self.buf)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        let hdr = self.prepare().ok_or(-libc::EINVAL)?;
        Ok(on_target!(target, fd => opcode::RecvMsg::new(fd, hdr).build()))
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        if self.prepare().is_none() {
            return Attempt::Done(-libc::EINVAL);
        }
        epoll::recv_msg(fd, &mut self.msg)
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        Some(&mut self.buf)
    }
    fn on_result(&mut self, r: &mut Reaped, _stop: &dyn Fn() -> bool) -> Step {
        Step::Final(truncation(r.res, self.msg.flags()))
    }
    fn finish(self, res: i32) -> Out {
        Out {
            addr: has_sender(res).then(|| Address::from(self.msg.sender())),
            ..Out::with_buf(res, self.buf)
        }
    }
}

/// A receive of datagrams into buffers from the port's pool, which stays
/// posted: each datagram completes with
/// [`Completion::more`](crate::Completion::more) set, its sender's address
/// and a pooled buffer holding it (give it back with
/// [`CompletionPort::recycle`](crate::CompletionPort::recycle)). A
/// datagram longer than a pool buffer's room (the buffer size less 144
/// bytes of header and address) completes with `EMSGSIZE` and the part that
/// fitted, and the receive goes on (with pool buffers of 144 bytes or
/// less it fails at once with `EMSGSIZE`). It ends with one final completion: an
/// error, or cancelled. On io_uring this is a multishot `recvmsg` into the
/// provided-buffer ring: an idle socket holds no buffer, and a burst of
/// datagrams costs no submission.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::net::UdpSocket;
///
/// let port = CompletionPort::new(1)?;
/// let server = UdpSocket::bind("127.0.0.1:0")?;
/// let to = server.local_addr()?;
/// let h = port.associate(server, 1)?;
/// port.submit(op::RecvFromPooled::new(&h))?;
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.send_to(b"one", to)?;
/// client.send_to(b"two", to)?;
/// for want in [b"one", b"two"] {
///     let mut c = port.get(None)?;
///     assert!(c.more());
///     assert_eq!(c.data(), want);
///     assert_eq!(c.address().and_then(|a| a.ip()), Some(client.local_addr()?));
///     port.recycle(c.take_buf().unwrap());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RecvFromPooled(pub(super) Record);

impl RecvFromPooled {
    /// A pooled datagram receive on `socket`.
    pub fn new(socket: &Handle) -> RecvFromPooled {
        RecvFromPooled(Record {
            head: Head::on(socket),
            op: super::AnyOp::RecvFromPooled(RecvFromPooledOp {
                msg: Msg::from_any(),
            }),
        })
    }
}

pub(crate) struct RecvFromPooledOp {
    /// The header the kernel reads when the receive is armed: room for an
    /// address, no buffer (the kernel picks one per datagram).
    msg: Box<Msg>,
}

impl RecvFromPooledOp {
    /// The completion of one datagram, laid out in `buf` as `sys::msg`
    /// describes (`None`: not a datagram).
    fn datagram(mut buf: Vec<u8>) -> Option<Out> {
        let d = msg::parse_datagram(&buf)?;
        buf.drain(..msg::PAYLOAD_AT);
        let res = if d.truncated {
            -libc::EMSGSIZE
        } else {
            i32::try_from(d.len).unwrap_or(i32::MAX)
        };
        Some(Out {
            addr: Some(Address::from(d.from)),
            ..Out::with_buf(res, Buf::Vec(buf))
        })
    }
}

impl Op for RecvFromPooledOp {
    const SHAPE: Shape = Shape::ReceivedFrom;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::RecvMsgMulti::CODE, "RECVMSG")];

    fn lane(&self) -> Option<Lane> {
        Some(Lane::Read)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        if cx.recv_len as usize <= msg::PAYLOAD_AT {
            // Pool buffers too small for a header, an address and a byte.
            return Err(-libc::EMSGSIZE);
        }
        let hdr = self.msg.prepare([]);
        Ok(on_target!(target, fd => opcode::RecvMsgMulti::new(fd, hdr, cx.dgram_group).build()))
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, pool: &BufPool) -> Attempt {
        epoll::recv_datagram_pooled(fd, pool)
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
        if r.res < 0 {
            return Step::Final(r.res);
        }
        match r.pooled.take().and_then(RecvFromPooledOp::datagram) {
            Some(out) => Step::More {
                out,
                armed: r.more,
                end: None,
            },
            None => Step::Final(-libc::EIO),
        }
    }
    fn finish(self, res: i32) -> Out {
        Out::result(res)
    }
}

/// A send of one datagram to an address (`WSASendTo`), on an unconnected
/// (or connected) datagram socket; it completes with the bytes sent. Sends
/// of one handle go out in the order they were posted.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::net::UdpSocket;
///
/// let port = CompletionPort::new(1)?;
/// let peer = UdpSocket::bind("[::1]:0")?;
/// let h = port.associate(UdpSocket::bind("[::1]:0")?, 1)?;
/// port.submit(op::SendTo::new(&h, b"hello".to_vec(), peer.local_addr()?))?;
/// assert_eq!(port.get(None)?.result()?, 5);
/// let mut got = [0; 16];
/// assert_eq!(peer.recv(&mut got)?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SendTo(pub(super) Record);

impl SendTo {
    /// A send of `buf` on `socket` to `to` (an IP address, or a
    /// [`socket2::SockAddr`] of any family: see
    /// [`Address::to_sock_addr`]).
    pub fn new(socket: &Handle, buf: impl IoBuf, to: impl Into<SockAddr>) -> SendTo {
        SendTo(Record {
            head: Head::on(socket),
            op: super::AnyOp::SendTo(SendToOp {
                buf: Buf::read_only(buf),
                msg: Msg::to(&to.into()),
                tried: false,
            }),
        })
    }
}

pub(crate) struct SendToOp {
    buf: Buf,
    /// Boxed: the kernel reads the header, the address and the iovec while
    /// the op is in flight.
    msg: Box<Msg>,
    /// Tried with a syscall already (io_uring tries once, then submits).
    tried: bool,
}

impl SendToOp {
    fn prepare(&mut self) -> *mut libc::msghdr {
        let bytes = self.buf.bytes();
        // Read only by the send.
        let (ptr, len) = (bytes.as_ptr().cast_mut(), bytes.len());
        self.msg.prepare([(ptr, len)])
    }
}

impl Op for SendToOp {
    const SHAPE: Shape = Shape::Sent;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::SendMsg::CODE, "SENDMSG")];

    fn lane(&self) -> Option<Lane> {
        Some(Lane::Write)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        let hdr = self.prepare();
        Ok(on_target!(target, fd => opcode::SendMsg::new(fd, hdr)
            .flags(libc::MSG_NOSIGNAL as u32)
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
    fn try_first(&mut self, _cx: &LowerCx) -> bool {
        !self.tried
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_v4(port: u16) -> Vec<u8> {
        let a = SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let name = msg::addr_bytes(&a);
        let mut buf = vec![0u8; msg::PAYLOAD_AT];
        buf[msg::DGRAM_HEADER..msg::DGRAM_HEADER + name.len()].copy_from_slice(&name);
        buf
    }

    fn pooled(payload: &[u8], whole: u32, more: bool) -> Reaped {
        let mut buf = from_v4(9);
        let name_len = 16;
        msg::write_datagram_header(&mut buf, name_len, whole, 0);
        buf.extend_from_slice(payload);
        Reaped {
            res: buf.len() as i32,
            more,
            pooled: Some(buf),
            fd: None,
        }
    }

    fn pooled_op() -> RecvFromPooledOp {
        RecvFromPooledOp {
            msg: Msg::from_any(),
        }
    }

    #[test]
    fn a_pooled_datagram_completes_with_its_payload_and_sender() {
        let mut op = pooled_op();
        match op.on_result(&mut pooled(b"hey", 3, true), &|| false) {
            Step::More { out, armed, end } => {
                assert!(armed && end.is_none());
                assert_eq!(out.result, Ok(3));
                assert_eq!(out.buf.unwrap().bytes(), b"hey");
                let from = out.addr.and_then(|a| a.ip()).unwrap();
                assert_eq!(from, std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
            }
            _ => panic!("a datagram is handed out"),
        }
    }

    #[test]
    fn a_pooled_datagram_cut_short_is_emsgsize_and_the_receive_goes_on() {
        let mut op = pooled_op();
        match op.on_result(&mut pooled(b"hey", 300, true), &|| false) {
            Step::More { out, armed, .. } => {
                assert!(armed);
                assert_eq!(out.result, Err(libc::EMSGSIZE));
                assert_eq!(out.buf.unwrap().bytes(), b"hey");
                assert!(out.addr.is_some());
            }
            _ => panic!("a truncated datagram is handed out, marked"),
        }
    }

    #[test]
    fn a_pooled_receive_reposts_when_out_of_buffers_and_ends_on_errors() {
        let mut op = pooled_op();
        let mut enobufs = Reaped::res(-libc::ENOBUFS);
        assert!(matches!(
            op.on_result(&mut enobufs, &|| false),
            Step::Restart
        ));
        assert!(matches!(
            op.on_result(&mut enobufs, &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
        assert!(matches!(
            op.on_result(&mut Reaped::res(-libc::ECANCELED), &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
        // A result without a datagram in a buffer is not a silent success.
        assert!(matches!(
            op.on_result(&mut Reaped::res(20), &|| false),
            Step::Final(r) if r == -libc::EIO
        ));
    }

    #[test]
    fn a_datagram_cut_short_fails_with_emsgsize_keeping_buffer_and_sender() {
        assert_eq!(truncation(4, libc::MSG_TRUNC), -libc::EMSGSIZE);
        assert_eq!(truncation(4, 0), 4);
        assert_eq!(truncation(0, 0), 0, "an empty datagram is not an end");
        assert_eq!(truncation(-libc::EBADF, libc::MSG_TRUNC), -libc::EBADF);
        let op = RecvFromOp {
            buf: Buf::writable(Vec::with_capacity(4)),
            msg: Msg::from_any(),
        };
        let out = op.finish(-libc::EMSGSIZE);
        assert_eq!(out.result, Err(libc::EMSGSIZE));
        assert!(out.buf.is_some() && out.addr.is_some());
    }

    #[test]
    fn a_failed_or_cancelled_receive_returns_its_buffer_without_an_address() {
        let op = RecvFromOp {
            buf: Buf::writable(Vec::with_capacity(4)),
            msg: Msg::from_any(),
        };
        let out = op.finish(-libc::ECANCELED);
        assert_eq!(out.result, Err(libc::ECANCELED));
        assert!(out.buf.is_some() && out.addr.is_none());
    }

    #[test]
    fn a_send_to_returns_its_buffer_whatever_the_result() {
        let to = SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
        for res in [5, -libc::ECONNREFUSED, -libc::ECANCELED] {
            let op = SendToOp {
                buf: Buf::read_only(b"hello".to_vec()),
                msg: Msg::to(&to),
                tried: false,
            };
            let out = op.finish(res);
            assert_eq!(out.buf.map(|b| b.len()), Some(5));
        }
    }
}
