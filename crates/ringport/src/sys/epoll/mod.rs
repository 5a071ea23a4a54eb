//! The epoll emulation backend: the port performs each operation itself,
//! non-blocking, when its descriptor is ready.
//!
//! * `start` tries the syscall at once on the op's own memory; on `EAGAIN`
//!   the op is queued on its descriptor (read queue: accept, recv, pooled
//!   recv; write queue: connect, send) and performed when an edge-triggered
//!   event says the descriptor is ready. File reads and writes go to a small
//!   thread pool ([`pool`]); timeouts to a deadline map ([`timers`]).
//! * **No lost wake-ups.** Each descriptor's [`Registration`] keeps, under
//!   one lock, a `ready` flag per direction and the queues. `start` tries and
//!   queues under that lock; the event handler sets the flag and drains the
//!   queue under it. A flag is cleared only by an `EAGAIN` seen under the
//!   lock, or by a pooled receive's read that did not fill its buffer (the
//!   socket was emptied; as tokio does, this saves the `EAGAIN` read per
//!   message), and any readiness after that raises a new edge, whose
//!   handler will find the queued op. After a hang-up event short reads do
//!   not clear it: the end of stream would raise no further edge. `start`
//!   skips the futile syscall while the flag is clear (but always tries a
//!   connect that has not begun).
//! * **Reporting in order, without re-entrancy.** Results are appended to the
//!   descriptor's `reports` under the lock and handed to the front end
//!   ([`super::reap`]) after it is released, by whichever thread finds no one
//!   else doing so (`reaping`). A report may start the next stage on the same
//!   descriptor (the rest of a send, a pooled receive's next chunk, the first
//!   data of an accept): that `start` only appends, and the reporting loop
//!   picks it up. So a cancel's `-ECANCELED` never overtakes data already
//!   read, and no lock is held while the front end runs.
//! * **Safe event tokens**: see [`registry`].
//! * **Progress needs a waiting thread.** Unlike io_uring, where the kernel
//!   completes operations in the background, an operation that could not
//!   finish in `start` is performed by the thread that polls, i.e. one
//!   blocked in `get`. IOCP programs always have one.
//! * Receives and sends pass `MSG_DONTWAIT`, so they never block whatever
//!   the descriptor's mode; an accepted socket is blocking and close-on-exec,
//!   as with io_uring (associating it makes it non-blocking).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use super::{Config, OpId, Sink, Submit, SysOp};

mod io;
mod pool;
mod registry;
mod sys;
mod timers;

pub(crate) use io::{
    accept, connect, read_into, recv_datagram_pooled, recv_into, recv_msg, recv_pooled, send,
    send_msg, shutdown, write, Attempt,
};
use pool::FilePool;
pub(crate) use pool::Job;
use registry::{Core, RegState, Registration, Registry, Report};
pub(crate) use registry::{READ, WRITE};
pub(crate) use sys::syscall;
use sys::Waker;

/// Events per `epoll_wait`.
const EVENTS: usize = 256;
/// Chunks a pooled receive reads in one go before letting other descriptors
/// run; the rest is read from the poller's next turn.
const CHUNKS_PER_TURN: usize = 8;

/// How an op's current stage runs on this backend (its `SysOp::plan`).
pub(crate) enum Plan {
    /// Report this result now.
    Now(i32),
    /// A syscall on the op's descriptor, in a direction ([`READ`] or
    /// [`WRITE`]): tried now if the descriptor may be ready (always, if
    /// `must_try`), else when it becomes ready.
    Io { dir: usize, must_try: bool },
    /// A timer.
    Timer(Duration),
    /// A blocking read or write on a file thread.
    File(Job),
}

