//! The io_uring backend: the kernel performs every operation.
//!
//! One ring per port, set up with `COOP_TASKRUN | TASKRUN_FLAG` (no
//! inter-processor interrupt per completion) and a completion queue eight
//! times the submission queue. Any thread may push SQEs (under a short lock
//! that covers only the copy into the ring); only the poller reaps. A request
//! is submitted when it is pushed (the I/O starts inside the call that posts
//! it, as `WSASend` does), unless its caller guarantees a flush: a batch
//! (`CompletionPort::batch`) submits when it ends, and requests the poller
//! queues while reaping (the rest of a partial send, the next send of a
//! lane) go with one submission at the end of its reap. Pooled receives are
//! multishot receives into a provided-buffer ring, so idle connections hold
//! no buffer.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use parking_lot::Mutex;

use super::{Backend as _, Config, OpId, Sink, Submit, SysOp};
use crate::short_lock::ShortLock;

mod buf_ring;
pub(crate) use buf_ring::with_total_cap;
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
/// Buffer group id of the pooled datagram ring.
const DGRAM_BGID: u16 = 1;

/// The provided-buffer rings: one for streams, one for datagrams.
struct Rings {
    stream: BufRing,
    dgram: BufRing,
}

/// How a request names its descriptor.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    Raw(RawFd),
    /// An entry of the registered file table (see `files`).
    Fixed(u32),
}

/// Builds `$e` with `$fd` bound to the descriptor in the form `$t` names
/// (the opcode builders take either, as different types).
macro_rules! on_target {
    ($t:expr, $fd:ident => $e:expr) => {
        match $t {
            $crate::sys::uring::Target::Raw(raw) => {
                let $fd = io_uring::types::Fd(raw);
                $e
            }
            $crate::sys::uring::Target::Fixed(index) => {
                let $fd = io_uring::types::Fixed(index);
                $e
            }
        }
    };
}
pub(crate) use on_target;

/// How a stage began (see `Driver::begin`).
enum Began {
    /// A request to submit, and the linked timeout that bounds it (its
    /// op's deadline; boxed, as few ops have one: two entries inline made
    /// this 136 bytes, copied by a `memcpy` call on each return).
    Request(squeue::Entry, Option<Box<squeue::Entry>>),
    /// Its non-blocking try finished it with this result.
    Done(i32),
    /// It needs no request: this is its result.
    Immediate(i32),
}

/// What an op needs to lower its current stage to a request.
pub(crate) struct LowerCx {
    /// The descriptor, as the request should name it (`None`: the op has
    /// none, or it was closed).
    pub target: Option<Target>,
    /// The provided-buffer group of pooled receives.
    pub buf_group: u16,
    /// The provided-buffer group of pooled datagram receives (whole
    /// buffers of the pool's buffer size).
    pub dgram_group: u16,
    /// Most bytes one pooled-receive completion carries.
    pub recv_len: u32,
    /// The kernel can cap a multishot receive at a byte total
    /// ([`with_total_cap`]).
    pub recv_total_cap: bool,
    /// Sends of at least this many bytes go out zero-copy (`SEND_ZC`).
    pub zero_copy_above: Option<usize>,
}

pub(crate) struct Driver {
    // Field order: the ring is closed before the buffer memory it points at
    // is freed.
    ring: IoUring,
    /// Guards the submission queue, and holds in order the requests that
    /// did not fit while only another thread could submit (a single-thread
    /// ring before or between its owner's polls).
    sq: ShortLock<Vec<squeue::Entry>>,
    bufs: Mutex<Rings>,
    wake_pending: AtomicBool,
    /// Set in single-thread mode (`SINGLE_ISSUER | DEFER_TASKRUN`).
    owner: Option<Owner>,
    /// The registered file table, if the kernel gave us one.
    files: Option<FileTable>,
    /// Requests were queued with `defer`: the next `flush` (or the end of
    /// a reap) submits them.
    unsubmitted: AtomicBool,
    /// Most bytes one pooled-receive completion carries.
    recv_len: u32,
    /// The kernel caps a multishot receive at a byte total (Linux 6.17).
    recv_cap: bool,
    /// `Builder::send_zero_copy_above`, where the kernel has `SEND_ZC`.
    zero_copy_above: Option<usize>,
    /// `Builder::coalesce`, where the kernel has min-timeout waits:
    /// completions to wait for, and microseconds after which one will do.
    coalesce: Option<(usize, u32)>,
}

