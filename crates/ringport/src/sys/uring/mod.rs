//! The io_uring backend: the kernel performs every operation.
//!
//! One ring per port, set up with `COOP_TASKRUN | TASKRUN_FLAG` (no
//! inter-processor interrupt per completion) and a completion queue eight
//! times the submission queue. Any thread may push SQEs (under a short lock
//! that covers only the copy into the ring); only the poller reaps. A thread
//! that runs a completion defers its submissions: they go to the kernel with
//! the poller's next `io_uring_enter`, so one syscall submits a whole batch
//! and waits. Pooled receives are multishot receives into a provided-buffer
//! ring, so idle connections hold no buffer.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use parking_lot::Mutex;

use crate::builder::Builder;
use crate::completion::{OpId, OpKind};
use crate::handle::HandleInner;
use crate::op::OpData;
use crate::shared::Shared;
use crate::short_lock::ShortLock;
use crate::sys::Backend as _;

mod buf_ring;
mod files;
mod owner;
mod probe;

use buf_ring::BufRing;
use files::FileTable;
use owner::Owner;

/// `user_data` of the NOP that wakes the poller.
const WAKE: u64 = 1;
/// `user_data` of requests whose completion carries nothing (cancels).
const IGNORE: u64 = 2;
/// Buffer group id of the pooled-receive ring.
const BGID: u16 = 0;

/// Per-op state the kernel reads while the op is in flight.
#[derive(Default)]
pub(crate) struct Scratch {
    ts: Timespec,
}

/// Per-handle state: whether the descriptor is in the ring's file table.
#[derive(Default)]
pub(crate) struct FdState {
    fixed: AtomicBool,
}

/// How a request names its descriptor.
#[derive(Clone, Copy)]
enum Target {
    Raw(RawFd),
    /// An entry of the registered file table (see `files`).
    Fixed(u32),
}

/// Builds `$e` with `$fd` bound to the descriptor in the form `$t` names
/// (the opcode builders take either, as different types).
macro_rules! on_target {
    ($t:expr, $fd:ident => $e:expr) => {
        match $t {
            Target::Raw(raw) => {
                let $fd = Fd(raw);
                $e
            }
            Target::Fixed(index) => {
                let $fd = Fixed(index);
                $e
            }
        }
    };
}

pub(crate) struct Driver {
    // Field order: the ring is closed before the buffer memory it points at
    // is freed.
    ring: IoUring,
    /// Guards the submission queue, and holds in order the requests that
    /// did not fit while only another thread could submit (a single-thread
    /// ring before or between its owner's polls).
    sq: ShortLock<Vec<squeue::Entry>>,
    bufs: Mutex<BufRing>,
    wake_pending: AtomicBool,
    /// Set in single-thread mode (`SINGLE_ISSUER | DEFER_TASKRUN`).
    owner: Option<Owner>,
    /// The registered file table, if the kernel gave us one.
    files: Option<FileTable>,
    /// A table entry was cleared while reaping: submit before returning.
    submit_after_reap: AtomicBool,
    /// Most bytes one pooled-receive completion carries.
    recv_len: u32,
    /// The kernel caps a multishot receive at a byte total (Linux 6.17).
    recv_cap: bool,
    /// `Builder::coalesce`, where the kernel has min-timeout waits:
    /// completions to wait for, and microseconds after which one will do.
    coalesce: Option<(usize, u32)>,
}

impl Driver {
    pub(crate) fn new(b: &Builder) -> io::Result<Driver> {
        probe::kernel_version_ok()?;
        let ring = probe::build_ring(b.entries, b.single_thread)?;
        probe::check_opcodes(&ring)?;
        let bufs = BufRing::new(&ring, BGID, b.pool_bufs, b.pool_buf_size)?;
        let owner = if b.single_thread {
            Some(Owner::new()?)
        } else {
            None
        };
        let files = FileTable::new(&ring);
        let coalesce = b
            .coalesce
            .filter(|_| ring.params().is_feature_min_timeout())
            .map(|(n, d)| (n as usize, u32::try_from(d.as_micros()).unwrap_or(u32::MAX)));
        Ok(Driver {
            ring,
            sq: ShortLock::new(Vec::new()),
            bufs: Mutex::new(bufs),
            wake_pending: AtomicBool::new(false),
            owner,
            files,
            submit_after_reap: AtomicBool::new(false),
            recv_len: clamp_len(b.pool_buf_size),
            recv_cap: probe::recv_total_cap(),
            coalesce,
        })
    }

