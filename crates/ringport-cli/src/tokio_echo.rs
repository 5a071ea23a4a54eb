//! `ringport tokio-echo` (hidden): the baseline echo server, written the way
//! most Rust users write one — a multi-thread tokio runtime, a task per
//! connection, `read` into an 8 KiB buffer then `write_all` (`--buffer`
//! changes the size, to compare at equal read sizes).

use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        println!("listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (mut stream, _) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            };
            if args.nodelay {
                let _ = stream.set_nodelay(true);
            }
            let size = args.buffer.max(1);
            tokio::spawn(async move {
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
            });
        }
    })
}
