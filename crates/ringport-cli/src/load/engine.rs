//! The stream load loop (TCP or Unix stream sockets): one completion port,
//! one thread, every connection a small state machine driven by its
//! completions.
//!
//! Echo mode: per connection one receive stays posted and up to `pipeline`
//! messages are in flight (each a `send_all` of `size` bytes cut from a seeded
//! random block at a per-message offset). Received bytes are compared with
//! what was sent, in order, as they arrive; a message's latency runs from the
//! batch that sent it to the batch that completed its echo. Churn mode: each
//! of `conns` slots connects, sends one message, reads it back, closes and
//! starts over.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::{RngCore, SeedableRng};
use ringport::op;
use ringport::{Completion, CompletionPort, GetError, Handle, OpKind};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::progress::Progress;
use super::stats::{secs, Latency, Report};
use super::{Config, Mode, Target};

/// Moments the caller may want to act on (the bench samples the server's CPU
/// time at both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every connection is up and the warm-up is over: counting starts.
    WindowStart,
    /// The measured window is over: counting stopped.
    WindowEnd,
}

/// Completion key of the rate/retry timer.
const TIMER: u64 = u64::MAX;
/// Period of the timer that refills the rate limiter and retries connects.
const TICK: Duration = Duration::from_millis(1);
/// Longest the connect phase may take before the warm-up starts anyway.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
/// Completions taken per `get_many`.
const BATCH: usize = 256;
/// Distinct message start offsets in the random block.
const SPAN: usize = 1 << 16;
/// Errors logged individually before going quiet.
const LOGGED_ERRORS: u64 = 5;
/// Distinct error kinds counted by name; the rest are counted together.
const ERROR_KINDS: usize = 32;
/// Shortest wait for an echo that counts a connection as unanswered at the
/// end of the window (otherwise half the window).
const UNANSWERED_MIN: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Connecting,
    Warmup,
    Window,
    Done,
}

#[derive(Default)]
struct Conn {
    handle: Option<Handle>,
    /// Churn: bumped for each new connection of the slot, so completions of
    /// the previous one are recognised and ignored.
    gen: u32,
    up: bool,
    /// Waiting for a rate token (echo: to send; churn: to connect).
    parked: bool,
    rng: u64,
    /// The messages whose echo is awaited: `len` entries of the
    /// connection's `pipeline` slots in `Engine::inflight`, from `head`.
    head: usize,
    len: usize,
    /// Bytes of the front message already verified.
    pos: usize,
    /// Messages the connection may still send now (pipeline slots).
    credits: usize,
    started: Option<Instant>,
    /// Messages (churn: connections) completed in the window.
    window_done: u64,
}

impl Conn {
    fn next_offset(&mut self) -> usize {
        // xorshift64*: a reproducible per-connection sequence of offsets.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % SPAN
    }
}

struct Engine<'a> {
    cfg: &'a Config,
    /// Where every connection goes (an IP address or a Unix path).
    to: SockAddr,
    unix: bool,
    port: CompletionPort,
    block: Vec<u8>,
    conns: Vec<Conn>,
    /// Offsets and send times of the messages in flight, `pipeline` slots
    /// per connection (one flat array: no allocation per connection).
    inflight: Vec<(usize, Instant)>,
    /// Send buffers handed back by completed sends, reused last in, first
    /// out (the most recently sent is still in cache).
    send_bufs: Vec<Vec<u8>>,
    recv_cap: usize,
    hist: Histogram<u64>,
    stage: Stage,
    stage_start: Instant,
    window: Option<(Instant, Instant)>,
    msgs: u64,
    /// Messages completed in any stage (for the progress line).
    done_total: u64,
    errors: u64,
    /// `errors` by kind (the message without the connection number).
    error_kinds: BTreeMap<String, u64>,
    up: usize,
    /// `up` when the window began.
    up_at_start: usize,
    /// Echo: connections neither up nor failed when the window began (their
    /// connect outlasted `CONNECT_LIMIT`).
    connecting_at_start: usize,
    dead: usize,
    mismatch: Option<String>,
    /// Why and where the run stopped before its window ended.
    stopped_early: Option<String>,
    tokens: f64,
    last_refill: Instant,
    parked: VecDeque<usize>,
    timer_posted: bool,
    retry: VecDeque<usize>,
}

