//! The datagram load (`ringport load --udp`): one completion port, one
//! thread, `conns` flows, each a UDP socket of its own that sends datagrams
//! to the server with `SendTo` and takes the echoes with one pooled
//! `RecvFromPooled` that stays posted for the flow's life.
//!
//! A datagram is `size` bytes: a [`HEADER`]-byte header — the flow (u32),
//! the window slot it holds (u32), the sequence number (u64) and a checksum
//! (u64) of everything else and the length, all little-endian — then bytes
//! cut from a seeded random block at an offset drawn from the flow and the
//! sequence number. A flow keeps up to `pipeline` datagrams outstanding,
//! one per window slot; an echo frees its slot, and so does the timeout: a
//! datagram not echoed within `timeout` counts as lost, and its slot takes
//! the next datagram (a lost datagram holds up one slot, not the flow).
//!
//! Every echo is checked: from the server's address, exactly `size` bytes,
//! the checksum, the flow it came back on, a sequence number that was sent,
//! and every byte. The first check that fails stops the run as a mismatch.
//! An echo of a datagram already counted lost (or echoed twice) is counted
//! as late, and is no mismatch. After the window no more datagrams are
//! sent, and the run waits at most one `timeout` for the outstanding ones:
//! every datagram sent in the window is either echoed or lost, and the run
//! ends in bounded time.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::{RngCore, SeedableRng};
use ringport::op;
use ringport::{Completion, CompletionPort, GetError, Handle, OpKind};
use rustix::io::Errno;
use socket2::{Domain, Protocol, Socket, Type};

use super::engine::Phase;
use super::progress::Progress;
use super::stats::{secs, DgramCounts, Latency, Report};
use super::{Config, Target};

/// Bytes of a datagram's header: flow, slot, sequence number, checksum.
pub const HEADER: usize = 24;
/// The largest datagram: the largest UDP payload over IPv4.
pub const MAX_SIZE: usize = 65_507;
/// Where the checksum sits in the header.
const SUM_AT: usize = 16;
/// Completions taken per `get_many`.
const BATCH: usize = 256;
/// Distinct payload start offsets in the random block.
const SPAN: usize = 1 << 16;
/// Errors logged individually before going quiet.
const LOGGED_ERRORS: u64 = 5;
/// Distinct error kinds counted by name; the rest are counted together.
const ERROR_KINDS: usize = 32;
/// What a pooled datagram buffer holds besides the payload (the header and
/// the sender's address: see `op::RecvFromPooled`).
const POOL_OVERHEAD: usize = 144;
/// Most memory the load's pool of receive buffers may take.
const POOL_BYTES: usize = 64 << 20;
/// Windows' worth of datagrams a flow must have sent in the window, none
/// echoed, to count as one the server does not answer.
const UNANSWERED_ROUNDS: u64 = 3;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Warmup,
    Window,
    /// After the window: nothing more is sent; the outstanding datagrams
    /// are waited for, at most one timeout.
    Drain,
    Done,
}

/// One window slot of a flow: the datagram it holds, if `live`.
#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    sent: Instant,
    live: bool,
    /// Sent in the measured window (so counted in `sent`, and lost if it
    /// times out).
    in_window: bool,
}

#[derive(Default)]
struct Flow {
    handle: Option<Handle>,
    /// The flow's free window slots.
    free: Vec<u32>,
    next_seq: u64,
    /// Datagrams sent in the window, and of those the ones echoed (in the
    /// window or the drain after it).
    window_sent: u64,
    window_echoed: u64,
}

