//! `ringport tokio-echo` (hidden): the baseline echo server, written the way
//! most Rust users write one — a multi-thread tokio runtime, a task per
//! connection, `read` into an 8 KiB buffer then `write_all` (`--buffer`
//! changes the size, to compare at equal read sizes).
//!
//! `--udp` adds a UDP echo on the same port number, also the usual way: one
//! task, one `UdpSocket`, `recv_from` into a 64 KiB buffer then `send_to`
//! back. `--unix PATH` adds a Unix stream echo at PATH, served like TCP (a
//! task per connection). Each prints one more stdout line after the first:
//! `listening on udp ADDR`, `listening on unix PATH`.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Flags of `ringport tokio-echo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Worker threads (default: tokio's, one per CPU the process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Set TCP_NODELAY on accepted connections.
    #[arg(long)]
    pub nodelay: bool,
    /// Bytes of each connection's read buffer.
    #[arg(long, default_value_t = 8192)]
    pub buffer: usize,
    /// Also echo UDP datagrams on the same port number.
    #[arg(long)]
    pub udp: bool,
    /// Also serve the echo on a Unix stream socket at PATH (a stale socket
    /// file there is replaced).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
}

/// The largest UDP datagram.
const DATAGRAM_MAX: usize = 65_536;

/// Echoes what `stream` sends until it closes, through a `size`-byte buffer.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, size: usize) {
    let mut buf = vec![0u8; size];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Runs the server until killed. The first stdout line is `listening on ADDR`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_io();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt.build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.bind, args.port)).await?;
        let addr = listener.local_addr()?;
        println!("listening on {addr}");
        let size = args.buffer.max(1);
        if args.udp {
            let socket = tokio::net::UdpSocket::bind(addr).await?;
            println!("listening on udp {}", socket.local_addr()?);
            tokio::spawn(async move {
                let mut buf = vec![0u8; DATAGRAM_MAX];
                loop {
                    let (n, from) = match socket.recv_from(&mut buf).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!("udp recv_from: {e}");
                            continue;
                        }
                    };
                    if let Err(e) = socket.send_to(&buf[..n], from).await {
                        tracing::warn!("udp send_to {from}: {e}");
                    }
                }
            });
        }
        if let Some(path) = &args.unix {
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                std::fs::remove_file(path)?;
            }
            let unix = tokio::net::UnixListener::bind(path)?;
            println!("listening on unix {}", path.display());
            tokio::spawn(async move {
                loop {
                    match unix.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(echo(stream, size));
                        }
                        Err(e) => tracing::warn!("unix accept: {e}"),
                    }
                }
            });
        }
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            };
            if args.nodelay {
                let _ = stream.set_nodelay(true);
            }
            tokio::spawn(echo(stream, size));
        }
    })
}