/// Runs one stream load (TCP or Unix) as configured; `hook` is called at
/// the window's start and end. Returns the report even when an echo
/// mismatched (in `mismatch`).
///
/// # Errors
/// When the port cannot be created or fails, or the target is not a stream.
pub fn run_load(cfg: &Config, hook: &mut dyn FnMut(Phase)) -> anyhow::Result<Report> {
    let (to, unix) = match &cfg.target {
        Target::Tcp(addr) => (SockAddr::from(*addr), false),
        Target::Unix(path) => (
            SockAddr::unix(path).with_context(|| format!("{}", path.display()))?,
            true,
        ),
        Target::Udp(_) => anyhow::bail!("the stream load does not send datagrams"),
    };
    // One thread posts and reaps: the ring can be single-issuer with
    // deferred task work (no wake-up interrupts, task work run in batches).
    let mut b = CompletionPort::builder()
        .concurrency(1)
        .single_thread(true)
        .pool_buffers(4096);
    if let Some(kind) = cfg.backend {
        b = b.backend(kind);
    }
    let port = b.build().context("creating the load's completion port")?;
    let mut block = vec![0u8; SPAN + cfg.size];
    rand::rngs::SmallRng::seed_from_u64(cfg.seed).fill_bytes(&mut block);
    let now = Instant::now();
    let mut hist =
        Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).context("latency histogram")?;
    hist.auto(true);
    let mut e = Engine {
        cfg,
        to,
        unix,
        port,
        block,
        conns: (0..cfg.conns)
            .map(|i| Conn {
                rng: splitmix(cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                ..Conn::default()
            })
            .collect(),
        inflight: vec![(0, now); cfg.conns * cfg.pipeline],
        send_bufs: Vec::new(),
        recv_cap: (cfg.size * cfg.pipeline).clamp(4096, 256 << 10),
        hist,
        stage: match cfg.mode {
            Mode::Echo => Stage::Connecting,
            Mode::Churn => Stage::Warmup,
        },
        stage_start: now,
        window: None,
        msgs: 0,
        done_total: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        up: 0,
        up_at_start: 0,
        connecting_at_start: 0,
        dead: 0,
        mismatch: None,
        stopped_early: None,
        tokens: 1.0,
        last_refill: now,
        parked: VecDeque::new(),
        timer_posted: false,
        retry: VecDeque::new(),
    };
    let result = e.run(hook);
    // Close everything: dropping a handle cancels its operations and closes
    // the socket once they are back.
    for c in &mut e.conns {
        c.handle = None;
    }
    e.port.shutdown();
    result?;
    Ok(e.report())
}

