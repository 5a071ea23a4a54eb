//! Puts a connection's completions back in order.
//!
//! A pooled receive stays posted and completes once per chunk, and any
//! worker may dequeue any completion, so two chunks of one connection can be
//! in two workers' hands at once; so can two sends' completions. Each
//! completion carries its number in its stream: a chunk of a pooled receive
//! its [`seq`](ringport::Completion::seq) (the final completion comes last,
//! with the next number), a send the number the connection gave it when it
//! was posted. [`Reorder::accept`] hands events on in their turn and keeps
//! those that came early until the ones before them came.

/// An ordered stream of one connection's completions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stream<R> {
    /// The completions of one pooled receive (its operation id), numbered
    /// by `seq`.
    Recv(R),
    /// Send completions, numbered in post order.
    Send,
}

/// The reorder buffer of one connection (see the module docs).
#[derive(Debug)]
pub(crate) struct Reorder<R, E> {
    /// The pooled receive being ordered; completions of another receive
    /// (an earlier one, cancelled) are handed on as they come.
    recv_op: Option<R>,
    recv_next: u64,
    sent_next: u64,
    /// Completions that came ahead of their turn (only with several
    /// workers).
    early: Vec<(Stream<R>, u64, E)>,
}

impl<R: Copy + Eq, E> Default for Reorder<R, E> {
    fn default() -> Self {
        Reorder {
            recv_op: None,
            recv_next: 0,
            sent_next: 0,
            early: Vec::new(),
        }
    }
}

impl<R: Copy + Eq, E> Reorder<R, E> {
    /// From now on, receive completions are those of `op`, numbered from 0.
    pub(crate) fn start_recv(&mut self, op: R) {
        self.recv_op = Some(op);
        self.recv_next = 0;
    }

    /// The number the next completion of `stream` must carry, or `None`
    /// for a receive that is not the one being ordered.
    fn expected(&self, stream: Stream<R>) -> Option<u64> {
        match stream {
            Stream::Recv(id) if self.recv_op == Some(id) => Some(self.recv_next),
            Stream::Recv(_) => None,
            Stream::Send => Some(self.sent_next),
        }
    }

    fn advance(&mut self, stream: Stream<R>) {
        match stream {
            Stream::Recv(_) => self.recv_next += 1,
            Stream::Send => self.sent_next += 1,
        }
    }

    /// Takes completion number `seq` of `stream`: hands it to `deliver` if
    /// it is its turn, followed by whatever it was holding up, or keeps it.
    pub(crate) fn accept(
        &mut self,
        stream: Stream<R>,
        seq: u64,
        ev: E,
        mut deliver: impl FnMut(E),
    ) {
        match self.expected(stream) {
            Some(next) if next != seq => {
                self.early.push((stream, seq, ev));
                return;
            }
            Some(_) => self.advance(stream),
            None => {}
        }
        deliver(ev);
        while !self.early.is_empty() {
            let Some(i) = self
                .early
                .iter()
                .position(|(s, n, _)| self.expected(*s) == Some(*n))
            else {
                break;
            };
            let (s, _, ev) = self.early.swap_remove(i);
            self.advance(s);
            deliver(ev);
        }
    }

    /// Completions waiting for their turn.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.early.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{Reorder, Stream};

    fn run(
        r: &mut Reorder<u32, &'static str>,
        s: Stream<u32>,
        seq: u64,
        ev: &'static str,
    ) -> Vec<&'static str> {
        let mut out = Vec::new();
        r.accept(s, seq, ev, |e| out.push(e));
        out
    }

    #[test]
    fn in_order_completions_pass_at_once() {
        let mut r = Reorder::default();
        r.start_recv(7);
        assert_eq!(run(&mut r, Stream::Recv(7), 0, "a"), ["a"]);
        assert_eq!(run(&mut r, Stream::Recv(7), 1, "b"), ["b"]);
        assert_eq!(run(&mut r, Stream::Send, 0, "s0"), ["s0"]);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn an_early_completion_waits_for_the_ones_before_it() {
        let mut r = Reorder::default();
        r.start_recv(1);
        assert!(run(&mut r, Stream::Recv(1), 2, "c").is_empty());
        assert!(run(&mut r, Stream::Recv(1), 1, "b").is_empty());
        assert_eq!(r.waiting(), 2);
        assert_eq!(run(&mut r, Stream::Recv(1), 0, "a"), ["a", "b", "c"]);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn sends_and_receives_are_ordered_separately() {
        let mut r = Reorder::default();
        r.start_recv(1);
        assert!(run(&mut r, Stream::Send, 1, "s1").is_empty());
        assert_eq!(run(&mut r, Stream::Recv(1), 0, "a"), ["a"]);
        assert_eq!(run(&mut r, Stream::Send, 0, "s0"), ["s0", "s1"]);
    }

    #[test]
    fn a_new_receive_numbers_from_zero_and_an_old_one_passes_as_is() {
        let mut r = Reorder::default();
        r.start_recv(1);
        assert_eq!(run(&mut r, Stream::Recv(1), 0, "a"), ["a"]);
        r.start_recv(2);
        // The old receive's final completion: not ordered any more.
        assert_eq!(run(&mut r, Stream::Recv(1), 5, "end1"), ["end1"]);
        assert!(run(&mut r, Stream::Recv(2), 1, "y").is_empty());
        assert_eq!(run(&mut r, Stream::Recv(2), 0, "x"), ["x", "y"]);
    }
}
