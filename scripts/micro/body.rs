// The loops of crates/ringport/benches/port.rs (post_get one thread, batch
// packets_64 and timeouts_64, socket send_recv_64B), run a fixed number of
// times: `micro SCENARIO BACKEND ITERS`. Included by new_api.rs / old_api.rs.
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
        "send_recv_64B" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            client.set_nodelay(true).unwrap();
            let tx = p.associate(client, 1).unwrap();
            let rx = p.associate(server, 2).unwrap();
            let mut send_buf = Some(vec![7u8; 64]);
            let mut recv_buf = Some(Vec::with_capacity(4096));
            for _ in 0..iters {
                recv(&p, &rx, recv_buf.take().unwrap());
                send_all(&p, &tx, send_buf.take().unwrap());
                let mut received = 0;
                while send_buf.is_none() || received < 64 {
                    p.get_many(&mut out, 4, LIMIT).unwrap();
                    for mut c in out.drain(..) {
                        let n = c.result().unwrap();
                        let mut buf = take_buf(&mut c);
                        if c.kind() == OpKind::SendAll {
                            send_buf = Some(buf);
                        } else {
                            received += n;
                            buf.clear();
                            if received < 64 { recv(&p, &rx, buf) } else { recv_buf = Some(buf) }
                        }
                    }
                }
            }
        }
        s => panic!("{s}"),
    }
    println!("{} {} {:.1} ns/iter", a[1], a[2], t.elapsed().as_nanos() as f64 / iters as f64);
}
