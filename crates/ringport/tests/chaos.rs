//! Chaos: seeded random sequences of operations, driven from several
//! threads on loopback sockets, with the completion-port contract checked
//! after every case:
//!
//! * every operation that was posted completes exactly once (pooled receives
//!   and multishot accepts: completions with `more()` set, numbered
//!   0, 1, 2, … by `seq`, then exactly one final completion); a refused
//!   post never completes; user packets come back once, as posted;
//! * every buffer comes back in its completion (receive buffers are tagged
//!   with their user value in their first bytes and by their capacity; send
//!   buffers must come back byte for byte);
//! * nothing is cancelled, fails or ends early without a cause the test
//!   made (a cancel, a closed handle, a client that closed or reset, a
//!   shutdown); a stale `OpId` cancels nothing;
//! * the bytes the port received are exactly what the client wrote, in
//!   lane order, and the client receives what the completed sends say was
//!   sent;
//! * no descriptor leaks (`/proc/self/fd` before and after each case), and
//!   nothing hangs (every wait is bounded; a case that exceeds its bound
//!   fails with its seed).
//!
//! A case is a port with random settings, a loopback listener, 1–4 driver
//! threads each running a script of random [`Action`]s (the script is fixed
//! by the seed; how the threads interleave is not), then a wind-down by the
//! main thread that lets every operation finish and checks the streams.
//! Some cases shut the port down from a driver thread in the middle.
//!
//! Replay a failing case with the seed it prints:
//!
//! ```text
//! CHAOS_SEED=<seed> cargo test --release -p ringport --test chaos -- uring::chaos
//! ```
//!
//! `CHAOS_SEED=<n>` runs the case with seed `n` (and `CHAOS_CASES` cases
//! from there, default 1); `CHAOS_SEED=random` starts from a clock-chosen
//! seed; `CHAOS_CASES=<n>` sets the number of cases (default 2000);
//! `CHAOS_REPEAT=<n>` runs each case `n` times (thread interleavings vary
//! between runs, so a timing-dependent failure may need a few);
//! `CHAOS_TRACE=1` prints every action of every case.

mod common;

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use ringport::op;
use ringport::{BackendKind, Completion, CompletionPort, GetError, Handle, OpId, OpKind};

/// The first seed of a default run; case `i` runs with seed `FIRST_SEED + i`.
const FIRST_SEED: u64 = 0xC4A0_5000;
/// Cases per backend in a default run.
const DEFAULT_CASES: u64 = 2000;
/// The bound on one case, from start to the last descriptor closed.
const CASE_LIMIT: Duration = Duration::from_secs(20);
/// Clients one case connects at most (well under the listen backlog, so a
/// connect never waits for an accept).
const MAX_CLIENTS: usize = 8;
/// Completion key of the listener; connections get keys from `FIRST_CONN_KEY`.
const LISTENER_KEY: u64 = 100;
const FIRST_CONN_KEY: u64 = 1000;

both_backends!(
    chaos,
    pooled_receive_ends_after_a_reset_with_many_chunks_pending,
    posts_racing_shutdown_are_refused_or_drained,
);

/// The tests of this binary run one at a time: descriptor counts are per
/// process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn chaos(kind: BackendKind) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if common::port(kind, 1).is_none() {
        return;
    }
    let plan = Plan::from_env();
    let module = match kind {
        BackendKind::IoUring => "uring",
        _ => "epoll",
    };
    let started = Instant::now();
    let mut total = Stats::default();
    for i in 0..plan.cases {
        let seed = plan.first.wrapping_add(i);
        for _ in 0..plan.repeat {
            match run_case(kind, seed, plan.trace) {
                Ok(stats) => total.add(&stats),
                Err(report) => panic!(
                    "chaos case failed on {kind}, seed {seed}:\n{report}\n\
                     replay: CHAOS_SEED={seed} cargo test --release -p ringport \
                     --test chaos -- {module}::chaos"
                ),
            }
        }
    }
    eprintln!(
        "chaos on {kind}: {} cases (seeds {}..={}) in {:.1?}: {total}",
        plan.cases * u64::from(plan.repeat),
        plan.first,
        plan.first.wrapping_add(plan.cases.saturating_sub(1)),
        started.elapsed(),
    );
}

