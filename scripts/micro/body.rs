// The loops of crates/ringport/benches/port.rs (post_get one thread, batch
// packets_64 and timeouts_64), run a fixed number of times: `micro SCENARIO
// BACKEND ITERS`. Included by new_api.rs / old_api.rs.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let kind = if a[2] == "epoll" { BackendKind::Epoll } else { BackendKind::IoUring };
    let iters: usize = a[3].parse().unwrap();
    let p = port(kind);
    let mut out = Vec::with_capacity(64);
    let t = Instant::now();
    match a[1].as_str() {
        "post_get" => for _ in 0..iters { post(&p, 3); std::hint::black_box(p.get(LIMIT).unwrap()); },
        "packets_64" => for _ in 0..iters {
            for i in 0..64 { post(&p, i); }
            let mut got = 0;
            while got < 64 { got += p.get_many(&mut out, 64, LIMIT).unwrap(); out.clear(); }
        },
        "timeouts_64" => for _ in 0..iters {
            for _ in 0..64 { timer(&p); }
            let mut got = 0;
            while got < 64 { got += p.get_many(&mut out, 64, LIMIT).unwrap(); out.clear(); }
        },
        s => panic!("{s}"),
    }
    println!("{} {} {:.1} ns/iter", a[1], a[2], t.elapsed().as_nanos() as f64 / iters as f64);
}