impl Engine<'_> {
    fn run(&mut self, hook: &mut dyn FnMut(Phase)) -> anyhow::Result<()> {
        let mut progress = Progress::new(self.cfg.progress);
        if self.cfg.rate.is_some() {
            self.post_timer()?;
        }
        for i in 0..self.conns.len() {
            match self.cfg.mode {
                Mode::Echo => self.connect(i, Instant::now()),
                Mode::Churn => self.churn_start(i, Instant::now()),
            }
        }
        let mut out = Vec::with_capacity(BATCH);
        while self.stage != Stage::Done {
            let now = Instant::now();
            let wait = self
                .deadline()
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            match self.port.get_many(&mut out, BATCH, Some(wait)) {
                Ok(_) | Err(GetError::TimedOut) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("the load's port failed")),
            }
            let now = Instant::now();
            for c in out.drain(..) {
                self.on_completion(c, now)?;
            }
            if self.mismatch.is_some() {
                self.stop_early("echo mismatch", hook);
                break;
            }
            self.advance(now, hook);
            progress.draw(now, self.done_total, self.stage, || {
                format!("{} up, {} errors", self.up, self.errors)
            });
        }
        progress.finish();
        Ok(())
    }

    /// When the current stage ends by time.
    fn deadline(&self) -> Instant {
        match self.stage {
            Stage::Connecting => self.stage_start + CONNECT_LIMIT,
            Stage::Warmup => self.stage_start + self.cfg.warmup,
            Stage::Window | Stage::Done => self.stage_start + self.cfg.duration,
        }
    }

    fn advance(&mut self, now: Instant, hook: &mut dyn FnMut(Phase)) {
        if self.cfg.mode == Mode::Echo && self.dead == self.conns.len() {
            tracing::error!("every connection failed; stopping");
            self.stop_early("every connection failed", hook);
            return;
        }
        let all_up = self.up + self.dead == self.conns.len();
        if self.stage == Stage::Connecting && (all_up || now >= self.deadline()) {
            if !all_up {
                tracing::warn!(
                    "{} of {} connections up after {:?}; starting anyway",
                    self.up,
                    self.conns.len(),
                    CONNECT_LIMIT
                );
            }
            self.stage = Stage::Warmup;
            self.stage_start = now;
        }
        if self.stage == Stage::Warmup && now >= self.deadline() {
            for c in &mut self.conns {
                c.window_done = 0;
            }
            self.up_at_start = self.up;
            if self.cfg.mode == Mode::Echo {
                self.connecting_at_start = self.conns.len() - self.up - self.dead;
            }
            hook(Phase::WindowStart);
            self.stage = Stage::Window;
            // Sample after the hook, so the hook's own work is not counted.
            self.stage_start = Instant::now();
        } else if self.stage == Stage::Window && now >= self.deadline() {
            let end = Instant::now();
            hook(Phase::WindowEnd);
            self.window = Some((self.stage_start, end));
            self.stage = Stage::Done;
        }
    }

    /// Ends the run before its window is over: `why` goes into the report
    /// with where the run was.
    fn stop_early(&mut self, why: &str, hook: &mut dyn FnMut(Phase)) {
        let at = match self.stage {
            Stage::Connecting => "while connecting, before the measured window".to_string(),
            Stage::Warmup => "during the warm-up, before the measured window".to_string(),
            Stage::Window => {
                let end = Instant::now();
                hook(Phase::WindowEnd);
                self.window = Some((self.stage_start, end));
                format!(
                    "{} into the {} window",
                    secs(end.duration_since(self.stage_start).as_secs_f64()),
                    secs(self.cfg.duration.as_secs_f64())
                )
            }
            Stage::Done => return,
        };
        self.stopped_early = Some(format!("stopped {at}: {why}"));
        self.stage = Stage::Done;
    }

    /// At the end of a full window: the connections whose oldest message
    /// has waited at least half the window (and `UNANSWERED_MIN`) for its
    /// echo, as (none completed in the window, some completed, the longest
    /// wait of those with some).
    fn unanswered(&self) -> (usize, usize, Duration) {
        let (Some((start, end)), None) = (self.window, &self.stopped_early) else {
            return (0, 0, Duration::ZERO);
        };
        let limit = (end.duration_since(start) / 2).max(UNANSWERED_MIN);
        let (mut none, mut some, mut longest) = (0, 0, Duration::ZERO);
        for (i, c) in self.conns.iter().enumerate() {
            if !c.up || c.len == 0 {
                continue;
            }
            let sent = self.inflight[i * self.cfg.pipeline + c.head].1;
            let waited = end.saturating_duration_since(sent);
            if waited < limit {
                continue;
            }
            if c.window_done == 0 {
                none += 1;
            } else {
                some += 1;
                longest = longest.max(waited);
            }
        }
        (none, some, longest)
    }

    fn report(&self) -> Report {
        let complete = self.window.is_some() && self.stopped_early.is_none();
        let (no_echo, stalled, longest) = self.unanswered();
        let mut r = Report {
            mode: self.cfg.mode,
            backend: self.port.backend().to_string(),
            transport: self.cfg.target.transport().to_string(),
            addr: self.cfg.target.to_string(),
            conns: self.cfg.conns,
            size: self.cfg.size,
            pipeline: self.cfg.pipeline,
            window_s: None,
            msgs: self.msgs,
            msgs_per_s: None,
            mib_per_s: None,
            latency: (!self.hist.is_empty()).then(|| Latency::from_hist(&self.hist)),
            errors: self.errors,
            error_kinds: self.error_kinds.clone(),
            connected: self.up,
            no_echo,
            stalled,
            longest_wait_s: longest.as_secs_f64(),
            mismatch: self.mismatch.clone(),
            stopped_early: self.stopped_early.clone(),
            failures: Vec::new(),
            dgram: None,
        };
        r.window(self.window.map(|(a, b)| b.duration_since(a)), complete);
        r.failures = self.failures(&r);
        r
    }

    /// Why the run failed, one sentence each (empty: verified and clean).
    fn failures(&self, r: &Report) -> Vec<String> {
        let n = self.conns.len();
        let window = match r.window_s {
            Some(w) => format!("the {} window", secs(w)),
            None => "the run".to_string(),
        };
        let mut f = Vec::new();
        if let Some(m) = &self.mismatch {
            f.push(format!("ECHO MISMATCH: {m}"));
        }
        if self.connecting_at_start > 0 {
            f.push(format!(
                "{} of {n} connections were still connecting when the window began \
                 (after the {} s connect limit)",
                self.connecting_at_start,
                CONNECT_LIMIT.as_secs()
            ));
        }
        if r.no_echo > 0 {
            f.push(format!(
                "no echo came back from {} of {n} connections in {window}",
                r.no_echo
            ));
        }
        if r.stalled > 0 {
            f.push(format!(
                "echoes stopped coming back on {} of {n} connections: at the end of {window} \
                 a message had waited {} for its echo",
                r.stalled,
                secs(r.longest_wait_s)
            ));
        }
        if self.errors > 0 {
            let what = match self.cfg.mode {
                Mode::Echo => format!("{} of {n} connections failed", self.dead),
                Mode::Churn => format!("{} connection attempts failed", self.errors),
            };
            f.push(format!("{what}: {}", r.error_summary()));
        }
        if self.msgs == 0 && f.is_empty() {
            let why = match (r.window_s, &self.stopped_early) {
                (_, Some(s)) => s.clone(),
                (None, None) => "the measured window never began".to_string(),
                (Some(_), None) => format!(
                    "{} of {n} connections were up when it began, {} at its end",
                    self.up_at_start, self.up
                ),
            };
            f.push(format!("no echo was completed in {window} ({why})"));
        }
        f
    }

    fn key(&self, i: usize) -> u64 {
        (u64::from(self.conns[i].gen) << 32) | i as u64
    }

    /// Counts an error of connection `i`; `what` says what went wrong.
    fn error(&mut self, i: usize, what: std::fmt::Arguments<'_>) {
        self.errors += 1;
        let kind = what.to_string();
        if self.errors <= LOGGED_ERRORS {
            tracing::warn!("connection {i}: {kind}");
        } else if self.errors == LOGGED_ERRORS + 1 {
            tracing::warn!("more errors; counting them quietly");
        }
        let kind = if self.error_kinds.len() < ERROR_KINDS || self.error_kinds.contains_key(&kind) {
            kind
        } else {
            "other errors".to_string()
        };
        *self.error_kinds.entry(kind).or_insert(0) += 1;
    }

    fn post_timer(&mut self) -> anyhow::Result<()> {
        if !self.timer_posted {
            self.port.submit(op::Timeout::new(TICK).key(TIMER))?;
            self.timer_posted = true;
        }
        Ok(())
    }

    /// Takes a rate token if the rate is limited; `false` = wait for one.
    fn take_token(&mut self, now: Instant) -> bool {
        let Some(rate) = self.cfg.rate else {
            return true;
        };
        let dt = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        self.tokens = (self.tokens + rate * dt).min((rate * 0.002).max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn new_socket(&self, i: usize) -> anyhow::Result<Handle> {
        let s = if self.unix {
            Socket::new(Domain::UNIX, Type::STREAM, None)?
        } else {
            let s = Socket::new(self.to.domain(), Type::STREAM, Some(Protocol::TCP))?;
            s.set_tcp_nodelay(true)?;
            s
        };
        s.set_nonblocking(true)?;
        Ok(self.port.associate(OwnedFd::from(s), self.key(i))?)
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let res = self
            .new_socket(i)
            .and_then(|h| Ok((self.port.submit(op::Connect::new(&h, self.to.clone()))?, h)));
        match res {
            Ok((_, h)) => {
                let c = &mut self.conns[i];
                c.handle = Some(h);
                c.started = Some(now);
            }
            Err(e) => self.fail(i, format_args!("socket/connect: {e:#}")),
        }
    }

    /// Marks a connection failed (echo: for good; churn: the slot restarts).
    fn fail(&mut self, i: usize, what: std::fmt::Arguments<'_>) {
        self.error(i, what);
        let c = &mut self.conns[i];
        c.handle = None;
        c.head = 0;
        c.len = 0;
        c.pos = 0;
        if c.up {
            self.up -= 1;
        }
        c.up = false;
        match self.cfg.mode {
            Mode::Echo => self.dead += 1,
            Mode::Churn => {
                c.gen = c.gen.wrapping_add(1);
                // Retry on the next tick rather than spin on a failing connect.
                self.retry.push_back(i);
                if let Err(e) = self.post_timer() {
                    tracing::error!("posting the retry timer: {e}");
                }
            }
        }
    }

    fn on_completion(&mut self, mut c: Completion, now: Instant) -> anyhow::Result<()> {
        if c.key() == TIMER {
            return self.on_tick(now);
        }
        let i = (c.key() & 0xffff_ffff) as usize;
        if (c.key() >> 32) as u32 != self.conns[i].gen || self.conns[i].handle.is_none() {
            return Ok(()); // a completion of a connection already gone
        }
        match c.kind() {
            OpKind::Connect => match c.result() {
                Ok(_) => self.on_connected(i, now),
                Err(e) => self.fail(i, format_args!("connect: {e}")),
            },
            OpKind::SendAll => match c.result() {
                Ok(_) => {
                    if let Some(buf) = c.take_buf::<Vec<u8>>() {
                        self.send_bufs.push(buf);
                    }
                }
                Err(e) => self.fail(i, format_args!("send: {e}")),
            },
            OpKind::Recv => match c.result() {
                Ok(0) => self.fail(i, format_args!("the server closed the connection")),
                Ok(_) => {
                    let buf = c.take_buf::<Vec<u8>>().unwrap_or_default();
                    self.on_data(i, &buf, now);
                    self.repost_recv(i, buf);
                }
                Err(e) => self.fail(i, format_args!("recv: {e}")),
            },
            OpKind::RecvPooled if c.more() => {
                let buf = c.take_buf::<Vec<u8>>().unwrap_or_default();
                self.on_data(i, &buf, now);
                self.port.recycle(buf);
            }
            OpKind::RecvPooled => match c.result() {
                Ok(_) => self.fail(i, format_args!("the server closed the connection")),
                Err(e) => self.fail(i, format_args!("recv: {e}")),
            },
            _ => {}
        }
        Ok(())
    }

    fn on_tick(&mut self, now: Instant) -> anyhow::Result<()> {
        self.timer_posted = false;
        for _ in 0..self.retry.len() {
            let Some(i) = self.retry.pop_front() else {
                break;
            };
            self.churn_start(i, now);
        }
        while let Some(&i) = self.parked.front() {
            if !self.take_token(now) {
                break;
            }
            self.parked.pop_front();
            self.conns[i].parked = false;
            match self.cfg.mode {
                Mode::Echo => {
                    if self.conns[i].up {
                        self.send_ready(i, now, true);
                    }
                }
                Mode::Churn => self.churn_open(i, now),
            }
        }
        if self.stage != Stage::Done && (self.cfg.rate.is_some() || !self.retry.is_empty()) {
            self.post_timer()?;
        }
        Ok(())
    }

    fn on_connected(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.up = true;
        self.up += 1;
        c.credits = self.cfg.pipeline;
        if self.cfg.pooled {
            // One multishot receive for the connection's life.
            let posted = match &self.conns[i].handle {
                Some(h) => self.port.submit(op::RecvPooled::new(h)).map(drop),
                None => Ok(()),
            };
            if let Err(e) = posted {
                self.fail(i, format_args!("posting recv: {e}"));
                return;
            }
        } else {
            let buf = Vec::with_capacity(self.recv_cap);
            self.repost_recv(i, buf);
        }
        // Churn took its rate token when it started connecting.
        let have_token = self.cfg.mode == Mode::Churn;
        self.send_ready(i, now, have_token);
    }

    fn repost_recv(&mut self, i: usize, mut buf: Vec<u8>) {
        buf.clear();
        let Some(h) = &self.conns[i].handle else {
            return;
        };
        if let Err(e) = self.port.submit(op::Recv::new(h, buf)) {
            self.fail(i, format_args!("posting recv: {e}"));
        }
    }

    /// Sends as many messages as the connection has pipeline credits (and
    /// the rate limiter tokens) for.
    fn send_ready(&mut self, i: usize, now: Instant, have_token: bool) {
        let mut token = have_token;
        while self.conns[i].credits > 0 && self.stage != Stage::Done {
            if !token && !self.take_token(now) {
                if !self.conns[i].parked {
                    self.conns[i].parked = true;
                    self.parked.push_back(i);
                }
                return;
            }
            token = false;
            let (size, pipeline) = (self.cfg.size, self.cfg.pipeline);
            let c = &mut self.conns[i];
            let off = c.next_offset();
            let mut buf = self
                .send_bufs
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(size));
            buf.clear();
            buf.extend_from_slice(&self.block[off..off + size]);
            self.inflight[i * pipeline + (c.head + c.len) % pipeline] = (off, now);
            c.len += 1;
            c.credits -= 1;
            let Some(h) = &c.handle else { return };
            if let Err(e) = self.port.submit(op::SendAll::new(h, buf)) {
                self.fail(i, format_args!("posting send: {e}"));
                return;
            }
        }
    }

    /// Checks received bytes against the messages in flight, in order.
    fn on_data(&mut self, i: usize, mut data: &[u8], now: Instant) {
        let size = self.cfg.size;
        while !data.is_empty() {
            let pipeline = self.cfg.pipeline;
            let c = &mut self.conns[i];
            let front = (c.len > 0).then(|| self.inflight[i * pipeline + c.head]);
            let Some((off, sent)) = front else {
                self.mismatch = Some(format!(
                    "connection {i}: {} bytes arrived that were never sent",
                    data.len()
                ));
                return;
            };
            let take = (size - c.pos).min(data.len());
            let want = &self.block[off + c.pos..off + c.pos + take];
            if want != &data[..take] {
                let at = want
                    .iter()
                    .zip(&data[..take])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                self.mismatch = Some(format!(
                    "connection {i}: byte {} of a {size}-byte message: sent {:#04x}, got back {:#04x}",
                    c.pos + at,
                    want[at],
                    data[at]
                ));
                return;
            }
            c.pos += take;
            data = &data[take..];
            if c.pos == size {
                c.pos = 0;
                c.head = (c.head + 1) % pipeline;
                c.len -= 1;
                c.credits += 1;
                self.done_total += 1;
                if self.stage == Stage::Window {
                    self.msgs += 1;
                    c.window_done += 1;
                    let started = match self.cfg.mode {
                        Mode::Echo => sent,
                        Mode::Churn => c.started.unwrap_or(sent),
                    };
                    let ns = now.duration_since(started).as_nanos();
                    self.hist
                        .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
                }
                if self.cfg.mode == Mode::Churn {
                    self.churn_done(i, now);
                    return;
                }
            }
        }
        if self.cfg.mode == Mode::Echo {
            self.send_ready(i, now, false);
        }
    }

    // ---- churn -----------------------------------------------------------

    fn churn_start(&mut self, i: usize, now: Instant) {
        if self.stage == Stage::Done {
            return;
        }
        if self.take_token(now) {
            self.churn_open(i, now);
        } else if !self.conns[i].parked {
            self.conns[i].parked = true;
            self.parked.push_back(i);
        }
    }

    fn churn_open(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.gen = c.gen.wrapping_add(1);
        c.head = 0;
        c.len = 0;
        c.pos = 0;
        self.connect(i, now);
    }

    fn churn_done(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        c.handle = None; // closes the connection
        c.up = false;
        self.up -= 1;
        self.churn_start(i, now);
    }
}

/// splitmix64, to turn a seed and an index into a well-mixed state.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1
}
