//! The completion port: create, associate, post operations, dequeue.

use std::any::Any;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::builder::Builder;
use crate::completion::{Completion, GetError};
use crate::engine::Engine;
use crate::handle::Handle;
use crate::op::{Operation, Packet};
use crate::sys::{Backend, BackendKind, OpId, Submit};

/// A Windows-style I/O completion port.
///
/// A port is a queue of finished operations. Sockets and files are associated
/// with it under a completion key; operations posted on them own their buffers
/// until their completion is dequeued; any thread may dequeue with
/// [`get`](Self::get) or [`get_many`](Self::get_many). The port is `Send +
/// Sync` and cheap to clone (clones share one port).
///
/// # Threads and the concurrency value
///
/// * At most [`concurrency`](Self::concurrency) threads *run* completions at
///   once. A thread runs from the moment `get` hands it a completion until it
///   calls `get` (or `get_many`) again, enters [`blocking`](Self::blocking), or
///   exits. More threads may wait; the seeds run twice as many workers as CPUs.
/// * Waiting threads are released last in, first out: a queued completion
///   (a posted packet, or the second and later completions of a batch) is
///   handed, with a running slot, to the thread that started waiting most
///   recently. One waiting thread, the
///   *poller*, sleeps in the kernel rather than on the port; it takes the
///   first completion of each batch it reaps itself, because it is already
///   awake and its cache is warm, which is what IOCP's LIFO rule is for.
/// * A running thread that is about to block on something else calls
///   [`blocking`](Self::blocking): while the guard lives its slot is free,
///   so another waiter may run (as IOCP does when a running thread blocks).
///
/// # Operations
///
/// Every operation takes its buffer by value and gives it back in its
/// completion, whether it succeeded, failed or was cancelled. Each posted
/// operation completes exactly once (pooled receives: once per received
/// chunk, then a final completion). Operations of one kind on one handle run
/// in the order they were posted: receives one at a time, sends one at a time
/// (a lane each), so several outstanding sends never interleave their bytes.
///
/// # Examples
///
/// ```
/// use ringport::{op, CompletionPort, Outcome};
/// use std::io::{Read, Write};
/// use std::net::{TcpListener, TcpStream};
///
/// let port = CompletionPort::new(0)?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let mut client = TcpStream::connect(listener.local_addr()?)?;
/// let (server, _) = listener.accept()?;
/// let conn = port.associate(server, 1)?;
///
/// client.write_all(b"hello")?;
/// port.submit(op::Recv::new(&conn, Vec::with_capacity(64)))?;
/// if let Outcome::Received(5, data) = port.get(None)?.take_outcome() {
///     port.submit(op::SendAll::new(&conn, data))?;
/// }
/// assert_eq!(port.get(None)?.result()?, 5);
/// let mut echo = [0; 5];
/// client.read_exact(&mut echo)?;
/// assert_eq!(&echo, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CompletionPort {
    engine: Arc<Engine>,
}

impl CompletionPort {
    /// Creates a port that lets `concurrency` threads run completions at once
    /// (0 = the number of CPUs), on the best available backend
    /// (`CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, concurrency)`).
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(2)?;
    /// assert_eq!(port.concurrency(), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// When no backend can be set up, or `RINGPORT_BACKEND` names one that
    /// cannot.
    pub fn new(concurrency: usize) -> io::Result<Self> {
        Builder::default().concurrency(concurrency).build()
    }

