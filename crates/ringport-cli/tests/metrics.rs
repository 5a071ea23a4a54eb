//! `ringport echo --metrics ADDR`: `GET /metrics` scraped over HTTP and
//! checked against the load the test drove; other requests refused.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use support::{close_client, echo_client, log_line, start, stop, wait_for, LIMIT};

/// One HTTP/1.1 request; returns (status line, body).
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.lines().next().unwrap().to_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(body.len(), len, "body length");
    (status, body.to_owned())
}

/// The samples of a scrape, `name{labels}` to value; checks the format.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut typed = Vec::new();
    let mut samples = HashMap::new();
    for line in body.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut w = t.split(' ');
            let (name, kind) = (w.next().unwrap(), w.next().unwrap());
            assert!(kind == "counter" || kind == "gauge", "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            typed.push(name.to_owned());
        } else if !line.starts_with("# HELP ") {
            let (key, value) = line.rsplit_once(' ').unwrap();
            assert!(key.starts_with("ringport_"), "{line}");
            let name = key.split('{').next().unwrap();
            assert!(typed.iter().any(|t| t == name), "{name} has a TYPE line");
            samples.insert(key.to_owned(), value.parse().unwrap());
        }
    }
    samples
}

fn metrics_addr(r: &support::Running) -> SocketAddr {
    let line = log_line(r, "metrics on http://");
    let url = line.split("http://").nth(1).unwrap();
    url.split('/').next().unwrap().parse().unwrap()
}

fn scrape_matches_the_load_driven(backend: &str) {
    let r = start("echo", backend, &["--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&r);
    let before = scrape(m);
    assert_eq!(before["ringport_connections_open"], 0.0);
    assert_eq!(before["ringport_bytes_in_total"], 0.0);
    let backend_name = if backend == "uring" {
        "io_uring"
    } else {
        "epoll"
    };
    let info = format!("ringport_info{{server=\"echo\",backend=\"{backend_name}\"}}");
    assert_eq!(before[&info], 1.0);

    // 4 clients, 10 messages of 1000 bytes each, each echoed before the next.
    let clients: Vec<TcpStream> = (0..4).map(|_| echo_client(r.addr, 10, 1000)).collect();
    // Bytes in are counted before the handler sees them, so before their
    // echo leaves; bytes out when the send's completion is handled, which
    // may come after the client read the echo: wait for it.
    let during = wait_for("the sends counted", || {
        let s = scrape(m);
        let out = s["ringport_bytes_out_total"] >= 40_000.0;
        (out && s["ringport_messages_out_total"] >= 40.0).then_some(s)
    });
    assert_eq!(during["ringport_connections_open"], 4.0);
    assert_eq!(during["ringport_connections_total"], 4.0);
    assert_eq!(during["ringport_bytes_in_total"], 40_000.0);
    assert_eq!(during["ringport_bytes_out_total"], 40_000.0);
    // Each message was read back before the next was sent: one chunk in,
    // one send out per message.
    assert_eq!(during["ringport_messages_in_total"], 40.0);
    assert_eq!(during["ringport_messages_out_total"], 40.0);
    assert!(during["ringport_completions_total"] >= 80.0);
    assert_eq!(during["ringport_workers"], 2.0);

    for c in clients {
        close_client(c);
    }
    let after = wait_for("the disconnects counted", || {
        let s = scrape(m);
        (s["ringport_connections_open"] == 0.0).then_some(s)
    });
    assert_eq!(
        after["ringport_disconnects_total{reason=\"peer_closed\"}"],
        4.0
    );
    assert_eq!(after["ringport_disconnects_total{reason=\"reset\"}"], 0.0);
    assert_eq!(after["ringport_errors_total{kind=\"accept_failed\"}"], 0.0);
    assert_eq!(after["ringport_bytes_in_total"], 40_000.0);
    stop(r);
}

fn other_requests_are_refused(backend: &str) {
    let r = start("echo", backend, &["--metrics", "127.0.0.1:0"]);
    let m = metrics_addr(&r);
    let (status, _) = http(m, "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(m, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // A client that says nothing and goes away does not stop the next one.
    drop(TcpStream::connect(m).unwrap());
    let (status, body) = http(m, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("ringport_connections_open 0\n"), "{body}");
    stop(r);
}

both_backends!(scrape_matches_the_load_driven, other_requests_are_refused);
