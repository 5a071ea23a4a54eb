//! The non-blocking syscalls that perform an operation's stage on its own
//! memory once its descriptor is (probably) ready: safe wrappers the ops
//! call from their `attempt` (`crate::op`).

use std::io;
use std::os::fd::RawFd;

use super::sys::syscall;
use crate::pool::BufPool;
use crate::sys::buf::Buf;
use crate::sys::msg::{self, Msg};

/// What one try of an operation's stage gave.
pub(crate) enum Attempt {
    /// The stage's result (`>= 0` or `-errno`).
    Done(i32),
    /// A pooled receive got `res` bytes into `buf`; the op stays posted
    /// unless this chunk used up its budget (`last`). `short`: it read less
    /// than it asked for, so the socket is empty now.
    Chunk {
        res: i32,
        buf: Vec<u8>,
        short: bool,
        last: bool,
    },
    /// `EAGAIN`: wait for the descriptor to become ready.
    WouldBlock,
}

/// Maps a failed non-blocking call: `EAGAIN` waits, anything else is final.
fn failed(e: &io::Error) -> Attempt {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Attempt::WouldBlock,
        Some(errno) => Attempt::Done(-errno),
        None => Attempt::Done(-libc::EIO),
    }
}

/// Retries `f` while it fails with `EINTR`.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn res_of(n: isize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Receives into the spare capacity of `buf`. The bytes are committed when
/// the result is reaped (`sys::reap`), not here.
pub(crate) fn recv_into(fd: RawFd, buf: &mut Buf) -> Attempt {
    let Some((ptr, len)) = buf.spare() else {
        return Attempt::Done(-libc::EINVAL);
    };
    let len = len.min(i32::MAX as usize);
    // SAFETY: `ptr..ptr+len` is the spare capacity of the op's own buffer,
    // writable and kept in place by the caller (which holds the op's slot)
    // for the duration of the call.
    match retry(|| syscall!(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) })) {
        Ok(n) => Attempt::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// Receives into a fresh buffer from the port's pool, at most `left` bytes
/// (what is left of the op's budget); a short chunk moves to a buffer of
/// its size (see `BufPool::fit`).
pub(crate) fn recv_pooled(fd: RawFd, pool: &BufPool, left: usize) -> Attempt {
    let mut buf = pool.take();
    let spare = buf.spare_capacity_mut();
    let (ptr, len) = (
        spare.as_mut_ptr(),
        spare.len().min(left).min(i32::MAX as usize),
    );
    // SAFETY: as in `recv_into`, on a buffer this function owns.
    match retry(|| syscall!(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) })) {
        Ok(0) => {
            pool.put(buf);
            Attempt::Done(0)
        }
        Ok(n) => {
            // SAFETY: the kernel initialised the first `n <= len` bytes of
            // the spare capacity, and the buffer was empty.
            unsafe { buf.set_len(n as usize) };
            Attempt::Chunk {
                res: res_of(n),
                buf: pool.fit(buf),
                short: (n as usize) < len,
                last: n as usize >= left,
            }
        }
        Err(e) => {
            pool.put(buf);
            failed(&e)
        }
    }
}

