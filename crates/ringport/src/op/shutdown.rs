//! Ending the sending side of a connection (`shutdown(SHUT_WR)`): the peer
//! reads the end of the stream once everything sent before it has arrived.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};

use super::{no_fd, Head, Lane, Op, Out, Record, Shape};
use crate::handle::Handle;
use crate::sys::epoll::{self, Plan};
use crate::sys::uring::{on_target, LowerCx};

/// A half-close: after the sends posted before it, the socket's sending
/// side is shut (`shutdown(SHUT_WR)`, DisconnectEx's first half); receives
/// go on.
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Read;
///
/// let port = CompletionPort::new(1)?;
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
/// let conn = port.associate(listener.accept()?.0, 1)?;
/// port.submit(op::SendAll::new(&conn, b"bye".to_vec()))?;
/// port.submit(op::Shutdown::new(&conn))?;
/// let mut all = Vec::new();
/// client.read_to_end(&mut all)?; // the data, then the end of the stream
/// assert_eq!(all, b"bye");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shutdown(pub(super) Record);

impl Shutdown {
    /// A half-close of `socket`.
    pub fn new(socket: &Handle) -> Shutdown {
        Shutdown(Record {
            head: Head::on(socket),
            op: super::AnyOp::Shutdown(ShutdownOp),
        })
    }
}

pub(crate) struct ShutdownOp;

impl Op for ShutdownOp {
    const SHAPE: Shape = Shape::ShutDown;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Shutdown::CODE, "SHUTDOWN")];

    /// Behind the sends posted before it.
    fn lane(&self) -> Option<Lane> {
        Some(Lane::Write)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Shutdown::new(fd, libc::SHUT_WR).build()),
        )
    }
    fn plan(&mut self, fd: Option<RawFd>) -> Plan {
        Plan::Now(fd.map_or(-libc::EBADF, |fd| epoll::shutdown(fd, libc::SHUT_WR)))
    }
    fn finish(self, res: i32) -> Out {
        Out::result(res)
    }
}