/// Found by the chaos test (seed 3298840640 on io_uring): a client writes
/// more than 33 pool buffers' worth and resets the connection before the
/// pooled receive is posted. The receive delivers every byte, then must end
/// (`ECONNRESET` or end of stream). On io_uring (Linux 6.18) the multishot
/// receive never posts its final completion: after 32 chunks in a row the
/// kernel stops retrying and waits for the socket to signal again, which a
/// reset socket never does; with 33 chunks or fewer it ends correctly.
fn pooled_receive_ends_after_a_reset_with_many_chunks_pending(kind: BackendKind) {
    use std::os::fd::{AsFd, AsRawFd};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if common::port(kind, 1).is_none() {
        return;
    }
    let port = CompletionPort::builder()
        .backend(kind)
        .concurrency(1)
        .pool_buffer_size(64)
        .pool_buffers(256)
        .build()
        .unwrap();
    // A listener of this test's own (not `common::pair`'s per-thread one,
    // which would close when this test's thread ends, in the middle of the
    // next test's descriptor count).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let h = port.associate(listener.accept().unwrap().0, 1).unwrap();
    drop(listener);
    let sent = common::pattern(5, 40 * 64 + 20);
    client.write_all(&sent).unwrap();
    common::set_linger_zero(&client);
    drop(client);
    // Wait until the server side has the reset (POLLHUP), so that it is
    // there before the receive starts.
    let mut pfd = libc::pollfd {
        fd: h.as_fd().as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    let limit_ms = common::LIMIT.map_or(-1, |d| d.as_millis() as i32);
    // SAFETY: one valid pollfd; the descriptor stays open (the handle is
    // alive) for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, limit_ms) };
    assert!(
        n == 1 && pfd.revents & libc::POLLHUP != 0,
        "the reset arrived: {pfd:?}"
    );
    let id = port.submit(op::RecvPooled::new(&h).user(5)).unwrap();
    let mut got = Vec::new();
    let mut chunks = 0;
    let end = loop {
        let mut c = port.get(common::LIMIT).unwrap_or_else(|e| {
            panic!(
                "{kind}: no final completion within {:?} after {} of {} bytes in {chunks} \
                 chunks ({e}); outstanding() = {}",
                common::LIMIT.unwrap(),
                got.len(),
                sent.len(),
                port.outstanding()
            )
        });
        assert_eq!((c.kind(), c.id()), (OpKind::RecvPooled, id));
        if !c.more() {
            break c.result().map_err(|e| e.raw_os_error());
        }
        chunks += 1;
        got.extend_from_slice(c.data());
        port.recycle(c.take_buf::<Vec<u8>>().unwrap());
    };
    assert!(
        matches!(end, Ok(0) | Err(Some(libc::ECONNRESET))),
        "{kind}: ended with {end:?}"
    );
    assert!(
        got == sent,
        "{kind}: {} of {} bytes, in order",
        got.len(),
        sent.len()
    );
    assert_eq!(port.outstanding(), 0);
}

/// Found by the chaos test (seed 3298842087 on epoll, under ASan; replays
/// in release with `CHAOS_REPEAT=3000`): a timer posted by one thread while
/// another is inside `shutdown()` was accepted and was still outstanding
/// after `shutdown()` returned. `submit` checks that the port is open, then
/// inserts and starts the op; a shutdown that closes, cancels and drains in
/// between finds the op table empty and returns, and nobody ever cancels or
/// reaps the op that arrives after it. Here: threads post timers and
/// packets in a loop while another shuts the port down; once all have
/// stopped, nothing may be outstanding.
fn posts_racing_shutdown_are_refused_or_drained(kind: BackendKind) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if common::port(kind, 1).is_none() {
        return;
    }
    const ROUNDS: usize = 100;
    const POSTERS: usize = 3;
    let mut stranded = Vec::new();
    for round in 0..ROUNDS {
        let port = CompletionPort::builder()
            .backend(kind)
            .concurrency(POSTERS)
            .build()
            .unwrap();
        let start = Arc::new(std::sync::Barrier::new(POSTERS + 1));
        let posters: Vec<_> = (0..POSTERS)
            .map(|t| {
                let (port, start) = (port.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    // Bounded: until the port refuses, at most 10 000 posts.
                    for i in 0..10_000u64 {
                        let r = if (i + t as u64) % 2 == 0 {
                            port.submit(op::Timeout::new(Duration::from_secs(3600)).user(i))
                                .map(drop)
                        } else {
                            port.post(op::Packet::new(0).user(i))
                        };
                        if r.is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        start.wait();
        port.shutdown();
        for p in posters {
            p.join().unwrap();
        }
        if port.outstanding() != 0 {
            stranded.push((round, port.outstanding()));
        }
    }
    assert!(
        stranded.is_empty(),
        "{kind}: operations accepted while shutdown() ran were still outstanding after it \
         returned (round, outstanding): {stranded:?}"
    );
}

/// Which cases to run, from the environment.
struct Plan {
    first: u64,
    cases: u64,
    repeat: u32,
    trace: bool,
}

impl Plan {
    fn from_env() -> Plan {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seed = var("CHAOS_SEED");
        let first = match seed.as_deref() {
            None => FIRST_SEED,
            Some("random") => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let seed = nanos as u64 ^ (u64::from(std::process::id()) << 32);
                eprintln!("CHAOS_SEED=random: starting at seed {seed}");
                seed
            }
            Some(s) => s.parse().expect("CHAOS_SEED is a number or `random`"),
        };
        let default_cases = match seed.as_deref() {
            None | Some("random") => DEFAULT_CASES,
            Some(_) => 1,
        };
        let cases = var("CHAOS_CASES").map_or(default_cases, |v| {
            v.parse().expect("CHAOS_CASES is a number")
        });
        let repeat =
            var("CHAOS_REPEAT").map_or(1, |v| v.parse().expect("CHAOS_REPEAT is a number"));
        Plan {
            first,
            cases,
            repeat,
            trace: var("CHAOS_TRACE").is_some(),
        }
    }
}

// ---------------------------------------------------------------------------
// The actions. To cover a new operation: add a variant, give it a weight in
// `ACTIONS`, and say what its completions may look like in `What`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// `post`: a user packet.
    Post,
    /// `timeout`: short, zero, or an hour (only ends by a cancel).
    Timeout,
    /// A client connects to the listener (std, non-blocking afterwards).
    Connect,
    Accept,
    AcceptMulti,
    Recv,
    RecvPooled,
    Send,
    SendAll,
    /// `cancel` of a random operation of the case: outstanding, already
    /// completed (must say `NotFound`), or `OpId::NONE`.
    Cancel,
    CancelHandle,
    /// `close` of a clone of a connection's handle; the test keeps the
    /// other clone, on which posts must then be refused.
    Close,
    /// Drops the connection's handle (cancels its operations).
    DropHandle,
    /// Ends the listener: close, cancel_handle or drop.
    EndListener,
    ClientWrite,
    ClientRead,
    ClientShutdown,
    /// Drops the client; half of the time with SO_LINGER 0 (a reset).
    ClientDrop,
    Get,
    GetMany,
}

/// Each action with its weight.
const ACTIONS: &[(Action, u32)] = &[
    (Action::Post, 6),
    (Action::Timeout, 4),
    (Action::Connect, 5),
    (Action::Accept, 4),
    (Action::AcceptMulti, 1),
    (Action::Recv, 8),
    (Action::RecvPooled, 3),
    (Action::Send, 6),
    (Action::SendAll, 6),
    (Action::Cancel, 5),
    (Action::CancelHandle, 1),
    (Action::Close, 1),
    (Action::DropHandle, 1),
    (Action::EndListener, 1),
    (Action::ClientWrite, 8),
    (Action::ClientRead, 6),
    (Action::ClientShutdown, 1),
    (Action::ClientDrop, 1),
    (Action::Get, 12),
    (Action::GetMany, 6),
];

fn pick_action(rng: &mut SmallRng) -> Action {
    let total: u32 = ACTIONS.iter().map(|a| a.1).sum();
    let mut x = rng.random_range(0..total);
    for &(a, w) in ACTIONS {
        if x < w {
            return a;
        }
        x -= w;
    }
    unreachable!()
}

/// What a posted operation is, and so what its completions may be.
#[derive(Clone, Copy, Debug)]
enum What {
    Packet {
        value: usize,
    },
    Timeout {
        after: Duration,
    },
    Accept {
        multi: bool,
    },
    /// The buffer holds the user value (8 bytes) and has this capacity.
    Recv {
        cap: usize,
    },
    RecvPooled,
    /// The buffer is `common::pattern(user, len)`.
    Send {
        len: usize,
        all: bool,
    },
    Close,
}

impl What {
    fn kind(self) -> OpKind {
        match self {
            What::Packet { .. } => OpKind::Packet,
            What::Timeout { .. } => OpKind::Timeout,
            What::Accept { .. } => OpKind::Accept,
            What::Recv { .. } => OpKind::Recv,
            What::RecvPooled => OpKind::RecvPooled,
            What::Send { all: false, .. } => OpKind::Send,
            What::Send { all: true, .. } => OpKind::SendAll,
            What::Close => OpKind::Close,
        }
    }

    fn multishot(self) -> bool {
        matches!(self, What::Accept { multi: true } | What::RecvPooled)
    }
}

// ---------------------------------------------------------------------------
// The ledger: every operation of the case by its (unique) user value.

struct Rec {
    what: What,
    key: u64,
    posted_at: Instant,
    /// What the post returned.
    id: Option<OpId>,
    /// The id the first completion carried (it may come before the post
    /// returns).
    seen_id: Option<OpId>,
    returned: bool,
    refused: bool,
    final_seen: bool,
    final_seq: u64,
    /// `seq` of each `more()` completion.
    seqs: Vec<u64>,
    result: Option<Result<usize, i32>>,
    /// Received bytes by `seq`.
    data: Vec<(u64, Vec<u8>)>,
    /// A cancel cause exists: cancel(id) was called, or its handle was
    /// closed, cancelled or dropped.
    may_cancel: bool,
    /// The client shut down its writing side (or closed).
    peer_fin: bool,
    /// The client closed (maybe with a reset).
    peer_reset: bool,
}

impl Rec {
    /// Final completion and every `more()` completion before it dequeued.
    fn complete(&self) -> bool {
        self.final_seen && self.seqs.len() as u64 == self.final_seq
    }
    fn settled(&self) -> bool {
        self.refused || self.complete()
    }
}

#[derive(Default)]
struct Ledger {
    recs: HashMap<u64, Rec>,
    /// Users in post order (to pick cancels from).
    order: Vec<u64>,
    drivers_done: usize,
    exited: usize,
    stats: Stats,
}

#[derive(Default, Clone)]
struct Stats {
    cases: u64,
    shutdown_cases: u64,
    posted: u64,
    refused: u64,
    completions: u64,
    cancelled: u64,
    conns: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.shutdown_cases += o.shutdown_cases;
        self.posted += o.posted;
        self.refused += o.refused;
        self.completions += o.completions;
        self.cancelled += o.cancelled;
        self.conns += o.conns;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ops posted ({} refused as expected), {} completions ({} cancelled), \
             {} connections, {} KiB received, {} KiB sent, {} cases shut down mid-run",
            self.posted,
            self.refused,
            self.completions,
            self.cancelled,
            self.conns,
            self.bytes_in / 1024,
            self.bytes_out / 1024,
            self.shutdown_cases
        )
    }
}

