//! The idle case: what an open, idle connection costs a server in memory.
//!
//! From the load CPU, `conns` connections are opened one after another, and
//! each echoes one 64 B message (checked byte for byte), so that the server
//! has accepted it and is waiting for its next message, as a server holding
//! many quiet clients does. The server's resident set (`VmRSS`) is read
//! before the first connection and after the last one, each once it has
//! stopped changing (a server may trim its heap when it goes idle); the
//! difference over `conns` is the figure. Kernel socket buffers are not in
//! it: they are the same for both servers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::report::RoundResult;
use super::server::{self, Server};
use super::Case;

/// Longest a connect or an echo may take.
const IO_LIMIT: Duration = Duration::from_secs(10);
/// How often the resident set is read while waiting for it to settle.
const SETTLE_STEP: Duration = Duration::from_millis(100);
/// Longest wait for the resident set to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);

/// Opens `case.conns` idle connections to `s` from a thread pinned to
/// `load_cpu` and measures the server's memory per connection.
pub fn run_one(
    case: &Case,
    s: &Server,
    load_cpu: Option<usize>,
    tick: u64,
) -> anyhow::Result<RoundResult> {
    let (pid, addr, conns, size) = (s.pid(), s.addr, case.conns, case.size);
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> anyhow::Result<RoundResult> {
                if let Some(cpu) = load_cpu {
                    crate::affinity::pin_current(cpu)?;
                }
                let before = settled_rss(pid)?;
                let cpu0 = server::cpu_ticks(pid)?;
                let start = Instant::now();
                let mut open = Vec::with_capacity(conns);
                let mut msg = vec![0u8; size];
                let mut back = vec![0u8; size];
                for i in 0..conns {
                    for (j, b) in msg.iter_mut().enumerate() {
                        *b = (i.wrapping_mul(31) ^ j.wrapping_mul(7)) as u8;
                    }
                    let c = echo_once(addr, &msg, &mut back)
                        .with_context(|| format!("idle connection {i} of {conns}"))?;
                    open.push(c);
                }
                let setup_s = start.elapsed().as_secs_f64();
                let cpu1 = server::cpu_ticks(pid)?;
                let after = settled_rss(pid)?;
                drop(open);
                let kib = (after as f64 - before as f64) / 1024.0 / conns as f64;
                let cpu_s = cpu1.saturating_sub(cpu0) as f64 / tick as f64;
                Ok(RoundResult {
                    msgs_per_s: conns as f64 / setup_s.max(1e-9),
                    p99_us: 0.0,
                    p50_us: 0.0,
                    max_us: 0.0,
                    server_cpu_s: cpu_s,
                    server_cpu_share: cpu_s / setup_s.max(1e-9),
                    cpu_us_per_msg: cpu_s * 1e6 / conns as f64,
                    ctx_switches_per_msg: 0.0,
                    syscalls_per_msg: None,
                    rss_kib_per_conn: Some(kib),
                    msgs: conns as u64,
                    errors: 0,
                    window_s: setup_s,
                    steal_share: 0.0,
                    lost: None,
                })
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the idle-connection thread panicked"))?
    })
}

/// Connects, sends `msg`, reads it back and checks it; returns the open
/// connection.
fn echo_once(addr: std::net::SocketAddr, msg: &[u8], back: &mut [u8]) -> anyhow::Result<TcpStream> {
    let mut c = TcpStream::connect_timeout(&addr, IO_LIMIT).context("connect")?;
    c.set_nodelay(true)?;
    c.set_read_timeout(Some(IO_LIMIT))?;
    c.set_write_timeout(Some(IO_LIMIT))?;
    c.write_all(msg).context("send")?;
    c.read_exact(back).context("reading the echo")?;
    anyhow::ensure!(
        back == msg,
        "ECHO MISMATCH: the echo differs from what was sent"
    );
    Ok(c)
}

/// The server's resident set in bytes once two reads `SETTLE_STEP` apart
/// agree (or after `SETTLE_LIMIT`, the last read).
fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut last = rss(pid)?;
    while start.elapsed() < SETTLE_LIMIT {
        std::thread::sleep(SETTLE_STEP);
        let now = rss(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// `VmRSS` of a process, in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_rss_is_readable() {
        assert!(super::rss(std::process::id()).unwrap() > 0);
    }
}