/// The epoll backend. See the module docs.
pub(crate) struct Driver {
    // Field order: the file threads are joined before anything else goes.
    pool: FilePool,
    core: Arc<Core>,
    registry: Registry,
    waker: Arc<Waker>,
    timers: timers::Timers,
    /// Ops' deadlines: when one is due, its op is cancelled.
    deadlines: timers::Timers,
    /// Descriptors with data left over after [`CHUNKS_PER_TURN`].
    again: Mutex<Vec<Arc<Registration>>>,
    has_again: AtomicBool,
}

impl Driver {
    pub(crate) fn new(_cfg: &Config) -> std::io::Result<Driver> {
        let core = Arc::new(Core::new()?);
        let waker = Arc::new(Waker::new()?);
        sys::epoll_add(&core.ep, waker.fd(), libc::EPOLLIN as u32, sys::WAKE_TOKEN)?;
        Ok(Driver {
            pool: FilePool::new(waker.clone()),
            core,
            registry: Registry::new(),
            waker,
            timers: timers::Timers::default(),
            deadlines: timers::Timers::default(),
            again: Mutex::new(Vec::new()),
            has_again: AtomicBool::new(false),
        })
    }

    /// Tries op `id` on `fd` (unless it must wait its turn or the descriptor
    /// is known not ready) and queues it there if it would block. A
    /// descriptor not associated (the accepted socket of an accept's
    /// first-data stage) is watched for this op only.
    fn start_io(&self, cx: &impl Sink, id: OpId, fd: RawFd, dir: usize, must_try: bool) {
        let reg = match self.registry.get(fd) {
            Some(reg) => reg,
            None => match self.watch_for_one(cx, id, fd) {
                Ok(Some(reg)) => reg,
                Ok(None) => return,
                Err(res) => {
                    // SAFETY: an error result; the op's memory was not
                    // handed to the kernel (or the try has returned).
                    unsafe { super::reap(cx, id, res, false, None) };
                    return;
                }
            },
        };
        let mut st = reg.state.lock();
        let try_now = st.queue[dir].is_empty() && (st.ready[dir] || must_try);
        st.queue[dir].push_back(id);
        if try_now {
            st.ready[dir] = true;
            self.drain(cx, &reg, &mut st, dir);
        }
        if st.queue[dir].contains(&id) && self.stopping(cx, id) {
            // Cancelled (or its handle closed) before it could be queued:
            // `cancel` may already have looked for it.
            st.queue[dir].retain(|q| *q != id);
            self.push_final(&reg, &mut st, id, -libc::ECANCELED);
        }
        self.settle(cx, &reg, st);
    }

    /// For a descriptor nobody associated: one try of the op, and if it
    /// would block, a temporary registration to wait on (`Ok(None)`: the
    /// try's result was reported). Regular files cannot be watched: the
    /// op fails with what the try said (`EAGAIN` at worst).
    fn watch_for_one(
        &self,
        cx: &impl Sink,
        id: OpId,
        fd: RawFd,
    ) -> Result<Option<Arc<Registration>>, i32> {
        let tried = cx.table().with(id, |op| op.attempt(fd, cx.pool()));
        match tried {
            None => return Ok(None),
            Some(Attempt::WouldBlock) => {}
            Some(Attempt::Done(res)) => {
                // SAFETY: the result of the syscall just made on this op's
                // current stage (see `settle`).
                unsafe { super::reap(cx, id, res, false, None) };
                return Ok(None);
            }
            Some(Attempt::Chunk { res, buf, last, .. }) => {
                // SAFETY: pooled data is in `buf`, not in the op's memory.
                unsafe { super::reap(cx, id, res, !last, Some(buf)) };
                return Ok(None);
            }
        }
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
        let reg = self
            .core
            .add(fd, events, true)
            .map_err(|e| -e.raw_os_error().unwrap_or(libc::EAGAIN))?;
        if let Ok(Some(stale)) = self.registry.insert(reg.clone()) {
            self.core.remove(&stale);
        }
        Ok(Some(reg))
    }

    /// Whether op `id` was asked to stop. Reads the op under the
    /// descriptor's lock (lock order: descriptor, then op slot).
    fn stopping(&self, cx: &impl Sink, id: OpId) -> bool {
        cx.table().with(id, |op| op.stopping()).unwrap_or(true)
    }