// ---------------------------------------------------------------------------
// The case's shared state.

struct ListenerState {
    handle: Option<Handle>,
    /// Closed or cancelled: posts must be refused.
    refused: bool,
    accepts: Vec<u64>,
}

/// One accepted connection with its client.
struct Conn {
    key: u64,
    handle: Option<Handle>,
    /// Closed or cancelled: posts must be refused.
    refused: bool,
    close_posted: bool,
    /// The server side was closed, cancelled or dropped by a driver.
    ended_early: bool,
    client: Option<TcpStream>,
    client_fin: bool,
    client_dropped: bool,
    client_eof: bool,
    client_broken: bool,
    /// What the client wrote, and what it read.
    written: Vec<u8>,
    received: Vec<u8>,
    /// Read-lane and write-lane operations, in post order.
    reads: Vec<u64>,
    sends: Vec<u64>,
}

#[derive(Default)]
struct Pairing {
    clients: HashMap<SocketAddr, TcpStream>,
    servers: HashMap<SocketAddr, Handle>,
}

struct Case {
    seed: u64,
    port: CompletionPort,
    addr: SocketAddr,
    single: bool,
    start: Instant,
    deadline: Instant,
    trace_all: bool,
    listener: Mutex<ListenerState>,
    conns: Mutex<Vec<Arc<Mutex<Conn>>>>,
    pairing: Mutex<Pairing>,
    ledger: Mutex<Ledger>,
    changed: Condvar,
    next_user: AtomicU64,
    next_key: AtomicU64,
    clients_made: AtomicUsize,
    /// Set before `shutdown` is called, and after it returned.
    shut: AtomicBool,
    shut_done: AtomicBool,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    trace: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Case {
    fn fail(&self, msg: String) {
        let mut f = lock(&self.failures);
        if f.len() < 30 {
            f.push(msg);
        }
    }

    fn note(&self, t: usize, msg: impl FnOnce() -> String) {
        let line = format!("{:>8}us t{t} {}", self.start.elapsed().as_micros(), msg());
        if self.trace_all {
            eprintln!("seed {} {line}", self.seed);
        }
        lock(&self.trace).push(line);
    }

    fn user(&self) -> u64 {
        self.next_user.fetch_add(1, Ordering::Relaxed)
    }

    fn shut(&self) -> bool {
        self.shut.load(Ordering::SeqCst)
    }

    /// Enters an operation in the ledger before it is posted.
    fn insert(&self, user: u64, key: u64, what: What, peer_fin: bool, peer_reset: bool) {
        let mut l = lock(&self.ledger);
        l.recs.insert(
            user,
            Rec {
                what,
                key,
                posted_at: Instant::now(),
                id: None,
                seen_id: None,
                returned: false,
                refused: false,
                final_seen: false,
                final_seq: 0,
                seqs: Vec::new(),
                result: None,
                data: Vec::new(),
                may_cancel: false,
                peer_fin,
                peer_reset,
            },
        );
        l.order.push(user);
    }

    /// Records what a post returned. `refusal` says the handle was closed,
    /// so the post must be refused with `NotConnected`.
    fn posted(&self, user: u64, r: io::Result<OpId>, refusal: bool) {
        self.posted_since(user, r, refusal, false)
    }

    /// As `posted`; `after_shutdown` says `shutdown()` had returned before
    /// the post was made, so it must have been refused.
    fn posted_since(&self, user: u64, r: io::Result<OpId>, refusal: bool, after_shutdown: bool) {
        let shut = self.shut();
        let mut l = lock(&self.ledger);
        let rec = l.recs.get_mut(&user).expect("entered before the post");
        rec.returned = true;
        let what = rec.what;
        let mut msgs = Vec::new();
        let refused = match r {
            Ok(id) => {
                if after_shutdown {
                    msgs.push(format!(
                        "{what:?} (user {user}) posted after shutdown() returned was accepted as {id:?}"
                    ));
                }
                if refusal && !shut {
                    msgs.push(format!(
                        "{what:?} (user {user}) on a closed handle was accepted as {id:?}"
                    ));
                }
                rec.id = Some(id);
                if let Some(seen) = rec.seen_id.filter(|&s| s != id) {
                    msgs.push(format!(
                        "{what:?} (user {user}) was posted as {id:?} but completed as {seen:?}"
                    ));
                }
                false
            }
            Err(e) => {
                rec.refused = true;
                let expected = shut || (refusal && e.kind() == io::ErrorKind::NotConnected);
                if !expected {
                    msgs.push(format!("{what:?} (user {user}) was refused: {e}"));
                }
                if rec.final_seen || !rec.seqs.is_empty() {
                    msgs.push(format!(
                        "{what:?} (user {user}) was refused ({e}) but completed"
                    ));
                }
                true
            }
        };
        if refused {
            l.stats.refused += 1;
        } else {
            l.stats.posted += 1;
        }
        drop(l);
        for m in msgs {
            self.fail(m);
        }
    }

    /// Applies `f` to the records of `users`.
    fn mark<'a>(&self, users: impl IntoIterator<Item = &'a u64>, f: impl Fn(&mut Rec)) {
        let mut l = lock(&self.ledger);
        for u in users {
            if let Some(r) = l.recs.get_mut(u) {
                f(r);
            }
        }
    }

    fn pick_conn(&self, rng: &mut SmallRng) -> Option<Arc<Mutex<Conn>>> {
        let conns = lock(&self.conns);
        if conns.is_empty() {
            None
        } else {
            Some(conns[rng.random_range(0..conns.len())].clone())
        }
    }

    fn add_conn(&self, handle: Handle, client: TcpStream) {
        lock(&self.conns).push(Arc::new(Mutex::new(Conn {
            key: handle.key(),
            handle: Some(handle),
            refused: false,
            close_posted: false,
            ended_early: false,
            client: Some(client),
            client_fin: false,
            client_dropped: false,
            client_eof: false,
            client_broken: false,
            written: Vec::new(),
            received: Vec::new(),
            reads: Vec::new(),
            sends: Vec::new(),
        })));
        lock(&self.ledger).stats.conns += 1;
    }

    fn pair_client(&self, client: TcpStream) {
        let addr = client.local_addr().unwrap();
        let mut p = lock(&self.pairing);
        match p.servers.remove(&addr) {
            Some(h) => self.add_conn(h, client),
            None => {
                p.clients.insert(addr, client);
            }
        }
    }

    fn pair_server(&self, peer: SocketAddr, handle: Handle) {
        let mut p = lock(&self.pairing);
        match p.clients.remove(&peer) {
            Some(c) => self.add_conn(handle, c),
            None => {
                p.servers.insert(peer, handle);
            }
        }
    }

