//! User packets (`PostQueuedCompletionStatus`): completions that no
//! operation produced, posted by the application to wake or stop a worker
//! or to hand it work.

/// A user packet: a completion of kind
/// [`OpKind::Packet`](crate::OpKind::Packet) with a key, a user value and
/// `Ok(value)`, queued by
/// [`CompletionPort::post`](crate::CompletionPort::post).
///
/// ```
/// use ringport::op::Packet;
/// let port = ringport::CompletionPort::new(1)?;
/// port.post(Packet::new(7).key(1).user(u64::MAX))?;
/// let c = port.get(None)?;
/// assert_eq!((c.key(), c.user(), c.result()?), (1, u64::MAX, 7));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    pub(crate) key: u64,
    pub(crate) user: u64,
    pub(crate) value: usize,
}

impl Packet {
    /// A packet whose completion's result is `Ok(value)`
    /// (`dwNumberOfBytesTransferred`).
    pub fn new(value: usize) -> Packet {
        Packet {
            value,
            ..Packet::default()
        }
    }

    /// The completion key it carries (`dwCompletionKey`); 0 if not set.
    pub fn key(mut self, key: u64) -> Packet {
        self.key = key;
        self
    }

    /// The user value it carries (`lpOverlapped`'s role); 0 if not set.
    pub fn user(mut self, user: u64) -> Packet {
        self.user = user;
        self
    }
}
