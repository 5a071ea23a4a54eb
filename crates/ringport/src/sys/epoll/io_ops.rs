//! The non-blocking syscalls that perform a socket operation on its own
//! memory once its descriptor is (probably) ready.

use std::io;
use std::os::fd::RawFd;

use super::sys::syscall;
use crate::buf::BufPool;
use crate::completion::OpKind;
use crate::op::OpData;

/// What one try of an operation gave.
pub(crate) enum Outcome {
    /// The op's final result for this stage (`>= 0` or `-errno`).
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

/// Which readiness an op waits for.
pub(crate) fn direction(op: &OpData) -> usize {
    match op.kind {
        OpKind::Connect | OpKind::Send | OpKind::SendAll => super::registry::WRITE,
        _ => super::registry::READ,
    }
}

/// Tries the current stage of `op` once, without blocking. The caller holds
/// the op's slot (so its memory stays put) for the duration.
pub(crate) fn attempt(op: &mut OpData, pool: &BufPool) -> Outcome {
    let Some(fd) = op.fd() else {
        return Outcome::Done(-libc::EBADF);
    };
    match op.kind {
        OpKind::Accept if op.first_data_started => recv_spare(fd, op.buf.as_mut()),
        OpKind::Accept => accept(fd, op),
        OpKind::Connect => connect(fd, op),
        OpKind::Recv => recv_spare(fd, op.buf.as_mut()),
        OpKind::RecvPooled => recv_pooled(fd, op, pool),
        OpKind::Send | OpKind::SendAll => send(fd, op),
        // Files, timers and packets never wait on readiness.
        _ => Outcome::Done(-libc::EINVAL),
    }
}

/// Maps a failed non-blocking call: `EAGAIN` waits, anything else is final.
fn failed(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Outcome::WouldBlock,
        Some(errno) => Outcome::Done(-errno),
        None => Outcome::Done(-libc::EIO),
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

/// Receives into the spare capacity of `buf` (a plain or first-data recv).
fn recv_spare(fd: RawFd, buf: Option<&mut Vec<u8>>) -> Outcome {
    let Some(buf) = buf else {
        return Outcome::Done(-libc::EINVAL);
    };
    let spare = buf.spare_capacity_mut();
    let (ptr, len) = (spare.as_mut_ptr(), spare.len().min(i32::MAX as usize));
    // SAFETY: `ptr..ptr+len` is the spare capacity of the op's own buffer,
    // writable and kept in place by the caller for the duration of the call;
    // the front end commits the bytes written when the result is reaped.
    match retry(|| syscall!(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) })) {
        Ok(n) => Outcome::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// Receives into a fresh buffer from the port's pool, no more than what is
/// left of the op's budget; a short chunk moves to a buffer of its size.
fn recv_pooled(fd: RawFd, op: &mut OpData, pool: &BufPool) -> Outcome {
    let read = &mut op.scratch.epoll.read;
    let left = op.max.saturating_sub(*read);
    if left == 0 {
        // Cannot happen: the chunk that used the budget up ended the op.
        return Outcome::Done(-libc::EINVAL);
    }
    let mut buf = pool.take();
    let spare = buf.spare_capacity_mut();
    let (ptr, len) = (
        spare.as_mut_ptr(),
        spare.len().min(left).min(i32::MAX as usize),
    );
    // SAFETY: as in `recv_spare`, on a buffer this function owns.
    match retry(|| syscall!(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) })) {
        Ok(0) => {
            pool.put(buf);
            Outcome::Done(0)
        }
        Ok(n) => {
            // SAFETY: the kernel initialised the first `n <= len` bytes of
            // the spare capacity, and the buffer was empty.
            unsafe { buf.set_len(n as usize) };
            *read = read.saturating_add(n as usize);
            Outcome::Chunk {
                res: res_of(n),
                buf: pool.fit(buf),
                short: (n as usize) < len,
                last: *read >= op.max,
            }
        }
        Err(e) => {
            pool.put(buf);
            failed(&e)
        }
    }
}

/// Sends `buf[pos..]`.
fn send(fd: RawFd, op: &OpData) -> Outcome {
    let Some(buf) = op.buf.as_ref() else {
        return Outcome::Done(-libc::EINVAL);
    };
    let rest = &buf[op.pos.min(buf.len())..];
    let len = rest.len().min(i32::MAX as usize);
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `rest` is initialised memory of the op's own buffer, which the
    // kernel only reads during the call.
    match retry(|| syscall!(unsafe { libc::send(fd, rest.as_ptr().cast(), len, flags) })) {
        Ok(n) => Outcome::Done(res_of(n)),
        Err(e) => failed(&e),
    }
}

/// Accepts one connection, filling the op's peer address. The new socket is
/// close-on-exec and blocking, as with io_uring; associating it makes it
/// non-blocking.
fn accept(fd: RawFd, op: &mut OpData) -> Outcome {
    let buf = op.addr();
    buf.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let addr = (&raw mut buf.storage).cast::<libc::sockaddr>();
    let len = &raw mut buf.len;
    // SAFETY: `addr`/`len` point at the op's own sockaddr_storage and its
    // size, live for the duration of the call.
    match retry(|| syscall!(unsafe { libc::accept4(fd, addr, len, libc::SOCK_CLOEXEC) })) {
        Ok(new) => Outcome::Done(new),
        Err(e) => failed(&e),
    }
}

/// Starts or checks a connect. A pending connect is checked by calling
/// `connect` again rather than reading `SO_ERROR` alone: `EALREADY` means
/// still in progress (an early or stale writable edge), `0`/`EISCONN` means
/// connected, anything else is the connect's error. This cannot mistake a
/// stale edge for success, and handles Unix sockets' `EAGAIN` the same way.
fn connect(fd: RawFd, op: &mut OpData) -> Outcome {
    let started = op.scratch.epoll.connecting;
    let buf = op.addr();
    let addr = (&raw const buf.storage).cast::<libc::sockaddr>();
    let len = buf.len;
    // SAFETY: `addr`/`len` describe the op's own encoded address, read only
    // during the call.
    match syscall!(unsafe { libc::connect(fd, addr, len) }) {
        Ok(_) => Outcome::Done(0),
        Err(e) => match e.raw_os_error() {
            Some(libc::EINPROGRESS | libc::EALREADY | libc::EAGAIN | libc::EINTR) => {
                op.scratch.epoll.connecting = true;
                Outcome::WouldBlock
            }
            Some(libc::EISCONN) if started => Outcome::Done(0),
            _ => failed(&e),
        },
    }
}
