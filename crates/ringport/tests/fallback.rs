//! The epoll fallback for real, and idle ports that cost no CPU.
//!
//! * `falls_back_to_epoll_when_io_uring_is_forbidden` re-runs this test
//!   binary as a child that forbids `io_uring_setup/enter/register` with a
//!   seccomp filter (as container runtimes do): the automatic choice must
//!   land on epoll and echo over loopback (so must `examples/echo`), and
//!   forcing `RINGPORT_BACKEND=uring` must fail with a clear error.
//! * `idle_port_sleeps` checks that threads waiting on an idle port (one
//!   idle socket with a pending receive, a timer an hour away) use no CPU.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{next, LIMIT};
use ringport::op;
use ringport::{BackendKind, CompletionPort, OpKind};

/// Set in the child process: which scenario to run under the filter.
const CHILD_ENV: &str = "RINGPORT_FALLBACK_CHILD";

both_backends!(idle_port_sleeps);

// ---- fallback -----------------------------------------------------------

/// The seccomp audit architecture of this build, if the test knows it.
fn audit_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(0xC000_003E)
    } else if cfg!(target_arch = "aarch64") {
        Some(0xC000_00B7)
    } else {
        None
    }
}

/// Makes the io_uring syscalls fail with `EPERM` for this thread and every
/// thread and process it starts afterwards.
fn forbid_io_uring(arch: u32) {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: i64, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k: k as u32,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut prog = [
        stmt(load, 4),                                           // 0: seccomp_data.arch
        jeq(arch.into(), 0, 4),                                  // 1: another ABI → 6 (allow)
        stmt(load, 0),                                           // 2: seccomp_data.nr
        jeq(libc::SYS_io_uring_setup, 3, 0),                     // 3: → 7
        jeq(libc::SYS_io_uring_enter, 2, 0),                     // 4: → 7
        jeq(libc::SYS_io_uring_register, 1, 0),                  // 5: → 7
        stmt(ret, libc::SECCOMP_RET_ALLOW),                      // 6
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32), // 7
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(
        rc,
        0,
        "PR_SET_NO_NEW_PRIVS: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `fprog` points at `prog`, a valid BPF program that outlives
    // the call; the kernel copies it.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const fprog,
            0,
            0,
        )
    };
    assert_eq!(rc, 0, "PR_SET_SECCOMP: {}", std::io::Error::last_os_error());
}

/// Runs this binary's `fallback_child` test in a child process with
/// `CHILD_ENV=mode` and returns its combined output, asserting success.
fn run_child(mode: &str, backend_env: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "fallback_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .env_remove("RINGPORT_BACKEND")
    .stdin(Stdio::null());
    if let Some(b) = backend_env {
        cmd.env("RINGPORT_BACKEND", b);
    }
    let out = cmd.output().expect("run the test binary as a child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child {mode} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {mode} ran no test:\n{text}"
    );
    text
}

#[test]
fn falls_back_to_epoll_when_io_uring_is_forbidden() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    if audit_arch().is_none() {
        eprintln!("SKIPPED: no seccomp audit arch known for this target");
        return;
    }
    let auto = run_child("auto", None);
    assert!(auto.contains("child: backend epoll"), "{auto}");
    assert!(auto.contains("child: echoed"), "{auto}");
    if !auto.contains("child: example") {
        eprintln!("SKIPPED: examples/echo was not built");
    }
    let forced = run_child("forced", Some("uring"));
    assert!(forced.contains("child: uring refused"), "{forced}");
}

