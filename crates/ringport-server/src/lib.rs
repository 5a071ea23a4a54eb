//! An IOCP-style server framework on [`ringport`]: seed 004's `CIOCPModel`,
//! done right, with no unsafe code.
//!
//! A [`Server`] listens on one TCP address (and, if asked, on a Unix stream
//! socket: [`ServerBuilder::listen_unix`], served by the same handler),
//! keeps accepts posted on its completion port, and runs a pool of worker
//! threads that dequeue
//! completions and call a [`Handler`]: `on_connect` makes the connection's
//! own state (the seeds' `PER_HANDLE_DATA`, of the handler's type), and
//! `on_data`, `on_sent`, `on_timer` and `on_disconnect` get it, the last
//! with a [`DisconnectReason`] that tells a close by the peer, a reset, an
//! idle timeout, a read or write deadline, a shutdown, a local close and a
//! local error apart. A [`Connection`] sends from any thread (queued in
//! order, partial sends finished, shared buffers sent without a copy); the
//! live connections are kept in a sharded registry ([`Connections`]), which
//! also broadcasts, arms server timers and opens outbound connections.
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
//! * **Liveness.** An idle timeout, a read deadline and a write deadline
//!   ([`ServerBuilder::idle_timeout`], [`read_timeout`](ServerBuilder::read_timeout),
//!   [`write_timeout`](ServerBuilder::write_timeout)), each reported as such.
//! * **Timers.** One-shot or periodic, per connection
//!   ([`Connection::set_timer`]; cancelled when it ends) or per server
//!   ([`Connections::set_periodic`]: a game server's tick).
//! * **Blocking work.** [`Connection::blocking`] frees the worker's running
//!   slot while a callback blocks, so other connections are served.
//! * **Outbound connections.** [`Connections::connect`] opens a connection
//!   to another service, with a connect timeout, served by the same
//!   workers and handler.
//! * **Descriptor exhaustion.** An accept failing with `EMFILE`/`ENFILE` is
//!   retried after a growing backoff, one at a time; existing connections
//!   are served meanwhile.
//! * **Graceful stop.** [`Server::stop`] stops accepting, lets queued sends
//!   flush until a deadline, closes the rest, joins the workers and closes
//!   every descriptor; [`Server::stop_on`] a [`StopSignal`] does it on SIGINT
//!   or SIGTERM.
//! * **Datagrams.** [`ServerBuilder::udp`] adds a UDP socket on the same
//!   port number, served by a [`DatagramHandler`] (`WSARecvFrom` /
//!   `WSASendTo`): each datagram with its sender's address, on any worker;
//!   a pooled receive (multishot on io_uring); truncated datagrams
//!   reported as such; reply sends bounded in memory, dropped and counted
//!   over the limit ([`ServerBuilder::datagram_send_limit`]).
//! * **Stats** ([`Server::stats`]), and snapshots of the running server
//!   from any thread ([`Server::monitor`]) that cost the workers nothing.
//!
//! # Example: a chat server
//!
//! Each client's first line is its name; every later line goes to every
//! other client as `name: line`, in one shared buffer.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::sync::Arc;
//! use ringport_server::{Connection, Handler, Server};
//!
//! struct Chat;
//!
//! /// Each client's own state: no map, no lock.
//! #[derive(Default)]
//! struct Client {
//!     name: Option<String>,
//!     partial: Vec<u8>,
//! }
//!
//! impl Handler for Chat {
//!     type State = Client;
//!
//!     fn on_connect(&self, conn: &Connection, _first: Option<Vec<u8>>) -> Client {
//!         let _ = conn.send(b"name?\n".as_slice());
//!         Client::default()
//!     }
//!
//!     fn on_data(&self, conn: &Connection, client: &mut Client, data: Vec<u8>) {
//!         client.partial.extend_from_slice(&data);
//!         while let Some(end) = client.partial.iter().position(|&b| b == b'\n') {
//!             let line: Vec<u8> = client.partial.drain(..=end).collect();
//!             let line = String::from_utf8_lossy(&line[..end]).into_owned();
//!             match &client.name {
//!                 None => client.name = Some(line),
//!                 Some(name) => {
//!                     let msg: Arc<[u8]> = format!("{name}: {line}\n").into_bytes().into();
//!                     conn.connections().broadcast(msg, Some(conn.id()));
//!                 }
//!             }
//!         }
//!     }
//! }
//!
//! let server = Server::builder().bind("127.0.0.1".parse()?).start(Chat)?;
//! let join = |name: &str| -> std::io::Result<_> {
//!     let mut s = std::net::TcpStream::connect(server.local_addr())?;
//!     let mut r = BufReader::new(s.try_clone()?);
//!     let mut prompt = String::new();
//!     r.read_line(&mut prompt)?; // connected and registered
//!     writeln!(s, "{name}")?;
//!     Ok((s, r))
//! };
//! let (mut alice, _) = join("alice")?;
//! let (_bob, mut bob_reads) = join("bob")?;
//! writeln!(alice, "hello bob")?;
//! let mut line = String::new();
//! bob_reads.read_line(&mut line)?;
//! assert_eq!(line, "alice: hello bob\n");
//! server.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Bob's name line and Alice's message travel on different connections;
//! Bob is registered (his prompt came) before Alice writes, so the
//! broadcast reaches him whether or not his name has arrived yet.
//!
//! # Threads and ordering
//!
//! Callbacks of one connection never run at the same time and come in the
//! order the port completed them; callbacks of different connections run in
//! parallel, at most the port's concurrency value at once. Callbacks run on
//! the worker threads only.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acceptor;
mod activity;
mod builder;
mod config;
mod conn;
mod conn_meter;
mod conn_state;
mod connections;
mod datagram;
mod env;
mod event;
mod flow;
mod handler;
mod id;
mod listener;
mod outbound;
mod reason;
mod registry;
mod reorder;
mod server;
mod shared;
mod signals;
mod snapshot;
mod stats;
mod stop;
mod sweep;
mod tag;
mod timer;
mod worker;

pub use builder::ServerBuilder;
pub use conn::Connection;
pub use connections::Connections;
pub use datagram::{DatagramHandler, DatagramSocket};
pub use handler::Handler;
pub use id::ConnId;
pub use reason::DisconnectReason;
pub use ringport::BackendKind;
pub use server::Server;
pub use signals::StopSignal;
pub use snapshot::{AcceptBackoff, ConnSnapshot, Monitor, Snapshot, SortBy};
pub use stats::Stats;
pub use timer::TimerId;
