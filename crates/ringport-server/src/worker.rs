//! The worker threads: each dequeues batches of completions, hands each to
//! its connection (which puts it in order), handles the server's own
//! completions (accepts, timers, exit), then runs the callbacks of the
//! connections whose drain right it took.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringport::{op, Completion, GetError, OpId};

use crate::conn::{self, Connection};
use crate::conn_cache::ConnCache;
use crate::event::{Action, Event};
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
    let mut cache = ConnCache::default();
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
            route(sh, c, &mut cache, &mut control, &mut ready);
        }
        let mut keep_going = true;
        for c in control.drain(..) {
            keep_going &= handle_own(sh, c);
        }
        for (id, first) in ready.drain(..) {
            // This worker holds the connection's drain right, so nobody
            // else can have run its Disconnect and freed its slot: it is
            // still the cache's entry.
            match cache.peek(id) {
                Some(conn) => conn.drain(first),
                None => match env.registry.get(id) {
                    Some(conn) => conn.drain(first),
                    None => tracing::error!("connection {id}: lost before its drain"),
                },
            }
            conn::run_pending();
        }
        conn::run_pending();
        if !keep_going {
            return;
        }
    }
}

/// Routes one completion: connection completions to their connection
/// (which puts them in order; `ready` gets the connections whose drain
/// right this worker took), the server's own into `control`.
fn route(
    sh: &Shared,
    mut c: Completion,
    cache: &mut ConnCache,
    control: &mut Vec<Completion>,
    ready: &mut Vec<(ConnId, Option<Action>)>,
) {
    if c.key() < FIRST_CONN_KEY {
        control.push(c);
        return;
    }
    let env = &sh.env;
    let id = ConnId(c.key());
    let Some(conn) = cache.get(&env.registry, id) else {
        // A late completion of a connection already gone.
        if let Some(buf) = c.take_buf::<Vec<u8>>() {
            env.port.recycle(buf);
        }
        return;
    };
    let first = match Tag::of(c.user()) {
        Some(Tag::Recv) => deliver_recv(conn, &mut c),
        Some(Tag::Send(n)) => {
            let ev = Event::Sent(result(&c), c.take_buf::<Vec<u8>>());
            conn.deliver(Stream::Send, n, ev)
        }
        Some(Tag::Kick) => {
            // The poster took the drain right for us.
            ready.push((id, None));
            return;
        }
        _ => None,
    };
    if first.is_some() {
        ready.push((id, first));
    }
}

/// A pooled receive's chunk, or its final completion.
fn deliver_recv(conn: &Connection, c: &mut Completion) -> Option<Action> {
    let stream: Stream<OpId> = Stream::Recv(c.id());
    if c.more() {
        let ev = Event::Data(c.take_buf::<Vec<u8>>().unwrap_or_default());
        conn.deliver(stream, c.seq(), ev)
    } else {
        conn.deliver(stream, c.seq(), Event::RecvEnd(result(c)))
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
        Some(Tag::Accept) => sh.acceptor.on_accept(env, &mut c),
        Some(Tag::AcceptRetry) => sh.acceptor.on_retry_timer(env, &c),
        Some(Tag::Sweep) if !c.is_cancelled() && !env.is_stopping() => sweep::run(env),
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