    /// Waits until `done` holds for the ledger, running `idle` (client I/O)
    /// between looks; fails the case at its deadline.
    fn wait(&self, what: &str, done: impl Fn(&Ledger) -> bool, idle: impl FnMut()) -> bool {
        self.wait_until(self.deadline, what, done, idle)
    }

    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn(&Ledger) -> bool,
        mut idle: impl FnMut(),
    ) -> bool {
        loop {
            idle();
            let l = lock(&self.ledger);
            if done(&l) {
                return true;
            }
            if Instant::now() >= deadline {
                let mut pending: Vec<String> = l
                    .order
                    .iter()
                    .filter_map(|u| {
                        let r = &l.recs[u];
                        (!r.settled()).then(|| {
                            format!(
                                "user {u} {:?} key {} id {:?} final {} seqs {:?}/{} may_cancel {}",
                                r.what,
                                r.key,
                                r.id,
                                r.final_seen,
                                r.seqs,
                                r.final_seq,
                                r.may_cancel
                            )
                        })
                    })
                    .collect();
                pending.truncate(12);
                drop(l);
                self.fail(format!(
                    "hang: still waiting for {what} after the case's bound of {CASE_LIMIT:?}; \
                     outstanding() = {}; unsettled operations:\n    {}",
                    self.port.outstanding(),
                    pending.join("\n    ")
                ));
                return false;
            }
            drop(
                self.changed
                    .wait_timeout(l, Duration::from_millis(1))
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// One case.

fn run_case(kind: BackendKind, seed: u64, trace_all: bool) -> Result<Stats, String> {
    let fds_before = common::fd_count();
    let mut rng = SmallRng::seed_from_u64(seed);
    let threads: usize = rng.random_range(1..=4);
    let concurrency = rng.random_range(1..=threads);
    let single = threads == 1 && rng.random_bool(0.3);
    let steps: usize = rng.random_range(5..=60);
    let shutdown_at = rng
        .random_bool(1.0 / 12.0)
        .then(|| (rng.random_range(0..threads), rng.random_range(0..steps)));
    let entries = [8, 64, 1024][rng.random_range(0..3)];
    let pool_size = [64, 700, 8192][rng.random_range(0..3)];
    let pool_bufs = [1, 4, 256][rng.random_range(0..3)];
    let settings = format!(
        "{threads} threads x {steps} steps, concurrency {concurrency}, single_thread {single}, \
         entries {entries}, pool {pool_bufs} x {pool_size} B, shutdown at {shutdown_at:?}"
    );
    let port = CompletionPort::builder()
        .backend(kind)
        .concurrency(concurrency)
        .single_thread(single)
        .entries(entries)
        .pool_buffer_size(pool_size)
        .pool_buffers(pool_bufs)
        .build()
        .map_err(|e| format!("the port could not be built ({settings}): {e}"))?;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lh = port.associate(listener, LISTENER_KEY).unwrap();
    let ctx = Arc::new(Case {
        seed,
        port,
        addr,
        single,
        start: Instant::now(),
        deadline: Instant::now() + CASE_LIMIT,
        trace_all,
        listener: Mutex::new(ListenerState {
            handle: Some(lh),
            refused: false,
            accepts: Vec::new(),
        }),
        conns: Mutex::new(Vec::new()),
        pairing: Mutex::new(Pairing::default()),
        ledger: Mutex::new(Ledger::default()),
        changed: Condvar::new(),
        next_user: AtomicU64::new(1),
        next_key: AtomicU64::new(FIRST_CONN_KEY),
        clients_made: AtomicUsize::new(0),
        shut: AtomicBool::new(false),
        shut_done: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        trace: Mutex::new(Vec::new()),
    });
    ctx.note(0, || format!("case {seed} on {kind}: {settings}"));

    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let ctx = ctx.clone();
            let script_seed = seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let shutdown_step = shutdown_at.filter(|s| s.0 == t).map(|s| s.1);
            std::thread::spawn(move || driver(&ctx, t, script_seed, steps, shutdown_step))
        })
        .collect();

    wind_down(&ctx, &mut rng, threads);

    // Stop the dequeuing threads and wait for them, bounded.
    ctx.stop.store(true, Ordering::SeqCst);
    let exited = ctx.wait_until(
        ctx.deadline.max(Instant::now()) + Duration::from_secs(5),
        "the threads to exit",
        |l| l.exited == threads,
        || {},
    );
    if !exited {
        // A thread is stuck inside the port: report; it cannot be joined.
        let failures = lock(&ctx.failures).join("\n  ");
        let trace = lock(&ctx.trace);
        let tail = trace.len().saturating_sub(80);
        return Err(format!(
            "settings: {settings}\nfailures:\n  {failures}\nlast actions:\n  {}",
            trace[tail..].join("\n  ")
        ));
    }
    for w in workers {
        if let Err(panic) = w.join() {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            ctx.fail(format!("a driver thread panicked: {msg}"));
        }
    }
    final_checks(&ctx);

    let mut stats = lock(&ctx.ledger).stats.clone();
    stats.cases = 1;
    stats.shutdown_cases = u64::from(ctx.shut());
    let failures = std::mem::take(&mut *lock(&ctx.failures));
    let trace = std::mem::take(&mut *lock(&ctx.trace));
    // Everything the case opened closes here: connections, clients, the
    // listener, then the port.
    drop(std::mem::take(&mut *lock(&ctx.conns)));
    drop(std::mem::take(&mut *lock(&ctx.pairing)));
    drop(lock(&ctx.listener).handle.take());
    let ctx = Arc::try_unwrap(ctx).unwrap_or_else(|_| panic!("the threads are joined"));
    drop(ctx);
    let fds_after = common::fd_count();
    let mut failures = failures;
    if failures.is_empty() && fds_after != fds_before {
        failures.push(format!(
            "descriptor leak: {fds_before} open before the case, {fds_after} after"
        ));
    }
    if failures.is_empty() {
        return Ok(stats);
    }
    let tail = trace.len().saturating_sub(80);
    Err(format!(
        "settings: {settings}\nfailures:\n  {}\nlast actions ({} of {}):\n  {}",
        failures.join("\n  "),
        trace.len() - tail,
        trace.len(),
        trace[tail..].join("\n  ")
    ))
}

/// Counts a thread out when it ends, even by a panic.
struct Exit<'a>(&'a Case);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        lock(&self.0.ledger).exited += 1;
        self.0.changed.notify_all();
    }
}

/// A driver thread: its script, then dequeuing until told to stop.
fn driver(ctx: &Case, t: usize, seed: u64, steps: usize, shutdown_step: Option<usize>) {
    let _exit = Exit(ctx);
    let mut rng = SmallRng::seed_from_u64(seed);
    for step in 0..steps {
        if Instant::now() >= ctx.deadline {
            ctx.fail(format!(
                "hang: thread {t} was still at step {step} at the case's bound"
            ));
            break;
        }
        if shutdown_step == Some(step) {
            ctx.note(t, || "shutdown".into());
            ctx.shut.store(true, Ordering::SeqCst);
            ctx.port.shutdown();
            ctx.shut_done.store(true, Ordering::SeqCst);
            if !ctx.port.is_shut_down() {
                ctx.fail("is_shut_down() is false after shutdown()".into());
            }
            if ctx.port.outstanding() != 0 {
                ctx.fail(format!(
                    "{} operations outstanding after shutdown() returned",
                    ctx.port.outstanding()
                ));
            }
        }
        let a = pick_action(&mut rng);
        act(ctx, t, &mut rng, a);
    }
    lock(&ctx.ledger).drivers_done += 1;
    ctx.changed.notify_all();
    while !ctx.stop.load(Ordering::SeqCst) {
        if Instant::now() >= ctx.deadline + Duration::from_secs(10) {
            ctx.fail(format!("thread {t} was not told to stop"));
            break;
        }
        if !dequeue(ctx, t, &mut rng, 1, Duration::from_millis(2)) {
            break;
        }
    }
}