    /// A builder for the other settings.
    ///
    /// ```
    /// let port = ringport::CompletionPort::builder().concurrency(4).build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn from_engine(engine: Arc<Engine>) -> Self {
        CompletionPort { engine }
    }

    #[cfg(test)]
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The backend in use.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// println!("running on {}", port.backend());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn backend(&self) -> BackendKind {
        self.engine.driver.kind()
    }

    /// The concurrency value (never 0).
    ///
    /// ```
    /// assert!(ringport::CompletionPort::new(0)?.concurrency() >= 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn concurrency(&self) -> usize {
        self.engine.sched.concurrency()
    }

    /// Threads currently running completions of this port.
    ///
    /// ```
    /// assert_eq!(ringport::CompletionPort::new(1)?.running_threads(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn running_threads(&self) -> usize {
        self.engine.sched.running()
    }

    /// Threads currently waiting in `get` (parked, or polling the kernel).
    ///
    /// ```
    /// assert_eq!(ringport::CompletionPort::new(1)?.waiting_threads(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn waiting_threads(&self) -> usize {
        self.engine.sched.idle()
    }

    /// Operations posted and not yet finally completed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.submit(ringport::op::Timeout::new(Duration::from_secs(9)))?;
    /// assert_eq!(port.outstanding(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn outstanding(&self) -> usize {
        self.engine.table.live()
    }

    /// Associates a socket or file with the port under completion `key`
    /// (`CreateIoCompletionPort(handle, port, key, 0)`). The port takes
    /// ownership of the descriptor; see [`Handle`] for when it is closed. The
    /// backend may change the descriptor's blocking mode.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let l = port.associate(std::net::TcpListener::bind("127.0.0.1:0")?, 7)?;
    /// assert_eq!(l.key(), 7);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// When the port was shut down, or the backend cannot watch the
    /// descriptor; `AlreadyExists` when the descriptor is associated already
    /// (with this port or another: a second `OwnedFd` of one descriptor,
    /// made with `from_raw_fd`), which is then left open for its owner.
    pub fn associate(&self, fd: impl Into<OwnedFd>, key: u64) -> io::Result<Handle> {
        self.associate_inner(fd.into(), key, None)
    }

    /// As [`associate`](Self::associate), with an application value that
    /// every completion of the handle hands back
    /// ([`Completion::context`]): the seeds' per-handle data, reached
    /// without a lookup, and there before the first operation is posted.
    ///
    /// ```
    /// use ringport::{op, CompletionPort};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// struct Client { received: AtomicU64 }
    /// let port = CompletionPort::new(1)?;
    /// let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut peer = std::net::TcpStream::connect(l.local_addr()?)?;
    /// let conn = port.associate_with(l.accept()?.0, 1, Client { received: AtomicU64::new(0) })?;
    /// std::io::Write::write_all(&mut peer, b"hi")?;
    /// port.submit(op::Recv::new(&conn, Vec::with_capacity(8)))?;
    /// let c = port.get(None)?;
    /// let client: &Client = c.context().expect("associated with a Client");
    /// client.received.fetch_add(c.result()? as u64, Ordering::Relaxed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`associate`](Self::associate).
    pub fn associate_with<T: Any + Send + Sync>(
        &self,
        fd: impl Into<OwnedFd>,
        key: u64,
        context: T,
    ) -> io::Result<Handle> {
        self.associate_inner(fd.into(), key, Some(Arc::new(context)))
    }

    fn associate_inner(
        &self,
        fd: OwnedFd,
        key: u64,
        context: Option<crate::handle::Context>,
    ) -> io::Result<Handle> {
        if self.engine.sched.is_closed() {
            return Err(crate::engine::closed_error());
        }
        let handle = Handle::new(fd, key, context, Arc::downgrade(&self.engine))?;
        self.engine
            .driver
            .register(std::os::fd::AsRawFd::as_raw_fd(&handle))?;
        Ok(handle)
    }

    /// Posts an operation ([`op`](crate::op)): it starts inside this call,
    /// as `WSASend` starts the I/O (use a [`Batch`] to submit several at
    /// once), and completes exactly once, with its buffer handed back
    /// whatever the result (pooled receives and multishot accepts: once per
    /// result, then a final completion). Operations of one kind on one
    /// handle run in the order they were posted: receives one at a time,
    /// sends one at a time.
    ///
    /// ```
    /// use ringport::{op, CompletionPort};
    /// use std::time::Duration;
    /// let port = CompletionPort::new(1)?;
    /// let id = port.submit(op::Timeout::new(Duration::from_millis(1)).user(9))?;
    /// let c = port.get(None)?;
    /// assert_eq!((c.id(), c.user()), (id, 9));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the port was shut down or the handle closed, when the handle
    /// belongs to another port, and `InvalidInput` for a receive into a
    /// buffer without spare capacity. Failures of the operation itself
    /// arrive in its completion.
    pub fn submit(&self, op: impl Operation) -> io::Result<OpId> {
        self.engine
            .submit(crate::op::sealed::Sealed::into_record(op), Submit::Now)
    }

    /// Posts a user packet (`PostQueuedCompletionStatus`), which wakes a
    /// waiting thread. Callable from any thread.
    ///
    /// ```
    /// use ringport::op::Packet;
    /// let port = ringport::CompletionPort::new(1)?;
    /// let p = port.clone();
    /// std::thread::spawn(move || p.post(Packet::new(0).user(u64::MAX))).join().unwrap()?;
    /// assert_eq!(port.get(None)?.user(), u64::MAX);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the port was shut down.
    pub fn post(&self, packet: Packet) -> io::Result<()> {
        self.engine
            .post(Completion::packet(packet.key, packet.user, packet.value))
    }

    /// Dequeues one completion (`GetQueuedCompletionStatus`), waiting at most
    /// `timeout`: `None` waits forever, `Some(Duration::ZERO)` only polls.
    ///
    /// The calling thread first gives back the running slot it held (from
    /// its previous `get`), and holds one again from the moment a
    /// completion is returned until its next `get` or `get_many` on this
    /// port, [`leave`](Self::leave), [`blocking`](Self::blocking), or its
    /// exit: at most [`concurrency`](Self::concurrency) threads hold one.
    ///
    /// ```
    /// use std::time::Duration;
    /// let port = ringport::CompletionPort::new(1)?;
    /// assert!(port.get(Some(Duration::ZERO)).is_err(), "nothing to dequeue");
    /// port.post(ringport::op::Packet::new(3))?;
    /// assert_eq!(port.get(None)?.result()?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`GetError::TimedOut`] when nothing came in time, [`GetError::Closed`]
    /// once the port is shut down (every waiting thread gets it),
    /// [`GetError::Io`] when the backend failed.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Completion, GetError> {
        self.engine.get(timeout)
    }

    /// Dequeues up to `max` completions into `out`
    /// (`GetQueuedCompletionStatusEx`), waiting at most `timeout` for the
    /// first; returns how many were appended. The batch counts as one running
    /// thread, as [`get`](Self::get) does.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// for i in 0..3 { port.post(ringport::op::Packet::new(0).user(i))?; }
    /// let mut out = Vec::new();
    /// assert_eq!(port.get_many(&mut out, 8, None)?, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_many(
        &self,
        out: &mut Vec<Completion>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, GetError> {
        self.engine.get_many(out, max, timeout)
    }

    /// Closes a handle (`closesocket` with I/O pending): its outstanding
    /// operations complete as cancelled, then a completion of kind
    /// [`OpKind::Close`](crate::OpKind::Close) with `user` is queued: the
    /// last completion of the handle, so per-connection state can be freed
    /// when it is dequeued. The descriptor is closed once the last
    /// operation, the last clone of the handle and the last completion
    /// holding it have let go of it.
    ///
    /// ```
    /// use ringport::{op, OpKind};
    /// let port = ringport::CompletionPort::new(1)?;
    /// let l = port.associate(std::net::TcpListener::bind("127.0.0.1:0")?, 3)?;
    /// port.submit(op::Accept::new(&l).user(1))?;
    /// port.close(l, 2)?;
    /// let (first, last) = (port.get(None)?, port.get(None)?);
    /// assert!(first.kind() == OpKind::Accept && first.is_cancelled());
    /// assert_eq!((last.kind(), last.key(), last.user()), (OpKind::Close, 3, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the port was shut down; `InvalidInput` when `close` was called
    /// already (through another clone of the handle), as a second
    /// `closesocket` fails.
    pub fn close(&self, handle: Handle, user: u64) -> io::Result<()> {
        self.engine.close(&handle.inner, user)
    }

    /// Cancels one operation (`CancelIoEx` with an OVERLAPPED). It still
    /// completes once, with [`Completion::is_cancelled`] (unless it finished
    /// first) and its buffer.
    ///
    /// ```
    /// use std::time::Duration;
    /// let port = ringport::CompletionPort::new(1)?;
    /// let id = port.submit(ringport::op::Timeout::new(Duration::from_secs(60)))?;
    /// port.cancel(id)?;
    /// assert!(port.get(None)?.is_cancelled());
    /// assert!(port.cancel(id).is_err(), "no longer outstanding");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `NotFound` when the operation is no longer outstanding.
    pub fn cancel(&self, id: OpId) -> io::Result<()> {
        if self.engine.cancel(id) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the operation is not outstanding (already completed?)",
            ))
        }
    }

    /// Cancels every operation of a handle (`CancelIoEx(handle, NULL)`); new
    /// operations on it are refused afterwards.
    ///
    /// ```
    /// use ringport::op;
    /// let port = ringport::CompletionPort::new(1)?;
    /// let l = port.associate(std::net::TcpListener::bind("127.0.0.1:0")?, 0)?;
    /// port.submit(op::Accept::new(&l))?;
    /// port.cancel_handle(&l);
    /// assert!(port.get(None)?.is_cancelled());
    /// assert!(port.submit(op::Accept::new(&l)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cancel_handle(&self, handle: &Handle) {
        self.engine.cancel_handle(&handle.inner);
    }

    /// Gives a buffer from a pooled receive back to the pool.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let buf = port.pooled_buffer();
    /// port.recycle(buf);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recycle(&self, buf: Vec<u8>) {
        self.engine.pool.put(buf);
    }

    /// An empty buffer from the port's pool (the size of a pooled receive's
    /// buffers): fill it and send it, then [`recycle`](Self::recycle) it.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let buf = port.pooled_buffer();
    /// assert!(buf.is_empty() && buf.capacity() > 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pooled_buffer(&self) -> Vec<u8> {
        self.engine.pool.take()
    }

    /// Gives back the calling thread's running slot now, as its next `get`
    /// would, so that a waiting thread may run in its place: for a thread
    /// that dequeued from this port and now does something else (a thread
    /// that will not dequeue again, a long computation). Windows frees the
    /// slot of a thread that blocks in the kernel; here the thread says so
    /// (see also [`blocking`](Self::blocking)). Does nothing if the thread
    /// holds no slot.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.post(ringport::op::Packet::new(0))?;
    /// let _c = port.get(None)?;
    /// assert_eq!(port.running_threads(), 1);
    /// port.leave();
    /// assert_eq!(port.running_threads(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn leave(&self) {
        self.engine.leave();
    }

    /// Declares that the calling thread, which runs a completion of this
    /// port, is about to block: until the guard is dropped its running slot
    /// is free for another waiting thread (as IOCP does when a running
    /// thread blocks).
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.post(ringport::op::Packet::new(0))?;
    /// let _c = port.get(None)?;
    /// {
    ///     let _blocking = port.blocking();
    ///     // a blocking call here lets another worker run
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blocking(&self) -> Blocking<'_> {
        let active = self.engine.begin_blocking();
        Blocking { port: self, active }
    }

    /// A batch: operations posted through it may wait, and all of them are
    /// submitted together when it is dropped (on io_uring, one
    /// `io_uring_enter` for the lot instead of one per operation).
    /// Operations posted through the port itself start at once, as always.
    /// Keep a batch short, and never block while holding one: what it
    /// holds back waits for its end.
    ///
    /// ```
    /// use ringport::op;
    /// # use std::io::Read;
    /// # let port = ringport::CompletionPort::new(1)?;
    /// # let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let mut peer = std::net::TcpStream::connect(l.local_addr()?)?;
    /// # let conn = port.associate(l.accept()?.0, 1)?;
    /// {
    ///     let batch = port.batch();
    ///     for part in [b"one ", b"two "] {
    ///         batch.submit(op::SendAll::new(&conn, part.to_vec()))?;
    ///     }
    /// } // both sends start here
    /// let mut got = [0; 8];
    /// peer.read_exact(&mut got)?;
    /// assert_eq!(&got, b"one two ");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(&self) -> Batch<'_> {
        Batch { port: self }
    }

    /// Shuts the port down: refuses new operations, cancels every outstanding
    /// one and waits for the kernel to let go of their buffers, drops queued
    /// completions, and makes every current and future `get` return
    /// [`GetError::Closed`]. Dropping the last clone does the same.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.shutdown();
    /// assert!(port.is_shut_down());
    /// assert!(port.post(ringport::op::Packet::new(0)).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.engine.shutdown();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.engine.sched.is_closed()
    }
}

impl fmt::Debug for CompletionPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompletionPort")
            .field("backend", &self.backend())
            .field("concurrency", &self.concurrency())
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

/// Returned by [`CompletionPort::blocking`]; gives the running slot back when
/// dropped.
#[must_use = "the slot is given back when the guard is dropped"]
pub struct Blocking<'a> {
    port: &'a CompletionPort,
    active: bool,
}

impl Drop for Blocking<'_> {
    fn drop(&mut self) {
        if self.active {
            self.port.engine.end_blocking();
        }
    }
}

/// Operations posted together: returned by [`CompletionPort::batch`],
/// submits what it holds when dropped.
#[must_use = "the batch is submitted when it is dropped"]
pub struct Batch<'a> {
    port: &'a CompletionPort,
}

impl Batch<'_> {
    /// Posts an operation that may wait for the end of the batch
    /// (otherwise as [`CompletionPort::submit`]).
    ///
    /// # Errors
    /// As [`CompletionPort::submit`].
    pub fn submit(&self, op: impl Operation) -> io::Result<OpId> {
        self.port
            .engine
            .submit(crate::op::sealed::Sealed::into_record(op), Submit::Deferred)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.port.engine.flush();
    }
}
