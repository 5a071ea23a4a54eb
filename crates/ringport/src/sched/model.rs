//! Loom models of the scheduler's protocol (PROTOCOL.md), run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p ringport --release --lib sched::model
//! ```
//!
//! The kernel is a fake: a queue of completions and a "woken" flag under a
//! loom mutex, and `poll` blocks on a loom condition variable until either
//! is set, as `io_uring_enter` or `epoll_wait` would. A lost wake-up leaves
//! every thread blocked, which loom reports as a deadlock; a completion
//! delivered twice or never fails the model's own checks.

use std::io;
use std::sync::{Arc as StdArc, Weak};
use std::time::Duration;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};

use super::{Kernel, Sched, SlotOwner};
use crate::completion::Completion;

#[derive(Default)]
struct KernelState {
    /// Completions the "kernel" has finished, not yet reaped.
    done: Vec<Completion>,
    woken: bool,
}

struct FakeKernel {
    sched: Sched,
    state: Mutex<KernelState>,
    cv: Condvar,
    me: Weak<FakeKernel>,
}

impl FakeKernel {
    fn new(concurrency: usize) -> StdArc<FakeKernel> {
        StdArc::new_cyclic(|me| FakeKernel {
            sched: Sched::new(1, concurrency, false),
            state: Mutex::new(KernelState::default()),
            cv: Condvar::new(),
            me: me.clone(),
        })
    }

    /// The kernel finishes an operation (its completion waits to be reaped).
    fn finish(&self, user: u64) {
        let mut st = self.state.lock().unwrap();
        st.done.push(Completion::packet(0, user, 0));
        self.cv.notify_all();
    }

    /// One `get` returning the user value.
    fn get(&self) -> u64 {
        let mut out = Vec::new();
        self.sched
            .get(self, None, &mut out, 1)
            .expect("a completion");
        assert_eq!(out.len(), 1);
        out[0].user()
    }

    /// One `get`, then gives the slot back (as the thread's next `get`
    /// would): no slot is left to the thread-local destructor at the
    /// thread's exit, which loom cannot run inside its model.
    fn get_and_leave(&self) -> u64 {
        let user = self.get();
        self.sched.leave_and_notify(self);
        user
    }
}

impl Kernel for FakeKernel {
    fn poll(&self, timeout: Option<Duration>) -> io::Result<()> {
        let done = {
            let mut st = self.state.lock().unwrap();
            loop {
                if !st.done.is_empty() {
                    break std::mem::take(&mut st.done);
                }
                if st.woken || timeout == Some(Duration::ZERO) {
                    st.woken = false;
                    break Vec::new();
                }
                st = self.cv.wait(st).unwrap();
            }
        };
        for c in done {
            self.sched.deliver(self, c);
        }
        Ok(())
    }

    fn wake(&self) {
        self.state.lock().unwrap().woken = true;
        self.cv.notify_all();
    }

    fn flush(&self) {}

    fn can_poll_here(&self) -> bool {
        true
    }

    fn owner(&self) -> Weak<dyn SlotOwner> {
        self.me.clone()
    }
}

impl SlotOwner for FakeKernel {
    fn give_back(&self) {
        self.sched.give_back(self);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// A user packet posted while the only waiter is between its look at the
/// queue and taking the poller seat: it must not sleep in the kernel with
/// the packet queued (the lost wake-up of rule 3).
#[test]
fn a_post_races_a_waiter_taking_the_poller_seat() {
    model(|| {
        let k = FakeKernel::new(1);
        let waiter = {
            let k = k.clone();
            loom::thread::spawn(move || k.get_and_leave())
        };
        assert!(k.sched.post(&*k, Completion::packet(0, 7, 0)));
        assert_eq!(waiter.join().unwrap(), 7);
    });
}

/// Two waiters, concurrency 1, two kernel completions: each is handed out
/// exactly once, never to two running threads at a time, and the second
/// waits for the first thread to give its slot back.
#[test]
fn kernel_completions_respect_the_concurrency_cap() {
    model(|| {
        let k = FakeKernel::new(1);
        let running = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (k, running) = (k.clone(), running.clone());
                loom::thread::spawn(move || {
                    let user = k.get();
                    assert_eq!(running.fetch_add(1, Ordering::SeqCst), 0, "cap exceeded");
                    running.fetch_sub(1, Ordering::SeqCst);
                    k.sched.leave_and_notify(&*k);
                    user
                })
            })
            .collect();
        k.finish(1);
        k.finish(2);
        let mut got: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2], "each completion exactly once");
    });
}

/// A thread that runs a completion and blocks on something else frees its
/// slot: with concurrency 1, another waiter runs the next completion
/// meanwhile (otherwise both would wait for each other).
#[test]
fn blocking_frees_the_slot_for_another_waiter() {
    model(|| {
        let k = FakeKernel::new(1);
        let second_ran = Arc::new((Mutex::new(false), Condvar::new()));
        assert!(k.sched.post(&*k, Completion::packet(0, 1, 0)));
        let first = {
            let (k, second_ran) = (k.clone(), second_ran.clone());
            loom::thread::spawn(move || {
                let user = k.get();
                assert!(k.sched.begin_blocking(&*k));
                // The blocking call: waits for the other worker's result.
                let (lock, cv) = &*second_ran;
                let mut ran = lock.lock().unwrap();
                while !*ran {
                    ran = cv.wait(ran).unwrap();
                }
                drop(ran);
                k.sched.end_blocking();
                k.sched.leave_and_notify(&*k);
                user
            })
        };
        let second = {
            let (k, second_ran) = (k.clone(), second_ran.clone());
            loom::thread::spawn(move || {
                let user = k.get_and_leave();
                let (lock, cv) = &*second_ran;
                *lock.lock().unwrap() = true;
                cv.notify_all();
                user
            })
        };
        k.finish(2);
        let mut got = [first.join().unwrap(), second.join().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// A completion handed to a parked thread (last in, first out) reaches it
/// with its slot, while the poller keeps the seat.
#[test]
fn a_queued_completion_is_handed_to_a_parked_thread() {
    model(|| {
        let k = FakeKernel::new(2);
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let k = k.clone();
                loom::thread::spawn(move || k.get_and_leave())
            })
            .collect();
        assert!(k.sched.post(&*k, Completion::packet(0, 1, 0)));
        k.finish(2);
        let mut got: Vec<u64> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}
