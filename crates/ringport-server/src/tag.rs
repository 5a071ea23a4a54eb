//! What each operation the server posts is, carried in its user value (the
//! seeds' `OPERATION_TYPE`).
//!
//! The user value is a `u64`: the low byte says the kind, the rest carries
//! a number for the kinds that have one (a send's place in its
//! connection's post order). That layout is known only to [`Tag::user`]
//! and [`Tag::of`].

/// The kind of one of the server's operations, with its number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tag {
    /// A connection's pooled receive.
    Recv,
    /// A connection's send, numbered in the order it was posted.
    Send(u64),
    /// A packet asking a worker to drain a connection's inbox.
    Kick,
    /// An accept on the listener of this number.
    Accept(u64),
    /// The timer after which a failed accept of the listener of this
    /// number is retried.
    AcceptRetry(u64),
    /// The timer of the deadline sweep (idle, read and write deadlines).
    Sweep,
    /// A packet telling a worker to exit (the seeds' EXIT_CODE).
    Exit,
    /// A connection's timer, by its number.
    ConnTimer(u64),
    /// A server timer, by its number.
    ServerTimer(u64),
    /// An outbound connection's connect.
    Connect,
    /// The timer of an outbound connection's connect timeout.
    ConnectTimeout,
    /// The pooled receive on the datagram socket.
    Datagram,
    /// A packet asking a worker to post the datagram socket's first
    /// receive.
    DatagramStart,
    /// A packet asking a worker to post the first accepts of the listener
    /// of this number.
    AcceptStart(u64),
    /// A reply send on the datagram socket, with the memory it counts for.
    DatagramSent(u64),
}

const KIND_BITS: u32 = 8;
const KIND_MASK: u64 = (1 << KIND_BITS) - 1;

impl Tag {
    /// The user value to post the operation with.
    pub(crate) fn user(self) -> u64 {
        let (kind, number) = match self {
            Tag::Recv => (1, 0),
            Tag::Send(n) => (2, n),
            Tag::Kick => (3, 0),
            Tag::Accept(n) => (4, n),
            Tag::AcceptRetry(n) => (5, n),
            Tag::Sweep => (6, 0),
            Tag::Exit => (7, 0),
            Tag::ConnTimer(n) => (8, n),
            Tag::ServerTimer(n) => (9, n),
            Tag::Connect => (10, 0),
            Tag::ConnectTimeout => (11, 0),
            Tag::Datagram => (12, 0),
            Tag::DatagramSent(n) => (13, n),
            Tag::DatagramStart => (14, 0),
            Tag::AcceptStart(n) => (15, n),
        };
        debug_assert!(number < 1 << (64 - KIND_BITS), "tag number out of range");
        kind | (number << KIND_BITS)
    }

    /// The tag a completion's user value carries; `None` for a value the
    /// server never posts.
    pub(crate) fn of(user: u64) -> Option<Tag> {
        let number = user >> KIND_BITS;
        Some(match user & KIND_MASK {
            1 => Tag::Recv,
            2 => Tag::Send(number),
            3 => Tag::Kick,
            4 => Tag::Accept(number),
            5 => Tag::AcceptRetry(number),
            6 => Tag::Sweep,
            7 => Tag::Exit,
            8 => Tag::ConnTimer(number),
            9 => Tag::ServerTimer(number),
            10 => Tag::Connect,
            11 => Tag::ConnectTimeout,
            12 => Tag::Datagram,
            13 => Tag::DatagramSent(number),
            14 => Tag::DatagramStart,
            15 => Tag::AcceptStart(number),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Tag;

    #[test]
    fn every_tag_comes_back_from_its_user_value() {
        let tags = [
            Tag::Recv,
            Tag::Send(0),
            Tag::Send(1 << 40),
            Tag::Kick,
            Tag::Accept(0),
            Tag::Accept(1),
            Tag::AcceptRetry(1),
            Tag::Sweep,
            Tag::Exit,
            Tag::ConnTimer(3),
            Tag::ServerTimer(1 << 50),
            Tag::Connect,
            Tag::ConnectTimeout,
            Tag::Datagram,
            Tag::DatagramSent(65_536),
            Tag::DatagramStart,
            Tag::AcceptStart(1),
        ];
        for t in tags {
            assert_eq!(Tag::of(t.user()), Some(t), "{t:?}");
        }
    }

    #[test]
    fn a_value_the_server_never_posts_is_no_tag() {
        assert_eq!(Tag::of(0), None);
        assert_eq!(Tag::of(0xff), None);
        assert_eq!(Tag::of(16), None);
    }
}
