//! Accepting connections (`AcceptEx`): one per post, or a multishot accept
//! that stays posted, or one that completes only with the first data.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue::Entry};
use socket2::SockRef;

use super::{no_fd, Head, Op, Out, Record, Step};
use crate::addr::Address;
use crate::completion::Accepted;
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::buf::{Buf, IoBufMut};
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::uring::{clamp_len, on_target, LowerCx};
use crate::sys::{self, Reaped};

/// An accept on a listening socket (`AcceptEx`). The completion carries the
/// new socket and both addresses
/// ([`Completion::take_accepted`](crate::Completion::take_accepted)).
/// Several accepts may be outstanding on one listener (the seeds keep ten).
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::net::{TcpListener, TcpStream};
///
/// let port = CompletionPort::new(1)?;
/// let l = port.associate(TcpListener::bind("127.0.0.1:0")?, 0)?;
/// port.submit(op::Accept::new(&l))?;
/// let client = TcpStream::connect(ringport::local_addr(&l)?)?;
/// let acc = port.get(None)?.take_accepted()?;
/// assert_eq!(acc.peer, client.local_addr()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Accept(pub(super) Record);

impl Accept {
    /// One accept on `listener`.
    pub fn new(listener: &Handle) -> Accept {
        Accept(Record {
            head: Head::on(listener),
            op: super::AnyOp::Accept(AcceptOp {
                multishot: false,
                first: None,
                stage: Stage::Accepting,
                peer: Box::new(PeerAddr {
                    storage: socket2::SockAddrStorage::zeroed(),
                    len: 0,
                }),
            }),
        })
    }

    /// Stays posted: one completion per accepted connection (with
    /// [`Completion::more`](crate::Completion::more) set), until it is
    /// cancelled or fails; a final completion ends it (a failure such as
    /// `EMFILE` ends it too: post it again after a back-off). On io_uring
    /// this is a multishot accept; on epoll the port accepts again after
    /// each connection. io_uring checks new descriptors against the
    /// `RLIMIT_NOFILE` in force when the accept was posted.
    ///
    /// ```
    /// use ringport::{op, CompletionPort};
    /// use std::net::{TcpListener, TcpStream};
    /// let port = CompletionPort::new(1)?;
    /// let l = port.associate(TcpListener::bind("127.0.0.1:0")?, 0)?;
    /// let id = port.submit(op::Accept::new(&l).multishot())?;
    /// let addr = ringport::local_addr(&l)?;
    /// let _clients = [TcpStream::connect(addr)?, TcpStream::connect(addr)?];
    /// for _ in 0..2 {
    ///     let mut c = port.get(None)?;
    ///     assert!(c.more() && c.take_accepted().is_ok());
    /// }
    /// port.cancel(id)?;
    /// assert!(port.get(None)?.is_cancelled());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn multishot(mut self) -> Accept {
        if let super::AnyOp::Accept(op) = &mut self.0.op {
            op.multishot = true;
            op.first = None;
        }
        self
    }

    /// Completes only once the first data has arrived on the new connection
    /// (AcceptEx with a receive buffer): the completion holds the
    /// connection, both addresses and `buf` extended by the bytes received
    /// (0 if the client closed without sending). Posting fails with
    /// `InvalidInput` for a buffer without spare capacity.
    pub fn first_data(mut self, buf: impl IoBufMut) -> Accept {
        if let super::AnyOp::Accept(op) = &mut self.0.op {
            op.multishot = false;
            op.first = Some(Buf::writable(buf));
        }
        self
    }
}

/// Where the kernel writes a single accept's peer address (boxed: the op
/// table's records stay small).
struct PeerAddr {
    storage: socket2::SockAddrStorage,
    len: u32,
}

/// Where an accept is.
enum Stage {
    /// Waiting for a connection.
    Accepting,
    /// A connection was accepted and the first data is awaited on it
    /// (accept with first data).
    FirstData(Box<Accepted>),
    /// A single accept got its connection.
    Done(Box<Accepted>),
}

