//! A pool of receive buffers, so that memory follows traffic: a pooled
//! receive takes a buffer only when data has arrived.

use crossbeam_queue::ArrayQueue;

/// Buffers handed out by pooled receives and given back with
/// [`CompletionPort::recycle`](crate::CompletionPort::recycle).
pub(crate) struct BufPool {
    free: ArrayQueue<Vec<u8>>,
    size: usize,
}

impl BufPool {
    pub(crate) fn new(size: usize, keep: usize) -> Self {
        BufPool {
            free: ArrayQueue::new(keep.max(1)),
            size,
        }
    }

    /// An empty buffer of capacity `buf_size()`.
    pub(crate) fn take(&self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// A buffer holding a copy of `data`.
    pub(crate) fn filled(&self, data: &[u8]) -> Vec<u8> {
        let mut v = self.take();
        v.extend_from_slice(data);
        v
    }

    /// Gives a buffer back; buffers of another size are dropped.
    pub(crate) fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() == self.size {
            buf.clear();
            let _ = self.free.push(buf);
        }
    }
}