/// Sends `bytes` (never `SIGPIPE`).
pub(crate) fn send(fd: RawFd, bytes: &[u8]) -> Attempt {
    let len = bytes.len().min(i32::MAX as usize);
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `bytes` is initialised memory the kernel only reads during
    // the call.
    match retry(|| syscall!(unsafe { libc::send(fd, bytes.as_ptr().cast(), len, flags) })) {
        Ok(n) => Attempt::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// `sendmsg(2)` of a prepared header (never `SIGPIPE`).
pub(crate) fn send_msg(fd: RawFd, m: &Msg) -> Attempt {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: the header was prepared (`Msg::prepare`) from the op's own
    // address storage and buffers, initialised memory the kernel only reads
    // during the call.
    match retry(|| syscall!(unsafe { libc::sendmsg(fd, m.hdr(), flags) })) {
        Ok(n) => Attempt::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// `recvmsg(2)` into a prepared header: the bytes go where its `iovec`s
/// point (committed when the result is reaped), the sender's address and
/// the flags into the header.
pub(crate) fn recv_msg(fd: RawFd, m: &mut Msg) -> Attempt {
    let hdr = m.hdr().cast_mut();
    // SAFETY: the header was prepared (`Msg::prepare`) from the op's own
    // address storage and the spare capacity of its buffers, writable and
    // kept in place by the caller (which holds the op's slot) for the call.
    match retry(|| syscall!(unsafe { libc::recvmsg(fd, hdr, libc::MSG_DONTWAIT) })) {
        Ok(n) => Attempt::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// Receives one datagram into a fresh pool buffer, laid out as io_uring's
/// multishot `recvmsg` lays it out (see `sys::msg`): header, sender's
/// address, payload.
pub(crate) fn recv_datagram_pooled(fd: RawFd, pool: &BufPool) -> Attempt {
    let mut buf = pool.take();
    let cap = buf.capacity();
    if cap <= msg::PAYLOAD_AT {
        // No room for a datagram after its header and address: a final
        // error (out of buffers would be retried forever).
        pool.put(buf);
        return Attempt::Done(-libc::EMSGSIZE);
    }
    buf.resize(msg::PAYLOAD_AT, 0);
    let base = buf.as_mut_ptr();
    let mut iov = libc::iovec {
        iov_base: base.wrapping_add(msg::PAYLOAD_AT).cast(),
        iov_len: cap - msg::PAYLOAD_AT,
    };
    // SAFETY: `msghdr` is plain old data; all zeroes is an empty header.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = base.wrapping_add(msg::DGRAM_HEADER).cast();
    hdr.msg_namelen = msg::NAME_ROOM as u32;
    hdr.msg_iov = &raw mut iov;
    hdr.msg_iovlen = 1;
    let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: the name and the iovec point into this function's own buffer
    // (the name inside its initialised length, the payload in its spare
    // capacity), written by the kernel only during the call.
    match retry(|| syscall!(unsafe { libc::recvmsg(fd, &raw mut hdr, flags) })) {
        Ok(n) => {
            // With MSG_TRUNC, `n` is the datagram's whole length.
            let got = (n as usize).min(cap - msg::PAYLOAD_AT);
            // SAFETY: the kernel initialised the first `got` bytes of the
            // spare capacity.
            unsafe { buf.set_len(msg::PAYLOAD_AT + got) };
            msg::write_datagram_header(&mut buf, hdr.msg_namelen, n as u32, hdr.msg_flags);
            let res = res_of((msg::PAYLOAD_AT + got) as isize);
            Attempt::Chunk {
                res,
                buf: pool.fit(buf),
                // One datagram per read: the socket may hold more.
                short: false,
                last: false,
            }
        }
        Err(e) => {
            pool.put(buf);
            failed(&e)
        }
    }
}

/// `read(2)` into the spare capacity of `buf` (a pipe, a FIFO, a terminal,
/// an eventfd or a signalfd: no offset). The bytes are committed when the
/// result is reaped.
pub(crate) fn read_into(fd: RawFd, buf: &mut Buf) -> Attempt {
    let Some((ptr, len)) = buf.spare() else {
        return Attempt::Done(-libc::EINVAL);
    };
    let len = len.min(i32::MAX as usize);
    // SAFETY: as in `recv_into`.
    match retry(|| syscall!(unsafe { libc::read(fd, ptr.cast(), len) })) {
        Ok(n) => Attempt::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// `write(2)` of `bytes` (no offset).
pub(crate) fn write(fd: RawFd, bytes: &[u8]) -> Attempt {
    let len = bytes.len().min(i32::MAX as usize);
    // SAFETY: `bytes` is initialised memory the kernel only reads during
    // the call.
    match retry(|| syscall!(unsafe { libc::write(fd, bytes.as_ptr().cast(), len) })) {
        Ok(n) => Attempt::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// Accepts one connection, writing the peer's address into `addr`. The new
/// socket is close-on-exec and blocking, as with io_uring; associating it
/// makes it non-blocking.
pub(crate) fn accept(fd: RawFd, addr: &mut socket2::SockAddrStorage, len: &mut u32) -> Attempt {
    *len = addr.size_of();
    let ptr = (addr as *mut socket2::SockAddrStorage).cast::<libc::sockaddr>();
    let len_ptr: *mut libc::socklen_t = len;
    // SAFETY: `ptr`/`len_ptr` point at a live sockaddr_storage and its
    // size, written by the kernel only during the call.
    match retry(|| syscall!(unsafe { libc::accept4(fd, ptr, len_ptr, libc::SOCK_CLOEXEC) })) {
        Ok(new) => Attempt::Done(new),
        Err(e) => failed(&e),
    }
}

/// Starts or checks a connect. A pending connect is checked by calling
/// `connect` again rather than reading `SO_ERROR` alone: `EALREADY` means
/// still in progress (an early or stale writable edge), `0`/`EISCONN` means
/// connected, anything else is the connect's error. This cannot mistake a
/// stale edge for success, and handles Unix sockets' `EAGAIN` the same way.
/// `WouldBlock` means the connect is in progress (`started` from then on).
pub(crate) fn connect(fd: RawFd, addr: &socket2::SockAddr, started: bool) -> Attempt {
    let (ptr, len) = (addr.as_ptr().cast::<libc::sockaddr>(), addr.len());
    // SAFETY: `ptr`/`len` describe the op's own encoded address, read only
    // during the call.
    match syscall!(unsafe { libc::connect(fd, ptr, len) }) {
        Ok(_) => Attempt::Done(0),
        Err(e) => match e.raw_os_error() {
            Some(libc::EINPROGRESS | libc::EALREADY | libc::EAGAIN | libc::EINTR) => {
                Attempt::WouldBlock
            }
            Some(libc::EISCONN) if started => Attempt::Done(0),
            _ => failed(&e),
        },
    }
}

/// `shutdown(2)`: the result, `0` or `-errno` (it never blocks).
pub(crate) fn shutdown(fd: RawFd, how: i32) -> i32 {
    // SAFETY: no memory is involved.
    match syscall!(unsafe { libc::shutdown(fd, how) }) {
        Ok(_) => 0,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
    }
}
