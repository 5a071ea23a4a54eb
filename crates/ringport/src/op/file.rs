//! Reads and writes at an offset (`ReadFile`/`WriteFile` with
//! `OVERLAPPED.Offset`), on files. epoll cannot watch a regular file, so
//! that backend runs them on a small pool of threads, as io_uring's own
//! workers do.

use std::os::fd::RawFd;

use io_uring::{opcode, squeue::Entry};

use super::{no_fd, Head, Op, Out, Record, Shape};
use crate::handle::Handle;
use crate::sys::buf::{Buf, IoBuf, IoBufMut};
use crate::sys::epoll::{Job, Plan};
use crate::sys::uring::{clamp_len, on_target, LowerCx};

/// A read from a file at an offset into the spare capacity of a buffer; it
/// completes with the bytes read (0 at the end of the file).
///
/// ```
/// use ringport::{op, CompletionPort};
/// let path = std::env::temp_dir().join(format!("ringport-doc-{}", std::process::id()));
/// std::fs::write(&path, b"0123456789")?;
/// let port = CompletionPort::new(1)?;
/// let f = port.associate(std::fs::File::open(&path)?, 1)?;
/// port.submit(op::ReadAt::new(&f, Vec::with_capacity(4)).at(6))?;
/// assert_eq!(port.get(None)?.data(), b"6789");
/// # std::fs::remove_file(path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadAt(pub(super) Record);

impl ReadAt {
    /// A read from `file` into `buf`'s spare capacity, at offset 0 unless
    /// [`at`](Self::at) says otherwise.
    pub fn new(file: &Handle, buf: impl IoBufMut) -> ReadAt {
        ReadAt(Record {
            head: Head::on(file),
            op: super::AnyOp::ReadAt(ReadAtOp {
                buf: Buf::writable(buf),
                offset: 0,
            }),
        })
    }

    /// The file offset to read at.
    pub fn at(mut self, offset: u64) -> ReadAt {
        if let super::AnyOp::ReadAt(op) = &mut self.0.op {
            op.offset = offset;
        }
        self
    }
}

pub(crate) struct ReadAtOp {
    buf: Buf,
    offset: u64,
}

impl Op for ReadAtOp {
    const SHAPE: Shape = Shape::Received;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Read::CODE, "READ")];

    fn check(&mut self) -> Result<(), &'static str> {
        super::room(&mut self.buf)
    }

    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let (ptr, len) = self.buf.spare().ok_or(-libc::EINVAL)?;
        let (len, offset) = (clamp_len(len), self.offset);
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Read::new(fd, ptr, len)
            .offset(offset)
            .build()),
        )
    }
    fn plan(&mut self, fd: Option<RawFd>) -> Plan {
        let (Some(fd), Some((ptr, len))) = (fd, self.buf.spare()) else {
            return Plan::Now(-libc::EBADF);
        };
        Plan::File(Job {
            fd,
            ptr,
            len,
            offset: self.offset,
            write: false,
        })
    }
    fn filling(&mut self) -> Option<&mut Buf> {
        Some(&mut self.buf)
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}

/// A write of a buffer to a file at an offset; it completes with the bytes
/// written.
///
/// ```
/// use ringport::{op, CompletionPort};
/// let path = std::env::temp_dir().join(format!("ringport-doc-w-{}", std::process::id()));
/// let port = CompletionPort::new(1)?;
/// let f = port.associate(std::fs::File::create(&path)?, 1)?;
/// port.submit(op::WriteAt::new(&f, b"hello".to_vec()).at(0))?;
/// assert_eq!(port.get(None)?.result()?, 5);
/// # std::fs::remove_file(path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WriteAt(pub(super) Record);

impl WriteAt {
    /// A write of `buf` to `file`, at offset 0 unless [`at`](Self::at)
    /// says otherwise.
    pub fn new(file: &Handle, buf: impl IoBuf) -> WriteAt {
        WriteAt(Record {
            head: Head::on(file),
            op: super::AnyOp::WriteAt(WriteAtOp {
                buf: Buf::read_only(buf),
                offset: 0,
            }),
        })
    }

    /// The file offset to write at.
    pub fn at(mut self, offset: u64) -> WriteAt {
        if let super::AnyOp::WriteAt(op) = &mut self.0.op {
            op.offset = offset;
        }
        self
    }
}

pub(crate) struct WriteAtOp {
    buf: Buf,
    offset: u64,
}

impl Op for WriteAtOp {
    const SHAPE: Shape = Shape::Sent;
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Write::CODE, "WRITE")];

    fn lower(&mut self, cx: &LowerCx) -> Result<Entry, i32> {
        let bytes = self.buf.bytes();
        let (ptr, len, offset) = (bytes.as_ptr(), clamp_len(bytes.len()), self.offset);
        Ok(
            on_target!(cx.target.ok_or_else(no_fd)?, fd => opcode::Write::new(fd, ptr, len)
            .offset(offset)
            .build()),
        )
    }
    fn plan(&mut self, fd: Option<RawFd>) -> Plan {
        let Some(fd) = fd else {
            return Plan::Now(-libc::EBADF);
        };
        let bytes = self.buf.bytes();
        Plan::File(Job {
            fd,
            // Read only by the write.
            ptr: bytes.as_ptr().cast_mut(),
            len: bytes.len(),
            offset: self.offset,
            write: true,
        })
    }
    fn finish(self, res: i32) -> Out {
        Out::with_buf(res, self.buf)
    }
}
