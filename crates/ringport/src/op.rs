//! The per-I/O record of one posted operation (the seeds' `PER_IO_DATA`):
//! what to do, on which handle, with which buffer, and the user value to hand
//! back. It lives in the op table until the operation's final completion.

use std::sync::Arc;
use std::time::Duration;

use crate::completion::{Accepted, OpKind};
use crate::handle::HandleInner;
use crate::sys::{OpScratch, SockAddrBuf};

/// Which per-handle lane an operation occupies. Operations of one lane run one
/// at a time, in the order they were posted, so data is never reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    Read = 0,
    Write = 1,
}

/// One posted operation. See the module docs.
pub(crate) struct OpData {
    pub kind: OpKind,
    pub key: u64,
    pub user: u64,
    /// The handle the operation works on (keeps its descriptor open).
    pub handle: Option<Arc<HandleInner>>,
    /// The owned buffer. Receives write into its spare capacity; sends send
    /// `buf[pos..]`.
    pub buf: Option<Vec<u8>>,
    /// Progress of a send (bytes already sent), the length a receive buffer
    /// had when posted, or the bytes a pooled receive has delivered.
    pub pos: usize,
    /// A pooled receive's byte budget: it ends once it has delivered this
    /// many bytes (`usize::MAX`: no budget).
    pub max: usize,
    /// File offset of `read_at` / `write_at`.
    pub offset: u64,
    /// Timer duration.
    pub duration: Duration,
    /// The lane the op holds, if any.
    pub lane: Option<Lane>,
    /// Connect target, or the peer address an accept fills in (boxed: most
    /// ops have none, and the op record is moved on every post).
    pub addr: Option<Box<SockAddrBuf>>,
    /// An accepted socket with its peer and local addresses, until it is
    /// handed out (with first data: while its first receive runs).
    pub accepted: Option<Box<Accepted>>,
    /// A multishot accept: stays posted, one completion per connection.
    pub multishot: bool,
    /// Completions handed out so far (pooled receives number their chunks).
    pub seq: u64,
    /// Accept with first data: the receive stage has been started.
    pub first_data_started: bool,
    /// Set once the op was asked to stop (cancel, close, shutdown): a pooled
    /// receive is not reposted, a send is not continued.
    pub cancelled: bool,
    /// Backend-private state that must live as long as the op (a timespec).
    pub scratch: OpScratch,
}

impl OpData {
    pub(crate) fn new(kind: OpKind, key: u64, user: u64) -> Self {
        OpData {
            kind,
            key,
            user,
            handle: None,
            buf: None,
            pos: 0,
            max: usize::MAX,
            offset: 0,
            duration: Duration::ZERO,
            lane: None,
            addr: None,
            accepted: None,
            multishot: false,
            seq: 0,
            first_data_started: false,
            cancelled: false,
            scratch: OpScratch::default(),
        }
    }

    /// The address buffer, created on first use.
    pub(crate) fn addr(&mut self) -> &mut SockAddrBuf {
        self.addr.get_or_insert_with(Box::default)
    }

    /// The descriptor the op works on right now: the accepted socket during the
    /// first-data stage of an accept, otherwise the handle's.
    pub(crate) fn fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match &self.accepted {
            Some(acc) => Some(acc.socket.as_raw_fd()),
            None => self.handle.as_ref().map(|h| h.fd.as_raw_fd()),
        }
    }

    /// Whether a successful result of the current stage means bytes were
    /// written into `buf` by the kernel.
    pub(crate) fn fills_buf(&self) -> bool {
        matches!(self.kind, OpKind::Recv | OpKind::ReadAt)
            || (self.kind == OpKind::Accept && self.first_data_started)
    }
}