/// The child's side; does nothing in a normal run.
#[test]
fn fallback_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    forbid_io_uring(audit_arch().expect("checked by the parent"));
    match mode.as_str() {
        "auto" => {
            let e = CompletionPort::builder()
                .backend(BackendKind::IoUring)
                .build()
                .expect_err("io_uring must be refused under the filter");
            println!("child: io_uring forced: {e}");
            let port = CompletionPort::new(0).expect("the automatic choice falls back");
            assert_eq!(port.backend(), BackendKind::Epoll);
            println!("child: backend {}", port.backend());
            echo_round_trip(&port);
            println!("child: echoed");
            example_under_filter();
        }
        "forced" => {
            let e = CompletionPort::new(0).expect_err("RINGPORT_BACKEND=uring must fail");
            let msg = e.to_string();
            println!("child: uring refused: {msg}");
            assert!(msg.contains("io_uring"), "unclear error: {msg}");
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Accept, recv and send_all through the port against a std client.
fn echo_round_trip(port: &CompletionPort) {
    let listener = port
        .associate(TcpListener::bind("127.0.0.1:0").unwrap(), 0)
        .unwrap();
    let addr = ringport::local_addr(&listener).unwrap();
    port.submit(op::Accept::new(&listener)).unwrap();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(LIMIT).unwrap();
        s.write_all(b"under seccomp").unwrap();
        let mut back = [0; 13];
        s.read_exact(&mut back).unwrap();
        back
    });
    let mut c = next(port);
    assert_eq!(c.kind(), OpKind::Accept);
    let conn = port
        .associate(c.take_accepted().expect("socket").socket, 1)
        .unwrap();
    port.submit(op::Recv::new(&conn, Vec::with_capacity(64)))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 13 {
        let mut c = next(port);
        assert_eq!(c.kind(), OpKind::Recv);
        assert!(c.result().unwrap() > 0);
        let data = c.take_buf::<Vec<u8>>().unwrap();
        got.extend_from_slice(&data);
        port.submit(op::SendAll::new(&conn, data)).unwrap();
        let s = next(port);
        assert_eq!((s.kind(), s.result().is_ok()), (OpKind::SendAll, true));
        if got.len() < 13 {
            port.submit(op::Recv::new(&conn, Vec::with_capacity(64)))
                .unwrap();
        }
    }
    assert_eq!(&client.join().unwrap(), b"under seccomp");
}

/// Runs `examples/echo` (inheriting the filter) and checks it chose epoll
/// and echoes.
fn example_under_filter() {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/echo");
    if !path.exists() {
        return;
    }
    let mut child = Command::new(&path)
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .env_remove("RINGPORT_BACKEND")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run examples/echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let result = (|| {
        let rest = line.trim().strip_prefix("listening on ")?;
        let (addr, backend) = rest.split_once(' ')?;
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(LIMIT).ok()?;
        s.write_all(b"example").ok()?;
        let mut back = [0; 7];
        s.read_exact(&mut back).ok()?;
        Some((backend.to_string(), back))
    })();
    let _ = child.kill();
    let _ = child.wait();
    let (backend, back) = result.unwrap_or_else(|| panic!("example failed: {line:?}"));
    assert_eq!(backend, "(backend: epoll)");
    assert_eq!(&back, b"example");
    println!("child: example {backend} echoed");
}

// ---- idle ---------------------------------------------------------------

/// CPU time (user + system) a thread of this process has used, from
/// `/proc/self/task/TID/stat` (in USER_HZ ticks, 100 per second).
fn thread_cpu(tid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// This thread's id, from the `/proc/thread-self` link ("PID/task/TID").
fn my_tid() -> String {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

fn idle_port_sleeps(kind: BackendKind) {
    let Some(port) = common::port(kind, 2) else {
        return;
    };
    let (_client, h) = common::pair(&port, 1);
    port.submit(op::Recv::new(&h, Vec::with_capacity(64)).user(7))
        .unwrap();
    port.submit(op::Timeout::new(Duration::from_secs(3600)).user(8))
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let port = port.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                tx.send(my_tid()).unwrap();
                port.get(None).map(|c| c.kind())
            })
        })
        .collect();
    let tids: Vec<String> = (0..2).map(|_| rx.recv().unwrap()).collect();
    let start = Instant::now();
    while port.waiting_threads() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waiters never blocked"
        );
        std::thread::yield_now();
    }
    let before: Vec<Duration> = tids.iter().map(|t| thread_cpu(t)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let after: Vec<Duration> = tids.iter().map(|t| thread_cpu(t)).collect();
    let used: Duration = after.iter().zip(&before).map(|(a, b)| *a - *b).sum();
    println!("{kind}: two idle waiters used {used:?} of CPU in 1 s");
    assert!(
        used < Duration::from_millis(50),
        "{kind}: idle waiters used {used:?}"
    );
    for _ in 0..2 {
        port.post(op::Packet::new(0)).unwrap();
    }
    for w in waiters {
        assert_eq!(w.join().unwrap().unwrap(), OpKind::Packet);
    }
}
