//! The stream sockets a server listens on: its TCP listener, and a Unix
//! stream listener at a path ([`ServerBuilder::listen_unix`](crate::ServerBuilder::listen_unix)),
//! both served by the same handler.
//!
//! A Unix listener's socket file belongs to the server: a stale one left by
//! a dead earlier run (nobody accepts on it) is replaced, a live one (a
//! server answers) or a file that is not a socket is refused with
//! `AddrInUse`, and the file is removed when the server stops, unless
//! something else has replaced it meanwhile.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// What kind of stream listener an acceptor accepts on.
pub(crate) enum ListenerKind {
    /// TCP: accepted connections get the TCP options of the settings.
    Tcp,
    /// A Unix stream socket bound to a path, removed at stop.
    Unix(SocketFile),
}

/// Binds and listens on a TCP address; returns the socket and the address
/// it got (the actual port when port 0 was asked for).
pub(crate) fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<(Socket, SocketAddr)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an IP address"))?;
    Ok((socket, local))
}

/// Binds and listens on a Unix stream socket at `path`, replacing a stale
/// socket file (see the module docs).
pub(crate) fn bind_unix(path: &Path, backlog: i32) -> io::Result<(Socket, SocketFile)> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let addr = SockAddr::unix(path).map_err(with_path)?;
    clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&addr).map_err(with_path)?;
    // Removed again (dropped) should listening fail.
    let file = SocketFile::of(path)?;
    socket.listen(backlog)?;
    Ok((socket, file))
}

/// Removes a socket file nobody listens on; refuses a live socket and a
/// file that is not a socket.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let in_use = |why: &str| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{}: {why}", path.display()),
        )
    };
    if !meta.file_type().is_socket() {
        return Err(in_use("exists and is not a socket"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(in_use("a server is listening on it")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing the stale socket file {}", path.display());
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// A Unix listener's socket file, known by its device and inode; removed
/// when dropped (a server that failed to start, or stopped).
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<SocketFile> {
        let meta = fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The path the listener is bound to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it still is the one the server bound.
    pub(crate) fn remove(&self) {
        let ours = fs::symlink_metadata(&self.path)
            .map(|m| m.dev() == self.dev && m.ino() == self.ino)
            .unwrap_or(false);
        if ours {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!("removing {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}