    /// Whether the calling thread may enter the ring.
    fn may_enter(&self) -> bool {
        self.owner.as_ref().is_none_or(Owner::is_current)
    }

    /// Submits what is queued, or asks the owner to when this thread may not.
    fn submit_now(&self) {
        if !self.may_enter() {
            self.wake();
        } else if let Err(e) = self.ring.submit() {
            tracing::warn!("io_uring submit failed: {e}");
        }
    }

    /// In single-thread mode, makes the calling thread the owner if there is
    /// none (enabling the ring), or fails if another thread owns it.
    fn claim(&self) -> io::Result<()> {
        let Some(owner) = &self.owner else {
            return Ok(());
        };
        if owner.claim()? {
            self.ring.submitter().register_enable_rings()?;
            let rearm = owner.rearm(WAKE);
            self.push(rearm, true);
        }
        Ok(())
    }

    /// Whether the owner of a single-thread ring has exited.
    pub(crate) fn owner_gone(&self) -> bool {
        self.owner.as_ref().is_some_and(Owner::is_gone)
    }

    /// Whether `poll` may be called on this thread (shutdown asks).
    pub(crate) fn can_poll_here(&self) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|o| o.is_current() || o.unclaimed())
    }

    /// Copies `entry` into the submission queue (or, when it is full and
    /// only the owner may submit, the backlog); submits now unless `defer`.
    fn push(&self, entry: squeue::Entry, defer: bool) {
        let backlogged = {
            let mut backlog = self.sq.lock();
            // SAFETY: `self.sq` is held, so this is the only SubmissionQueue
            // view of the ring; every pointer in `entry` refers to op-table
            // memory, a buffer's heap block or a static that stays put until
            // the op's CQE is reaped (see `lower`).
            let pushed =
                backlog.is_empty() && unsafe { self.ring.submission_shared().push(&entry) }.is_ok();
            if !pushed {
                backlog.push(entry);
                if self.may_enter() {
                    self.drain_backlog(&mut backlog);
                }
            }
            !backlog.is_empty()
        };
        if !defer || backlogged {
            self.submit_now();
        }
    }

    /// Moves backlogged requests into the submission queue, submitting to
    /// make room. The caller holds `self.sq` and may enter the ring. What
    /// cannot be submitted (the kernel refuses for now) stays backlogged.
    fn drain_backlog(&self, backlog: &mut Vec<squeue::Entry>) {
        let mut moved = 0;
        while moved < backlog.len() {
            {
                // SAFETY: as in `push`: the lock is held, the entries'
                // pointers stay valid until their CQEs are reaped.
                let mut sq = unsafe { self.ring.submission_shared() };
                // SAFETY: as above.
                while moved < backlog.len() && unsafe { sq.push(&backlog[moved]) }.is_ok() {
                    moved += 1;
                }
            }
            if moved < backlog.len() {
                if let Err(e) = self.ring.submit() {
                    tracing::warn!("io_uring submit while the queue was full: {e}");
                    break;
                }
            }
        }
        backlog.drain(..moved);
    }

    /// Whether a syscall is needed even though completions are ready: SQEs
    /// wait to be submitted, task work waits to run, or the CQ overflowed.
    fn must_enter(&self) -> bool {
        let backlog = self.sq.lock();
        // SAFETY: `self.sq` is held: this is the only SubmissionQueue view.
        let sq = unsafe { self.ring.submission_shared() };
        !backlog.is_empty() || !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
    }

    /// Moves the backlog into the submission queue (the caller may enter).
    fn take_backlog(&self) {
        let mut backlog = self.sq.lock();
        if !backlog.is_empty() {
            self.drain_backlog(&mut backlog);
        }
    }

    /// The descriptor `op` works on now, as a request should name it.
    fn target(op: &OpData) -> Option<Target> {
        if let Some(acc) = &op.accepted {
            // The first-data stage of an accept: a socket not associated yet.
            return Some(Target::Raw(acc.socket.as_raw_fd()));
        }
        let h = op.handle.as_ref()?;
        let fd = h.fd.as_raw_fd();
        Some(if h.sys.uring.fixed.load(Ordering::Relaxed) {
            Target::Fixed(fd as u32)
        } else {
            Target::Raw(fd)
        })
    }

    /// The SQE for the current stage of `op`, or the result it completes
    /// with at once: a zero-length timer has expired already (the kernel
    /// would arm an hrtimer and take an interrupt for it, ~6 µs each here),
    /// and an op without a descriptor fails with `EBADF`.
    fn lower_or_finish(&self, op: &mut OpData) -> Result<squeue::Entry, i32> {
        if op.kind == OpKind::Timeout && op.duration.is_zero() {
            return Err(-libc::ETIME);
        }
        self.lower(op).ok_or(-libc::EBADF)
    }

    /// Builds the SQE for the current stage of `op`.
    fn lower(&self, op: &mut OpData) -> Option<squeue::Entry> {
        let target = Self::target(op);
        let entry = match op.kind {
            OpKind::Accept if op.first_data_started => {
                let (ptr, len) = spare(op.buf.as_mut()?);
                on_target!(target?, fd => opcode::Recv::new(fd, ptr, len).build())
            }
            OpKind::Accept if op.multishot => {
                // No address buffer: each connection's addresses are read
                // with getpeername/getsockname when it is reaped.
                on_target!(target?, fd => opcode::AcceptMulti::new(fd)
                    .flags(libc::SOCK_CLOEXEC)
                    .build())
            }
            OpKind::Accept => {
                let addr = op.addr();
                addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                let (ptr, len) = ((&raw mut addr.storage).cast(), &raw mut addr.len);
                on_target!(target?, fd => opcode::Accept::new(fd, ptr, len)
                    .flags(libc::SOCK_CLOEXEC)
                    .build())
            }
            OpKind::Connect => {
                let addr = op.addr();
                let (ptr, len) = ((&raw const addr.storage).cast(), addr.len);
                on_target!(target?, fd => opcode::Connect::new(fd, ptr, len).build())
            }
            OpKind::Recv => {
                let (ptr, len) = spare(op.buf.as_mut()?);
                on_target!(target?, fd => opcode::Recv::new(fd, ptr, len).build())
            }
            // At most one pool buffer's worth per completion.
            OpKind::RecvPooled if op.max == usize::MAX => {
                on_target!(target?, fd => opcode::RecvMulti::new(fd, BGID)
                    .len(self.recv_len)
                    .build())
            }
            // With a budget: the kernel stops at what is left of it.
            OpKind::RecvPooled => {
                let left = clamp_len(op.max.saturating_sub(op.pos)).max(1);
                let len = self.recv_len.min(left);
                if self.recv_cap {
                    let multi = on_target!(target?, fd => opcode::RecvMulti::new(fd, BGID)
                        .len(len)
                        .build());
                    buf_ring::with_total_cap(multi, left)
                } else {
                    on_target!(target?, fd => opcode::Recv::new(fd, std::ptr::null_mut(), len)
                        .buf_group(BGID)
                        .build())
                    .flags(squeue::Flags::BUFFER_SELECT)
                }
            }
            OpKind::Send | OpKind::SendAll => {
                let buf = op.buf.as_ref()?;
                let rest = &buf[op.pos.min(buf.len())..];
                let (ptr, len) = (rest.as_ptr(), clamp_len(rest.len()));
                on_target!(target?, fd => opcode::Send::new(fd, ptr, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build())
            }
            OpKind::ReadAt => {
                let (ptr, len) = spare(op.buf.as_mut()?);
                let offset = op.offset;
                on_target!(target?, fd => opcode::Read::new(fd, ptr, len).offset(offset).build())
            }
            OpKind::WriteAt => {
                let buf = op.buf.as_ref()?;
                let (ptr, len) = (buf.as_ptr(), clamp_len(buf.len()));
                let offset = op.offset;
                on_target!(target?, fd => opcode::Write::new(fd, ptr, len).offset(offset).build())
            }
            OpKind::Timeout => {
                op.scratch.uring.ts = Timespec::from(op.duration);
                opcode::Timeout::new(&raw const op.scratch.uring.ts).build()
            }
            OpKind::Packet | OpKind::Close => return None,
        };
        Some(entry)
    }

    /// Reaps what is ready, then submits what reaping queued that must
    /// not wait for the next poll.
    fn reap(&self, sh: &Shared) -> io::Result<()> {
        self.reap_ready(sh);
        if self.submit_after_reap.swap(false, Ordering::Relaxed) {
            ignore_transient(self.ring.submit())?;
        }
        Ok(())
    }

    /// Reaps what is in the completion queue, at most one queue's worth:
    /// whenever the ring is entered during a reap (a full submission queue,
    /// a cancel) the kernel may post more completions, and with busy sockets
    /// it can post them as fast as they are reaped; the poller must come
    /// back to hand out what it reaped.
    fn reap_ready(&self, sh: &Shared) {
        let mut batch: [MaybeUninit<cqueue::Entry>; 128] = [const { MaybeUninit::uninit() }; 128];
        let mut bufs = self.bufs.lock();
        let mut budget = self.ring.params().cq_entries() as usize;
        loop {
            let n = {
                // SAFETY: only the poller reaps (the front end's poller token,
                // or shutdown after taking it), so this is the only
                // CompletionQueue view. Dropping it publishes the new head.
                let mut cq = unsafe { self.ring.completion_shared() };
                let got = cq.fill(&mut batch);
                got.len()
            };
            for slot in &batch[..n] {
                // SAFETY: `fill` initialised the first `n` entries.
                let cqe = unsafe { slot.assume_init_ref() };
                let (ud, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
                match ud {
                    WAKE => {
                        self.wake_pending.store(false, Ordering::Release);
                        if let Some(owner) = &self.owner {
                            self.push(owner.rearm(WAKE), true);
                        }
                        continue;
                    }
                    IGNORE => continue,
                    _ => {}
                }
                let pooled = cqueue::buffer_select(flags).map(|bid| {
                    let v = sh.pool.filled(bufs.data(bid, res.max(0) as usize));
                    if bufs.done_with(cqueue::buffer_more(flags)) {
                        bufs.recycle(bid);
                    }
                    v
                });
                // SAFETY: `res` is the kernel's result for this op's current
                // stage; the kernel wrote received bytes into the op's own
                // buffer (pooled data was copied out above), and an accept's
                // result is the new descriptor.
                unsafe { super::reap(sh, OpId(ud), res, cqueue::more(flags), pooled) };
            }
            bufs.publish();
            budget = budget.saturating_sub(n);
            if n < batch.len() || budget == 0 {
                break;
            }
        }
    }
}

fn spare(buf: &mut Vec<u8>) -> (*mut u8, u32) {
    let spare = buf.spare_capacity_mut();
    (spare.as_mut_ptr().cast(), clamp_len(spare.len()))
}

fn clamp_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ignore_transient(r: io::Result<usize>) -> io::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

impl super::Backend for Driver {
    fn register(&self, _sh: &Shared, handle: &Arc<HandleInner>) -> io::Result<()> {
        // io_uring arms its own poll for sockets; a non-blocking descriptor
        // would make some kernels fail an accept with EAGAIN instead.
        let fd = handle.fd.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; no memory is involved.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        }
        if let Some(entry) = self.files.as_ref().and_then(|t| t.set(fd)) {
            // Ahead of the handle's first operation in the queue; submitted
            // with it.
            self.push(entry.user_data(IGNORE), true);
            handle.sys.uring.fixed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn deregister(&self, sh: &Shared, handle: &HandleInner) {
        if handle.sys.uring.fixed.load(Ordering::Relaxed) {
            // The table holds a reference to the socket: the connection is
            // closed only once the entry is cleared, so submit now (the
            // poller does at the end of its poll).
            let polling = sh.polling_here();
            self.push(
                FileTable::clear(handle.fd.as_raw_fd()).user_data(IGNORE),
                polling,
            );
            if polling {
                self.submit_after_reap.store(true, Ordering::Relaxed);
            }
        }
    }

    fn start(&self, sh: &Shared, id: OpId, defer: bool) {
        match sh.arena.with(id, |op| self.lower_or_finish(op)) {
            Some(Ok(entry)) => self.push(entry.user_data(id.0), defer),
            Some(Err(res)) => sh.complete(id, res, false, None),
            None => {}
        }
    }

    fn start_new(&self, sh: &Shared, op: OpData, defer: bool) -> Option<OpId> {
        let (id, lowered) = sh.arena.insert_then(op, |_, op| self.lower_or_finish(op))?;
        match lowered {
            Ok(entry) => self.push(entry.user_data(id.0), defer),
            Err(res) => sh.complete(id, res, false, None),
        }
        Some(id)
    }

    fn cancel(&self, _sh: &Shared, id: OpId) {
        let e = opcode::AsyncCancel::new(id.0).build().user_data(IGNORE);
        self.push(e, false);
    }

    fn cancel_handle(&self, _sh: &Shared, handle: &HandleInner) {
        let b = CancelBuilder::fd(Fd(handle.fd.as_raw_fd())).all();
        let e = opcode::AsyncCancel2::new(b).build().user_data(IGNORE);
        self.push(e, false);
    }

    fn flush(&self) -> io::Result<()> {
        if self.may_enter() {
            self.take_backlog();
            ignore_transient(self.ring.submit())
        } else {
            self.wake();
            Ok(())
        }
    }

    fn poll(&self, sh: &Shared, timeout: Option<Duration>) -> io::Result<()> {
        self.claim()?;
        self.take_backlog();
        // SAFETY: the poller is the only CompletionQueue user (see `reap`).
        let ready = !unsafe { self.ring.completion_shared() }.is_empty();
        if ready && !self.must_enter() {
            return self.reap(sh);
        }
        // After a burst, an idle wait ends with a trim (see `sys::trim`).
        let (timeout, trim) = match ready {
            true => (timeout, None),
            false => super::trim::wait(&sh.pool, timeout),
        };
        let submitter = self.ring.submitter();
        let r = match (timeout, self.coalesce) {
            _ if ready => submitter.submit(),
            (Some(t), _) if t.is_zero() => submitter.submit(),
            (None, None) => submitter.submit_and_wait(1),
            (Some(t), None) => {
                let ts = Timespec::from(t);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
            // Wait for `n`, or for one once `us` have passed.
            (None, Some((n, us))) => {
                submitter.submit_with_args(n, &SubmitArgs::new().min_wait_usec(us))
            }
            (Some(t), Some((n, us))) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts).min_wait_usec(us);
                submitter.submit_with_args(n, &args)
            }
        };
        ignore_transient(r)?;
        if let Some(began) = trim {
            // SAFETY: as above.
            let idle = unsafe { self.ring.completion_shared() }.is_empty();
            super::trim::after_wait(&sh.pool, began, idle);
        }
        self.reap(sh)
    }

    fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        match &self.owner {
            Some(owner) => owner.signal(),
            None => self.push(opcode::Nop::new().build().user_data(WAKE), false),
        }
    }
}