/// Dequeues up to `max` completions (with `get_many` when `max > 1`) and
/// checks them. Returns false once the port is shut down.
fn dequeue(ctx: &Case, t: usize, rng: &mut SmallRng, max: usize, timeout: Duration) -> bool {
    let after_shutdown = ctx.shut_done.load(Ordering::SeqCst);
    let r = if max == 1 {
        ctx.port.get(Some(timeout)).map(|c| vec![c])
    } else {
        let mut out = Vec::new();
        ctx.port.get_many(&mut out, max, Some(timeout)).map(|n| {
            if n != out.len() || n == 0 || n > max {
                ctx.fail(format!("get_many returned {n}, appended {}", out.len()));
            }
            out
        })
    };
    match r {
        Ok(cs) => {
            for c in cs {
                if after_shutdown {
                    ctx.fail(format!("dequeued after shutdown() returned: {c:?}"));
                }
                on_completion(ctx, t, rng, c);
            }
            true
        }
        Err(GetError::TimedOut) => true,
        Err(GetError::Closed) => {
            if !ctx.shut() {
                ctx.fail("get said Closed on a port nobody shut down".into());
            }
            false
        }
        Err(GetError::Io(e)) => {
            ctx.fail(format!("get failed: {e}"));
            false
        }
    }
}

fn size(rng: &mut SmallRng, max_pow: u32) -> usize {
    let p = rng.random_range(0..=max_pow);
    rng.random_range(0..=(1usize << p))
}

fn act(ctx: &Case, t: usize, rng: &mut SmallRng, a: Action) {
    match a {
        Action::Post => {
            let user = ctx.user();
            let key = rng.random_range(0..4);
            let value = rng.random::<u32>() as usize;
            ctx.note(t, || format!("post key {key} user {user} value {value}"));
            ctx.insert(user, key, What::Packet { value }, false, false);
            let after = ctx.shut_done.load(Ordering::SeqCst);
            let r = ctx
                .port
                .post(op::Packet::new(value).key(key).user(user))
                .map(|()| OpId::NONE);
            ctx.posted_since(user, r, false, after);
        }
        Action::Timeout => {
            let after = match rng.random_range(0..10) {
                0 => Duration::ZERO,
                1 => Duration::from_secs(3600),
                _ => Duration::from_millis(rng.random_range(1..=8)),
            };
            let user = ctx.user();
            let key = rng.random_range(0..4);
            ctx.note(t, || format!("timeout {after:?} user {user}"));
            ctx.insert(user, key, What::Timeout { after }, false, false);
            let after_shutdown = ctx.shut_done.load(Ordering::SeqCst);
            let r = ctx.port.submit(op::Timeout::new(after).key(key).user(user));
            ctx.posted_since(user, r, false, after_shutdown);
        }
        Action::Connect => {
            if ctx.clients_made.fetch_add(1, Ordering::Relaxed) >= MAX_CLIENTS {
                return;
            }
            match TcpStream::connect(ctx.addr) {
                Ok(s) => {
                    s.set_nonblocking(true).unwrap();
                    s.set_nodelay(true).unwrap();
                    let local = s.local_addr().unwrap();
                    ctx.note(t, || format!("connect from {local}"));
                    ctx.pair_client(s);
                }
                // The listener was closed.
                Err(e) => ctx.note(t, || format!("connect failed: {e}")),
            }
        }
        Action::Accept | Action::AcceptMulti => {
            let multi = a == Action::AcceptMulti;
            let mut l = lock(&ctx.listener);
            let l = &mut *l;
            let Some(h) = l.handle.as_ref() else { return };
            let user = ctx.user();
            ctx.note(t, || format!("accept multi {multi} user {user}"));
            ctx.insert(user, LISTENER_KEY, What::Accept { multi }, false, false);
            l.accepts.push(user);
            let r = if multi {
                ctx.port.submit(op::Accept::new(h).multishot().user(user))
            } else {
                ctx.port.submit(op::Accept::new(h).user(user))
            };
            ctx.posted(user, r, l.refused);
        }
        Action::Recv
        | Action::RecvPooled
        | Action::Send
        | Action::SendAll
        | Action::CancelHandle
        | Action::Close
        | Action::DropHandle
        | Action::ClientWrite
        | Action::ClientRead
        | Action::ClientShutdown
        | Action::ClientDrop => {
            let Some(conn) = ctx.pick_conn(rng) else {
                return;
            };
            let mut conn = lock(&conn);
            conn_action(ctx, t, rng, a, &mut conn);
        }
        Action::Cancel => cancel_one(ctx, t, rng),
        Action::EndListener => {
            let mut l = lock(&ctx.listener);
            end_listener(ctx, t, rng, &mut l);
        }
        Action::Get => {
            let ms = rng.random_range(0..=2);
            dequeue(ctx, t, rng, 1, Duration::from_millis(ms));
        }
        Action::GetMany => {
            let max = rng.random_range(2..=8);
            let ms = rng.random_range(0..=2);
            dequeue(ctx, t, rng, max, Duration::from_millis(ms));
        }
    }
}

