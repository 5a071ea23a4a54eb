//! The thread that asks the stats socket for snapshots, so the screen never
//! waits for the server: it sends `get` four times a second in the order
//! the screen asks for, and reconnects when the server went away.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use ringport_server::SortBy;

use crate::stats_wire::WireSnapshot;

/// How often a snapshot is asked for.
pub const POLL: Duration = Duration::from_millis(250);
/// How often a gone server is looked for again.
pub const RECONNECT: Duration = Duration::from_millis(500);
/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections asked for.
pub const TOP: usize = 50;

/// What the fetch thread tells the screen.
pub enum Update {
    /// A fresh snapshot.
    Snapshot(Box<WireSnapshot>),
    /// The server cannot be reached (why).
    Gone(String),
}

/// The order asked for, shared with the screen.
#[derive(Default)]
pub struct SharedOrder(AtomicU8);

impl SharedOrder {
    /// Sets the order of the next requests.
    pub fn set(&self, o: SortBy) {
        let n = match o {
            SortBy::Bytes => 0,
            SortBy::Age => 1,
            SortBy::SendQueue => 2,
        };
        self.0.store(n, Ordering::Relaxed);
    }

    /// The order of the next request.
    pub fn get(&self) -> SortBy {
        match self.0.load(Ordering::Relaxed) {
            1 => SortBy::Age,
            2 => SortBy::SendQueue,
            _ => SortBy::Bytes,
        }
    }
}

/// A connection to a stats socket that answers `get` requests.
pub struct StatsClient {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

impl StatsClient {
    /// Connects to the stats socket at `path`.
    pub fn connect(path: &Path) -> anyhow::Result<StatsClient> {
        let s = UnixStream::connect(path)
            .with_context(|| format!("no server answers at {}", path.display()))?;
        s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(StatsClient {
            out: s.try_clone()?,
            input: BufReader::new(s),
        })
    }

    /// Asks for one snapshot; returns its JSON line and what it says.
    pub fn get(&mut self, order: SortBy, top: usize) -> anyhow::Result<(String, WireSnapshot)> {
        writeln!(self.out, "get sort={} top={top}", order.name())?;
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            bail!("the server closed the stats socket");
        }
        let line = line.trim_end().to_owned();
        let snap =
            serde_json::from_str(&line).with_context(|| format!("not a snapshot: {line:.200}"))?;
        Ok((line, snap))
    }
}

/// Fetches snapshots from `path` until `quit` is set or the screen is gone.
pub fn run(path: PathBuf, order: Arc<SharedOrder>, quit: Arc<AtomicBool>, tx: Sender<Update>) {
    let mut client: Option<StatsClient> = None;
    while !quit.load(Ordering::Relaxed) {
        let result = match client.as_mut() {
            Some(c) => c.get(order.get(), TOP).map(|(_, s)| s),
            None => StatsClient::connect(&path).and_then(|mut c| {
                let s = c.get(order.get(), TOP).map(|(_, s)| s);
                client = Some(c);
                s
            }),
        };
        let (update, pause) = match result {
            Ok(snap) => (Update::Snapshot(Box::new(snap)), POLL),
            Err(e) => {
                client = None;
                (Update::Gone(format!("{e:#}")), RECONNECT)
            }
        };
        if tx.send(update).is_err() {
            return;
        }
        std::thread::sleep(pause);
    }
}
