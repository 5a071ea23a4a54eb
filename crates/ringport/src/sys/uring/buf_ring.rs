//! The provided-buffer ring behind pooled receives: the kernel picks a buffer
//! only when data arrives; the poller copies the data out and gives the
//! buffer straight back.
//!
//! Where the kernel has it (Linux 6.12, `IOU_PBUF_RING_INC`), buffers are
//! consumed incrementally: a few large buffers are shared by many small
//! receives, so a thousand connections with a message each need a few
//! buffers, not a thousand (which would run the ring dry and make every
//! multishot receive end with `ENOBUFS` and be reposted).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::squeue::Entry;
use io_uring::types::BufRingEntry;
use io_uring::IoUring;

pub(super) struct BufRing {
    /// `entries` ring slots, page-aligned, shared with the kernel.
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    /// The buffers themselves: `entries * size` bytes.
    mem: Box<[u8]>,
    entries: u16,
    size: usize,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
    /// Incremental consumption: bytes of each buffer already handed out.
    consumed: Option<Box<[u32]>>,
    /// The buffer id of the first buffer: ids name one ring's buffers only
    /// (see [`DGRAM_BIDS`]).
    bid_base: u16,
}

/// The first buffer id of the datagram ring: a completion carries a buffer
/// id but not its group, and the stream ring's ids stay below this (it has
/// at most 32768 buffers).
pub(super) const DGRAM_BIDS: u16 = 0x8000;

/// `IOU_PBUF_RING_INC`: the kernel consumes a buffer a receive at a time.
const PBUF_RING_INC: u16 = 2;
/// Buffer size in incremental mode.
const INC_BUF_SIZE: usize = 64 * 1024;

// SAFETY: the ring memory is owned by this struct and only touched through
// `&mut self` (the driver keeps it behind a mutex); the kernel's concurrent
// reads of it are what the io_uring buffer-ring protocol is designed for.
unsafe impl Send for BufRing {}