    /// Performs queued ops of one direction while the descriptor is ready.
    fn drain(&self, cx: &impl Sink, reg: &Arc<Registration>, st: &mut RegState, dir: usize) {
        let mut chunks = 0;
        while st.ready[dir] {
            let Some(&id) = st.queue[dir].front() else {
                break;
            };
            let attempt = cx.table().with(id, |op| op.attempt(reg.fd, cx.pool()));
            let Some(outcome) = attempt else {
                // Not ours any more (cannot happen: we are its only reporter).
                st.queue[dir].pop_front();
                continue;
            };
            match outcome {
                Attempt::WouldBlock => st.ready[dir] = false,
                Attempt::Done(res) => {
                    st.queue[dir].pop_front();
                    self.push_final(reg, st, id, res);
                }
                Attempt::Chunk {
                    res,
                    buf,
                    short,
                    last,
                } => {
                    // A read that got less than it asked for emptied the
                    // socket, so the next one would only say EAGAIN: skip
                    // it until the next edge (data arriving after this read
                    // raises one, and its handler needs this lock). Not
                    // after a hang-up event: the end of stream behind the
                    // data raises no further edge.
                    if short && !st.hung_up {
                        st.ready[dir] = false;
                    }
                    // A chunk that used up the op's budget ends its stay
                    // on the descriptor: the front end ends it when it sees
                    // `more` unset.
                    if last {
                        st.queue[dir].pop_front();
                    }
                    st.reports.push(Report {
                        id,
                        res,
                        more: !last,
                        pooled: Some(buf),
                    });
                    chunks += 1;
                    if chunks == CHUNKS_PER_TURN {
                        self.again.lock().push(reg.clone());
                        self.has_again.store(true, Ordering::Release);
                        self.waker.wake();
                        break;
                    }
                }
            }
        }
    }

    /// Appends an op's last result for this stage. The temporary watch of an
    /// accepted socket ends here, before the socket can reach the user.
    fn push_final(&self, reg: &Arc<Registration>, st: &mut RegState, id: OpId, res: i32) {
        if reg.temp {
            self.unwatch(reg);
        }
        st.reports.push(Report {
            id,
            res,
            more: false,
            pooled: None,
        });
    }

