//! Reads and writes without an offset (`ReadFile`/`WriteFile` on a pipe or
//! a character device): on pipes, FIFOs, terminals, eventfds, signalfds,
//! and on sockets as plain streams. Reads of one handle run one at a time
//! in post order, and so do writes (the read and write lanes), so data is
//! never reordered.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};

use super::{no_fd, Head, Lane, Op, Out, Record};
use crate::handle::Handle;
use crate::pool::BufPool;
use crate::sys::buf::{Buf, IoBuf, IoBufMut};
use crate::sys::epoll::{self, Attempt, Plan};
use crate::sys::uring::{clamp_len, on_target, LowerCx};

/// "No offset": the kernel reads or writes at the descriptor's position (a
/// pipe has none).
const NO_OFFSET: u64 = u64::MAX;

/// A read into the spare capacity of a buffer, without an offset
/// (`ReadFile` on a pipe): the completion's result is the number of bytes
/// read, `Ok(0)` at the end (every writer closed).
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Write;
///
/// let port = CompletionPort::new(1)?;
/// // Any stream descriptor: a pipe, a FIFO, a terminal, here a socket pair.
/// let (reader, mut writer) = std::os::unix::net::UnixStream::pair()?;
/// let r = port.associate(reader, 1)?;
/// writer.write_all(b"through a stream")?;
/// port.submit(op::Read::new(&r, Vec::with_capacity(64)))?;
/// assert_eq!(port.get(None)?.data(), b"through a stream");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Read(pub(super) Record);

impl Read {
    /// A read from `fd` into `buf`'s spare capacity. Posting fails with
    /// `InvalidInput` if there is none.
    pub fn new(fd: &Handle, buf: impl IoBufMut) -> Read {
        Read(Record {
            head: Head::on(fd),
            op: super::AnyOp::Read(ReadOp {
                buf: Buf::writable(buf),
            }),
        })
    }
}

pub(crate) struct ReadOp {
    buf: Buf,
}

impl Op for ReadOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Read::CODE, "READ")];

    fn check(&mut self) -> Result<(), &'static str> {
        super::room(&mut self.buf)
    }
    fn lane(&self) -> Option<Lane> {
        Some(Lane::Read)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let (ptr, len) = self.buf.spare().ok_or(-libc::EINVAL)?;
        let len = clamp_len(len);
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Read::new(fd, ptr, len)
            .offset(NO_OFFSET)
            .build()),
        )
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::READ,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        epoll::read_into(fd, &mut self.buf)
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        Some(&mut self.buf)
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}

/// A write of a buffer without an offset (`WriteFile` on a pipe); it
/// completes with the bytes written, or `EPIPE` when every reader of a pipe
/// went away (the kernel also raises `SIGPIPE` then, which Rust programs
/// ignore; a C program must ignore or block it).
///
/// ```
/// use ringport::{op, CompletionPort};
/// use std::io::Read;
///
/// let port = CompletionPort::new(1)?;
/// let (mut reader, writer) = std::os::unix::net::UnixStream::pair()?;
/// let w = port.associate(writer, 1)?;
/// port.submit(op::Write::new(&w, b"hello".to_vec()))?;
/// assert_eq!(port.get(None)?.result()?, 5);
/// let mut got = [0; 5];
/// reader.read_exact(&mut got)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Write(pub(super) Record);

impl Write {
    /// A write of `buf` to `fd`.
    pub fn new(fd: &Handle, buf: impl IoBuf) -> Write {
        Write(Record {
            head: Head::on(fd),
            op: super::AnyOp::Write(WriteOp {
                buf: Buf::read_only(buf),
            }),
        })
    }
}

pub(crate) struct WriteOp {
    buf: Buf,
}

impl Op for WriteOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Write::CODE, "WRITE")];

    fn lane(&self) -> Option<Lane> {
        Some(Lane::Write)
    }
    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let bytes = self.buf.bytes();
        let (ptr, len) = (bytes.as_ptr(), clamp_len(bytes.len()));
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Write::new(fd, ptr, len)
            .offset(NO_OFFSET)
            .build()),
        )
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Io {
            dir: epoll::WRITE,
            must_try: false,
        }
    }
    fn attempt(&mut self, fd: RawFd, _pool: &BufPool) -> Attempt {
        epoll::write(fd, self.buf.bytes())
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_and_a_write_return_their_buffer_whatever_the_result() {
        let read = ReadOp {
            buf: Buf::writable(Vec::with_capacity(8)),
        };
        let out = read.finish(-libc::ECANCELED);
        assert_eq!(out.result, Err(libc::ECANCELED));
        assert_eq!(out.buf.map(|b| b.len()), Some(0));
        let write = WriteOp {
            buf: Buf::read_only(b"abc".to_vec()),
        };
        let out = write.finish(-libc::EPIPE);
        assert_eq!(out.result, Err(libc::EPIPE));
        assert_eq!(out.buf.map(|b| b.len()), Some(3));
    }

    #[test]
    fn a_read_needs_room() {
        let mut full = ReadOp {
            buf: Buf::writable(Vec::new()),
        };
        assert!(full.check().is_err());
    }
}