impl BufRing {
    /// A ring holding about `entries * size` bytes: incremental if the kernel
    /// supports it, else `entries` buffers of `size` bytes.
    pub(super) fn new(ring: &IoUring, bgid: u16, entries: usize, size: usize) -> io::Result<Self> {
        // The same total as configured (it bounds how far the kernel reads
        // ahead of the application), in at most 64 KiB pieces, 16 or more.
        let total = entries.saturating_mul(size);
        let inc_size = (total / 16).clamp(size, INC_BUF_SIZE.max(size));
        let inc_entries = (total / inc_size).max(1);
        match Self::with_layout(ring, bgid, inc_entries, inc_size, true, 0) {
            Ok(r) => Ok(r),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                Self::with_layout(ring, bgid, entries, size, false, 0)
            }
            Err(e) => Err(e),
        }
    }

    /// A ring of `entries` whole buffers of `size` bytes for datagrams
    /// (never incremental: a datagram must not land in the rest of a
    /// buffer, too small for it, and be cut short), with ids from
    /// [`DGRAM_BIDS`].
    pub(super) fn datagrams(
        ring: &IoUring,
        bgid: u16,
        entries: usize,
        size: usize,
    ) -> io::Result<Self> {
        let entries = entries.clamp(1, usize::from(DGRAM_BIDS) / 2);
        Self::with_layout(ring, bgid, entries, size, false, DGRAM_BIDS)
    }

    /// Whether buffer id `bid` is one of this ring's.
    pub(super) fn owns(&self, bid: u16) -> bool {
        bid.wrapping_sub(self.bid_base) < self.entries
    }

    fn with_layout(
        ring: &IoUring,
        bgid: u16,
        entries: usize,
        size: usize,
        incremental: bool,
        bid_base: u16,
    ) -> io::Result<Self> {
        let entries = entries.clamp(1, 32768).next_power_of_two();
        let ring_bytes = entries * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut this = BufRing {
            ring: NonNull::new(ptr.cast()).expect("mmap returned null"),
            ring_bytes,
            mem: vec![0u8; entries * size].into_boxed_slice(),
            entries: entries as u16,
            size,
            tail: 0,
            consumed: incremental.then(|| vec![0; entries].into_boxed_slice()),
            bid_base,
        };
        for i in 0..entries as u16 {
            this.recycle(bid_base + i);
        }
        this.publish();
        // SAFETY: the ring memory and the buffers it points at live as long as
        // `this`, which the driver drops only after the io_uring instance.
        let registered = unsafe {
            ring.submitter().register_buf_ring_with_flags(
                ptr as u64,
                entries as u16,
                bgid,
                if incremental { PBUF_RING_INC } else { 0 },
            )
        };
        match registered {
            Ok(()) => Ok(this),
            // EINVAL: this kernel lacks incremental rings; the caller retries.
            Err(e) if incremental && e.raw_os_error() == Some(libc::EINVAL) => Err(e),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("kernel lacks provided-buffer rings (Linux 5.19+): {e}"),
            )),
        }
    }

    /// The `len` bytes a receive put in buffer `bid`. In incremental mode
    /// they follow what earlier receives put there.
    pub(super) fn data(&mut self, bid: u16, len: usize) -> &[u8] {
        let i = usize::from(bid.wrapping_sub(self.bid_base) & (self.entries - 1));
        let offset = match self.consumed.as_mut() {
            Some(consumed) => {
                let off = consumed[i] as usize;
                consumed[i] = (off + len).min(self.size) as u32;
                off
            }
            None => 0,
        };
        let start = i * self.size + offset.min(self.size);
        let end = (start + len).min((i + 1) * self.size);
        &self.mem[start..end]
    }

    /// Whether buffer `bid` must go back to the ring after this completion:
    /// always, unless the kernel keeps filling it (`IORING_CQE_F_BUF_MORE`).
    pub(super) fn done_with(&self, more_in_buffer: bool) -> bool {
        self.consumed.is_none() || !more_in_buffer
    }

    /// Puts buffer `bid` back in the ring (visible after `publish`).
    pub(super) fn recycle(&mut self, bid: u16) {
        let i = bid.wrapping_sub(self.bid_base) & (self.entries - 1);
        if let Some(consumed) = self.consumed.as_mut() {
            consumed[usize::from(i)] = 0;
        }
        let idx = usize::from(self.tail & (self.entries - 1));
        let addr = self.mem.as_ptr() as u64 + u64::from(i) * self.size as u64;
        // SAFETY: `idx < entries`, inside the mapping; slots past the
        // published tail are ours to write.
        let entry = unsafe { &mut *self.ring.as_ptr().add(idx) };
        entry.set_addr(addr);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the tail: recycled buffers become the kernel's again.
    pub(super) fn publish(&self) {
        // SAFETY: the tail is the u16 at byte offset 14 of the first entry
        // (`io_uring_buf_ring.tail`, overlaying the first entry's `resv`),
        // inside the mapping and 2-byte aligned; the kernel reads it
        // atomically.
        let tail = unsafe { &*self.ring.as_ptr().cast::<u8>().add(14).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

/// `entry` (a multishot receive) with its total byte cap set: the kernel
/// ends the receive (a completion without `IORING_CQE_F_MORE`) once it has
/// received `total` bytes, the last receive taking it past `total` by less
/// than the per-receive length. The cap is `sqe->optlen` (Linux 6.17), which
/// the `io-uring` crate has no setter for.
pub(crate) fn with_total_cap(entry: Entry, total: u32) -> Entry {
    const _: () = assert!(std::mem::size_of::<Entry>() == 64);
    /// `offsetof(struct io_uring_sqe, optlen)`.
    const OPTLEN: usize = 44;
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte
    // `io_uring_sqe` (the crate copies it into the ring as is), a plain-old-
    // data struct in which every byte pattern is valid; the size is checked
    // above, and `[u8; 64]` has no alignment requirement.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute::<Entry, [u8; 64]>(entry) };
    raw[OPTLEN..OPTLEN + 4].copy_from_slice(&total.to_ne_bytes());
    // SAFETY: as above: the bytes of a valid SQE with one u32 field set.
    unsafe { std::mem::transmute::<[u8; 64], Entry>(raw) }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length; the ring
        // (dropped first) no longer refers to it.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes) };
    }
}
