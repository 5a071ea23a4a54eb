//! Message headers (`struct msghdr`) for the operations that send or receive
//! with an address or several buffers (`sendmsg`/`recvmsg`): the header, its
//! `iovec`s and the address storage in one boxed value that an operation
//! owns while the kernel reads (or writes) it; and the layout a datagram
//! takes in a pooled buffer.

use socket2::{SockAddr, SockAddrStorage};

/// A message header with its own address storage and `iovec`s. Boxed by
/// the op that owns it, so the pointers inside stay valid while the op
/// moves; [`prepare`](Self::prepare) sets them before each use.
pub(crate) struct Msg {
    hdr: libc::msghdr,
    iov: Vec<libc::iovec>,
    name: SockAddrStorage,
    /// Bytes of `name` that hold the address to send to (0: none), or that
    /// a receive may fill (`name.size_of()`).
    name_len: u32,
}

// SAFETY: the raw pointers inside `hdr` and `iov` point only at memory the
// owning op owns (its buffers, and this value's own fields), which moves
// between threads with the op; nothing else reaches it through them.
unsafe impl Send for Msg {}

impl Msg {
    /// A header without an address (a vectored send or receive on a
    /// connected socket).
    pub(crate) fn new() -> Box<Msg> {
        Box::new(Msg {
            // SAFETY: `msghdr` is plain old data; all zeroes is a valid,
            // empty header (null pointers, zero lengths).
            hdr: unsafe { std::mem::zeroed() },
            iov: Vec::new(),
            name: SockAddrStorage::zeroed(),
            name_len: 0,
        })
    }

    /// A header sending to `addr`.
    pub(crate) fn to(addr: &SockAddr) -> Box<Msg> {
        let mut m = Msg::new();
        let len = (addr.len() as usize).min(m.name.size_of() as usize);
        // SAFETY: copies `len` bytes of the encoded address (`addr.len()`
        // initialised bytes at `as_ptr()`) into the zeroed storage, which is
        // at least that large; the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&raw mut m.name).cast::<u8>(),
                len,
            );
        }
        m.name_len = len as u32;
        m
    }

    /// A header receiving the sender's address.
    pub(crate) fn from_any() -> Box<Msg> {
        let mut m = Msg::new();
        m.name_len = m.name.size_of();
        m
    }

    /// Points the header at its address storage and at `bufs` (pointer,
    /// length), and resets what a previous receive wrote. Returns the
    /// header, for the kernel.
    pub(crate) fn prepare(
        &mut self,
        bufs: impl IntoIterator<Item = (*mut u8, usize)>,
    ) -> *mut libc::msghdr {
        self.iov.clear();
        self.iov
            .extend(bufs.into_iter().map(|(ptr, len)| libc::iovec {
                iov_base: ptr.cast(),
                iov_len: len,
            }));
        self.hdr.msg_name = if self.name_len > 0 {
            (&raw mut self.name).cast()
        } else {
            std::ptr::null_mut()
        };
        self.hdr.msg_namelen = self.name_len;
        self.hdr.msg_iov = if self.iov.is_empty() {
            std::ptr::null_mut()
        } else {
            self.iov.as_mut_ptr()
        };
        self.hdr.msg_iovlen = self.iov.len() as _;
        self.hdr.msg_control = std::ptr::null_mut();
        self.hdr.msg_controllen = 0;
        self.hdr.msg_flags = 0;
        &raw mut self.hdr
    }

    /// The header as prepared last.
    pub(crate) fn hdr(&self) -> *const libc::msghdr {
        &raw const self.hdr
    }

    /// The flags the kernel set on the last receive (`MSG_TRUNC`, ...).
    pub(crate) fn flags(&self) -> i32 {
        self.hdr.msg_flags
    }

    /// The address the kernel wrote on the last receive.
    pub(crate) fn sender(&self) -> SockAddr {
        let len = self.hdr.msg_namelen.min(self.name.size_of()) as usize;
        // SAFETY: the storage is initialised throughout (zeroed when made,
        // then written by the kernel) and `len` is at most its size.
        let bytes = unsafe { std::slice::from_raw_parts((&raw const self.name).cast::<u8>(), len) };
        sock_addr_of(bytes)
    }
}