    /// Hands `reg`'s reports to the front end, outside the lock, unless
    /// another thread is already doing so (it will pick them up).
    fn settle<'a>(&self, cx: &impl Sink, reg: &'a Registration, mut st: MutexGuard<'a, RegState>) {
        if st.reaping || st.reports.is_empty() {
            return;
        }
        st.reaping = true;
        let mut batch = Vec::new();
        loop {
            std::mem::swap(&mut batch, &mut st.reports);
            if batch.is_empty() {
                st.reaping = false;
                return;
            }
            drop(st);
            for r in batch.drain(..) {
                // SAFETY: `r.res` is the result of the syscall just made on
                // this op's current stage: a receive wrote exactly `res`
                // bytes into the op's buffer's spare capacity (pooled data is
                // in `r.pooled`), an accept's `res` is a new descriptor owned
                // by nobody; the syscall has returned, so nothing writes the
                // op's memory any more.
                unsafe { super::reap(cx, r.id, r.res, r.more, r.pooled) };
            }
            st = reg.state.lock();
        }
    }

    /// Handles one epoll event.
    fn on_event(&self, cx: &impl Sink, reg: &Arc<Registration>, events: u32) {
        let rd = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let wr = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let hup = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let mut st = reg.state.lock();
        if events & hup != 0 {
            st.hung_up = true;
        }
        if events & rd != 0 {
            st.ready[READ] = true;
        }
        if events & wr != 0 {
            st.ready[WRITE] = true;
        }
        self.drain(cx, reg, &mut st, READ);
        self.drain(cx, reg, &mut st, WRITE);
        self.settle(cx, reg, st);
    }

    /// Reports finished file jobs.
    fn reap_files(&self, cx: &impl Sink) {
        while let Some((id, res)) = self.pool.pop_done() {
            // SAFETY: the job's pread/pwrite has returned `res`: a read wrote
            // exactly `res` bytes into the op's spare capacity, and the
            // helper thread no longer touches the op.
            unsafe { super::reap(cx, id, res, false, None) };
        }
    }

    /// Stops watching a descriptor.
    fn unwatch(&self, reg: &Arc<Registration>) {
        self.registry.remove(reg);
        self.core.remove(reg);
    }

    /// Stops op `id` if it waits: a timer or a file job that has not
    /// started is removed, an op queued on its descriptor taken off it; each
    /// is reported cancelled. A file job already running completes normally.
    fn cancel_io(&self, cx: &impl Sink, id: OpId) {
        if self.timers.cancel(id) || self.pool.cancel(id) {
            // SAFETY: an error result; the op was never handed to the
            // kernel (its timer or job was removed before it ran).
            unsafe { super::reap(cx, id, -libc::ECANCELED, false, None) };
            return;
        }
        let Some(Some(fd)) = cx.table().with(id, |op| op.fd()) else {
            return;
        };
        if let Some(reg) = self.registry.get(fd) {
            let mut st = reg.state.lock();
            let mut found = false;
            for q in &mut st.queue {
                if let Some(i) = q.iter().position(|q| *q == id) {
                    q.remove(i);
                    found = true;
                }
            }
            if found {
                self.push_final(&reg, &mut st, id, -libc::ECANCELED);
            }
            self.settle(cx, &reg, st);
        }
    }
}