fn conn_action(ctx: &Case, t: usize, rng: &mut SmallRng, a: Action, conn: &mut Conn) {
    let key = conn.key;
    match a {
        Action::Recv | Action::RecvPooled | Action::Send | Action::SendAll => {
            let Some(h) = conn.handle.as_ref() else {
                return;
            };
            let user = ctx.user();
            let fin = conn.client_fin || conn.client_dropped;
            let reset = conn.client_dropped;
            let r = match a {
                Action::Recv => {
                    let pow = rng.random_range(0..=14);
                    let cap = 8 + rng.random_range(1..=(1usize << pow));
                    let mut buf = Vec::with_capacity(cap);
                    buf.extend_from_slice(&user.to_le_bytes());
                    ctx.note(t, || format!("recv key {key} user {user} cap {cap}"));
                    ctx.insert(user, key, What::Recv { cap }, fin, reset);
                    conn.reads.push(user);
                    ctx.port.submit(op::Recv::new(h, buf).user(user))
                }
                Action::RecvPooled => {
                    ctx.note(t, || format!("recv_pooled key {key} user {user}"));
                    ctx.insert(user, key, What::RecvPooled, fin, reset);
                    conn.reads.push(user);
                    ctx.port.submit(op::RecvPooled::new(h).user(user))
                }
                _ => {
                    let all = a == Action::SendAll;
                    let len = size(rng, 16);
                    ctx.note(t, || {
                        format!("send all {all} key {key} user {user} len {len}")
                    });
                    ctx.insert(user, key, What::Send { len, all }, fin, reset);
                    conn.sends.push(user);
                    let buf = common::pattern(user, len);
                    if all {
                        ctx.port.submit(op::SendAll::new(h, buf).user(user))
                    } else {
                        ctx.port.submit(op::Send::new(h, buf).user(user))
                    }
                }
            };
            ctx.posted(user, r, conn.refused);
        }
        Action::CancelHandle => {
            let Some(h) = conn.handle.as_ref() else {
                return;
            };
            ctx.note(t, || format!("cancel_handle key {key}"));
            conn.refused = true;
            conn.ended_early = true;
            ctx.mark(conn.reads.iter().chain(&conn.sends), |r| {
                r.may_cancel = true
            });
            ctx.port.cancel_handle(h);
        }
        Action::Close => {
            let Some(h) = conn.handle.as_ref() else {
                return;
            };
            if conn.close_posted {
                return;
            }
            let user = ctx.user();
            ctx.note(t, || format!("close key {key} user {user}"));
            conn.refused = true;
            conn.ended_early = true;
            conn.close_posted = true;
            ctx.mark(conn.reads.iter().chain(&conn.sends), |r| {
                r.may_cancel = true
            });
            ctx.insert(user, key, What::Close, false, false);
            let r = ctx.port.close(h.clone(), user).map(|()| OpId::NONE);
            ctx.posted(user, r, false);
        }
        Action::DropHandle => {
            if conn.handle.is_none() {
                return;
            }
            ctx.note(t, || format!("drop handle key {key}"));
            conn.refused = true;
            conn.ended_early = true;
            ctx.mark(conn.reads.iter().chain(&conn.sends), |r| {
                r.may_cancel = true
            });
            conn.handle = None;
        }
        Action::ClientWrite => {
            if conn.client_fin || conn.client_broken {
                return;
            }
            let Some(s) = conn.client.as_mut() else {
                return;
            };
            let mut data = vec![0; size(rng, 16).max(1)];
            rng.fill_bytes(&mut data);
            let r = s.write(&data);
            ctx.note(t, || {
                format!("client write key {key}: {} of {}", fmt_io(&r), data.len())
            });
            match r {
                Ok(n) => conn.written.extend_from_slice(&data[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server side is gone.
                Err(_) => conn.client_broken = true,
            }
        }
        Action::ClientRead => {
            let got = client_read(conn);
            ctx.note(t, || format!("client read key {key}: {got}"));
        }
        Action::ClientShutdown => {
            if conn.client_fin {
                return;
            }
            let Some(s) = conn.client.as_ref() else {
                return;
            };
            ctx.note(t, || format!("client shutdown(Write) key {key}"));
            conn.client_fin = true;
            ctx.mark(&conn.reads, |r| r.peer_fin = true);
            let _ = s.shutdown(Shutdown::Write);
        }
        Action::ClientDrop => {
            let Some(s) = conn.client.take() else { return };
            let reset = rng.random_bool(0.5);
            ctx.note(t, || format!("client drop key {key} reset {reset}"));
            conn.client_dropped = true;
            ctx.mark(conn.reads.iter().chain(&conn.sends), |r| {
                r.peer_fin = true;
                r.peer_reset = true;
            });
            if reset {
                common::set_linger_zero(&s);
            }
            drop(s);
        }
        _ => unreachable!("{a:?} is not a connection action"),
    }
}

fn fmt_io(r: &io::Result<usize>) -> String {
    match r {
        Ok(n) => n.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Reads what the client has (non-blocking); a description for the trace.
fn client_read(conn: &mut Conn) -> String {
    if conn.client_eof || conn.client_broken {
        return "(done)".into();
    }
    let Some(s) = conn.client.as_mut() else {
        return "(no client)".into();
    };
    let mut buf = [0u8; 32 * 1024];
    let before = conn.received.len();
    for _ in 0..64 {
        match s.read(&mut buf) {
            Ok(0) => {
                conn.client_eof = true;
                break;
            }
            Ok(n) => conn.received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                conn.client_broken = true;
                return format!("{} then {e}", conn.received.len() - before);
            }
        }
    }
    format!(
        "{}{}",
        conn.received.len() - before,
        if conn.client_eof { " then EOF" } else { "" }
    )
}

fn cancel_one(ctx: &Case, t: usize, rng: &mut SmallRng) {
    let pick = {
        let mut l = lock(&ctx.ledger);
        if l.order.is_empty() || rng.random_bool(0.05) {
            None
        } else {
            let user = l.order[rng.random_range(0..l.order.len())];
            let r = l.recs.get_mut(&user).unwrap();
            match r.id {
                Some(id) if id != OpId::NONE && !r.refused => {
                    let done = r.final_seen;
                    r.may_cancel = true;
                    Some((user, id, done))
                }
                _ => return,
            }
        }
    };
    let Some((user, id, done)) = pick else {
        ctx.note(t, || "cancel OpId::NONE".into());
        if ctx.port.cancel(OpId::NONE).is_ok() {
            ctx.fail("cancel(OpId::NONE) said Ok".into());
        }
        return;
    };
    let r = ctx.port.cancel(id);
    ctx.note(t, || {
        format!("cancel user {user} {id:?} (final dequeued: {done}): {r:?}")
    });
    match r {
        Ok(()) if done => ctx.fail(format!(
            "cancel of {id:?} (user {user}), whose final completion was already dequeued, said Ok"
        )),
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => ctx.fail(format!("cancel of {id:?} failed: {e}")),
    }
}

/// Ends the listener: close (keeping a clone), cancel_handle, or drop.
fn end_listener(ctx: &Case, t: usize, rng: &mut SmallRng, l: &mut ListenerState) {
    let Some(h) = l.handle.as_ref() else { return };
    let how = if l.refused { 2 } else { rng.random_range(0..3) };
    ctx.mark(&l.accepts, |r| r.may_cancel = true);
    l.refused = true;
    match how {
        0 => {
            let user = ctx.user();
            ctx.note(t, || format!("close listener user {user}"));
            ctx.insert(user, LISTENER_KEY, What::Close, false, false);
            let r = ctx.port.close(h.clone(), user).map(|()| OpId::NONE);
            ctx.posted(user, r, false);
        }
        1 => {
            ctx.note(t, || "cancel_handle listener".into());
            ctx.port.cancel_handle(h);
        }
        _ => {
            ctx.note(t, || "drop listener".into());
            l.handle = None;
        }
    }
}

// ---------------------------------------------------------------------------
// Completions.

fn on_completion(ctx: &Case, t: usize, rng: &mut SmallRng, mut c: Completion) {
    let user = c.user();
    // An accepted connection is associated (and paired with its client)
    // before the ledger hears of the completion, so that "every accept
    // complete" means "every connection known".
    let accepted = c.take_accepted().ok().map(|acc| {
        let (local, peer) = (acc.local, acc.peer);
        let key = ctx.next_key.fetch_add(1, Ordering::Relaxed);
        match ctx.port.associate(acc.socket, key) {
            Ok(h) => ctx.pair_server(peer, h),
            Err(e) if ctx.shut() => drop(e),
            Err(e) => ctx.fail(format!("associate of an accepted socket failed: {e}")),
        }
        (local, peer)
    });
    ctx.note(t, || {
        format!(
            "got {} key {} user {user} {:?} {:?} more {} seq {} len {:?}",
            c.kind().name(),
            c.key(),
            c.id(),
            c.result().map_err(|e| e.raw_os_error()),
            c.more(),
            c.seq(),
            c.data().len()
        )
    });
    let shut = ctx.shut();
    let mut msgs = Vec::new();
    let mut l = lock(&ctx.ledger);
    l.stats.completions += 1;
    if c.is_cancelled() {
        l.stats.cancelled += 1;
    }
    let Some(rec) = l.recs.get_mut(&user) else {
        drop(l);
        ctx.fail(format!("a completion nobody posted: {c:?}"));
        return;
    };
    let what = rec.what;
    let mut buf = c.take_buf::<Vec<u8>>();
    let buf_len = buf.as_ref().map(Vec::len);
    let mut bad = |m: String| {
        msgs.push(format!(
            "{what:?} (user {user}): {m}; got {c:?} with a buffer of {buf_len:?} bytes"
        ))
    };
    if c.kind() != what.kind() {
        bad(format!("kind {:?}, expected {:?}", c.kind(), what.kind()));
    }
    if c.key() != rec.key {
        bad(format!("key {}, expected {}", c.key(), rec.key));
    }
    if rec.refused {
        bad("completion of a post that was refused".into());
    }
    if !matches!(what, What::Close) {
        match (rec.id, rec.seen_id) {
            (Some(id), _) if id != c.id() => bad(format!("id {:?}, posted as {id:?}", c.id())),
            (None, Some(seen)) if seen != c.id() => bad(format!(
                "id {:?}, an earlier completion had {seen:?}",
                c.id()
            )),
            _ => rec.seen_id = Some(c.id()),
        }
    }
    let cancel_ok = rec.may_cancel || shut;
    let res = c.result().map_err(|e| e.raw_os_error().unwrap_or(0));
    if c.more() {
        if !what.multishot() {
            bad("more() on a single-shot operation".into());
        }
        let seq = c.seq();
        if rec.seqs.contains(&seq) {
            bad(format!("seq {seq} completed twice"));
        }
        if rec.final_seen && seq >= rec.final_seq {
            bad(format!(
                "seq {seq} after the final completion's {}",
                rec.final_seq
            ));
        }
        rec.seqs.push(seq);
        match what {
            What::Accept { .. } if res != Ok(0) || accepted.is_none() => {
                bad("a multishot accept's more() completion without a connection".into());
            }
            What::RecvPooled => match (res, buf.take()) {
                (Ok(n), Some(buf)) if n > 0 && buf.len() == n => {
                    push_data(&mut rec.data, seq, &buf);
                    if rng.random_bool(0.5) {
                        ctx.port.recycle(buf);
                    }
                }
                (res, buf) => bad(format!(
                    "a pooled chunk must carry its bytes: {res:?}, buffer {:?}",
                    buf.map(|b| b.len())
                )),
            },
            _ => {}
        }
    } else {
        if rec.final_seen {
            bad("completed twice".into());
        }
        rec.final_seen = true;
        rec.final_seq = c.seq();
        rec.result = Some(res);
        if !what.multishot() && c.seq() != 0 {
            bad(format!("seq {} on a single-shot operation", c.seq()));
        }
        if let Some(&s) = rec.seqs.iter().find(|&&s| s >= c.seq()) {
            bad(format!("final seq {} but chunk {s} came before", c.seq()));
        }
        let cancelled = res == Err(libc::ECANCELED);
        if cancelled && !cancel_ok {
            bad("cancelled, but nothing cancelled it".into());
        }
        match what {
            What::Packet { value } => {
                if res != Ok(value) || c.id() != OpId::NONE {
                    bad(format!("a packet must come back as posted, value {value}"));
                }
            }
            What::Close => {
                if res != Ok(0) {
                    bad("a close completes with Ok(0)".into());
                }
            }
            What::Timeout { after } => match res {
                Ok(0) => {
                    if rec.posted_at.elapsed() < after {
                        bad(format!("fired after {:?}", rec.posted_at.elapsed()));
                    }
                }
                Err(libc::ECANCELED) => {}
                _ => bad("a timer completes with Ok(0) or cancelled".into()),
            },
            What::Accept { multi } => match (res, &accepted) {
                (Ok(0), Some((local, _))) if !multi => {
                    if *local != ctx.addr {
                        bad(format!("accepted on {local}, listening on {}", ctx.addr));
                    }
                }
                (Err(libc::ECANCELED), None) => {}
                _ => bad("an accept ends with a connection (single) or cancelled".into()),
            },
            What::Recv { cap } => {
                match buf.take() {
                    Some(buf) => {
                        if buf.capacity() != cap || buf.len() < 8 || buf[..8] != user.to_le_bytes()
                        {
                            bad(format!(
                                "not the buffer posted (capacity {}, length {})",
                                buf.capacity(),
                                buf.len()
                            ));
                        } else if let Ok(n) = res {
                            if buf.len() != 8 + n {
                                bad(format!("{n} bytes received, buffer length {}", buf.len()));
                            }
                            push_data(&mut rec.data, 0, &buf[8..]);
                        } else if buf.len() != 8 {
                            bad("a failed receive grew its buffer".into());
                        }
                    }
                    None => bad("the buffer did not come back".into()),
                }
                match res {
                    Ok(0) if !rec.peer_fin => {
                        bad("end of stream, but the client did not close".into())
                    }
                    Ok(_) | Err(libc::ECANCELED) => {}
                    Err(libc::ECONNRESET) if rec.peer_reset => {}
                    Err(_) => bad("an error nothing caused".into()),
                }
            }
            What::RecvPooled => match res {
                Ok(0) if rec.peer_fin => {}
                Ok(0) => bad("end of stream, but the client did not close".into()),
                Ok(_) => bad("a final pooled completion with data".into()),
                Err(libc::ECANCELED) => {}
                Err(libc::ECONNRESET) if rec.peer_reset => {}
                Err(_) => bad("an error nothing caused".into()),
            },
            What::Send { len, all } => {
                match buf.take() {
                    Some(buf) => {
                        if buf.len() != len || buf != common::pattern(user, len) {
                            bad("the buffer that came back is not the one sent".into());
                        }
                    }
                    None => bad("the buffer did not come back".into()),
                }
                match res {
                    Ok(n) if n == len => {}
                    Ok(n) if !all && n > 0 && n < len => {}
                    Ok(n) => bad(format!("{n} of {len} bytes sent")),
                    Err(libc::ECANCELED) => {}
                    Err(libc::EPIPE | libc::ECONNRESET) if rec.peer_reset => {}
                    Err(_) => bad("an error nothing caused".into()),
                }
            }
        }
    }
    drop(l);
    ctx.changed.notify_all();
    for m in msgs {
        ctx.fail(m);
    }
}

fn push_data(data: &mut Vec<(u64, Vec<u8>)>, seq: u64, bytes: &[u8]) {
    data.push((seq, bytes.to_vec()));
}

// ---------------------------------------------------------------------------
// Wind-down and the end-of-case checks.

/// Reads every client (non-blocking).
fn read_clients(ctx: &Case) {
    let conns: Vec<_> = lock(&ctx.conns).clone();
    for c in conns {
        client_read(&mut lock(&c));
    }
}

fn all(l: &Ledger, users: &[u64]) -> bool {
    users.iter().all(|u| l.recs[u].settled())
}

/// Lets every operation finish (the main thread; the drivers dequeue), then
/// checks the streams of every connection.
fn wind_down(ctx: &Case, rng: &mut SmallRng, threads: usize) {
    const T: usize = 9; // the main thread, in the trace
    if !ctx.wait("the scripts to end", |l| l.drivers_done == threads, || {}) {
        return;
    }
    if ctx.shut() {
        return;
    }
    // 1. No more connections: end the listener, let its accepts finish.
    let accepts = {
        let mut l = lock(&ctx.listener);
        end_listener(ctx, T, rng, &mut l);
        l.accepts.clone()
    };
    if !ctx.wait("the accepts to complete", |l| all(l, &accepts), || {}) {
        return;
    }
    let conns: Vec<_> = lock(&ctx.conns).clone();
    // 2. A pooled receive to the end of stream on every open connection.
    for c in &conns {
        let mut c = lock(c);
        let c = &mut *c;
        if let (Some(h), false) = (c.handle.as_ref(), c.refused) {
            let user = ctx.user();
            let key = c.key;
            ctx.note(T, || format!("drain: recv_pooled key {key} user {user}"));
            ctx.insert(
                user,
                key,
                What::RecvPooled,
                c.client_fin || c.client_dropped,
                c.client_dropped,
            );
            c.reads.push(user);
            let r = ctx.port.submit(op::RecvPooled::new(h).user(user));
            ctx.posted(user, r, false);
        }
    }
    // 3. Every send completes (the clients read), then the clients finish
    //    writing and every receive completes.
    let sends: Vec<u64> = conns.iter().flat_map(|c| lock(c).sends.clone()).collect();
    if !ctx.wait(
        "the sends to complete",
        |l| all(l, &sends),
        || read_clients(ctx),
    ) {
        return;
    }
    for c in &conns {
        let mut c = lock(c);
        if c.client.is_some() && !c.client_fin {
            c.client_fin = true;
            ctx.mark(&c.reads, |r| r.peer_fin = true);
            let _ = c.client.as_ref().unwrap().shutdown(Shutdown::Write);
        }
    }
    let reads: Vec<u64> = conns.iter().flat_map(|c| lock(c).reads.clone()).collect();
    if !ctx.wait(
        "the receives to complete",
        |l| all(l, &reads),
        || read_clients(ctx),
    ) {
        return;
    }
    // 4. Close the server sides; cancel the hour-long timers.
    for c in &conns {
        let mut c = lock(c);
        let Some(h) = c.handle.take() else { continue };
        let key = c.key;
        if !c.refused && rng.random_bool(0.5) {
            let user = ctx.user();
            ctx.note(T, || format!("close key {key} user {user}"));
            ctx.insert(user, key, What::Close, false, false);
            let r = ctx.port.close(h, user).map(|()| OpId::NONE);
            ctx.posted(user, r, false);
        } else if !c.refused && rng.random_bool(0.5) {
            ctx.note(T, || format!("cancel_handle and drop key {key}"));
            ctx.port.cancel_handle(&h);
        } else {
            ctx.note(T, || format!("drop key {key}"));
            drop(h);
        }
    }
    let timers: Vec<(u64, OpId)> = {
        let mut l = lock(&ctx.ledger);
        l.recs
            .iter_mut()
            .filter(|(_, r)| matches!(r.what, What::Timeout { .. }) && !r.settled())
            .filter_map(|(&u, r)| {
                r.may_cancel = true;
                r.id.map(|id| (u, id))
            })
            .collect()
    };
    for (user, id) in timers {
        let r = ctx.port.cancel(id);
        ctx.note(T, || format!("cancel timer user {user}: {r:?}"));
    }
    if !ctx.wait(
        "every operation to complete",
        |l| l.recs.values().all(Rec::settled),
        || read_clients(ctx),
    ) {
        return;
    }
    // 5. The clients read to the end of stream, then the streams are
    //    checked.
    for c in &conns {
        let mut c = lock(c);
        if let Some(s) = c.client.as_ref() {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(
                ctx.deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        }
        client_read_to_end(&mut c);
        check_streams(ctx, &c);
    }
}

fn client_read_to_end(conn: &mut Conn) {
    let Some(s) = conn.client.as_mut() else {
        return;
    };
    if conn.client_broken {
        return;
    }
    let mut buf = [0u8; 32 * 1024];
    while !conn.client_eof {
        match s.read(&mut buf) {
            Ok(0) => conn.client_eof = true,
            Ok(n) => conn.received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                conn.client_broken = true;
                return;
            }
        }
    }
}

fn check_streams(ctx: &Case, conn: &Conn) {
    let l = lock(&ctx.ledger);
    // What the port received, in read-lane order, is what the client wrote.
    let mut got = Vec::new();
    for u in &conn.reads {
        let r = &l.recs[u];
        let mut data: Vec<_> = r.data.iter().collect();
        data.sort_by_key(|d| d.0);
        for d in data {
            got.extend_from_slice(&d.1);
        }
    }
    let key = conn.key;
    let strict_in = !conn.ended_early && !conn.client_dropped;
    if !conn.written.starts_with(&got) {
        let at = got
            .iter()
            .zip(&conn.written)
            .take_while(|(a, b)| a == b)
            .count();
        ctx.fail(format!(
            "key {key}: the port received {} bytes that differ from what the client wrote \
             ({} bytes) at byte {at}",
            got.len(),
            conn.written.len()
        ));
    } else if strict_in && got.len() != conn.written.len() {
        ctx.fail(format!(
            "key {key}: the port received {} of the {} bytes the client wrote before its FIN",
            got.len(),
            conn.written.len()
        ));
    }
    // What the client received starts with the sends that completed in
    // full, in write-lane order (after a cancelled or failed send, what
    // went out of it is unknown).
    let mut expect = Vec::new();
    let mut all_ok = true;
    for u in &conn.sends {
        let r = &l.recs[u];
        if r.refused {
            continue;
        }
        match (r.what, r.result) {
            (What::Send { len, .. }, Some(Ok(n))) => {
                expect.extend_from_slice(&common::pattern(*u, len)[..n])
            }
            _ => {
                all_ok = false;
                break;
            }
        }
    }
    let mut stats = (got.len() as u64, conn.received.len() as u64);
    if conn.client.is_none() {
        stats.1 = 0;
    } else {
        let n = expect.len().min(conn.received.len());
        if conn.received[..n] != expect[..n] {
            let at = conn
                .received
                .iter()
                .zip(&expect)
                .take_while(|(a, b)| a == b)
                .count();
            ctx.fail(format!(
                "key {key}: the client received bytes that differ from the completed sends at \
                 byte {at} (received {}, sends completed {})",
                conn.received.len(),
                expect.len()
            ));
        } else if !conn.ended_early
            && all_ok
            && (conn.received.len() != expect.len() || !conn.client_eof)
        {
            ctx.fail(format!(
                "key {key}: the client received {} bytes{} but the sends completed {} bytes",
                conn.received.len(),
                if conn.client_eof {
                    " and EOF"
                } else {
                    " and no EOF"
                },
                expect.len()
            ));
        }
    }
    drop(l);
    let mut l = lock(&ctx.ledger);
    l.stats.bytes_in += stats.0;
    l.stats.bytes_out += stats.1;
}

/// After the threads have stopped: nothing outstanding, nothing left to
/// dequeue, every connection accepted was one of ours.
fn final_checks(ctx: &Case) {
    let shut = ctx.shut();
    if !lock(&ctx.failures).is_empty() {
        return; // the wind-down stopped early; the port's state is moot
    }
    if ctx.port.outstanding() != 0 {
        ctx.fail(format!(
            "outstanding() = {} after every operation completed",
            ctx.port.outstanding()
        ));
    }
    if shut {
        if !matches!(ctx.port.get(Some(Duration::ZERO)), Err(GetError::Closed)) {
            ctx.fail("get after shutdown did not say Closed".into());
        }
        return;
    }
    if !ctx.single {
        match ctx.port.get(Some(Duration::ZERO)) {
            Err(GetError::TimedOut) => {}
            other => ctx.fail(format!("a completion more than posted: {other:?}")),
        }
    }
    let p = lock(&ctx.pairing);
    if !p.servers.is_empty() {
        ctx.fail(format!(
            "accepted connections from peers nobody connected: {:?}",
            p.servers.keys().collect::<Vec<_>>()
        ));
    }
}