struct Engine<'a> {
    cfg: &'a Config,
    to: SocketAddr,
    port: CompletionPort,
    block: Vec<u8>,
    flows: Vec<Flow>,
    /// `pipeline` slots per flow, in one flat array.
    slots: Vec<Slot>,
    send_bufs: Vec<Vec<u8>>,
    hist: Histogram<u64>,
    stage: Stage,
    stage_start: Instant,
    window: Option<(Instant, Instant)>,
    /// How often outstanding datagrams are checked for their timeout.
    scan_every: Duration,
    next_scan: Instant,
    msgs: u64,
    done_total: u64,
    sent: u64,
    lost: u64,
    late: u64,
    /// Datagrams sent in the window and neither echoed nor lost yet.
    window_outstanding: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    dead: usize,
    mismatch: Option<String>,
    stopped_early: Option<String>,
}

/// Runs one datagram load as configured; `hook` is called at the window's
/// start and end. Returns the report even at a mismatch (in `mismatch`).
///
/// # Errors
/// When the port or a socket cannot be created, or the port fails.
pub fn run_dgram(cfg: &Config, hook: &mut dyn FnMut(Phase)) -> anyhow::Result<Report> {
    let Target::Udp(to) = cfg.target else {
        anyhow::bail!("the datagram load sends only to a UDP address");
    };
    anyhow::ensure!(
        (HEADER..=MAX_SIZE).contains(&cfg.size),
        "a datagram must be {HEADER}..={MAX_SIZE} bytes"
    );
    // Room for one byte more than was sent: a longer echo is reported with
    // its length.
    let buf_size = (cfg.size + POOL_OVERHEAD + 1).max(2048);
    let bufs = (cfg.conns * cfg.pipeline * 2).clamp(256, (POOL_BYTES / buf_size).max(16));
    let mut b = CompletionPort::builder()
        .concurrency(1)
        .single_thread(true)
        .pool_buffer_size(buf_size)
        .pool_buffers(bufs);
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
    let scan_every = (cfg.timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(50));
    let idle = Slot {
        seq: 0,
        sent: now,
        live: false,
        in_window: false,
    };
    let mut e = Engine {
        cfg,
        to,
        port,
        block,
        flows: (0..cfg.conns)
            .map(|_| Flow {
                free: (0..cfg.pipeline as u32).rev().collect(),
                ..Flow::default()
            })
            .collect(),
        slots: vec![idle; cfg.conns * cfg.pipeline],
        send_bufs: Vec::new(),
        hist,
        stage: Stage::Warmup,
        stage_start: now,
        window: None,
        scan_every,
        next_scan: now + scan_every,
        msgs: 0,
        done_total: 0,
        sent: 0,
        lost: 0,
        late: 0,
        window_outstanding: 0,
        errors: 0,
        error_kinds: BTreeMap::new(),
        dead: 0,
        mismatch: None,
        stopped_early: None,
    };
    let result = e.run(hook);
    for f in &mut e.flows {
        f.handle = None; // cancels the receive; the socket closes once it is back
    }
    e.port.shutdown();
    result?;
    Ok(e.report())
}

/// The checksum of a datagram: every byte but the checksum's own, in 8-byte
/// words, each through a bijective step (so any one changed word changes
/// the result).
pub fn checksum(d: &[u8]) -> u64 {
    let mut h: u64 = 0x6a09_e667_f3bc_c908 ^ d.len() as u64;
    let (head, rest) = d.split_at(SUM_AT.min(d.len()));
    let tail = rest.get(HEADER - SUM_AT..).unwrap_or(&[]);
    for part in [head, tail] {
        for c in part.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
    }
    h
}

/// A little-endian field of a datagram.
fn field<const N: usize>(d: &[u8], at: usize) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&d[at..at + N]);
    b
}

