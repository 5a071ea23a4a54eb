//! Registered (fixed) descriptors: an associated socket or file is entered
//! in the ring's file table, and its operations name it by table index, so
//! the kernel does not look the descriptor up and take a reference on it
//! for every request (`fget`/`fput`).
//!
//! The table index of a descriptor is its number: numbers are unique while
//! the descriptor is open, and a handle keeps its descriptor open until its
//! last operation has completed. Entries are set and cleared by
//! `FILES_UPDATE` requests in the submission queue, so they take effect in
//! order with the operations around them: a handle's update comes before
//! its first operation, and when a descriptor number is reused the old
//! entry's removal comes before the new entry. Which entries are set is kept
//! here, so a request names a descriptor by entry only if it has one (the
//! accepted socket of an accept's first-data stage has none). Descriptors
//! beyond the table (or when the kernel refuses a table) are used by number.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use io_uring::{opcode, squeue, IoUring};

/// The value that clears a table entry. A static, so the kernel may read it
/// whenever it consumes the request.
static CLEAR: RawFd = -1;

pub(super) struct FileTable {
    /// `identity[i] == i`: what an update that sets entry `i` points at.
    /// Never written after creation and freed only after the ring.
    identity: Box<[RawFd]>,
    /// One bit per entry: set (an associated descriptor).
    set: Box<[AtomicU64]>,
}

impl FileTable {
    /// Registers an empty table sized to the descriptor limit (at most
    /// 65 536 entries); `None` if the kernel refuses one.
    pub(super) fn new(ring: &IoUring) -> Option<FileTable> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into `lim`.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        let size = lim.rlim_cur.min(65_536) as u32;
        if size == 0 {
            return None;
        }
        if let Err(e) = ring.submitter().register_files_sparse(size) {
            tracing::debug!("io_uring: no registered file table ({e}); using descriptors");
            return None;
        }
        Some(FileTable {
            identity: (0..size as RawFd).collect(),
            set: (0..(size as usize).div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        })
    }

    /// The word and bit of entry `fd`, if the table has one.
    fn bit(&self, fd: RawFd) -> Option<(&AtomicU64, u64)> {
        let i = usize::try_from(fd)
            .ok()
            .filter(|&i| i < self.identity.len())?;
        Some((&self.set[i / 64], 1 << (i % 64)))
    }

    /// Whether `fd` has an entry (requests may name it by index).
    pub(super) fn is_set(&self, fd: RawFd) -> bool {
        self.bit(fd)
            .is_some_and(|(w, b)| w.load(Ordering::Acquire) & b != 0)
    }

    /// The request that enters `fd` in the table, if it fits.
    pub(super) fn set(&self, fd: RawFd) -> Option<squeue::Entry> {
        let (word, bit) = self.bit(fd)?;
        let slot = &self.identity[fd as usize];
        word.fetch_or(bit, Ordering::AcqRel);
        Some(opcode::FilesUpdate::new(slot, 1).offset(fd).build())
    }

    /// The request that clears entry `fd`, if `set` entered it.
    pub(super) fn clear(&self, fd: RawFd) -> Option<squeue::Entry> {
        let (word, bit) = self.bit(fd)?;
        (word.fetch_and(!bit, Ordering::AcqRel) & bit != 0)
            .then(|| opcode::FilesUpdate::new(&CLEAR, 1).offset(fd).build())
    }
}