impl Driver {
    pub(crate) fn new(b: &Config) -> io::Result<Driver> {
        probe::kernel_version_ok()?;
        let ring = probe::build_ring(b.entries, b.single_thread)?;
        probe::check_opcodes(&ring, b.opcodes)?;
        let bufs = Rings {
            stream: BufRing::new(&ring, BGID, b.pool_bufs, b.pool_buf_size)?,
            // A quarter as many buffers: most servers receive streams.
            dgram: BufRing::datagrams(&ring, DGRAM_BGID, b.pool_bufs / 4, b.pool_buf_size)?,
        };
        let owner = if b.single_thread {
            Some(Owner::new()?)
        } else {
            None
        };
        let files = FileTable::new(&ring);
        let zero_copy_above = b
            .zero_copy_above
            .filter(|_| probe::supports(&ring, opcode::SendZc::CODE));
        let coalesce = b
            .coalesce
            .filter(|_| ring.params().is_feature_min_timeout())
            .map(|(n, d)| {
                let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
                (n as usize, us)
            });
        Ok(Driver {
            ring,
            sq: ShortLock::new(Vec::new()),
            bufs: Mutex::new(bufs),
            wake_pending: AtomicBool::new(false),
            owner,
            files,
            unsubmitted: AtomicBool::new(false),
            recv_len: clamp_len(b.pool_buf_size),
            recv_cap: probe::recv_total_cap(),
            zero_copy_above,
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
            self.push_lazy(rearm);
        }
        Ok(())
    }

    /// Copies `entry` into the submission queue (or, when it is full and
    /// only the owner may submit, the backlog) and submits it now, unless
    /// `Submit::Deferred`: then the caller guarantees a flush (at the end of
    /// a batch, or the poller's own at the end of its reap).
    fn push(&self, entry: squeue::Entry, submit: Submit) {
        self.push_all(std::slice::from_ref(&entry), submit);
    }

    /// As `push`, for requests that must reach the queue together (a
    /// request and its linked timeout).
    fn push_all(&self, entries: &[squeue::Entry], submit: Submit) {
        let backlogged = self.push_lazy_all(entries);
        if submit == Submit::Deferred && !backlogged {
            self.unsubmitted.store(true, Ordering::Release);
        } else {
            self.submit_now();
        }
    }

    /// Copies `entry` into the submission queue without submitting it: it
    /// goes to the kernel with whatever is submitted next. For requests
    /// that need not start at once (a table update ahead of a handle's
    /// first operation, the owner's wake-up read). Returns whether requests
    /// wait in the backlog, which only a submission moves on.
    fn push_lazy(&self, entry: squeue::Entry) -> bool {
        self.push_lazy_all(std::slice::from_ref(&entry))
    }

    /// As `push_lazy`, for requests that go to the queue together.
    fn push_lazy_all(&self, entries: &[squeue::Entry]) -> bool {
        let mut backlog = self.sq.lock();
        // SAFETY: `self.sq` is held, so this is the only SubmissionQueue
        // view of the ring; every pointer in the entries refers to op-table
        // memory, a buffer's heap block or a static that stays put until
        // the op's CQE is reaped (see `lower`; a linked timeout's timespec
        // is in its op's deadline box, which the op in the table owns).
        let pushed = backlog.is_empty()
            && unsafe { self.ring.submission_shared().push_multiple(entries) }.is_ok();
        if !pushed {
            backlog.extend_from_slice(entries);
            if self.may_enter() {
                self.drain_backlog(&mut backlog);
            }
        }
        !backlog.is_empty()
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
                while moved < backlog.len() {
                    // A request and its linked timeout go in together.
                    let linked = backlog
                        .get(moved + 1)
                        .is_some_and(|e| e.get_opcode() == u32::from(opcode::LinkTimeout::CODE));
                    let group = &backlog[moved..moved + 1 + usize::from(linked)];
                    // SAFETY: as above.
                    if unsafe { sq.push_multiple(group) }.is_err() {
                        break;
                    }
                    moved += group.len();
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

    /// How a request should name `fd`: by its file-table entry if it has
    /// one (an associated descriptor), else by number (the accepted socket
    /// of an accept's first-data stage).
    fn target(&self, fd: RawFd) -> Target {
        match &self.files {
            Some(t) if t.is_set(fd) => Target::Fixed(fd as u32),
            _ => Target::Raw(fd),
        }
    }

    /// The request for the current stage of `op`, or its result now.
    fn lower(&self, op: &mut impl SysOp) -> Result<squeue::Entry, i32> {
        op.lower(&self.lower_cx(op))
    }

    /// What `op` needs to lower its current stage.
    fn lower_cx(&self, op: &impl SysOp) -> LowerCx {
        LowerCx {
            target: op.fd().map(|fd| self.target(fd)),
            buf_group: BGID,
            dgram_group: DGRAM_BGID,
            recv_len: self.recv_len,
            recv_total_cap: self.recv_cap,
            zero_copy_above: self.zero_copy_above,
        }
    }

    /// Begins the current stage of `op` (under its slot lock): a stage
    /// that tries first (a send) is tried with a non-blocking syscall when
    /// it is to start now, and goes to the kernel as a request only if that
    /// would block; any other is lowered to its request.
    fn begin(&self, op: &mut impl SysOp, cx: &impl Sink, submit: Submit) -> Began {
        if submit == Submit::Now && op.try_first(&self.lower_cx(op)) {
            if let Some(fd) = op.fd() {
                match op.attempt(fd, cx.pool()) {
                    super::epoll::Attempt::Done(res) => return Began::Done(res),
                    super::epoll::Attempt::WouldBlock => {}
                    super::epoll::Attempt::Chunk { buf, .. } => cx.pool().put(buf),
                }
            }
        }
        match self.lower(op) {
            Ok(entry) => Began::Request(entry, op.link_timeout().map(Box::new)),
            Err(res) => Began::Immediate(res),
        }
    }

    /// Acts on what `begin` did, outside the slot lock.
    fn follow(&self, cx: &impl Sink, id: OpId, began: Began, submit: Submit) {
        match began {
            Began::Request(entry, None) => self.push(entry.user_data(id.0), submit),
            Began::Request(entry, Some(timeout)) => {
                let entry = entry.flags(squeue::Flags::IO_LINK).user_data(id.0);
                self.push_all(&[entry, timeout.user_data(IGNORE)], submit);
            }
            // SAFETY: the result of the stage's own syscall, which has
            // returned (a send: no memory was written).
            Began::Done(res) => unsafe { super::reap(cx, id, res, false, None) },
            // SAFETY: an immediate result (an error, or an expired timer):
            // nothing was handed to the kernel.
            Began::Immediate(res) => unsafe { super::reap(cx, id, res, false, None) },
        }
    }

    /// Reaps what is ready, then submits what reaping queued (the rest of
    /// a send, the next send of a lane, a cleared table entry): none of it
    /// may wait for a next poll that nobody may make soon.
    fn reap(&self, cx: &impl Sink) -> io::Result<()> {
        self.reap_ready(cx);
        if self.unsubmitted.swap(false, Ordering::AcqRel) {
            ignore_transient(self.ring.submit())?;
        }
        Ok(())
    }

    /// Reaps what is in the completion queue, at most one queue's worth:
    /// whenever the ring is entered during a reap (a full submission queue,
    /// a cancel) the kernel may post more completions, and with busy sockets
    /// it can post them as fast as they are reaped; the poller must come
    /// back to hand out what it reaped.
    fn reap_ready(&self, cx: &impl Sink) {
        let mut batch: [MaybeUninit<cqueue::Entry>; 128] = [const { MaybeUninit::uninit() }; 128];
        let mut rings = self.bufs.lock();
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
                            // With the owner's next enter: it is awake.
                            self.push_lazy(owner.rearm(WAKE));
                        }
                        continue;
                    }
                    IGNORE => continue,
                    _ => {}
                }
                let pooled = cqueue::buffer_select(flags).map(|bid| {
                    let bufs = match rings.dgram.owns(bid) {
                        true => &mut rings.dgram,
                        false => &mut rings.stream,
                    };
                    let v = cx.pool().filled(bufs.data(bid, res.max(0) as usize));
                    if bufs.done_with(cqueue::buffer_more(flags)) {
                        bufs.recycle(bid);
                    }
                    v
                });
                // SAFETY: `res` is the kernel's result for this op's current
                // stage; the kernel wrote received bytes into the op's own
                // buffer (pooled data was copied out above), and an accept's
                // result is the new descriptor.
                unsafe { super::reap(cx, OpId(ud), res, cqueue::more(flags), pooled) };
            }
            rings.stream.publish();
            rings.dgram.publish();
            budget = budget.saturating_sub(n);
            if n < batch.len() || budget == 0 {
                break;
            }
        }
    }
}

