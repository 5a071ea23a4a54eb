//! Outbound connections: a server opening a connection to another service,
//! served by the same workers and handler, with a connect timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};

use crate::conn::{Connection, ServerEnv};
use crate::id::ConnId;
use crate::stats::Counters;

/// Registers an outbound connection to `addr` and posts its connect and
/// connect timeout; its completions go to the connection (see
/// `State::on_connected`).
pub(crate) fn connect(
    env: &Arc<ServerEnv>,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<ConnId> {
    if env.is_stopping() {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the server is stopping",
        ));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    let sock = SockRef::from(&socket);
    if env.config.nodelay {
        sock.set_tcp_nodelay(true)?;
    }
    if let Some(idle) = env.config.keepalive {
        sock.set_keepalive(true)?;
        sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle))?;
    }
    let conn = env
        .registry
        .insert(|id| Connection::outbound(id, addr, env.clone()));
    let id = conn.id();
    let posted = env
        .port
        .associate_with(socket, id.as_u64(), conn.clone())
        .and_then(|h| {
            conn.state()
                .start_connect(env, h, id.as_u64(), addr, timeout)
        });
    if let Err(e) = posted {
        env.registry.remove(id);
        return Err(e);
    }
    Counters::add(&env.counters.connects, 1);
    Ok(id)
}
