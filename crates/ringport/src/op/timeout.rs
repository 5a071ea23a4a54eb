//! Timers.

use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::Timespec;
use io_uring::{opcode, squeue::Entry};

use super::{Head, Op, Out, Record};
use crate::sys::epoll::Plan;
use crate::sys::uring::LowerCx;

/// A timer that completes with `Ok(0)` after its duration (or as
/// cancelled), with the key and user value it is given.
///
/// ```
/// use ringport::{op, CompletionPort, OpKind};
/// use std::time::Duration;
/// let port = CompletionPort::new(1)?;
/// port.submit(op::Timeout::new(Duration::from_millis(5)).key(1).user(2))?;
/// let c = port.get(None)?;
/// assert_eq!((c.kind(), c.key(), c.user(), c.result()?), (OpKind::Timeout, 1, 2, 0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Timeout(pub(super) Record);

impl Timeout {
    /// A timer of `after`.
    pub fn new(after: Duration) -> Timeout {
        Timeout(Record {
            head: Head::bare(),
            op: super::AnyOp::Timeout(TimeoutOp {
                after,
                ts: Timespec::new(),
            }),
        })
    }

    /// The completion key its completion hands back (a timer has no handle
    /// to take one from); 0 if not set.
    pub fn key(mut self, key: u64) -> Timeout {
        self.0.head.key = key;
        self
    }
}

pub(crate) struct TimeoutOp {
    after: Duration,
    /// What the kernel reads while the timer is armed (io_uring).
    ts: Timespec,
}

impl Op for TimeoutOp {
    const OPCODES: &'static [(u8, &'static str)] = &[(opcode::Timeout::CODE, "TIMEOUT")];

    fn lower(&mut self, _cx: &LowerCx) -> Result<Entry, i32> {
        if self.after.is_zero() {
            // Expired already: the kernel would arm an hrtimer and take an
            // interrupt for it.
            return Err(-libc::ETIME);
        }
        self.ts = Timespec::from(self.after);
        Ok(opcode::Timeout::new(&raw const self.ts).build())
    }
    fn plan(&mut self, _fd: Option<RawFd>) -> Plan {
        Plan::Timer(self.after)
    }
    fn finish(self, res: i32) -> Out {
        // The timer expiring is its success.
        Out::result(if res == -libc::ETIME { 0 } else { res })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_success_and_cancellation_is_not() {
        let op = || TimeoutOp {
            after: Duration::from_secs(1),
            ts: Timespec::new(),
        };
        assert_eq!(op().finish(-libc::ETIME).result, Ok(0));
        assert_eq!(op().finish(-libc::ECANCELED).result, Err(libc::ECANCELED));
    }

    #[test]
    fn a_zero_timer_expires_without_the_kernel() {
        let mut op = TimeoutOp {
            after: Duration::ZERO,
            ts: Timespec::new(),
        };
        let cx = LowerCx {
            target: None,
            buf_group: 0,
            dgram_group: 1,
            recv_len: 0,
            recv_total_cap: false,
        };
        assert_eq!(op.lower(&cx).err(), Some(-libc::ETIME));
    }
}