/// A length as the kernel takes it (lengths past 4 GiB go in pieces).
pub(crate) fn clamp_len(n: usize) -> u32 {
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
    fn register(&self, fd: RawFd) -> io::Result<()> {
        // io_uring arms its own poll for sockets; a non-blocking descriptor
        // would make some kernels fail an accept with EAGAIN instead.
        // SAFETY: fcntl on a descriptor the caller owns; no memory is
        // involved.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags >= 0 && flags & libc::O_NONBLOCK != 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
        }
        if let Some(entry) = self.files.as_ref().and_then(|t| t.set(fd)) {
            // Ahead of the descriptor's first operation in the queue;
            // submitted with it.
            if self.push_lazy(entry.user_data(IGNORE)) {
                self.submit_now();
            }
        }
        Ok(())
    }

    fn deregister(&self, fd: RawFd, cx: &impl Sink) {
        if let Some(entry) = self.files.as_ref().and_then(|t| t.clear(fd)) {
            // The table holds a reference to the socket: the connection is
            // closed only once the entry is cleared, so submit now (the
            // poller does at the end of its reap).
            let submit = if cx.polling() {
                Submit::Deferred
            } else {
                Submit::Now
            };
            self.push(entry.user_data(IGNORE), submit);
        }
    }

    fn start(&self, cx: &impl Sink, id: OpId, submit: Submit) {
        let Some(began) = cx.table().with(id, |op| self.begin(op, cx, submit)) else {
            return;
        };
        self.follow(cx, id, began, submit);
    }

    fn start_new<S: Sink>(&self, cx: &S, op: S::Op, submit: Submit) -> Option<OpId> {
        let (id, began) = cx
            .table()
            .insert_then(op, |_, op| self.begin(op, cx, submit))?;
        self.follow(cx, id, began, submit);
        Some(id)
    }

    fn cancel(&self, _cx: &impl Sink, id: OpId) {
        let e = opcode::AsyncCancel::new(id.0).build().user_data(IGNORE);
        self.push(e, Submit::Now);
    }

    fn cancel_fd(&self, _cx: &impl Sink, fd: RawFd) {
        // Matches requests that name the descriptor by its table entry too
        // (the kernel compares the file the two resolve to).
        let b = CancelBuilder::fd(Fd(fd)).all();
        let e = opcode::AsyncCancel2::new(b).build().user_data(IGNORE);
        self.push(e, Submit::Now);
    }

    fn flush(&self) -> io::Result<()> {
        if !self.unsubmitted.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        if self.may_enter() {
            self.take_backlog();
            ignore_transient(self.ring.submit())
        } else {
            self.wake();
            Ok(())
        }
    }

    fn poll(&self, cx: &impl Sink, timeout: Option<Duration>) -> io::Result<()> {
        self.claim()?;
        self.take_backlog();
        // SAFETY: the poller is the only CompletionQueue user (see `reap`).
        let ready = !unsafe { self.ring.completion_shared() }.is_empty();
        if ready && !self.must_enter() {
            return self.reap(cx);
        }
        // After a burst, an idle wait ends with a trim (see `sys::trim`).
        let (timeout, trim) = match ready {
            true => (timeout, None),
            false => super::trim::wait(cx.pool(), timeout),
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
            // SAFETY: the poller is the only CompletionQueue user.
            let idle = unsafe { self.ring.completion_shared() }.is_empty();
            super::trim::after_wait(cx.pool(), began, idle);
        }
        self.reap(cx)
    }

    fn wake(&self) {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        match &self.owner {
            Some(owner) => owner.signal(),
            None => self.push(opcode::Nop::new().build().user_data(WAKE), Submit::Now),
        }
    }

    fn can_poll_here(&self) -> bool {
        self.owner
            .as_ref()
            .is_none_or(|o| o.is_current() || o.unclaimed())
    }

    fn orphaned(&self) -> bool {
        self.owner.as_ref().is_some_and(Owner::is_gone)
    }
}
