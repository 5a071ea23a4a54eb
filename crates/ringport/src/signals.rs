//! Signals as completions: `SIGINT`, `SIGTERM` or any signal chosen arrive
//! on the port like any other completion, so a server's threads stop from
//! their own loop rather than from a signal handler.

use std::io;

use crate::sys::signal;
use crate::{op, Completion, CompletionPort, Handle, OpId, OpKind};

/// Chosen signals, delivered as completions of a port (a `signalfd` read
/// with [`op::Read`]). Creating it blocks those signals in the calling
/// thread, so call it before starting other threads (they inherit the
/// mask); a signal sent to the process (`kill`, Ctrl-C) then no longer
/// runs its default action but is reported. Each [`watch`](Self::watch)
/// posts one read for the next signal; its completion carries the
/// handle's key and says which signal came ([`signal_of`](Self::signal_of)).
///
/// A signal sent to one thread (`pthread_kill`) is seen only by a read
/// made by that thread: send signals to the process.
///
/// ```
/// use ringport::{CompletionPort, Signals};
///
/// let port = CompletionPort::new(1)?;
/// let signals = Signals::new(&port, &[libc::SIGUSR2], 99)?;
/// signals.watch()?;
/// std::process::Command::new("kill")
///     .args(["-s", "USR2", &std::process::id().to_string()])
///     .status()?;
/// let c = port.get(None)?;
/// assert_eq!(c.key(), 99);
/// assert_eq!(Signals::signal_of(&c), Some(libc::SIGUSR2));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Signals {
    port: CompletionPort,
    handle: Handle,
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Signals {
    /// Blocks `signals` in the calling thread and associates a descriptor
    /// reporting them with `port` under `key`. Nothing is posted yet: see
    /// [`watch`](Self::watch).
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let s = ringport::Signals::new(&port, &[libc::SIGUSR2], 5)?;
    /// assert_eq!(s.handle().key(), 5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// `EINVAL` for a number that is not a signal (or `SIGKILL`/`SIGSTOP`,
    /// which cannot be blocked: the kernel ignores them in the mask).
    pub fn new(port: &CompletionPort, signals: &[i32], key: u64) -> io::Result<Signals> {
        let fd = signal::signal_fd(signals)?;
        Ok(Signals {
            port: port.clone(),
            handle: port.associate(fd, key)?,
        })
    }

    /// Posts one read for the next signal: it completes (a
    /// [`OpKind::Read`] completion with this helper's key) when one
    /// arrives. Post it again after each, or several at once.
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// let s = ringport::Signals::new(&port, &[libc::SIGUSR2], 5)?;
    /// let id = s.watch()?;
    /// port.cancel(id)?;
    /// assert!(port.get(None)?.is_cancelled());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn watch(&self) -> io::Result<OpId> {
        let record = Vec::with_capacity(signal::SIGINFO_LEN);
        self.port.submit(op::Read::new(&self.handle, record))
    }

    /// The signal a completion of [`watch`](Self::watch) reports; `None`
    /// for any other completion (or a failed one).
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.post(ringport::op::Packet::new(0))?;
    /// assert_eq!(ringport::Signals::signal_of(&port.get(None)?), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn signal_of(c: &Completion) -> Option<i32> {
        (c.kind() == OpKind::Read && c.result().is_ok())
            .then(|| signal::signal_number(c.data()))
            .flatten()
    }

    /// The process that sent the signal a completion reports (`ssi_pid`;
    /// 0 for one the kernel raised).
    ///
    /// ```
    /// let port = ringport::CompletionPort::new(1)?;
    /// port.post(ringport::op::Packet::new(0))?;
    /// assert_eq!(ringport::Signals::sender_of(&port.get(None)?), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sender_of(c: &Completion) -> Option<u32> {
        Self::signal_of(c).and_then(|_| signal::signal_sender(c.data()))
    }

    /// The associated descriptor (to close it, or cancel its reads).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
