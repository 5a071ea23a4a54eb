//! The worker threads: each dequeues batches of completions, hands each to
//! its connection (which puts it in order), handles the server's own
//! completions (accepts, datagrams, timers, exit), then runs the callbacks
//! of the connections whose drain right it took.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringport::{op, Completion, GetError};

use crate::conn::{self, Connection};
use crate::event::{Action, Event, SentBuf};
use crate::id::{ConnId, FIRST_CONN_KEY, SERVER_KEY};
use crate::reorder::Stream;
use crate::shared::Shared;
use crate::stats::Hot;
use crate::sweep;
use crate::tag::Tag;

/// Completions one worker takes from the port at a time, when it shares
/// the port with other workers (a lone worker takes whatever its poll
/// reaped: nobody else could run it).
const BATCH: usize = 16;
const BATCH_ALONE: usize = 256;
/// How long a worker waits in `get`: for as long as it takes (an idle
/// worker uses no CPU). Timers (idle sweep, accept retries) and packets
/// (kicks, exit) wake it when there is something to do.
const WAIT: Option<Duration> = None;

/// A worker thread's body.
pub(crate) fn run(sh: Arc<Shared>, index: usize) {
    worker_loop(&sh, index);
    if sh.env.config.workers == 1 {
        // The only thread that may reap a single-thread ring: reap what is
        // still in flight before leaving (the port is done anyway).
        sh.env.port.shutdown();
    }
    sh.workers_running.fetch_sub(1, Ordering::SeqCst);
    sh.env.notify_stop();
}

/// Tells every worker to exit: one packet, which each worker passes on.
pub(crate) fn post_exit(sh: &Shared) -> std::io::Result<()> {
    sh.env
        .port
        .post(op::Packet::new(0).key(SERVER_KEY).user(Tag::Exit.user()))
}

fn worker_loop(sh: &Arc<Shared>, index: usize) {
    let env = &sh.env;
    conn::enter_worker();
    env.counters.enter_worker(index);
    let batch_max = if env.config.workers == 1 {
        BATCH_ALONE
    } else {
        BATCH
    };
    let mut batch = Vec::with_capacity(batch_max);
    let mut control = Vec::new();
    let mut ready = Vec::with_capacity(batch_max);
    loop {
        // No lock around the dequeue: connections put their completions
        // back in order themselves (see the `conn` module docs).
        match env.port.get_many(&mut batch, batch_max, WAIT) {
            Ok(n) => env.counters.add_hot(Hot::Completions, n as u64),
            Err(GetError::Closed) => return,
            Err(GetError::TimedOut) => continue,
            Err(GetError::Io(e)) => {
                tracing::error!("worker: the completion port failed: {e}");
                return;
            }
        }
        for c in batch.drain(..) {
            route(sh, c, &mut control, &mut ready);
        }
        let mut keep_going = true;
        for c in control.drain(..) {
            keep_going &= handle_own(sh, c);
        }
        for (to, first) in ready.drain(..) {
            to.conn().drain(first);
            conn::run_pending();
        }
        conn::run_pending();
        if !keep_going {
            return;
        }
    }
}

/// A connection whose drain right this worker took.
enum Ready {
    /// Reached through the completion's context (the completion keeps it).
    Via(Completion),
    /// Looked up in the registry.
    Owned(Connection),
}

impl Ready {
    fn conn(&self) -> &Connection {
        match self {
            Ready::Via(c) => c.context().expect("a completion with a connection context"),
            Ready::Owned(conn) => conn,
        }
    }
}

/// What a connection's completion brings, taken out of it.
enum Input {
    Chunk(Vec<u8>),
    RecvEnd(Result<usize, i32>),
    Sent(u64, Result<usize, i32>, SentBuf),
    Timer(u64, bool),
    Connected(Result<usize, i32>),
    ConnectTimeout(bool),
    Kick,
}

