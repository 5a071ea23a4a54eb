//! The completion port: create, associate, post operations, dequeue.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::builder::{BackendKind, Builder};
use crate::completion::{Completion, GetError, OpId, OpKind};
use crate::handle::Handle;
use crate::op::{Lane, OpData};
use crate::shared::{closed_error, Shared};
use crate::sys::{Backend, SockAddrBuf};

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
/// use ringport::{CompletionPort, OpKind};
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
/// port.recv(&conn, Vec::with_capacity(64), 0)?;
/// let mut c = port.get(None)?;
/// assert_eq!((c.kind(), c.data()), (OpKind::Recv, &b"hello"[..]));
///
/// port.send_all(&conn, c.take_buf().unwrap(), 0)?;
/// assert_eq!(port.get(None)?.result()?, 5);
/// let mut echo = [0; 5];
/// client.read_exact(&mut echo)?;
/// assert_eq!(&echo, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct CompletionPort {
    shared: Arc<Shared>,
}

impl CompletionPort {
    /// Creates a port that lets `concurrency` threads run completions at once
    /// (0 = the number of CPUs), on the best available backend.
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

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        CompletionPort { shared }
    }

    /// The backend in use.
    pub fn backend(&self) -> BackendKind {
        self.shared.driver.kind()
    }

    /// The concurrency value (never 0).
    pub fn concurrency(&self) -> usize {
        self.shared.sched.concurrency()
    }

    /// Threads currently running completions of this port.
    pub fn running_threads(&self) -> usize {
        self.shared.sched.running()
    }

    /// Threads currently waiting in `get` (parked, or polling the kernel).
    pub fn waiting_threads(&self) -> usize {
        self.shared.sched.idle()
    }

    /// Operations posted and not yet finally completed.
    pub fn outstanding(&self) -> usize {
        self.shared.arena.live()
    }

    /// Associates a socket or file with the port under completion `key`
    /// (`CreateIoCompletionPort(handle, port, key, 0)`). The port takes
    /// ownership of the descriptor; see [`Handle`] for when it is closed. The
    /// backend may change the descriptor's blocking mode.
    ///
    /// # Errors
    /// When the port was shut down, or the backend cannot watch the
    /// descriptor.
    pub fn associate(&self, fd: impl Into<OwnedFd>, key: u64) -> io::Result<Handle> {
        if self.shared.sched.is_closed() {
            return Err(closed_error());
        }
        let handle = Handle::new(fd.into(), key, Arc::downgrade(&self.shared));
        self.shared.driver.register(&self.shared, &handle.inner)?;
        Ok(handle)
    }

    /// Posts a user packet (`PostQueuedCompletionStatus`): a completion of
    /// kind [`OpKind::Packet`] with `key`, `user` and `Ok(value)`, which wakes
    /// a waiting thread. Callable from any thread.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let p = port.clone();
    /// std::thread::spawn(move || p.post(0, u64::MAX, 0)).join().unwrap()?;
    /// assert_eq!(port.get(None)?.user(), u64::MAX);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the port was shut down.
    pub fn post(&self, key: u64, user: u64, value: usize) -> io::Result<()> {
        self.shared.post(Completion::packet(key, user, value))
    }

    /// Dequeues one completion (`GetQueuedCompletionStatus`), waiting at most
    /// `timeout`: `None` waits forever, `Some(Duration::ZERO)` only polls.
    ///
    /// # Errors
    /// [`GetError::TimedOut`] when nothing came in time, [`GetError::Closed`]
    /// once the port is shut down (every waiting thread gets it),
    /// [`GetError::Io`] when the backend failed.
    pub fn get(&self, timeout: Option<Duration>) -> Result<Completion, GetError> {
        self.shared.get(timeout)
    }

    /// Dequeues up to `max` completions into `out`
    /// (`GetQueuedCompletionStatusEx`), waiting at most `timeout` for the
    /// first; returns how many were appended. The batch counts as one running
    /// thread.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// for i in 0..3 { port.post(0, i, 0)?; }
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
        self.shared.get_many(out, max, timeout)
    }

    fn post_on(&self, handle: &Handle, mut op: OpData) -> io::Result<OpId> {
        if handle.is_closed() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the handle was closed",
            ));
        }
        if !std::ptr::eq(handle.inner.port.as_ptr(), Arc::as_ptr(&self.shared)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the handle is associated with another port",
            ));
        }
        op.handle = Some(handle.inner.clone());
        self.shared.submit(op, Some(&handle.inner))
    }

    /// Posts an accept on a listening socket (`AcceptEx`). The completion
    /// carries the new socket and both addresses
    /// ([`Completion::take_accepted`]). Several accepts may be outstanding on
    /// one listener (the seeds keep ten).
    ///
    /// # Errors
    /// When the port was shut down or the handle closed; failures of the
    /// accept itself arrive in its completion.
    pub fn accept(&self, listener: &Handle, user: u64) -> io::Result<OpId> {
        self.post_on(listener, OpData::new(OpKind::Accept, listener.key(), user))
    }

    /// Posts an accept that stays posted: one completion per accepted
    /// connection (with [`Completion::more`] set and both addresses), until
    /// it is cancelled or fails; then a final completion ends it (a failure
    /// such as `EMFILE` ends it too: post it again after a back-off). On
    /// io_uring this is a multishot accept; on epoll the port re-arms a
    /// single accept after each connection. io_uring checks new descriptors
    /// against the `RLIMIT_NOFILE` in force when the accept was posted: a
    /// limit lowered later applies from the next post on.
    ///
    /// ```
    /// use std::net::{TcpListener, TcpStream};
    /// let port = ringport::CompletionPort::new(1)?;
    /// let l = port.associate(TcpListener::bind("127.0.0.1:0")?, 0)?;
    /// let id = port.accept_multi(&l, 0)?;
    /// let addr = ringport::local_addr(&l)?;
    /// let _clients = [TcpStream::connect(addr)?, TcpStream::connect(addr)?];
    /// for _ in 0..2 {
    ///     let mut c = port.get(None)?;
    ///     assert!(c.more() && c.take_accepted().is_some());
    /// }
    /// port.cancel(id)?;
    /// assert!(port.get(None)?.is_cancelled());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn accept_multi(&self, listener: &Handle, user: u64) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::Accept, listener.key(), user);
        op.multishot = true;
        self.post_on(listener, op)
    }

    /// Posts an accept that completes only once the first data has arrived on
    /// the new connection (AcceptEx with a receive buffer): the completion
    /// holds the connection, both addresses and `buf` extended by the bytes
    /// received (0 if the client closed without sending).
    ///
    /// # Errors
    /// As [`accept`](Self::accept), and `InvalidInput` for a buffer without
    /// spare capacity.
    pub fn accept_with_data(&self, listener: &Handle, buf: Vec<u8>, user: u64) -> io::Result<OpId> {
        check_spare(&buf)?;
        let mut op = OpData::new(OpKind::Accept, listener.key(), user);
        op.pos = buf.len();
        op.buf = Some(buf);
        self.post_on(listener, op)
    }

    /// Posts a connect (`ConnectEx`) of an associated, unconnected socket.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn connect(&self, socket: &Handle, addr: SocketAddr, user: u64) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::Connect, socket.key(), user);
        op.addr = Some(Box::new(SockAddrBuf::from_addr(addr)));
        self.post_on(socket, op)
    }

    /// Posts a receive (`WSARecv`) into the spare capacity of `buf`
    /// (`buf.len()..buf.capacity()`). The completion's result is the number
    /// of bytes received, and its buffer is `buf` extended by them; `Ok(0)`
    /// means the peer closed its side.
    ///
    /// # Errors
    /// As [`accept`](Self::accept), and `InvalidInput` for a buffer without
    /// spare capacity (a zero-byte receive could not be told from a close).
    pub fn recv(&self, socket: &Handle, buf: Vec<u8>, user: u64) -> io::Result<OpId> {
        check_spare(&buf)?;
        let mut op = OpData::new(OpKind::Recv, socket.key(), user);
        op.pos = buf.len();
        op.buf = Some(buf);
        op.lane = Some(Lane::Read);
        self.post_on(socket, op)
    }

    /// Posts a receive that stays posted and takes a buffer from the port's
    /// pool only when data arrives, so idle connections pin no memory. Each
    /// chunk of data completes with [`Completion::more`] set; the op ends
    /// with one final completion (`Ok(0)` at end of stream, an error, or
    /// cancelled). Give buffers back with [`recycle`](Self::recycle).
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn recv_pooled(&self, socket: &Handle, user: u64) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::RecvPooled, socket.key(), user);
        op.lane = Some(Lane::Read);
        self.post_on(socket, op)
    }

    /// As [`recv_pooled`](Self::recv_pooled), but the receive ends by
    /// itself once it has delivered `max` bytes: flow control for a
    /// consumer that has room for `max` more bytes (it posts the next
    /// receive when it has room again). Neither backend reads further
    /// ahead: io_uring caps the kernel's multishot receive at `max` bytes
    /// (Linux 6.17; one receive at a time, re-armed by the port, before),
    /// epoll reads no more than what is left. The last chunk may take the
    /// total past `max` by less than one pool buffer. The final completion
    /// is then `Ok(n)` with `n > 0` the bytes delivered (at most
    /// `i32::MAX`); `Ok(0)` still means end of stream.
    ///
    /// ```no_run
    /// # fn f(port: &ringport::CompletionPort, h: &ringport::Handle) -> std::io::Result<()> {
    /// let room = 256 * 1024;
    /// port.recv_pooled_up_to(h, room, 7)?;
    /// let c = port.get(None)?;
    /// if !c.more() && c.result().is_ok_and(|n| n > 0) {
    ///     // used up its budget: post another when there is room again
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`accept`](Self::accept), and `InvalidInput` when `max` is 0.
    pub fn recv_pooled_up_to(&self, socket: &Handle, max: usize, user: u64) -> io::Result<OpId> {
        if max == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a pooled receive of at most 0 bytes",
            ));
        }
        let mut op = OpData::new(OpKind::RecvPooled, socket.key(), user);
        op.lane = Some(Lane::Read);
        op.max = max;
        self.post_on(socket, op)
    }

    /// Posts a send of the whole of `buf` (`WSASend`); it completes with the
    /// bytes actually sent, which may be fewer.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn send(&self, socket: &Handle, buf: Vec<u8>, user: u64) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::Send, socket.key(), user);
        op.buf = Some(buf);
        op.lane = Some(Lane::Write);
        self.post_on(socket, op)
    }

    /// Posts a send that the port continues after partial sends until every
    /// byte of `buf` is sent (the seeds' BytesSEND bookkeeping); it completes
    /// once, with `buf.len()` or the first error.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn send_all(&self, socket: &Handle, buf: Vec<u8>, user: u64) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::SendAll, socket.key(), user);
        op.buf = Some(buf);
        op.lane = Some(Lane::Write);
        self.post_on(socket, op)
    }

    /// Posts a read from a file at `offset` into the spare capacity of `buf`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn read_at(&self, file: &Handle, buf: Vec<u8>, offset: u64, user: u64) -> io::Result<OpId> {
        check_spare(&buf)?;
        let mut op = OpData::new(OpKind::ReadAt, file.key(), user);
        op.pos = buf.len();
        op.buf = Some(buf);
        op.offset = offset;
        self.post_on(file, op)
    }

    /// Posts a write of `buf` to a file at `offset`; completes with the bytes
    /// written.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn write_at(
        &self,
        file: &Handle,
        buf: Vec<u8>,
        offset: u64,
        user: u64,
    ) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::WriteAt, file.key(), user);
        op.buf = Some(buf);
        op.offset = offset;
        self.post_on(file, op)
    }

    /// Posts a timer that completes with `Ok(0)` after `after` (or as
    /// cancelled), with the given `key` and `user`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.timeout(Duration::from_millis(5), 1, 2)?;
    /// let c = port.get(None)?;
    /// assert_eq!((c.kind(), c.result()?), (ringport::OpKind::Timeout, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// When the port was shut down.
    pub fn timeout(&self, after: Duration, key: u64, user: u64) -> io::Result<OpId> {
        let mut op = OpData::new(OpKind::Timeout, key, user);
        op.duration = after;
        self.shared.submit(op, None)
    }

    /// Closes a handle (`closesocket` with I/O pending): its outstanding
    /// operations complete as cancelled, a completion of kind
    /// [`OpKind::Close`] is queued, and the descriptor is closed once the
    /// last operation has let go of it.
    ///
    /// # Errors
    /// When the port was shut down.
    pub fn close(&self, handle: Handle, user: u64) -> io::Result<()> {
        self.shared.cancel_handle(&handle.inner);
        let mut c = Completion::packet(handle.key(), user, 0);
        c.kind = OpKind::Close;
        self.shared.post(c)
    }

    /// Cancels one operation (`CancelIoEx` with an OVERLAPPED). It still
    /// completes once, with [`Completion::is_cancelled`] (unless it finished
    /// first) and its buffer.
    ///
    /// # Errors
    /// `NotFound` when the operation is no longer outstanding.
    pub fn cancel(&self, id: OpId) -> io::Result<()> {
        if self.shared.cancel(id) {
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
    pub fn cancel_handle(&self, handle: &Handle) {
        self.shared.cancel_handle(&handle.inner);
    }

    /// Gives a buffer from a pooled receive back to the pool.
    pub fn recycle(&self, buf: Vec<u8>) {
        self.shared.pool.put(buf);
    }

    /// Declares that the calling thread, which runs a completion of this
    /// port, is about to block: until the guard is dropped its running slot
    /// is free for another waiting thread. Also submits operations the thread
    /// posted and the port was batching.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.post(0, 0, 0)?;
    /// let _c = port.get(None)?;
    /// {
    ///     let _blocking = port.blocking();
    ///     // a blocking call here lets another worker run
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn blocking(&self) -> Blocking<'_> {
        let active = self.shared.begin_blocking();
        Blocking { port: self, active }
    }

    /// Shuts the port down: refuses new operations, cancels every outstanding
    /// one and waits for the kernel to let go of their buffers, drops queued
    /// completions, and makes every current and future `get` return
    /// [`GetError::Closed`]. Dropping the last clone does the same.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.shared.sched.is_closed()
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
            self.port.shared.end_blocking();
        }
    }
}

fn check_spare(buf: &Vec<u8>) -> io::Result<()> {
    if buf.capacity() > buf.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the buffer has no spare capacity to receive into",
        ))
    }
}
