//! Criterion micro-benchmarks of the port, on both backends.
//!
//! * `post_get/one_thread`: `post` then `get` on the same thread.
//! * `post_get/two_threads`: a ping-pong of packets between two threads
//!   (each waits on its own port and posts to the other's): a cross-thread
//!   wake-up each way.
//! * `batch/packets_64`: 64 posts, then `get_many` until all are back.
//! * `batch/timeouts_64`: 64 zero-length timers, then `get_many` until all
//!   are back (a trip through the backend for each).
//! * `socket/send_recv_64B`: a `send_all` of 64 bytes on one end of a
//!   loopback TCP pair and a `recv` on the other, both completions reaped.
//!
//! ```text
//! cargo bench -p ringport --bench port            # everything, both backends
//! cargo bench -p ringport --bench port -- epoll   # a filter
//! ```
//! A backend that cannot be set up here (io_uring in a restricted container)
//! is skipped with a line on stderr.
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringport::op;
use ringport::{BackendKind, CompletionPort, OpKind};

const BACKENDS: [BackendKind; 2] = [BackendKind::IoUring, BackendKind::Epoll];
/// Upper bound for any wait: a broken backend fails the bench instead of
/// hanging it.
const LIMIT: Option<Duration> = Some(Duration::from_secs(10));

fn port(kind: BackendKind, concurrency: usize) -> Option<CompletionPort> {
    match CompletionPort::builder()
        .backend(kind)
        .concurrency(concurrency)
        .build()
    {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("skipping the {kind} backend: {e}");
            None
        }
    }
}

fn post_get(c: &mut Criterion) {
    let mut g = c.benchmark_group("post_get");
    g.throughput(Throughput::Elements(1));
    for kind in BACKENDS {
        let Some(p) = port(kind, 1) else { continue };
        g.bench_function(BenchmarkId::new("one_thread", kind), |b| {
            b.iter(|| {
                p.post(op::Packet::new(3).key(1).user(2)).expect("post");
                p.get(LIMIT).expect("get")
            })
        });

        let (Some(a), Some(back)) = (port(kind, 1), port(kind, 1)) else {
            continue;
        };
        let (a2, back2) = (a.clone(), back.clone());
        // The echo thread: every packet on `a` is posted back on `back`; a
        // packet with user u64::MAX stops it.
        let echo = std::thread::spawn(move || loop {
            let c = a2.get(None).expect("echo get");
            if c.user() == u64::MAX {
                return;
            }
            back2
                .post(op::Packet::new(0).user(c.user()))
                .expect("echo post");
        });
        g.bench_function(BenchmarkId::new("two_threads", kind), |b| {
            b.iter(|| {
                a.post(op::Packet::new(0).user(1)).expect("post");
                back.get(LIMIT).expect("get back")
            })
        });
        a.post(op::Packet::new(0).user(u64::MAX))
            .expect("stop packet");
        echo.join().expect("echo thread");
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    const N: usize = 64;
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(N as u64));
    for kind in BACKENDS {
        let Some(p) = port(kind, 1) else { continue };
        let mut out = Vec::with_capacity(N);
        g.bench_function(BenchmarkId::new("packets_64", kind), |b| {
            b.iter(|| {
                for i in 0..N {
                    p.post(op::Packet::new(0).user(i as u64)).expect("post");
                }
                let mut got = 0;
                while got < N {
                    got += p.get_many(&mut out, N, LIMIT).expect("get_many");
                    out.clear();
                }
            })
        });
        g.bench_function(BenchmarkId::new("timeouts_64", kind), |b| {
            b.iter(|| {
                for i in 0..N {
                    p.submit(op::Timeout::new(Duration::ZERO).user(i as u64))
                        .expect("timeout");
                }
                let mut got = 0;
                while got < N {
                    got += p.get_many(&mut out, N, LIMIT).expect("get_many");
                    debug_assert!(out.iter().all(|c| c.kind() == OpKind::Timeout));
                    out.clear();
                }
            })
        });
    }
    g.finish();
}

fn socket(c: &mut Criterion) {
    let mut g = c.benchmark_group("socket");
    g.throughput(Throughput::Elements(1));
    for kind in BACKENDS {
        let Some(p) = port(kind, 1) else { continue };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        client.set_nodelay(true).expect("nodelay");
        let tx = p.associate(client, 1).expect("associate client");
        let rx = p.associate(server, 2).expect("associate server");
        let mut send_buf = Some(vec![7u8; 64]);
        let mut recv_buf = Some(Vec::with_capacity(4096));
        let mut out = Vec::with_capacity(4);
        g.bench_function(BenchmarkId::new("send_recv_64B", kind), |b| {
            b.iter(|| {
                p.submit(op::Recv::new(&rx, recv_buf.take().expect("recv buffer")))
                    .expect("recv");
                p.submit(op::SendAll::new(&tx, send_buf.take().expect("send buffer")))
                    .expect("send");
                let mut received = 0;
                while send_buf.is_none() || received < 64 {
                    p.get_many(&mut out, 4, LIMIT).expect("get_many");
                    for mut c in out.drain(..) {
                        let n = c.result().expect("socket op");
                        let mut buf = c.take_buf::<Vec<u8>>().expect("buffer back");
                        match c.kind() {
                            OpKind::SendAll => send_buf = Some(buf),
                            OpKind::Recv => {
                                received += n;
                                buf.clear();
                                if received < 64 {
                                    p.submit(op::Recv::new(&rx, buf)).expect("recv rest");
                                } else {
                                    recv_buf = Some(buf);
                                }
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = post_get, batch, socket
}
criterion_main!(benches);
