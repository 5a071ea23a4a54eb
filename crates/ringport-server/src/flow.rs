//! Flow control: a connection is read only while the memory it holds (its
//! queued sends and the data received and not yet handed to the handler)
//! leaves room under the server's limit, and each receive is posted for at
//! most that room, so a client that does not read, or that sends faster
//! than the handler takes it, cannot grow the server's memory.
//!
//! This module holds the decisions; the connection's state applies them.

/// The receive side of a connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecvState<R> {
    /// A pooled receive (its operation id) is posted, for at most the room
    /// the connection had under its limit when it was posted.
    Reading(R),
    /// Flow control cancelled the receive; its final completion is due.
    Pausing,
    /// Flow control: no receive posted until what the connection holds is
    /// down to half its limit.
    Paused,
    /// Not reading any more (end of stream, error, closing).
    Stopped,
}

/// The limit on the memory one connection holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlowControl {
    /// Bytes a connection may hold before it stops being read.
    pub limit: usize,
    /// The size of one receive buffer: the least a receive is posted for.
    pub recv_buffer: usize,
}

impl FlowControl {
    /// Whether a connection holding `held` bytes must stop being read (its
    /// handler sent more than it was given: a receive never delivers more
    /// than the room there was when it was posted).
    pub(crate) fn over(&self, held: usize) -> bool {
        held > self.limit
    }

    /// The byte budget of a receive posted for a connection holding `held`,
    /// or `None` while it holds more than half the limit: the room left
    /// under the limit, at least one receive buffer, so what it holds stays
    /// within the limit plus about one receive buffer whatever the backend
    /// reads ahead.
    pub(crate) fn room(&self, held: usize) -> Option<usize> {
        if held > self.limit / 2 {
            return None;
        }
        Some((self.limit - held).max(self.recv_buffer))
    }
}

/// What the final completion of a pooled receive means for the connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RecvEnd {
    /// The receive stopped for flow control (cancelled by it, or it
    /// delivered its budget): read again when there is room. `used_up`
    /// when it ended by its budget (a pause counted here).
    Pause { used_up: bool },
    /// The receive was being stopped anyway: nothing to do.
    Ignore,
    /// Cancelled by nobody here: the port is shutting down.
    Shutdown,
    /// End of stream: the peer closed its side.
    PeerClosed,
    /// The receive failed with this error.
    Failed(i32),
}

impl RecvEnd {
    /// Classifies the final result `res` (bytes of the last chunk, or an
    /// error code) of a pooled receive ending in receive state `state`.
    pub(crate) fn of<R>(state: RecvState<R>, res: Result<usize, i32>) -> RecvEnd {
        match (state, res) {
            (RecvState::Pausing, Err(libc::ECANCELED)) => RecvEnd::Pause { used_up: false },
            (RecvState::Pausing, Ok(1..)) => RecvEnd::Pause { used_up: false },
            (RecvState::Reading(_), Ok(1..)) => RecvEnd::Pause { used_up: true },
            (RecvState::Stopped, Err(libc::ECANCELED) | Ok(1..)) => RecvEnd::Ignore,
            (_, Err(libc::ECANCELED)) => RecvEnd::Shutdown,
            (_, Ok(_)) => RecvEnd::PeerClosed,
            (_, Err(code)) => RecvEnd::Failed(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FC: FlowControl = FlowControl {
        limit: 1000,
        recv_buffer: 100,
    };

    #[test]
    fn reading_resumes_at_half_the_limit_for_the_room_left() {
        assert_eq!(FC.room(0), Some(1000));
        assert_eq!(FC.room(500), Some(500));
        assert_eq!(FC.room(501), None);
        assert!(!FC.over(1000));
        assert!(FC.over(1001));
    }

    #[test]
    fn a_receive_is_posted_for_at_least_one_buffer() {
        let fc = FlowControl {
            limit: 150,
            recv_buffer: 100,
        };
        assert_eq!(fc.room(70), Some(100));
    }

    #[test]
    fn the_end_of_a_receive_says_why_it_ended() {
        use RecvState::*;
        let end = |s: RecvState<u8>, r| RecvEnd::of(s, r);
        assert_eq!(
            end(Pausing, Err(libc::ECANCELED)),
            RecvEnd::Pause { used_up: false }
        );
        assert_eq!(end(Reading(1), Ok(10)), RecvEnd::Pause { used_up: true });
        assert_eq!(end(Stopped, Err(libc::ECANCELED)), RecvEnd::Ignore);
        assert_eq!(end(Reading(1), Err(libc::ECANCELED)), RecvEnd::Shutdown);
        assert_eq!(end(Reading(1), Ok(0)), RecvEnd::PeerClosed);
        assert_eq!(end(Paused, Ok(0)), RecvEnd::PeerClosed);
        assert_eq!(
            end(Reading(1), Err(libc::ECONNRESET)),
            RecvEnd::Failed(libc::ECONNRESET)
        );
    }
}
