//! An IOCP-style server framework on [`ringport`]: seed 004's `CIOCPModel`,
//! done right, with no unsafe code.
//!
//! A [`Server`] listens on one address, keeps a number of accepts posted on
//! its completion port (replenished as they complete), and runs a pool of
//! worker threads that dequeue completions and call a [`Handler`]:
//! `on_connect`, `on_data`, `on_sent`, `on_disconnect` with a
//! [`DisconnectReason`] that tells a close by the peer, a reset, an idle
//! timeout, a shutdown, a local close and a local error apart. A
//! [`Connection`] sends from any thread (queued in order, partial sends
//! finished); the live connections are kept in a sharded registry
//! ([`Connections`]).
//!
//! What the seeds leave to the reader is built in:
//!
//! * **Memory follows traffic.** Receives take a buffer from a shared pool
//!   only when data arrives (pooled multishot receives on io_uring, reads on
//!   readiness on epoll): an idle connection pins no receive buffer.
//! * **Flow control.** A connection whose send queue (with the bytes it
//!   sent that the handler has not seen yet) is over the limit is not read
//!   until the queue drains, so a client that does not read, or that sends
//!   faster than the handler takes it, cannot grow the server's memory.
//! * **Liveness.** Connections idle for longer than the idle timeout are
//!   closed and reported as such.
//! * **Descriptor exhaustion.** An accept failing with `EMFILE`/`ENFILE` is
//!   retried after a growing backoff, one at a time; existing connections
//!   are served meanwhile.
//! * **Graceful stop.** [`Server::stop`] stops accepting, lets queued sends
//!   flush until a deadline, closes the rest, joins the workers and closes
//!   every descriptor.
//! * **Stats** ([`Server::stats`]), and snapshots of the running server
//!   from any thread ([`Server::monitor`]) that cost the workers nothing.
//!
//! # Example: the echo server of seeds 002 and 003
//!
//! ```
//! use ringport_server::{Connection, DisconnectReason, Handler, Server};
//! use std::io::{Read, Write};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_data(&self, conn: &Connection, data: Vec<u8>) {
//!         let _ = conn.send(data);
//!     }
//!     fn on_disconnect(&self, conn: &Connection, reason: &DisconnectReason) {
//!         println!("{} disconnected: {reason}", conn.peer_addr());
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1".parse()?).port(0).start(Echo)?;
//! let mut client = std::net::TcpStream::connect(server.local_addr())?;
//! client.write_all(b"hello")?;
//! let mut back = [0; 5];
//! client.read_exact(&mut back)?;
//! assert_eq!(&back, b"hello");
//! println!("{}", server.stop());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads and ordering
//!
//! Callbacks of one connection never run at the same time and come in the
//! order the port completed them; callbacks of different connections run in
//! parallel, at most the port's concurrency value at once. Callbacks run on
//! the worker threads only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod conn_cache;
mod conn_meter;
mod handler;
mod registry;
mod server;
mod snapshot;
mod stats;

pub use conn::{ConnId, Connection};
pub use handler::{DisconnectReason, Handler};
pub use ringport::BackendKind;
pub use server::{Connections, Server, ServerBuilder};
pub use snapshot::{AcceptBackoff, ConnSnapshot, Monitor, Snapshot, SortBy};
pub use stats::Stats;