/// Where a pooled datagram's parts sit in its buffer, the same on both
/// backends (it is io_uring's multishot `recvmsg` layout, `struct
/// io_uring_recvmsg_out`, with no control data): a 16-byte header
/// (`namelen`, `controllen`, `payloadlen`, `flags` as native `u32`s), the
/// sender's address in [`NAME_ROOM`] bytes, then the payload.
pub(crate) const DGRAM_HEADER: usize = 16;
/// Room for the sender's address in a pooled datagram buffer.
pub(crate) const NAME_ROOM: usize = std::mem::size_of::<libc::sockaddr_storage>();
/// Where the payload starts in a pooled datagram buffer.
pub(crate) const PAYLOAD_AT: usize = DGRAM_HEADER + NAME_ROOM;

/// A pooled datagram's parts, read from its buffer.
pub(crate) struct Datagram {
    /// The sender.
    pub from: SockAddr,
    /// Bytes of payload in the buffer (from [`PAYLOAD_AT`]).
    pub len: usize,
    /// The datagram was longer than the room the buffer had.
    pub truncated: bool,
}

/// Reads a pooled datagram's header and address (`None`: too short to be
/// one, which the kernel never produces).
pub(crate) fn parse_datagram(buf: &[u8]) -> Option<Datagram> {
    if buf.len() < PAYLOAD_AT {
        return None;
    }
    let field = |i: usize| {
        let at = i * 4;
        u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize
    };
    let (namelen, payloadlen, flags) = (field(0), field(2), field(3));
    let len = buf.len() - PAYLOAD_AT;
    let name = &buf[DGRAM_HEADER..DGRAM_HEADER + namelen.min(NAME_ROOM)];
    Some(Datagram {
        from: sock_addr_of(name),
        len,
        truncated: payloadlen > len || (flags as i32) & libc::MSG_TRUNC != 0,
    })
}

/// Writes a pooled datagram's header (what io_uring writes itself).
pub(crate) fn write_datagram_header(buf: &mut [u8], namelen: u32, payloadlen: u32, flags: i32) {
    for (i, v) in [namelen, 0, payloadlen, flags as u32]
        .into_iter()
        .enumerate()
    {
        buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// An address from its encoded bytes (as the kernel wrote them).
pub(crate) fn sock_addr_of(bytes: &[u8]) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    let len = bytes.len().min(storage.size_of() as usize);
    // SAFETY: copies `len` bytes into the zeroed storage, at least that
    // large; the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut storage).cast::<u8>(), len);
    }
    super::sock_addr(storage, len as u32)
}

/// The encoded bytes of an address (for tests that build kernel output).
#[cfg(test)]
pub(crate) fn addr_bytes(a: &SockAddr) -> Vec<u8> {
    // SAFETY: `len()` initialised bytes at `as_ptr()`, borrowed from `a`.
    unsafe { std::slice::from_raw_parts(a.as_ptr().cast::<u8>(), a.len() as usize) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_datagram_reads_back_as_written() {
        let from = SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 4242)));
        let mut buf = vec![0u8; PAYLOAD_AT + 3];
        let name = addr_bytes(&from);
        buf[DGRAM_HEADER..DGRAM_HEADER + name.len()].copy_from_slice(&name);
        write_datagram_header(&mut buf, name.len() as u32, 3, 0);
        let d = parse_datagram(&buf).unwrap();
        assert_eq!(d.from.as_socket(), from.as_socket());
        assert_eq!((d.len, d.truncated), (3, false));
        // Longer than the room: truncated.
        write_datagram_header(&mut buf, name.len() as u32, 10, 0);
        assert!(parse_datagram(&buf).unwrap().truncated);
        write_datagram_header(&mut buf, name.len() as u32, 3, libc::MSG_TRUNC);
        assert!(parse_datagram(&buf).unwrap().truncated);
        assert!(parse_datagram(&buf[..PAYLOAD_AT - 1]).is_none());
    }
}
