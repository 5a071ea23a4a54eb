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
//!   lock, or by a pooled receive's read that got less than it asked for (the
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

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::builder::Builder;
use crate::completion::{OpId, OpKind};
use crate::handle::HandleInner;
use crate::op::OpData;
use crate::shared::Shared;

mod io_ops;
mod pool;
mod registry;
mod sys;
mod timers;

use io_ops::Outcome;
use pool::{FilePool, Job};
pub(crate) use registry::FdState;
use registry::{Core, RegState, Registration, Report, TempReg, READ, WRITE};
use sys::Waker;

/// Events per `epoll_wait`.
const EVENTS: usize = 256;
/// Chunks a pooled receive reads in one go before letting other descriptors
/// run; the rest is read from the poller's next turn.
const CHUNKS_PER_TURN: usize = 8;

/// Per-op state of this backend.
#[derive(Default)]
pub(crate) struct Scratch {
    /// A connect returned `EINPROGRESS`.
    pub(crate) connecting: bool,
    /// The key of an armed timer.
    pub(crate) timer: Option<timers::TimerKey>,
    /// The accepted socket's registration during an accept's first-data stage.
    pub(crate) temp: Option<TempReg>,
    /// Bytes a pooled receive has read, against its budget.
    pub(crate) read: usize,
}

/// What `start` does with an op, decided under the op's slot lock.
enum Plan {
    /// Report this result now.
    Now(i32),
    /// Try now or queue on a descriptor, in a direction; `must_try` forces
    /// the syscall even if the descriptor is known not ready.
    Wait(Arc<Registration>, usize, bool),
    Timer(Duration),
    File(Job),
}

/// Where a cancelled op may be waiting.
enum Place {
    Fd(Arc<Registration>),
    Timer,
    File,
}

/// The epoll backend. See the module docs.
pub(crate) struct Driver {
    // Field order: the file threads are joined before anything else goes.
    pool: FilePool,
    core: Arc<Core>,
    waker: Arc<Waker>,
    timers: timers::Timers,
    /// Descriptors with data left over after [`CHUNKS_PER_TURN`].
    again: Mutex<Vec<Arc<Registration>>>,
    has_again: AtomicBool,
}

impl Driver {
    pub(crate) fn new(_b: &Builder) -> io::Result<Driver> {
        let core = Arc::new(Core::new()?);
        let waker = Arc::new(Waker::new()?);
        sys::epoll_add(&core.ep, waker.fd(), libc::EPOLLIN as u32, sys::WAKE_TOKEN)?;
        Ok(Driver {
            pool: FilePool::new(waker.clone()),
            core,
            waker,
            timers: timers::Timers::default(),
            again: Mutex::new(Vec::new()),
            has_again: AtomicBool::new(false),
        })
    }

    /// Decides how to run the current stage of `op`.
    fn plan(&self, sh: &Shared, id: OpId, op: &mut OpData) -> Plan {
        match op.kind {
            OpKind::Packet | OpKind::Close => Plan::Now(-libc::EBADF),
            OpKind::Timeout => Plan::Timer(op.duration),
            OpKind::ReadAt | OpKind::WriteAt => file_job(id, op),
            OpKind::Accept if op.first_data_started => self.plan_first_data(sh, op),
            _ => {
                let reg = op.handle.as_ref().and_then(|h| h.sys.epoll.reg.get());
                match reg {
                    Some(reg) => {
                        let must_try = op.kind == OpKind::Connect && !op.scratch.epoll.connecting;
                        Plan::Wait(reg.clone(), io_ops::direction(op), must_try)
                    }
                    // Not watchable (a regular file): socket calls fail at
                    // once (ENOTSOCK); nothing could ever make them ready.
                    None => match io_ops::attempt(op, &sh.pool) {
                        Outcome::Done(res) => Plan::Now(res),
                        Outcome::Chunk { buf, .. } => {
                            sh.pool.put(buf);
                            Plan::Now(-libc::EAGAIN)
                        }
                        Outcome::WouldBlock => Plan::Now(-libc::EAGAIN),
                    },
                }
            }
        }
    }

