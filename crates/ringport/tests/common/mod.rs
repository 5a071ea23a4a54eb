//! Helpers shared by the integration tests: both backends, loopback pairs,
//! bounded waits and descriptor counting.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ringport::{BackendKind, Completion, CompletionPort, Handle};

/// Upper bound for any single wait in a test: generous, so a slow CI machine
/// passes, but a hang still fails instead of blocking the suite.
pub const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

/// Generates one `#[test]` per backend for each listed function, which takes
/// the backend as its argument.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() { super::$name(ringport::BackendKind::IoUring) } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name(ringport::BackendKind::Epoll) } )*
        }
    };
}

/// A port on `kind`, or `None` (printed as a skip) when io_uring cannot be set
/// up on this machine. epoll must always work.
pub fn port(kind: BackendKind, concurrency: usize) -> Option<CompletionPort> {
    match CompletionPort::builder()
        .backend(kind)
        .concurrency(concurrency)
        .build()
    {
        Ok(p) => {
            assert_eq!(p.backend(), kind);
            Some(p)
        }
        Err(e) if kind == BackendKind::IoUring => {
            eprintln!("SKIPPED: io_uring unavailable here: {e}");
            None
        }
        Err(e) => panic!("the {kind} backend failed: {e}"),
    }
}

/// Dequeues one completion or fails the test after `LIMIT`.
pub fn next(port: &CompletionPort) -> Completion {
    port.get(LIMIT).expect("a completion within the limit")
}

/// A connected loopback pair: the client as a std stream, the server side
/// associated with `port` under `key`.
pub fn pair(port: &CompletionPort, key: u64) -> (TcpStream, Handle) {
    // One listener per test thread: a listener per pair would use up the
    // ephemeral ports when tests open thousands of pairs.
    thread_local! {
        static LISTENER: TcpListener = TcpListener::bind("127.0.0.1:0").expect("bind");
    }
    let (client, server) = LISTENER.with(|l| {
        let client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
        let (server, peer) = l.accept().expect("accept");
        assert_eq!(peer, client.local_addr().unwrap());
        (client, server)
    });
    client.set_read_timeout(LIMIT).unwrap();
    client.set_write_timeout(LIMIT).unwrap();
    (client, port.associate(server, key).expect("associate"))
}

/// Open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Makes the next close of `s` send a reset (SO_LINGER 0).
pub fn set_linger_zero(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

/// Builds `examples/<name>` of this package with the cargo, profile, target
/// and target directory that built the running test, and returns the
/// binary's path. `cargo test` builds the examples but `cargo test --tests`
/// (or running one test binary) does not; building here also keeps a stale
/// binary from being tested. Cargo makes it a no-op when up to date.
pub fn build_example(name: &str) -> std::path::PathBuf {
    use std::path::Path;
    use std::process::Command;
    // One build at a time per test binary (tests of both backends call it).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    // <target-dir>[/<triple>]/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("<profile>/deps");
    let profile = profile_dir.file_name().and_then(|p| p.to_str()).unwrap();
    let above = profile_dir.parent().expect("the target directory");
    // A `--target` build puts its profiles in a directory named after the
    // triple (x86_64-unknown-linux-gnu), below the target directory.
    let dir = above.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let is_triple = dir.starts_with(&format!("{}-", std::env::consts::ARCH))
        && dir.contains(&format!("-{}", std::env::consts::OS));
    let (target_dir, triple) = if is_triple {
        (above.parent().expect("the target directory"), Some(dir))
    } else {
        (above, None)
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--quiet",
            "-p",
            env!("CARGO_PKG_NAME"),
            "--example",
            name,
        ])
        .arg("--target-dir")
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(triple) = triple {
        cmd.arg("--target").arg(triple);
    }
    let out = cmd.output().expect("run cargo to build the example");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{cmd:?} did not produce {}", path.display());
    path
}
