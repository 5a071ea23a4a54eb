//! A small pool of helper threads for `read_at`/`write_at`: regular files
//! cannot be watched by epoll (they are always "ready", and the read blocks
//! on the disk), so their I/O runs here, blocking, as io_uring's workers do.
//!
//! Threads start lazily (up to [`MAX_THREADS`]) and are joined when the
//! driver is dropped. A finished job's result goes to a queue that the poller
//! reaps after being woken, so only the poller reports file results.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::SegQueue;
use parking_lot::{Condvar, Mutex};

use super::sys::{syscall, Waker};
use crate::sys::OpId;

/// Most helper threads a port starts.
const MAX_THREADS: usize = 4;

/// One positional read or write on an op's own buffer (built by the op's
/// `plan`).
pub(crate) struct Job {
    pub fd: RawFd,
    pub ptr: *mut u8,
    pub len: usize,
    pub offset: u64,
    pub write: bool,
}

// SAFETY: `ptr` points into the heap block of the op's buffer, which the op
// table keeps in place (and nothing else touches) until the op's result is
// reaped; the result is reaped only after the job ran. `fd` is kept open by
// the op's handle for as long. So the job may run on any thread.
unsafe impl Send for Job {}

impl Job {
    fn run(&self) -> i32 {
        let off = self.offset as libc::off_t;
        let len = self.len.min(i32::MAX as usize);
        let r = loop {
            let r = if self.write {
                // SAFETY: see `impl Send for Job`: `ptr..ptr+len` is the
                // op's initialised buffer, read only during the call.
                syscall!(unsafe { libc::pwrite(self.fd, self.ptr.cast(), len, off) })
            } else {
                // SAFETY: as above; `ptr..ptr+len` is the buffer's writable
                // spare capacity, committed when the result is reaped.
                syscall!(unsafe { libc::pread(self.fd, self.ptr.cast(), len, off) })
            };
            match r {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                r => break r,
            }
        };
        match r {
            Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
            Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

#[derive(Default)]
struct State {
    jobs: VecDeque<(OpId, Job)>,
    idle: usize,
    stop: bool,
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    done: SegQueue<(OpId, i32)>,
    waker: Arc<Waker>,
}

/// The helper threads and their queues.
pub(crate) struct FilePool {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl FilePool {
    pub(crate) fn new(waker: Arc<Waker>) -> Self {
        FilePool {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                cv: Condvar::new(),
                done: SegQueue::new(),
                waker,
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// Queues op `id`'s job, starting a thread if none is idle and the cap
    /// allows.
    pub(crate) fn submit(&self, id: OpId, job: Job) {
        let mut st = self.inner.state.lock();
        st.jobs.push_back((id, job));
        if st.idle > 0 {
            self.inner.cv.notify_one();
            return;
        }
        drop(st);
        let mut threads = self.threads.lock();
        if threads.len() >= MAX_THREADS {
            return;
        }
        let inner = self.inner.clone();
        match std::thread::Builder::new()
            .name("ringport-file".into())
            .spawn(move || worker(&inner))
        {
            Ok(t) => threads.push(t),
            Err(e) if threads.is_empty() => {
                // No thread at all would leave the job waiting forever: run
                // the queue here.
                tracing::warn!("cannot start a file I/O thread ({e}); running inline");
                drop(threads);
                while let Some((id, job)) = self.inner.state.lock().jobs.pop_front() {
                    self.inner.done.push((id, job.run()));
                }
                self.inner.waker.wake();
            }
            Err(e) => tracing::debug!("cannot start another file I/O thread: {e}"),
        }
    }

    /// Removes a job that has not started; `true` if it was found.
    pub(crate) fn cancel(&self, id: OpId) -> bool {
        let mut st = self.inner.state.lock();
        match st.jobs.iter().position(|j| j.0 == id) {
            Some(i) => st.jobs.remove(i).is_some(),
            None => false,
        }
    }

    /// Removes every job on `fd` that has not started.
    pub(crate) fn cancel_fd(&self, fd: RawFd) -> Vec<OpId> {
        let mut st = self.inner.state.lock();
        let mut ids = Vec::new();
        st.jobs.retain(|(id, j)| {
            let keep = j.fd != fd;
            if !keep {
                ids.push(*id);
            }
            keep
        });
        ids
    }

    /// A finished job's result, for the poller.
    pub(crate) fn pop_done(&self) -> Option<(OpId, i32)> {
        self.inner.done.pop()
    }

    pub(crate) fn has_done(&self) -> bool {
        !self.inner.done.is_empty()
    }
}

fn worker(inner: &Inner) {
    let mut st = inner.state.lock();
    loop {
        if let Some((id, job)) = st.jobs.pop_front() {
            drop(st);
            let res = job.run();
            inner.done.push((id, res));
            inner.waker.wake();
            st = inner.state.lock();
        } else if st.stop {
            return;
        } else {
            st.idle += 1;
            inner.cv.wait(&mut st);
            st.idle -= 1;
        }
    }
}

impl Drop for FilePool {
    fn drop(&mut self) {
        self.inner.state.lock().stop = true;
        self.inner.cv.notify_all();
        for t in self.threads.get_mut().drain(..) {
            let _ = t.join();
        }
    }
}
