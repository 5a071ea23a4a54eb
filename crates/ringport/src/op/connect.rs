//! Connecting an associated, unconnected socket (`ConnectEx`).

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};
use socket2::SockAddr;

use super::{no_fd, Head, Op, Out, Record};
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::uring::{on_target, LowerCx};

/// A connect of an associated, unconnected socket (`ConnectEx`). Create the
/// socket with [`socket2`] (or any API that gives an unconnected
/// descriptor), associate it, then post this.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use socket2::{Domain, Socket, Type};
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
/// let s = port.associate(socket, 1)?;
/// port.submit(op::Connect::new(&s, listener.local_addr()?))?;
/// assert_eq!(port.get(None)?.result()?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connect(pub(super) Record);

impl Connect {
    /// A connect of `socket` to `addr` (an IP address, or a
    /// [`socket2::SockAddr`] of any family: a Unix path or abstract name
    /// from [`Address::to_sock_addr`](crate::Address::to_sock_addr)).
    ///
    /// ```
    /// use ringport::{op, Address, CompletionPort};
    /// use socket2::{Domain, Socket, Type};
    ///
    /// let port = CompletionPort::new(1)?;
    /// let path = std::env::temp_dir().join(format!("ringport-doc-c-{}", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// let _listener = std::os::unix::net::UnixListener::bind(&path)?;
    /// let s = port.associate(Socket::new(Domain::UNIX, Type::STREAM, None)?, 1)?;
    /// port.submit(op::Connect::new(&s, Address::Path(path.clone()).to_sock_addr()?))?;
    /// assert_eq!(port.get(None)?.result()?, 0);
    /// assert_eq!(s.peer_address()?, Address::Path(path.clone()));
    /// # std::fs::remove_file(path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(socket: &Handle, addr: impl Into<SockAddr>) -> Connect {
        Connect(Record {
            head: Head::on(socket),
            op: super::AnyOp::Connect(ConnectOp {
                addr: Box::new(addr.into()),
                started: false,
            }),
        })
    }
}

pub(crate) struct ConnectOp {
    /// Boxed: read by the kernel while the op is in flight, and most ops
    /// have no address.
    addr: Box<SockAddr>,
    /// epoll: the connect is in progress (a writable edge may end it).
    started: bool,
}

impl Op for ConnectOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Connect::CODE, "CONNECT")];

    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let (ptr, len) = (self.addr.as_ptr().cast::<libc::sockaddr>(), self.addr.len());
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Connect::new(fd, ptr, len).build()),
        )
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::WRITE,
            // A connect that has not begun is tried whatever the
            // descriptor's readiness says.
            must_try: !self.started,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        let tried = epoll::connect(fd, &self.addr, self.started);
        if matches!(tried, Attempt::WouldBlock) {
            self.started = true;
        }
        tried
    }
    fn finish(self, res: i32) -> Out {
        Out::result(res.min(0))
    }
}
