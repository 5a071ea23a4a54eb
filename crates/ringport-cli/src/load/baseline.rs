//! `ringport epoll-load` (hidden): the yardstick for `ringport load` — the
//! simple epoll client a person would write: one thread, mio (edge-triggered
//! epoll), per connection `write` the message then `read` until it is back,
//! the same verification. `ringport load` must drive at least as many msgs/s
//! on one core.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rand::{RngCore, SeedableRng};

/// Flags of `ringport epoll-load`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The echo server.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds before the window.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Pin to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
}

struct Conn {
    s: TcpStream,
    /// Bytes of the current message written / read back.
    written: usize,
    read: usize,
    sent_at: Instant,
}

/// What one baseline run measured (its window only).
#[derive(Debug, Clone)]
pub struct BaselineReport {
    /// Messages echoed and verified in the window.
    pub msgs: u64,
    /// Length of the window in seconds.
    pub window_s: f64,
    /// `msgs / window_s`.
    pub msgs_per_s: f64,
    /// Latency percentiles.
    pub latency: super::stats::Latency,
    /// A description of the first echo that differed, if any.
    pub mismatch: Option<String>,
}

/// Runs the baseline client and prints `msgs/s` (and p99) as JSON.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(cpu) = a.cpu {
        crate::affinity::pin_current(cpu)?;
    }
    let r = run_client(&a, &mut |_| {})?;
    if let Some(m) = &r.mismatch {
        eprintln!("ringport epoll-load: ECHO MISMATCH: {m}");
        return Ok(ExitCode::from(super::EXIT_MISMATCH));
    }
    println!(
        "{}",
        serde_json::json!({
            "client": "epoll (mio), one thread",
            "conns": a.conns,
            "size": a.size,
            "window_s": r.window_s,
            "msgs": r.msgs,
            "msgs_per_s": r.msgs_per_s,
            "p99_us": r.latency.p99_us,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs the baseline client on the calling thread; `hook` is called when
/// the measured window starts and ends (as `ringport load` does).
///
/// # Errors
/// When a connection cannot be made or fails.
pub fn run_client(a: &Args, hook: &mut dyn FnMut(super::Phase)) -> anyhow::Result<BaselineReport> {
    anyhow::ensure!(a.conns > 0 && a.size > 0, "--conns and --size must be > 0");
    let mut msg = vec![0u8; a.size];
    rand::rngs::SmallRng::seed_from_u64(0x5eed).fill_bytes(&mut msg);
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let mut s = TcpStream::connect(a.addr).context("connect")?;
        s.set_nodelay(true)?;
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn {
            s,
            written: 0,
            read: 0,
            sent_at: Instant::now(),
        });
    }
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 3_600_000_000_000, 3)?;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; a.size.max(4096)];
    let start = Instant::now();
    let win_start = start + Duration::from_secs_f64(a.warmup);
    let end = win_start + Duration::from_secs_f64(a.duration);
    let mut in_window = false;
    let mut msgs = 0u64;
    // Every connection starts writing; edge-triggered events drive the rest.
    let mut ready: Vec<usize> = (0..a.conns).collect();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !in_window && now >= win_start {
            hook(super::Phase::WindowStart);
            in_window = true;
        }
        for i in ready.drain(..) {
            let c = &mut conns[i];
            loop {
                if c.written < a.size {
                    match c.s.write(&msg[c.written..]) {
                        Ok(n) => {
                            if c.written == 0 {
                                c.sent_at = now;
                            }
                            c.written += n;
                            continue;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => anyhow::bail!("connection {i}: write: {e}"),
                    }
                }
                let want = (a.size - c.read).min(buf.len());
                match c.s.read(&mut buf[..want]) {
                    Ok(0) => anyhow::bail!("connection {i}: closed by the server"),
                    Ok(n) => {
                        if buf[..n] != msg[c.read..c.read + n] {
                            return Ok(BaselineReport {
                                msgs,
                                window_s: 0.0,
                                msgs_per_s: 0.0,
                                latency: Default::default(),
                                mismatch: Some(format!(
                                    "connection {i}: bytes {}..{} differ",
                                    c.read,
                                    c.read + n
                                )),
                            });
                        }
                        c.read += n;
                        if c.read == a.size {
                            if in_window {
                                msgs += 1;
                                let ns = now.duration_since(c.sent_at).as_nanos();
                                hist.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX));
                            }
                            c.read = 0;
                            c.written = 0;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => anyhow::bail!("connection {i}: read: {e}"),
                }
            }
        }
        poll.poll(&mut events, Some(end.saturating_duration_since(now)))?;
        ready.extend(events.iter().map(|e| e.token().0));
    }
    hook(super::Phase::WindowEnd);
    let secs = Instant::now().duration_since(win_start).as_secs_f64();
    Ok(BaselineReport {
        msgs,
        window_s: secs,
        msgs_per_s: msgs as f64 / secs,
        latency: if hist.is_empty() {
            Default::default()
        } else {
            super::stats::Latency::from_hist(&hist)
        },
        mismatch: None,
    })
}