impl super::Backend for Driver {
    fn register(&self, fd: RawFd) -> std::io::Result<()> {
        sys::set_nonblocking(fd)?;
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
        match self.core.add(fd, events, false) {
            Ok(reg) => match self.registry.insert(reg.clone()) {
                Ok(stale) => {
                    if let Some(stale) = stale {
                        // A temporary watch left by an op that never ended
                        // its stage (its socket is gone).
                        self.core.remove(&stale);
                    }
                    Ok(())
                }
                Err(e) => {
                    self.core.remove(&reg);
                    Err(e)
                }
            },
            // Regular files and directories: always ready, never watched;
            // their reads and writes run on the file pool.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn deregister(&self, fd: RawFd, _cx: &impl Sink) {
        if let Some(reg) = self.registry.get(fd) {
            self.unwatch(&reg);
        }
    }

    fn start(&self, cx: &impl Sink, id: OpId, _submit: Submit) {
        let Some((plan, fd, deadline)) = cx
            .table()
            .with(id, |op| (op.plan(), op.fd(), op.deadline()))
        else {
            return;
        };
        let deadline = deadline.filter(|_| !matches!(plan, Plan::Now(_)));
        match (plan, fd) {
            (Plan::Io { dir, must_try }, Some(fd)) => self.start_io(cx, id, fd, dir, must_try),
            // SAFETY: an error result; no memory was handed out.
            (Plan::Io { .. }, None) => unsafe { super::reap(cx, id, -libc::EBADF, false, None) },
            // SAFETY: an immediate result of the op's own (blocking-free)
            // syscall, or an error.
            (Plan::Now(res), _) => unsafe { super::reap(cx, id, res, false, None) },
            (Plan::Timer(after), _) => {
                if !self.timers.start(cx, id, after, || self.waker.wake()) {
                    // SAFETY: an error result; no memory was handed out.
                    unsafe { super::reap(cx, id, -libc::ECANCELED, false, None) };
                }
            }
            (Plan::File(job), _) => self.pool.submit(id, job),
        }
        if let Some(at) = deadline {
            // Armed after the stage began (one done at once has left the
            // table: `start` then arms nothing), once per op (a later stage
            // keeps it). A deadline that fires after the op ended finds its
            // id stale and does nothing.
            if !self.deadlines.is_armed(id) {
                let after = at.saturating_duration_since(std::time::Instant::now());
                self.deadlines.start(cx, id, after, || self.waker.wake());
            }
        }
    }

    fn start_new<S: Sink>(&self, cx: &S, op: S::Op, submit: Submit) -> Option<OpId> {
        let id = cx.table().insert(op)?;
        self.start(cx, id, submit);
        Some(id)
    }

    fn cancel(&self, cx: &impl Sink, id: OpId) {
        self.deadlines.cancel(id);
        self.cancel_io(cx, id);
    }

    fn cancel_fd(&self, cx: &impl Sink, fd: RawFd) {
        if let Some(reg) = self.registry.get(fd).filter(|r| !r.temp) {
            let mut st = reg.state.lock();
            let ids: Vec<OpId> = st.queue.iter_mut().flat_map(|q| q.drain(..)).collect();
            for id in ids {
                self.push_final(&reg, &mut st, id, -libc::ECANCELED);
            }
            self.settle(cx, &reg, st);
        }
        for id in self.pool.cancel_fd(fd) {
            // SAFETY: an error result; the job never ran.
            unsafe { super::reap(cx, id, -libc::ECANCELED, false, None) };
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn poll(&self, cx: &impl Sink, timeout: Option<Duration>) -> std::io::Result<()> {
        // Safe to free now: see `registry`.
        drop(self.core.take_retired());
        let busy = self.has_again.load(Ordering::Acquire) || self.pool.has_done();
        // After a burst, an idle wait ends with a trim (see `sys::trim`).
        let (timeout, trim) = match busy {
            true => (Some(Duration::ZERO), None),
            false => super::trim::wait(cx.pool(), timeout),
        };
        // A zero wait marks no wait (no timer can be slept past) and reads
        // no clock; an unbounded one reads it only if a timer is armed.
        let waits = timeout != Some(Duration::ZERO);
        let ms = if waits {
            let mut clock = timers::Clock::default();
            let until = timeout.and_then(|t| clock.get().checked_add(t));
            let bound = match (
                self.timers.begin_wait(until),
                self.deadlines.begin_wait(until),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            timers::wait_ms(bound, &mut clock)
        } else {
            0
        };
        let mut events = [const { std::mem::MaybeUninit::uninit() }; EVENTS];
        let ready = sys::epoll_wait(&self.core.ep, &mut events, ms);
        if waits {
            self.timers.end_wait();
            self.deadlines.end_wait();
        }
        let ready = ready?;
        if let Some(began) = trim {
            super::trim::after_wait(cx.pool(), began, ready.is_empty());
        }
        for ev in ready {
            let (token, bits) = (ev.u64, ev.events);
            if token == sys::WAKE_TOKEN {
                self.waker.reset();
                continue;
            }
            // SAFETY: the token comes from an event of this poll's wait.
            let reg = unsafe { Registration::from_token(token) };
            self.on_event(cx, &reg, bits);
        }
        if self.has_again.swap(false, Ordering::AcqRel) {
            let again = std::mem::take(&mut *self.again.lock());
            for reg in again {
                self.on_event(cx, &reg, 0);
            }
        }
        self.reap_files(cx);
        // After the wait: the time is read again.
        let mut clock = timers::Clock::default();
        for id in self.timers.take_due(&mut clock) {
            // SAFETY: an error result (ETIME); timers hold no I/O memory.
            unsafe { super::reap(cx, id, -libc::ETIME, false, None) };
        }
        for id in self.deadlines.take_due(&mut clock) {
            // Reported cancelled; the front end makes it ETIMEDOUT.
            self.cancel_io(cx, id);
        }
        Ok(())
    }

    fn wake(&self) {
        self.waker.wake();
    }

    fn can_poll_here(&self) -> bool {
        true
    }

    fn orphaned(&self) -> bool {
        false
    }
}