/// Routes one completion: connection completions to their connection
/// (which puts them in order; `ready` gets the connections whose drain
/// right this worker took), the server's own into `control`.
fn route(
    sh: &Shared,
    mut c: Completion,
    control: &mut Vec<Completion>,
    ready: &mut Vec<(Ready, Option<Action>)>,
) {
    if c.key() < FIRST_CONN_KEY {
        control.push(c);
        return;
    }
    let env = &sh.env;
    let input = match Tag::of(c.user()) {
        Some(Tag::Recv) if c.more() => Input::Chunk(c.take_buf::<Vec<u8>>().unwrap_or_default()),
        Some(Tag::Recv) => Input::RecvEnd(result(&c)),
        Some(Tag::Send(n)) => {
            let len = c.data().len();
            let vec = c.take_buf::<Vec<u8>>();
            let mem = vec.as_ref().map_or(len, Vec::capacity);
            Input::Sent(n, result(&c), SentBuf { len, mem, vec })
        }
        Some(Tag::ConnTimer(n)) => Input::Timer(n, c.is_cancelled()),
        Some(Tag::Connect) => Input::Connected(result(&c)),
        Some(Tag::ConnectTimeout) => Input::ConnectTimeout(c.is_cancelled()),
        Some(Tag::Kick) => Input::Kick,
        _ => return,
    };
    // Operations on the connection's socket carry the connection (their
    // handle's context): no lookup. Its timers and kicks have no handle.
    let (via, owned) = match c.context::<Connection>() {
        Some(_) => (true, None),
        None => (false, env.registry.get(ConnId(c.key()))),
    };
    let conn = if via {
        c.context::<Connection>()
    } else {
        owned.as_ref()
    };
    let Some(conn) = conn.filter(|conn| !conn.is_gone()) else {
        // A late completion of a connection already gone.
        match input {
            Input::Chunk(buf) | Input::Sent(_, _, SentBuf { vec: Some(buf), .. }) => {
                env.port.recycle(buf)
            }
            _ => {}
        }
        return;
    };
    let first = match input {
        Input::Chunk(buf) => conn.deliver(Stream::Recv(c.id()), c.seq(), Event::Data(buf)),
        Input::RecvEnd(res) => conn.deliver(Stream::Recv(c.id()), c.seq(), Event::RecvEnd(res)),
        Input::Sent(n, res, buf) => conn.deliver(Stream::Send, n, Event::Sent(res, buf)),
        Input::Timer(n, cancelled) => conn.deliver_with(|st, env| st.on_timer(env, n, cancelled)),
        Input::Connected(res) => conn.deliver_with(|st, env| st.on_connected(env, res)),
        Input::ConnectTimeout(cancelled) => conn.deliver_with(|st, env| {
            if !cancelled {
                st.on_connect_timeout(env);
            }
        }),
        Input::Kick => {
            // The poster took the drain right for us.
            let to = match owned {
                Some(conn) => Ready::Owned(conn),
                None => Ready::Via(c),
            };
            ready.push((to, None));
            return;
        }
    };
    if first.is_some() {
        let to = match owned {
            Some(conn) => Ready::Owned(conn),
            None => Ready::Via(c),
        };
        ready.push((to, first));
    }
}

/// A completion's result as bytes or an error code.
fn result(c: &Completion) -> Result<usize, i32> {
    match c.error_code() {
        Some(e) => Err(e),
        None => Ok(c.result().unwrap_or(0)),
    }
}

/// Handles a completion of the server's own; false means "exit".
fn handle_own(sh: &Shared, mut c: Completion) -> bool {
    let env = &sh.env;
    match Tag::of(c.user()) {
        Some(Tag::Accept(n)) => {
            if let Some(a) = sh.acceptors.get(n as usize) {
                a.on_accept(env, &mut c);
            }
        }
        Some(Tag::AcceptStart(n)) => {
            if let Some(a) = sh.acceptors.get(n as usize) {
                a.post_first(env);
            }
        }
        Some(Tag::AcceptRetry(n)) => {
            if let Some(a) = sh.acceptors.get(n as usize) {
                a.on_retry_timer(env, &c);
            }
        }
        Some(Tag::Datagram) => {
            if let Some(d) = &sh.datagrams {
                d.on_recv(&mut c);
            }
        }
        Some(Tag::DatagramStart) => {
            if let Some(d) = sh.datagrams.as_ref().filter(|_| !env.is_stopping()) {
                if let Err(e) = d.post() {
                    tracing::error!("posting the datagram receive failed: {e}");
                }
            }
        }
        Some(Tag::DatagramSent(mem)) => {
            if let Some(d) = &sh.datagrams {
                d.on_sent(&mut c, mem);
            }
        }
        Some(Tag::Sweep) if !c.is_cancelled() && !env.is_stopping() => sweep::run(env),
        Some(Tag::ServerTimer(n)) => {
            let fired = env.timers.lock().fired(&env.port, n, c.is_cancelled());
            if let Some(timer) = fired.filter(|_| !env.is_stopping()) {
                env.callbacks.server_timer(env, timer);
            }
        }
        Some(Tag::Exit) => {
            // Pass the exit on: a batch may have given this worker
            // several packets, and each worker must see one.
            if sh.workers_alive.fetch_sub(1, Ordering::SeqCst) > 1 {
                let _ = post_exit(sh);
            }
            return false;
        }
        _ => {}
    }
    true
}