    /// The first data of an accepted socket: read it now if it is there,
    /// otherwise watch the socket until it is.
    fn plan_first_data(&self, sh: &Shared, op: &mut OpData) -> Plan {
        if let Some(t) = &op.scratch.epoll.temp {
            return Plan::Wait(t.reg.clone(), READ, false);
        }
        match io_ops::attempt(op, &sh.pool) {
            Outcome::WouldBlock => {}
            Outcome::Done(res) => return Plan::Now(res),
            Outcome::Chunk { .. } => unreachable!("a first-data receive uses the op's buffer"),
        }
        let Some(fd) = op.fd() else {
            return Plan::Now(-libc::EBADF);
        };
        match TempReg::new(&self.core, fd) {
            Ok(t) => {
                let reg = t.reg.clone();
                op.scratch.epoll.temp = Some(t);
                Plan::Wait(reg, READ, true)
            }
            Err(e) => Plan::Now(-e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    /// Tries `id` on `reg` (unless it must wait its turn or the descriptor is
    /// known not ready) and queues it if it would block.
    fn start_on(&self, sh: &Shared, reg: &Arc<Registration>, id: OpId, dir: usize, must_try: bool) {
        let mut st = reg.state.lock();
        let try_now = st.queue[dir].is_empty() && (st.ready[dir] || must_try);
        st.queue[dir].push_back(id);
        if try_now {
            st.ready[dir] = true;
            self.drain(sh, reg, &mut st, dir);
        }
        if st.queue[dir].contains(&id) && self.stopping(sh, reg, id) {
            // Cancelled (or its handle closed) before it could be queued:
            // `cancel` may already have looked for it.
            st.queue[dir].retain(|q| *q != id);
            self.push_final(reg, &mut st, id, -libc::ECANCELED);
        }
        self.settle(sh, reg, st);
    }

    /// Whether `id` was asked to stop. Reads the op under the descriptor's
    /// lock (lock order: descriptor, then op slot).
    fn stopping(&self, sh: &Shared, reg: &Registration, id: OpId) -> bool {
        sh.arena
            .with(id, |op| {
                op.cancelled
                    || (!reg.temp
                        && op
                            .handle
                            .as_ref()
                            .is_some_and(|h| h.closed.load(Ordering::Acquire)))
            })
            .unwrap_or(true)
    }

    /// Performs queued ops of one direction while the descriptor is ready.
    fn drain(&self, sh: &Shared, reg: &Arc<Registration>, st: &mut RegState, dir: usize) {
        let mut chunks = 0;
        while st.ready[dir] {
            let Some(&id) = st.queue[dir].front() else {
                break;
            };
            let Some(outcome) = sh.arena.with(id, |op| io_ops::attempt(op, &sh.pool)) else {
                // Not ours any more (cannot happen: we are its only reporter).
                st.queue[dir].pop_front();
                continue;
            };
            match outcome {
                Outcome::WouldBlock => st.ready[dir] = false,
                Outcome::Done(res) => {
                    st.queue[dir].pop_front();
                    self.push_final(reg, st, id, res);
                }
                Outcome::Chunk {
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
                    // A chunk that used up the op's budget ends it: the
                    // front end ends it when it sees `more` unset.
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
            self.core.remove(reg);
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
    fn settle<'a>(&self, sh: &Shared, reg: &'a Registration, mut st: MutexGuard<'a, RegState>) {
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
                unsafe { super::reap(sh, r.id, r.res, r.more, r.pooled) };
            }
            st = reg.state.lock();
        }
    }

    /// Handles one epoll event.
    fn on_event(&self, sh: &Shared, reg: &Arc<Registration>, events: u32) {
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
        self.drain(sh, reg, &mut st, READ);
        self.drain(sh, reg, &mut st, WRITE);
        self.settle(sh, reg, st);
    }

    /// Reports finished file jobs.
    fn reap_files(&self, sh: &Shared) {
        while let Some((id, res)) = self.pool.pop_done() {
            // SAFETY: the job's pread/pwrite has returned `res`: a read wrote
            // exactly `res` bytes into the op's spare capacity, and the
            // helper thread no longer touches the op.
            unsafe { super::reap(sh, id, res, false, None) };
        }
    }

    /// Where `id` may be waiting, for `cancel`.
    fn place(op: &OpData) -> Option<Place> {
        match op.kind {
            OpKind::Timeout => Some(Place::Timer),
            OpKind::ReadAt | OpKind::WriteAt => Some(Place::File),
            OpKind::Accept if op.first_data_started => op
                .scratch
                .epoll
                .temp
                .as_ref()
                .map(|t| Place::Fd(t.reg.clone())),
            _ => op
                .handle
                .as_ref()
                .and_then(|h| h.sys.epoll.reg.get().cloned())
                .map(Place::Fd),
        }
    }
}

/// The pool job of a `read_at` / `write_at`.
fn file_job(id: OpId, op: &mut OpData) -> Plan {
    let (Some(fd), Some(buf)) = (op.fd(), op.buf.as_mut()) else {
        return Plan::Now(-libc::EBADF);
    };
    let write = op.kind == OpKind::WriteAt;
    let (ptr, len) = if write {
        (buf.as_mut_ptr(), buf.len())
    } else {
        let spare = buf.spare_capacity_mut();
        (spare.as_mut_ptr().cast::<u8>(), spare.len())
    };
    Plan::File(Job {
        id,
        fd,
        ptr,
        len,
        offset: op.offset,
        write,
    })
}

impl super::Backend for Driver {
    fn register(&self, _sh: &Shared, handle: &Arc<HandleInner>) -> io::Result<()> {
        let fd = handle.fd.as_raw_fd();
        sys::set_nonblocking(fd)?;
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32;
        match self.core.add(fd, events, false) {
            Ok(reg) => {
                if let Err(reg) = handle.sys.epoll.reg.set(reg) {
                    self.core.remove(&reg);
                }
                Ok(())
            }
            // Regular files and directories: always ready, never watched;
            // their reads and writes run on the file pool.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn deregister(&self, _sh: &Shared, handle: &HandleInner) {
        if let Some(reg) = handle.sys.epoll.reg.get() {
            self.core.remove(reg);
        }
    }

    fn start(&self, sh: &Shared, id: OpId, _defer: bool) {
        let Some(plan) = sh.arena.with(id, |op| self.plan(sh, id, op)) else {
            return;
        };
        match plan {
            // SAFETY: `res` is an error, or the result of the first-data
            // receive `plan` just made into the op's spare capacity.
            Plan::Now(res) => unsafe { super::reap(sh, id, res, false, None) },
            Plan::Wait(reg, dir, must_try) => self.start_on(sh, &reg, id, dir, must_try),
            Plan::Timer(after) => {
                if !self.timers.start(sh, id, after, || self.waker.wake()) {
                    // SAFETY: an error result; no memory was handed out.
                    unsafe { super::reap(sh, id, -libc::ECANCELED, false, None) };
                }
            }
            Plan::File(job) => self.pool.submit(job),
        }
    }

    fn cancel(&self, sh: &Shared, id: OpId) {
        let Some(Some(place)) = sh.arena.with(id, |op| Self::place(op)) else {
            return;
        };
        let found = match place {
            Place::Timer => self.timers.cancel(sh, id),
            // A job already running completes normally.
            Place::File => self.pool.cancel(id),
            Place::Fd(reg) => {
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
                self.settle(sh, &reg, st);
                return;
            }
        };
        if found {
            // SAFETY: an error result; the op was never handed to the kernel
            // (the timer or job was removed before it ran).
            unsafe { super::reap(sh, id, -libc::ECANCELED, false, None) };
        }
    }

    fn cancel_handle(&self, sh: &Shared, handle: &HandleInner) {
        if let Some(reg) = handle.sys.epoll.reg.get() {
            let mut st = reg.state.lock();
            let ids: Vec<OpId> = st.queue.iter_mut().flat_map(|q| q.drain(..)).collect();
            for id in ids {
                self.push_final(reg, &mut st, id, -libc::ECANCELED);
            }
            self.settle(sh, reg, st);
        }
        for id in self.pool.cancel_fd(handle.fd.as_raw_fd()) {
            // SAFETY: an error result; the job never ran.
            unsafe { super::reap(sh, id, -libc::ECANCELED, false, None) };
        }
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn poll(&self, sh: &Shared, timeout: Option<Duration>) -> io::Result<()> {
        // Safe to free now: see `registry`.
        drop(self.core.take_retired());
        let busy = self.has_again.load(Ordering::Acquire) || self.pool.has_done();
        // After a burst, an idle wait ends with a trim (see `sys::trim`).
        let (timeout, trim) = match busy {
            true => (Some(Duration::ZERO), None),
            false => super::trim::wait(&sh.pool, timeout),
        };
        let ms = self.timers.begin_wait(timeout);
        let mut events = [const { std::mem::MaybeUninit::uninit() }; EVENTS];
        let ready = sys::epoll_wait(&self.core.ep, &mut events, ms);
        self.timers.end_wait();
        let ready = ready?;
        if let Some(began) = trim {
            super::trim::after_wait(&sh.pool, began, ready.is_empty());
        }
        for ev in ready {
            let (token, bits) = (ev.u64, ev.events);
            if token == sys::WAKE_TOKEN {
                self.waker.reset();
                continue;
            }
            // SAFETY: the token comes from an event of this poll's wait.
            let reg = unsafe { Registration::from_token(token) };
            self.on_event(sh, &reg, bits);
        }
        if self.has_again.swap(false, Ordering::AcqRel) {
            let again = std::mem::take(&mut *self.again.lock());
            for reg in again {
                self.on_event(sh, &reg, 0);
            }
        }
        self.reap_files(sh);
        for id in self.timers.take_due() {
            // SAFETY: an error result (ETIME); timers hold no I/O memory.
            unsafe { super::reap(sh, id, -libc::ETIME, false, None) };
        }
        Ok(())
    }

    fn wake(&self) {
        self.waker.wake();
    }
}
