//! `--stats-socket PATH`: a Unix socket that answers each request line
//! with one JSON snapshot per line (see [`Request`]), on threads of its own
//! (an accept thread and one per client, at most [`MAX_CLIENTS`]): the
//! server's workers never wait for it. The socket file is removed at stop.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use ringport_server::SortBy;

use crate::stats_wire::{Request, WireSnapshot};

/// Clients served at once; more are told so and closed.
pub const MAX_CLIENTS: usize = 32;
/// The longest request line.
const LINE_MAX: usize = 4096;
/// How long a write to a client may block before it is dropped (a client
/// that does not read).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes a snapshot in an order, with so many connections listed.
pub type Source = Arc<dyn Fn(SortBy, usize) -> WireSnapshot + Send + Sync>;

type Clients = Arc<Mutex<Vec<(UnixStream, JoinHandle<()>)>>>;

/// The running stats socket; [`stop`](Self::stop) it (dropping it stops it
/// too).
pub struct StatsSocket {
    path: PathBuf,
    stopping: Arc<AtomicBool>,
    accepter: Option<JoinHandle<()>>,
    clients: Clients,
}

impl StatsSocket {
    /// Listens on `path`. A stale socket file (nobody listening) is
    /// replaced; a live one, or a file that is not a socket, is an error.
    pub fn start(path: &Path, source: Source) -> anyhow::Result<StatsSocket> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!("{} exists and is not a socket", path.display());
            }
            if UnixStream::connect(path).is_ok() {
                bail!("{} is in use by a running server", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(path)
            .with_context(|| format!("listening on the stats socket {}", path.display()))?;
        // Peers' addresses are in the snapshots: for this user only.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let clients: Clients = Arc::default();
        let accepter = {
            let (stopping, clients) = (stopping.clone(), clients.clone());
            std::thread::Builder::new()
                .name("ringport-stats".into())
                .spawn(move || accept_loop(&listener, &stopping, &clients, &source))
                .context("starting the stats socket thread")?
        };
        Ok(StatsSocket {
            path: path.to_owned(),
            stopping,
            accepter: Some(accepter),
            clients,
        })
    }

    /// Stops accepting, ends every client, removes the socket file.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(accepter) = self.accepter.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept thread with a connection of our own.
        let _ = UnixStream::connect(&self.path);
        let _ = accepter.join();
        let clients = std::mem::take(&mut *lock(&self.clients));
        for (stream, _) in &clients {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        for (_, thread) in clients {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for StatsSocket {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: &UnixListener, stopping: &AtomicBool, clients: &Clients, source: &Source) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("stats socket: accept failed: {e}");
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let mut list = lock(clients);
        list.retain(|(_, t)| !t.is_finished());
        if list.len() >= MAX_CLIENTS {
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            let _ = writeln!(stream, "{{\"error\":\"too many clients\"}}");
            continue;
        }
        let Ok(kept) = stream.try_clone() else {
            continue;
        };
        let source = source.clone();
        let spawned = std::thread::Builder::new()
            .name("ringport-stats-client".into())
            .spawn(move || {
                if let Err(e) = serve_client(stream, &source) {
                    tracing::debug!("stats socket client: {e}");
                }
            });
        match spawned {
            Ok(t) => list.push((kept, t)),
            Err(e) => tracing::warn!("stats socket: no thread for a client: {e}"),
        }
    }
}

/// Answers one client's requests until it closes or the socket stops.
fn serve_client(stream: UnixStream, source: &Source) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    let mut line = Vec::new();
    let mut watching: Option<Request> = None;
    loop {
        input
            .get_ref()
            .set_read_timeout(watching.and_then(|r| r.watch))?;
        let room = LINE_MAX.saturating_sub(line.len()) as u64;
        match input.by_ref().take(room).read_until(b'\n', &mut line) {
            Ok(_) if !line.ends_with(b"\n") && line.len() >= LINE_MAX => {
                writeln!(out, "{{\"error\":\"request line too long\"}}")?;
                return Ok(());
            }
            // The end of the stream (maybe in the middle of a line).
            Ok(_) if !line.ends_with(b"\n") => return Ok(()),
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                match Request::parse(text.trim()) {
                    Ok(req) => {
                        send(&mut out, source, &req)?;
                        watching = req.watch.map(|_| req);
                    }
                    Err(msg) => {
                        let err = serde_json::json!({ "error": msg });
                        writeln!(out, "{err}")?;
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // The watch interval passed with no new request (what was
                // read of a line so far stays in `line`).
                if let Some(req) = watching {
                    send(&mut out, source, &req)?;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn send(out: &mut UnixStream, source: &Source, req: &Request) -> std::io::Result<()> {
    let snap = source(req.sort, req.top);
    let mut text = serde_json::to_string(&snap).map_err(std::io::Error::other)?;
    text.push('\n');
    out.write_all(text.as_bytes())
}