impl Engine<'_> {
    fn run(&mut self, hook: &mut dyn FnMut(Phase)) -> anyhow::Result<()> {
        let mut progress = Progress::new(self.cfg.progress);
        for i in 0..self.flows.len() {
            self.open(i);
        }
        if self.dead == self.flows.len() {
            self.stop_early("no flow could be opened", hook);
        }
        let now = Instant::now();
        for i in 0..self.flows.len() {
            self.send_ready(i, now);
        }
        let mut out = Vec::with_capacity(BATCH);
        while self.stage != Stage::Done {
            let now = Instant::now();
            let wait = self
                .deadline()
                .min(self.next_scan)
                .saturating_duration_since(now)
                .min(Duration::from_millis(100));
            match self.port.get_many(&mut out, BATCH, Some(wait)) {
                Ok(_) | Err(GetError::TimedOut) => {}
                Err(e) => return Err(anyhow::Error::new(e).context("the load's port failed")),
            }
            let now = Instant::now();
            for c in out.drain(..) {
                self.on_completion(c, now);
            }
            if self.mismatch.is_some() {
                self.stop_early("echo mismatch", hook);
                break;
            }
            if now >= self.next_scan {
                self.expire(now);
                self.next_scan = now + self.scan_every;
            }
            self.advance(now, hook);
            progress.draw(now, self.done_total, self.stage, || {
                format!("{} lost, {} errors", self.lost, self.errors)
            });
        }
        progress.finish();
        Ok(())
    }

    /// When the current stage ends by time.
    fn deadline(&self) -> Instant {
        match self.stage {
            Stage::Warmup => self.stage_start + self.cfg.warmup,
            Stage::Window => self.stage_start + self.cfg.duration,
            Stage::Drain | Stage::Done => self.stage_start + self.cfg.timeout,
        }
    }

    fn advance(&mut self, now: Instant, hook: &mut dyn FnMut(Phase)) {
        if self.dead == self.flows.len() {
            tracing::error!("every flow failed; stopping");
            self.stop_early("every flow failed", hook);
            return;
        }
        match self.stage {
            Stage::Warmup if now >= self.deadline() => {
                hook(Phase::WindowStart);
                self.stage = Stage::Window;
                // After the hook, so the hook's own work is not counted.
                self.stage_start = Instant::now();
            }
            Stage::Window if now >= self.deadline() => {
                let end = Instant::now();
                hook(Phase::WindowEnd);
                self.window = Some((self.stage_start, end));
                self.stage = Stage::Drain;
                self.stage_start = end;
                self.end_drain(end);
            }
            Stage::Drain => self.end_drain(now),
            _ => {}
        }
    }

    /// Ends the drain once every datagram sent in the window is accounted
    /// for, or at its deadline (what is still out then is lost).
    fn end_drain(&mut self, now: Instant) {
        if self.window_outstanding > 0 && now < self.deadline() {
            return;
        }
        for s in &mut self.slots {
            if s.live && s.in_window {
                s.live = false;
                self.lost += 1;
            }
        }
        self.window_outstanding = 0;
        self.stage = Stage::Done;
    }

    /// Ends the run before its window is over.
    fn stop_early(&mut self, why: &str, hook: &mut dyn FnMut(Phase)) {
        let at = match self.stage {
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
            Stage::Drain => {
                // The window ran its length: the rates stand.
                self.stage = Stage::Done;
                return;
            }
            Stage::Done => return,
        };
        self.stopped_early = Some(format!("stopped {at}: {why}"));
        self.stage = Stage::Done;
    }

    /// Counts an error of flow `i`.
    fn error(&mut self, i: usize, what: std::fmt::Arguments<'_>) {
        self.errors += 1;
        let kind = what.to_string();
        if self.errors <= LOGGED_ERRORS {
            tracing::warn!("flow {i}: {kind}");
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

    /// A flow that can no longer receive: it sends no more.
    fn fail(&mut self, i: usize, what: std::fmt::Arguments<'_>) {
        self.error(i, what);
        if self.flows[i].handle.take().is_some() {
            self.dead += 1;
        }
    }

    /// The flow's socket, bound on the family (and, for loopback, the
    /// address) of the server, with its receive posted.
    fn open(&mut self, i: usize) {
        let res = (|| -> anyhow::Result<Handle> {
            let s = Socket::new(
                Domain::for_address(self.to),
                Type::DGRAM,
                Some(Protocol::UDP),
            )?;
            let ip = match self.to.ip() {
                ip if ip.is_loopback() => ip,
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            s.bind(&SocketAddr::new(ip, 0).into())?;
            s.set_nonblocking(true)?;
            let h = self.port.associate(OwnedFd::from(s), i as u64)?;
            self.port.submit(op::RecvFromPooled::new(&h))?;
            Ok(h)
        })();
        match res {
            Ok(h) => self.flows[i].handle = Some(h),
            Err(e) => {
                self.error(i, format_args!("socket/bind: {e:#}"));
                self.dead += 1;
            }
        }
    }

    /// Sends datagrams while the flow has free window slots (not after the
    /// window).
    fn send_ready(&mut self, i: usize, now: Instant) {
        let w = self.cfg.pipeline;
        while matches!(self.stage, Stage::Warmup | Stage::Window) {
            if self.flows[i].handle.is_none() {
                return;
            }
            let Some(slot) = self.flows[i].free.pop() else {
                return; // the window is full
            };
            let seq = self.flows[i].next_seq;
            let at = i * w + slot as usize;
            let mut buf = self.send_bufs.pop().unwrap_or_default();
            self.fill(i as u32, slot, seq, &mut buf);
            let Some(h) = &self.flows[i].handle else {
                return;
            };
            if let Err(e) = self.port.submit(op::SendTo::new(h, buf, self.to)) {
                self.fail(i, format_args!("posting send: {e}"));
                return;
            }
            let in_window = self.stage == Stage::Window;
            self.slots[at] = Slot {
                seq,
                sent: now,
                live: true,
                in_window,
            };
            let f = &mut self.flows[i];
            f.next_seq += 1;
            if in_window {
                f.window_sent += 1;
                self.sent += 1;
                self.window_outstanding += 1;
            }
        }
    }

    /// Where the payload of flow `flow`'s datagram `seq` starts in the block.
    fn offset(&self, flow: u32, seq: u64) -> usize {
        let mut x = self.cfg.seed ^ (u64::from(flow) << 40) ^ seq;
        // splitmix64's finaliser: a well-mixed offset per (flow, seq).
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((x ^ (x >> 31)) % SPAN as u64) as usize
    }

    /// Writes flow `flow`'s datagram `seq`, in window slot `slot`, into
    /// `buf`.
    fn fill(&self, flow: u32, slot: u32, seq: u64, buf: &mut Vec<u8>) {
        let size = self.cfg.size;
        buf.clear();
        buf.extend_from_slice(&flow.to_le_bytes());
        buf.extend_from_slice(&slot.to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&[0; 8]);
        let off = self.offset(flow, seq);
        buf.extend_from_slice(&self.block[off..off + size - HEADER]);
        let sum = checksum(buf);
        buf[SUM_AT..HEADER].copy_from_slice(&sum.to_le_bytes());
    }

    fn on_completion(&mut self, mut c: Completion, now: Instant) {
        let i = c.key() as usize;
        if i >= self.flows.len() || self.flows[i].handle.is_none() {
            return; // a completion of a flow already gone
        }
        match c.kind() {
            OpKind::SendTo => match c.result() {
                Ok(n) if n == self.cfg.size => {
                    if let Some(buf) = c.take_buf::<Vec<u8>>() {
                        self.send_bufs.push(buf);
                    }
                }
                // The datagram's slot stays live: it times out as lost.
                Ok(n) => self.error(i, format_args!("send: {n} of {} bytes", self.cfg.size)),
                Err(e) => self.error(i, format_args!("send: {e}")),
            },
            OpKind::RecvFromPooled if c.more() => {
                let from = c.address().and_then(|a| a.ip());
                match c.result() {
                    Ok(_) => match self.check(i, c.data(), from) {
                        Ok((slot, seq)) => self.on_echo(i, slot, seq, now),
                        Err(m) => self.mismatch = Some(m),
                    },
                    Err(e) if e.raw_os_error() == Some(Errno::MSGSIZE.raw_os_error()) => {
                        self.mismatch = Some(format!(
                            "flow {i}: a datagram longer than {} B came back for {} B sent \
                             (mis-sized)",
                            c.data().len(),
                            self.cfg.size
                        ));
                    }
                    Err(e) => self.error(i, format_args!("recv: {e}")),
                }
                if let Some(buf) = c.take_buf::<Vec<u8>>() {
                    self.port.recycle(buf);
                }
            }
            OpKind::RecvFromPooled => match c.result() {
                Ok(_) => self.fail(i, format_args!("the receive ended")),
                Err(e) => self.fail(i, format_args!("recv: {e}")),
            },
            _ => {}
        }
    }

    /// Checks an echo that came back on flow `i`; its window slot and
    /// sequence number, or what is wrong with it.
    fn check(&self, i: usize, d: &[u8], from: Option<SocketAddr>) -> Result<(u32, u64), String> {
        let size = self.cfg.size;
        if from != Some(self.to) {
            let who = from.map_or_else(|| "no address".to_string(), |a| a.to_string());
            return Err(format!(
                "flow {i}: a {} B datagram from {who}, not from the server {}",
                d.len(),
                self.to
            ));
        }
        if d.len() != size {
            return Err(format!(
                "flow {i}: a {} B datagram came back for {size} B sent (mis-sized)",
                d.len()
            ));
        }
        let flow = u32::from_le_bytes(field(d, 0));
        let slot = u32::from_le_bytes(field(d, 4));
        let seq = u64::from_le_bytes(field(d, 8));
        let known = flow as usize == i
            && (slot as usize) < self.cfg.pipeline
            && seq < self.flows[i].next_seq;
        let mut want = Vec::with_capacity(size);
        if known {
            self.fill(flow, slot, seq, &mut want);
        }
        if u64::from_le_bytes(field(d, SUM_AT)) != checksum(d) {
            let at = known
                .then(|| want.iter().zip(d).position(|(a, b)| a != b))
                .flatten();
            return Err(match at {
                Some(at) => format!(
                    "flow {i}: datagram {seq} came back corrupted (checksum mismatch): \
                     byte {at} of {size}: sent {:#04x}, got back {:#04x}",
                    want[at], d[at]
                ),
                None => format!(
                    "flow {i}: a datagram came back corrupted (checksum mismatch; its header \
                     names flow {flow}, datagram {seq})"
                ),
            });
        }
        if flow as usize != i {
            return Err(format!(
                "flow {i}: the echo of a datagram of flow {flow} came back on it"
            ));
        }
        if !known {
            return Err(format!(
                "flow {i}: an echo of datagram {seq} in window slot {slot}, which was never \
                 sent (next is {}, {} slots)",
                self.flows[i].next_seq, self.cfg.pipeline
            ));
        }
        if let Some(at) = want.iter().zip(d).position(|(a, b)| a != b) {
            return Err(format!(
                "flow {i}: datagram {seq} came back with byte {at} changed though its checksum \
                 matches: sent {:#04x}, got back {:#04x}",
                want[at], d[at]
            ));
        }
        Ok((slot, seq))
    }

    /// A verified echo of flow `i`'s datagram `seq` in window slot `at`.
    fn on_echo(&mut self, i: usize, at: u32, seq: u64, now: Instant) {
        let w = self.cfg.pipeline;
        let slot = &mut self.slots[i * w + at as usize];
        if !slot.live || slot.seq != seq {
            self.late += 1;
            return;
        }
        slot.live = false;
        self.flows[i].free.push(at);
        if slot.in_window {
            self.window_outstanding -= 1;
            self.flows[i].window_echoed += 1;
        }
        let sent = slot.sent;
        self.done_total += 1;
        if self.stage == Stage::Window {
            self.msgs += 1;
            let ns = now.duration_since(sent).as_nanos();
            self.hist
                .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
        }
        self.send_ready(i, now);
    }

    /// Counts the datagrams whose echo has waited `timeout` as lost, and
    /// sends the next ones in their slots.
    fn expire(&mut self, now: Instant) {
        let w = self.cfg.pipeline;
        for i in 0..self.flows.len() {
            let mut freed = false;
            for (at, s) in self.slots[i * w..(i + 1) * w].iter_mut().enumerate() {
                if s.live && now.saturating_duration_since(s.sent) >= self.cfg.timeout {
                    s.live = false;
                    self.flows[i].free.push(at as u32);
                    freed = true;
                    if s.in_window {
                        self.lost += 1;
                        self.window_outstanding -= 1;
                    }
                }
            }
            if freed {
                self.send_ready(i, now);
            }
        }
    }

    fn report(&self) -> Report {
        let complete = self.window.is_some() && self.stopped_early.is_none();
        let w = self.cfg.pipeline as u64;
        let no_echo = if complete {
            self.flows
                .iter()
                .filter(|f| f.window_echoed == 0 && f.window_sent >= UNANSWERED_ROUNDS * w)
                .count()
        } else {
            0
        };
        let mut r = Report {
            mode: self.cfg.mode,
            transport: "udp".to_string(),
            backend: self.port.backend().to_string(),
            addr: self.to.to_string(),
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
            connected: self.flows.len() - self.dead,
            no_echo,
            stalled: 0,
            longest_wait_s: 0.0,
            mismatch: self.mismatch.clone(),
            stopped_early: self.stopped_early.clone(),
            failures: Vec::new(),
            dgram: Some(DgramCounts {
                sent: self.sent,
                lost: self.lost,
                late: self.late,
                timeout_s: self.cfg.timeout.as_secs_f64(),
            }),
        };
        r.window(self.window.map(|(a, b)| b.duration_since(a)), complete);
        r.failures = self.failures(&r);
        r
    }

    /// Why the run failed, one sentence each. Lost datagrams alone are no
    /// failure; a flow none of whose datagrams sent in the window came back,
    /// though it sent at least `UNANSWERED_ROUNDS` windows' worth (each
    /// lost one waits a timeout, so that many timeouts in a row), is: a
    /// server that ignores a peer, not the odd datagram dropped by a full
    /// socket buffer.
    fn failures(&self, r: &Report) -> Vec<String> {
        let n = self.flows.len();
        let window = match r.window_s {
            Some(w) => format!("the {} window", secs(w)),
            None => "the run".to_string(),
        };
        let mut f = Vec::new();
        if let Some(m) = &self.mismatch {
            f.push(format!("ECHO MISMATCH: {m}"));
        }
        if r.no_echo > 0 {
            f.push(format!(
                "no echo came back on {} of {n} flows of the datagrams they sent in {window} \
                 ({} of {} datagrams sent in it lost)",
                r.no_echo, self.lost, self.sent
            ));
        }
        if self.errors > 0 {
            f.push(format!(
                "{} errors on {n} flows ({} flows failed): {}",
                self.errors,
                self.dead,
                r.error_summary()
            ));
        }
        if self.msgs == 0 && f.is_empty() {
            let why = match &self.stopped_early {
                Some(s) => s.clone(),
                None => format!("{} of {} datagrams sent in it lost", self.lost, self.sent),
            };
            f.push(format!("no echo was completed in {window} ({why})"));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::{checksum, HEADER};

    #[test]
    fn the_checksum_sees_any_changed_byte_but_its_own() {
        let d: Vec<u8> = (0..100u8).collect();
        let sum = checksum(&d);
        for at in (0..d.len()).filter(|at| !(16..HEADER).contains(at)) {
            let mut e = d.clone();
            e[at] ^= 0x01;
            assert_ne!(checksum(&e), sum, "byte {at}");
        }
        let mut e = d.clone();
        e[20] ^= 0xff;
        assert_eq!(checksum(&e), sum, "the checksum field is not summed");
        assert_ne!(checksum(&d[..99]), sum, "nor is a shorter datagram");
    }
}