pub(crate) struct AcceptOp {
    multishot: bool,
    /// The first-data buffer of an accept with first data.
    first: Option<Buf>,
    stage: Stage,
    peer: Box<PeerAddr>,
}

impl AcceptOp {
    /// The connection a kernel result `fd` is, with both addresses.
    fn accepted(&mut self, socket: OwnedFd) -> Box<Accepted> {
        let sock = SockRef::from(&socket);
        let written = (!self.multishot && self.peer.len > 0).then(|| {
            let storage =
                std::mem::replace(&mut self.peer.storage, socket2::SockAddrStorage::zeroed());
            sys::sock_addr(storage, self.peer.len)
        });
        let peer_address = written
            .or_else(|| sock.peer_addr().ok())
            .map_or(Address::Unnamed, Address::from);
        let local_address = sock.local_addr().map_or(Address::Unnamed, Address::from);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        Box::new(Accepted {
            socket,
            local: local_address.ip().unwrap_or(unspecified),
            peer: peer_address.ip().unwrap_or(unspecified),
            local_address,
            peer_address,
        })
    }
}

impl Op for AcceptOp {
    const OPCODES: &'static [(u8, &'static str)] = &[
        (opcode::Accept::CODE, "ACCEPT"),
        (opcode::Recv::CODE, "RECV"),
    ];

    fn check(&mut self) -> Result<(), &'static str> {
        self.first.as_mut().map_or(Ok(()), super::room)
    }

    fn own_fd(&self) -> Option<RawFd> {
        match &self.stage {
            Stage::FirstData(acc) => Some(acc.socket.as_raw_fd()),
            _ => None,
        }
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let target = cx.target.ok_or_else(no_fd)?;
        Ok(match (&self.stage, self.multishot) {
            (Stage::FirstData(_), _) => {
                let first = self.first.as_mut().ok_or(-libc::EINVAL)?;
                let (ptr, len) = first.spare().ok_or(-libc::EINVAL)?;
                on_target!(target, fd => opcode::Recv::new(fd, ptr, clamp_len(len)).build())
            }
            // No address buffer: each connection's addresses are read with
            // getpeername/getsockname when it is reaped.
            (_, true) => on_target!(target, fd => opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()),
            _ => {
                let peer = &mut *self.peer;
                peer.len = peer.storage.size_of();
                let ptr = (&raw mut peer.storage).cast::<libc::sockaddr>();
                let len = &raw mut peer.len;
                on_target!(target, fd => opcode::Accept::new(fd, ptr, len)
                    .flags(libc::SOCK_CLOEXEC)
                    .build())
            }
        })
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        match (&self.stage, self.first.as_mut()) {
            (Stage::FirstData(_), Some(first)) => epoll::recv_into(fd, first),
            _ => epoll::accept(fd, &mut self.peer.storage, &mut self.peer.len),
        }
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        match self.stage {
            Stage::FirstData(_) => self.first.as_mut(),
            _ => None,
        }
    }
    fn makes_fd(&self) -> bool {
        matches!(self.stage, Stage::Accepting)
    }
    fn on_result(&mut self, r: &mut Reaped, stop: &dyn Fn() -> bool) -> Step {
        if !matches!(self.stage, Stage::Accepting) {
            // The first data's receive.
            return Step::Final(r.res);
        }
        let Some(socket) = r.fd.take().filter(|_| r.res >= 0) else {
            let stopped = self.multishot && stop();
            return Step::Final(if stopped { -libc::ECANCELED } else { r.res });
        };
        let acc = self.accepted(socket);
        if self.multishot {
            return Step::More {
                out: Out {
                    result: Ok(0),
                    buf: None,
                    accepted: Some(acc),
                    addr: None,
                },
                armed: r.more,
                end: None,
            };
        }
        if self.first.is_some() {
            if stop() {
                // The accepted socket is closed with the op.
                return Step::Final(-libc::ECANCELED);
            }
            self.stage = Stage::FirstData(acc);
            return Step::Restart;
        }
        self.stage = Stage::Done(acc);
        Step::Final(0)
    }
    fn finish(self, res: i32) -> Out {
        let accepted = match self.stage {
            // A failed first-data receive closes the accepted socket here.
            Stage::FirstData(acc) | Stage::Done(acc) if res >= 0 => Some(acc),
            _ => None,
        };
        Out {
            accepted,
            buf: self.first,
            ..Out::result(res)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(multishot: bool, first: Option<Vec<u8>>) -> AcceptOp {
        AcceptOp {
            multishot,
            first: first.map(Buf::writable),
            stage: Stage::Accepting,
            peer: Box::new(PeerAddr {
                storage: socket2::SockAddrStorage::zeroed(),
                len: 0,
            }),
        }
    }

    /// A descriptor the result rules can own (the read end of a pipe).
    fn fd() -> OwnedFd {
        let (r, _w) = std::io::pipe().unwrap();
        r.into()
    }

    fn accepted_fd() -> Reaped {
        let fd = fd();
        Reaped {
            res: fd.as_raw_fd(),
            more: true,
            pooled: None,
            fd: Some(fd),
        }
    }

    #[test]
    fn a_multishot_accept_hands_out_each_connection_and_stays_posted() {
        let mut a = op(true, None);
        match a.on_result(&mut accepted_fd(), &|| false) {
            Step::More { out, armed, .. } => {
                assert!(armed);
                assert!(out.accepted.is_some());
            }
            _ => panic!("a connection is handed out"),
        }
        // An error asked to stop ends it as cancelled; otherwise as itself.
        assert!(matches!(
            a.on_result(&mut Reaped::res(-libc::EMFILE), &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
        assert!(matches!(
            a.on_result(&mut Reaped::res(-libc::EMFILE), &|| false),
            Step::Final(r) if r == -libc::EMFILE
        ));
    }

    #[test]
    fn an_accept_with_first_data_goes_on_to_receive() {
        let mut a = op(false, Some(Vec::with_capacity(16)));
        assert!(matches!(
            a.on_result(&mut accepted_fd(), &|| false),
            Step::Restart
        ));
        assert!(
            a.own_fd().is_some(),
            "the next stage works on the new socket"
        );
        assert!(a.filling().is_some());
        assert!(!a.makes_fd());
        assert!(matches!(
            a.on_result(&mut Reaped::res(5), &|| false),
            Step::Final(5)
        ));
        let out = a.finish(5);
        assert_eq!(out.result, Ok(5));
        assert!(out.accepted.is_some() && out.buf.is_some());
    }

    #[test]
    fn a_failed_first_data_receive_closes_the_connection() {
        let mut a = op(false, Some(Vec::with_capacity(16)));
        assert!(matches!(
            a.on_result(&mut accepted_fd(), &|| false),
            Step::Restart
        ));
        let out = a.finish(-libc::ECONNRESET);
        assert_eq!(out.result, Err(libc::ECONNRESET));
        assert!(out.accepted.is_none(), "dropped, so closed");
        assert!(out.buf.is_some(), "the buffer comes back");
    }

    #[test]
    fn an_accept_with_first_data_asked_to_stop_does_not_receive() {
        let mut a = op(false, Some(Vec::with_capacity(16)));
        assert!(matches!(
            a.on_result(&mut accepted_fd(), &|| true),
            Step::Final(r) if r == -libc::ECANCELED
        ));
    }

    #[test]
    fn a_single_accept_completes_with_zero_and_the_connection() {
        let mut a = op(false, None);
        assert!(matches!(
            a.on_result(&mut accepted_fd(), &|| false),
            Step::Final(0)
        ));
        let out = a.finish(0);
        assert_eq!(out.result, Ok(0));
        assert!(out.accepted.is_some());
    }
}
