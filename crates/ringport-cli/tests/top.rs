//! `ringport top` as a person uses it: inside tmux (send-keys,
//! capture-pane) against `ringport echo --stats-socket` under load from
//! `ringport load`; `--once --json` against a load the test drove; the
//! stats socket's requests, its file's life, and `ringport log`'s messages.
//!
//! tmux must be installed (CI installs it); without it the tmux tests fail
//! and say so.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{
    close_client, echo_client, once, output_within, ringport, socket_path, start, stop, wait_for,
    LIMIT,
};

/// A tmux server of its own (`-L`), one session running a command in a
/// 160x48 terminal; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, command: &str) -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "tmux is not installed: this test runs `ringport top` inside tmux \
                 (install it: apt-get install -y tmux)"
            ),
        }
        let t = Tmux {
            socket: format!("ringport-test-{}-{tag}", std::process::id()),
        };
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "top",
                "-x",
                "160",
                "-y",
                "48",
                command,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
        t
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().unwrap().success(), "send-keys");
    }

    fn running(&self) -> bool {
        self.cmd(&["has-session", "-t", "top"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Captures the screen until `f` finds what it wants in it.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&str) -> Option<T>) -> T {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, || {
                last = self.screen();
                f(&last)
            })
        }));
        found.unwrap_or_else(|_| panic!("screen never showed {what}; last screen:\n{last}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).stderr(Stdio::null()).status();
    }
}

/// What the header says: (open connections, msgs/s in, total bytes in).
fn header(screen: &str) -> Option<(u64, f64, u64)> {
    let conns = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("connections: "))?;
    let open = conns.split(' ').next()?.parse().ok()?;
    let rate = conns
        .split("in: ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    let totals = screen
        .lines()
        .find_map(|l| l.trim().strip_prefix("totals: "))?;
    let bytes_in = totals.split(' ').next()?.parse().ok()?;
    Some((open, rate, bytes_in))
}

struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn top_shows_live_connections_and_moving_throughput(backend: &str) {
    let path = socket_path(backend);
    let sock = path.to_str().unwrap();
    let server = start("echo", backend, &["--stats-socket", sock]);
    let addr = server.addr.to_string();
    // Bounded: 30 s at most, 5000 messages a second.
    let load = Load(
        ringport()
            .args(["load", "--addr", &addr, "--conns", "8", "--duration", "30"])
            .args(["--warmup", "0", "--rate", "5000", "--size", "512"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let exe = env!("CARGO_BIN_EXE_ringport");
    let tmux = Tmux::start(backend, &format!("{exe} top {sock}"));

    let (_, _, first) = tmux.wait("8 live connections and traffic", |s| {
        header(s).filter(|&(open, rate, _)| open == 8 && rate > 0.0)
    });
    let backend_name = if backend == "uring" {
        "io_uring"
    } else {
        "epoll"
    };
    assert!(tmux
        .screen()
        .contains(&format!("ringport echo on {backend_name}")));
    // Moving: the totals grow and the rate stays above zero.
    tmux.wait("the byte count growing", |s| {
        header(s).filter(|&(open, rate, bytes)| open == 8 && rate > 0.0 && bytes > first)
    });
    // The sparkline's peak is above zero once a whole second was seen.
    tmux.wait("a sparkline with traffic", |s| {
        s.lines()
            .find_map(|l| l.split("(peak ").nth(1))
            .and_then(|p| p.split(')').next()?.parse::<f64>().ok())
            .filter(|&peak| peak > 0.0)
    });
    // The table lists the 8 load connections.
    tmux.wait("8 rows", |s| {
        s.contains("connections by bytes (8 shown)").then_some(())
    });

    // s: sort by age, by send queue, by bytes again.
    for order in ["age", "queue", "bytes"] {
        tmux.keys(&["s"]);
        let title = format!("connections by {order} (8 shown)");
        tmux.wait(&title, |s| s.contains(&title).then_some(()));
    }
    // /: a filter on peers.
    tmux.keys(&["/"]);
    tmux.keys(&["-l", "nobody-here"]);
    tmux.keys(&["Enter"]);
    tmux.wait("the filter", |s| {
        s.contains("(0 shown, filter \"nobody-here\")")
            .then_some(())
    });
    tmux.keys(&["/"]);
    tmux.keys(&["Escape"]);
    tmux.wait("the filter gone", |s| s.contains("(8 shown)").then_some(()));
    // p: pause; the screen stands still while the load goes on.
    tmux.keys(&["p"]);
    let frozen = tmux.wait("PAUSED", |s| {
        s.contains("PAUSED").then(|| header(s)).flatten()
    });
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            header(&tmux.screen()),
            Some(frozen),
            "paused screen changed"
        );
    }
    tmux.keys(&["p"]);
    tmux.wait("moving again", |s| {
        header(s).filter(|&(_, _, bytes)| !s.contains("PAUSED") && bytes > frozen.2)
    });

    // The load ends: the count goes down to zero.
    drop(load);
    tmux.wait("0 open connections", |s| header(s).filter(|h| h.0 == 0));

    // The server goes away: top says so and waits; it comes back.
    stop(server);
    assert!(!path.exists(), "the stats socket is removed at stop");
    tmux.wait("the server gone", |s| {
        s.contains("server gone").then_some(())
    });
    assert!(tmux.running(), "top survives the server going away");
    let again = start("echo", backend, &["--stats-socket", sock]);
    tmux.wait("the server back", |s| {
        (!s.contains("server gone") && s.contains("up 00:00:0")).then_some(())
    });

    // q quits.
    tmux.keys(&["q"]);
    wait_for("top to quit", || (!tmux.running()).then_some(()));
    stop(again);
}

fn once_json_matches_the_load_driven(backend: &str) {
    let path = socket_path(backend);
    let server = start("echo", backend, &["--stats-socket", path.to_str().unwrap()]);
    // Three clients moving 1, 2 and 3 times 10 KiB.
    let clients: Vec<_> = (1..=3)
        .map(|n| echo_client(server.addr, n, 10 * 1024))
        .collect();
    let total = 6 * 10 * 1024;
    let v = wait_for("every echo counted", || {
        let v = once(&path);
        // Counted server-wide, then per connection: wait for both.
        let rows = v["busiest"].as_array().unwrap();
        let per_conn: u64 = rows.iter().map(|r| r["bytes_out"].as_u64().unwrap()).sum();
        (v["bytes"]["out"] == total && per_conn == total).then_some(v)
    });
    assert_eq!(v["server"], "echo");
    let backend_name = if backend == "uring" {
        "io_uring"
    } else {
        "epoll"
    };
    assert_eq!(v["backend"], backend_name);
    assert_eq!(v["connections"]["open"], 3);
    assert_eq!(v["connections"]["total"], 3);
    assert_eq!(v["bytes"]["in"], total);
    assert_eq!(v["workers"], 2);
    assert!(v["p99_us"].is_null());
    assert!(v.get("recent_messages").is_none(), "echo keeps no messages");
    // The busiest first, each with its own bytes and its peer's address.
    let busiest = v["busiest"].as_array().unwrap();
    assert_eq!(busiest.len(), 3);
    for (row, n) in busiest.iter().zip([3u64, 2, 1]) {
        let peer = clients[n as usize - 1].local_addr().unwrap().to_string();
        assert_eq!(row["peer"], peer.as_str());
        assert_eq!(row["bytes_in"], n * 10 * 1024);
        assert_eq!(row["bytes_out"], n * 10 * 1024);
        assert_eq!(row["send_queue"], 0);
        assert!(row["age_s"].as_f64().unwrap() >= 0.0);
    }
    for c in clients {
        close_client(c);
    }
    let v = wait_for("the disconnects", || {
        let v = once(&path);
        (v["connections"]["open"] == 0).then_some(v)
    });
    assert_eq!(v["disconnects"]["peer_closed"], 3);
    assert_eq!(v["busiest"].as_array().unwrap().len(), 0);
    stop(server);
    assert!(!path.exists(), "the stats socket is removed at stop");
    // Nobody there now: a clear error, exit code 1.
    let out = output_within(
        {
            let mut c = ringport();
            c.arg("top").arg(&path).args(["--once", "--json"]);
            c
        },
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no server answers at"), "{err}");
}

fn stats_socket_answers_requests(backend: &str) {
    let path = socket_path(backend);
    let server = start("echo", backend, &["--stats-socket", path.to_str().unwrap()]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is for its owner only");
    let s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    let mut out = s.try_clone().unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut next =
        || -> serde_json::Value { serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap() };
    // A bad request is answered with an error; the connection stays.
    out.write_all(b"hello\n").unwrap();
    assert!(next()["error"]
        .as_str()
        .unwrap()
        .contains("unknown request"));
    out.write_all(b"get sort=age top=1\n").unwrap();
    assert_eq!(next()["sort"], "age");
    // watch streams snapshots with a growing uptime until the next request.
    out.write_all(b"watch 100\n").unwrap();
    let ups: Vec<f64> = (0..4)
        .map(|_| next()["uptime_s"].as_f64().unwrap())
        .collect();
    assert!(ups.windows(2).all(|w| w[1] > w[0]), "{ups:?}");
    // A second server on the same socket is refused with exit code 2.
    let out2 = output_within(
        {
            let mut c = ringport();
            c.args(["echo", "--bind", "127.0.0.1", "--port", "0"])
                .args(["--backend", backend, "--stats-socket"])
                .arg(&path);
            c
        },
        LIMIT,
    );
    assert_eq!(out2.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out2.stderr).contains("in use"));
    // A line that never ends is cut off.
    let mut long = UnixStream::connect(&path).unwrap();
    long.set_read_timeout(Some(LIMIT)).unwrap();
    long.write_all(&vec![b'x'; 5000]).unwrap();
    let mut answer = String::new();
    BufReader::new(&long).read_line(&mut answer).unwrap();
    assert!(answer.contains("too long"), "{answer}");
    stop(server);
    assert!(!path.exists());
}

fn log_sends_its_recent_messages(backend: &str) {
    let path = socket_path(backend);
    let server = start("log", backend, &["--stats-socket", path.to_str().unwrap()]);
    let mut c = std::net::TcpStream::connect(server.addr).unwrap();
    for i in 0..3 {
        c.write_all(format!("message {i}\n").as_bytes()).unwrap();
        // The log prints each message when it has it.
        let line = server.lines.recv_timeout(LIMIT).unwrap();
        assert!(line.ends_with(&format!("message {i}\\n")), "{line}");
    }
    let v = once(&path);
    assert_eq!(v["server"], "log");
    let msgs = v["recent_messages"].as_array().unwrap();
    let texts: Vec<&str> = msgs.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["message 0\\n", "message 1\\n", "message 2\\n"]);
    let peer = c.local_addr().unwrap().to_string();
    assert!(msgs.iter().all(|m| m["peer"] == peer.as_str()));
    drop(c);
    stop(server);
}

both_backends!(
    top_shows_live_connections_and_moving_throughput,
    once_json_matches_the_load_driven,
    stats_socket_answers_requests,
    log_sends_its_recent_messages,
);
