//! A pool of receive buffers, so that memory follows traffic: a pooled
//! receive takes a buffer only when data has arrived.
//!
//! Buffers are taken by the thread that reaps completions and usually given
//! back by the thread that ran them; with one worker that is the same
//! thread, so each thread keeps a few free buffers of its own (for one pool
//! at a time) in front of the shared queue: taking and giving back then
//! touch no shared memory.
//!
//! What the pool keeps is bounded in bytes ([`SHARED_KEEP_BYTES`] plus
//! [`LOCAL_KEEP_BYTES`] per thread), whatever the buffer size and count: a
//! burst of traffic allocates what it needs, and what it needed beyond that
//! goes back to the allocator afterwards. A chunk of data that fills less
//! than half a buffer is handed out in a buffer of its own size, so small
//! messages do not pin whole buffers wherever they are kept (a send queue, a
//! consumer's backlog): memory held is at most twice the bytes held.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;

/// Free buffers a thread keeps for itself: at most this many...
const LOCAL_KEEP: usize = 64;
/// ...and at most this many bytes of them.
const LOCAL_KEEP_BYTES: usize = 512 << 10;
/// Bytes of free buffers the shared queue keeps, at most.
const SHARED_KEEP_BYTES: usize = 4 << 20;

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's own free buffers, and the pool they belong to.
struct LocalBufs {
    pool: u64,
    bufs: Vec<Vec<u8>>,
}

thread_local! {
    static LOCAL: RefCell<LocalBufs> = const {
        RefCell::new(LocalBufs { pool: 0, bufs: Vec::new() })
    };
}

/// Buffers handed out by pooled receives and given back with
/// [`CompletionPort::recycle`](crate::CompletionPort::recycle).
pub(crate) struct BufPool {
    id: u64,
    free: ArrayQueue<Vec<u8>>,
    size: usize,
    /// Free buffers a thread keeps for itself.
    local_keep: usize,
    /// Bytes of buffers allocated because none was free, since the last
    /// trim (see `sys::trim`).
    fresh: AtomicUsize,
}

impl BufPool {
    /// A pool of `size`-byte buffers keeping up to `keep` free ones (fewer
    /// if they would take more than [`SHARED_KEEP_BYTES`]).
    pub(crate) fn new(size: usize, keep: usize) -> Self {
        let size = size.max(1);
        BufPool {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            free: ArrayQueue::new(keep.min(SHARED_KEEP_BYTES / size).max(1)),
            size,
            local_keep: (LOCAL_KEEP_BYTES / size).clamp(1, LOCAL_KEEP),
            fresh: AtomicUsize::new(0),
        }
    }

    /// An empty buffer of capacity `buf_size()`.
    pub(crate) fn take(&self) -> Vec<u8> {
        let local = LOCAL
            .try_with(|l| {
                let mut l = l.borrow_mut();
                if l.pool == self.id {
                    l.bufs.pop()
                } else {
                    None
                }
            })
            .ok()
            .flatten();
        local.or_else(|| self.free.pop()).unwrap_or_else(|| {
            self.fresh.fetch_add(self.size, Ordering::Relaxed);
            Vec::with_capacity(self.size)
        })
    }

    /// Whether enough fresh buffers were allocated since the last trim for
    /// another to be worth it (see `sys::trim`).
    pub(crate) fn trim_due(&self) -> bool {
        self.fresh.load(Ordering::Relaxed) >= crate::sys::trim::TRIM_AFTER
    }

    /// Takes the due trim: true once per `trim_due` period.
    pub(crate) fn take_trim(&self) -> bool {
        self.fresh.swap(0, Ordering::Relaxed) >= crate::sys::trim::TRIM_AFTER
    }

    /// A buffer holding a copy of `data`: a pool buffer, or one of its own
    /// size if `data` would fill less than half a pool buffer.
    pub(crate) fn filled(&self, data: &[u8]) -> Vec<u8> {
        if self.is_short(data.len()) {
            return data.to_vec();
        }
        let mut v = self.take();
        v.extend_from_slice(data);
        v
    }

    /// `buf` (a pool buffer holding a chunk), or a copy of its bytes in a
    /// buffer of their size if they fill less than half of it (the pool
    /// buffer then goes back).
    pub(crate) fn fit(&self, buf: Vec<u8>) -> Vec<u8> {
        if !self.is_short(buf.len()) {
            return buf;
        }
        let v = buf.to_vec();
        self.put(buf);
        v
    }

    /// Whether `len` bytes fill less than half a buffer.
    fn is_short(&self, len: usize) -> bool {
        len < self.size / 2
    }

    /// Gives a buffer back; buffers of another size are dropped.
    pub(crate) fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() != self.size {
            return;
        }
        buf.clear();
        let overflow = LOCAL.try_with(|l| {
            let mut l = l.borrow_mut();
            if l.pool != self.id {
                // This thread now serves another pool: the old one's
                // buffers are plain heap memory nobody else refers to.
                l.bufs.clear();
                l.pool = self.id;
            }
            if l.bufs.len() < self.local_keep {
                l.bufs.push(buf);
                None
            } else {
                Some(buf)
            }
        });
        match overflow {
            Ok(None) => {}
            Ok(Some(buf)) => {
                let _ = self.free.push(buf);
            }
            // The thread is exiting: its cache is gone; let the buffer go.
            Err(_) => {}
        }
    }
}
