//! `ringport log`: the server of seeds 000 and 004 that shows every message
//! it receives (port 5050): one line per message on stdout, with a UTC
//! timestamp and the client's address, non-printable bytes escaped; with
//! `--udp`, every datagram too, with its sender's address.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ringport::Address;
use ringport_server::{Connection, DatagramHandler, DatagramSocket, DisconnectReason, Handler};

use crate::echo::{serve, ServerArgs};
use crate::recent::RecentMessages;

/// Flags of `ringport log`.
///
/// ```text
/// ringport log --bind 127.0.0.1 --port 5050 --udp
/// ```
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Listen on this port (0 = any free port).
    #[arg(long, short, default_value_t = 5050)]
    pub port: u16,
}

/// Prints each received message (a chunk of a connection's bytes, or a
/// datagram) as `TIMESTAMP PEER MESSAGE`, and keeps the latest for the
/// stats socket when there is one.
struct MessageLog {
    recent: Option<Arc<RecentMessages>>,
}

impl MessageLog {
    /// Prints one message from `peer`, `note` after it.
    fn print(&self, peer: &Address, data: &[u8], note: &str) {
        let (time, text) = (rfc3339_utc(SystemTime::now()), escape(data));
        let line = format!("{time} {peer} {text}{note}\n");
        {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        }
        if let Some(recent) = &self.recent {
            recent.push(time, peer.to_string(), text);
        }
    }
}

/// Datagrams are printed as connections' messages are; a truncated one
/// with what fitted and ` (truncated)` after it.
impl DatagramHandler for MessageLog {
    type State = ();

    fn on_start(&self, _: &DatagramSocket) {}

    fn on_datagram(&self, _: &DatagramSocket, _: &(), from: &Address, data: Vec<u8>) {
        self.print(from, &data, "");
    }

    fn on_truncated(&self, _: &DatagramSocket, _: &(), from: &Address, part: Vec<u8>) {
        self.print(from, &part, " (truncated)");
    }
}

impl Handler for MessageLog {
    type State = ();

    fn on_connect(&self, conn: &Connection, first: Option<Vec<u8>>) {
        tracing::info!(id = %conn.id(), peer = %conn.peer_address(), "connected");
        if let Some(data) = first.filter(|d| !d.is_empty()) {
            self.on_data(conn, &mut (), data);
        }
    }

    fn on_data(&self, conn: &Connection, _: &mut (), data: Vec<u8>) {
        self.print(conn.peer_address(), &data, "");
    }

    fn on_disconnect(&self, conn: &Connection, _: (), reason: &DisconnectReason) {
        tracing::info!(id = %conn.id(), peer = %conn.peer_address(), %reason, "disconnected");
    }
}

/// Printable ASCII as is; `\\`, `\n`, `\r`, `\t` and `\xNN` for the rest.
pub fn escape(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len());
    for &b in data {
        match b {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

/// `2024-05-01T12:34:56.789Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Runs the subcommand; returns the process exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = std::net::SocketAddr::new(args.server.bind, args.port);
    let recent = args
        .server
        .observe
        .stats_socket
        .is_some()
        .then(|| Arc::new(RecentMessages::default()));
    let handler = MessageLog {
        recent: recent.clone(),
    };
    let mut builder = args.server.builder(args.port);
    if args.server.udp {
        builder = builder.udp(MessageLog {
            recent: recent.clone(),
        });
    }
    serve("log", addr, builder, handler, &args.server.observe, recent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn escapes_non_printable_bytes() {
        assert_eq!(escape(b"hi there"), "hi there");
        assert_eq!(escape(b"a\nb\\\x00\xff"), "a\\nb\\\\\\x00\\xff");
    }

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_123);
        assert_eq!(rfc3339_utc(t), "2024-02-29T12:34:56.123Z");
    }
}
