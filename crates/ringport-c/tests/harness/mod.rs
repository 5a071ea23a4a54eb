//! Building and running the C programs: the library with cargo, the
//! programs with gcc/g++ (with AddressSanitizer when
//! `RINGPORT_C_SANITIZE=address`), servers as child processes whose output
//! lines are awaited with a time limit, and the seed texts extracted from
//! `shared/seeds` and run in a private network namespace.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ringport::BackendKind;

/// Upper bound for any single wait.
pub const LIMIT: Option<Duration> = Some(Duration::from_secs(30));

/// Generates a `uring::` and an `epoll::` test for each function; the
/// io_uring one is skipped (and says so) where io_uring cannot be set up.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $( #[test] fn $name() {
                if $crate::harness::uring_available() {
                    super::$name(ringport::BackendKind::IoUring)
                } else {
                    eprintln!("SKIPPED: io_uring unavailable here");
                }
            } )*
        }
        mod epoll {
            $( #[test] fn $name() { super::$name(ringport::BackendKind::Epoll) } )*
        }
    };
}
pub(crate) use both_backends;

/// Whether an io_uring port can be set up here.
pub fn uring_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        ringport::CompletionPort::builder()
            .backend(BackendKind::IoUring)
            .build()
            .is_ok()
    })
}

/// The name `ringport_port_backend` reports.
pub fn name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::IoUring => "io_uring",
        _ => "epoll",
    }
}

/// The `RINGPORT_BACKEND` value that forces `kind`.
fn env_value(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::IoUring => "uring",
        _ => "epoll",
    }
}

/// The C and C++ programs.
#[derive(Clone, Copy, Debug)]
pub enum Program {
    ApiTest,
    NativeTest,
    ConcurrencyTest,
    FallbackTest,
    EchoServer,
    MessageServer,
    IocpModel,
    Seed003,
    Seed000,
}

impl Program {
    const ALL: [Program; 9] = [
        Program::ApiTest,
        Program::NativeTest,
        Program::ConcurrencyTest,
        Program::FallbackTest,
        Program::EchoServer,
        Program::MessageServer,
        Program::IocpModel,
        Program::Seed003,
        Program::Seed000,
    ];

    fn name(self) -> &'static str {
        match self {
            Program::ApiTest => "api_test",
            Program::NativeTest => "native_test",
            Program::ConcurrencyTest => "concurrency_test",
            Program::FallbackTest => "fallback_test",
            Program::EchoServer => "echo_server",
            Program::MessageServer => "message_server",
            Program::IocpModel => "iocp_model",
            Program::Seed003 => "seed_003",
            Program::Seed000 => "seed_000",
        }
    }

    /// The source: a file of this crate, or a seed text made compilable.
    fn source(self, dir: &Path) -> Option<PathBuf> {
        let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
        let file = match self {
            Program::ApiTest => "tests/c/api_test.c",
            Program::NativeTest => "tests/c/native_test.c",
            Program::ConcurrencyTest => "tests/c/concurrency_test.c",
            Program::FallbackTest => "tests/c/fallback_test.c",
            Program::EchoServer => "examples/echo_server.c",
            Program::MessageServer => "examples/message_server.cpp",
            Program::IocpModel => "examples/iocp_model.cpp",
            Program::Seed003 => return seed_source(dir, "003_", "seed_003.c", seed_003_text),
            Program::Seed000 => return seed_source(dir, "000_", "seed_000.cpp", seed_000_text),
        };
        Some(krate.join(file))
    }
}

/// Whether the C programs are built with AddressSanitizer.
pub fn sanitize() -> bool {
    std::env::var("RINGPORT_C_SANITIZE").is_ok_and(|v| v == "address")
}

/// `<target>/<profile>` of this test binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("<profile>/deps")
        .to_path_buf()
}

/// Builds the library (cargo) and every program (gcc/g++) once; the
/// directory holding the programs.
fn built() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RINGPORT_C_BIN_DIR") {
            return PathBuf::from(dir);
        }
        let profile_dir = profile_dir();
        let profile = profile_dir.file_name().and_then(|p| p.to_str()).unwrap();
        let target_dir = profile_dir.parent().expect("the target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--lib", "-p", "ringport-c"])
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
        let status = cmd.status().expect("run cargo");
        assert!(status.success(), "cargo build -p ringport-c failed");
        let lib = profile_dir.join("libringport_c.a");
        assert!(lib.exists(), "{} was not built", lib.display());

        let dir = profile_dir.join(if sanitize() {
            "ringport-c-programs-asan"
        } else {
            "ringport-c-programs"
        });
        std::fs::create_dir_all(&dir).unwrap();
        let krate = Path::new(env!("CARGO_MANIFEST_DIR"));
        for p in Program::ALL {
            let Some(src) = p.source(&dir) else {
                continue;
            };
            let cpp = src.extension().is_some_and(|e| e == "cpp");
            let mut cc = Command::new(if cpp { "g++" } else { "gcc" });
            cc.arg(if cpp { "-std=gnu++17" } else { "-std=gnu11" })
                .args(["-O1", "-g", "-pthread"])
                .arg("-I")
                .arg(krate.join("include/win32"))
                .arg("-I")
                .arg(krate.join("include"));
            if matches!(p, Program::Seed003 | Program::Seed000) {
                cc.arg("-w"); // the seeds' own warnings (formats, pragmas)
            } else {
                cc.args(["-Wall", "-Werror"]);
            }
            if sanitize() {
                cc.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
            }
            cc.arg(&src)
                .arg(&lib)
                .args(["-ldl", "-lm", "-o"])
                .arg(dir.join(p.name()));
            let out = cc.output().expect("run gcc/g++");
            assert!(
                out.status.success(),
                "compiling {} failed:\n{}",
                src.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// The path of a built program; `None` for a seed text that is not here.
fn binary(p: Program) -> Option<PathBuf> {
    let path = built().join(p.name());
    path.exists().then_some(path)
}

fn command(p: Program, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(binary(p).expect("built"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A leak report fails the run; the allocations of threads still
    // running at exit are not leaks.
    cmd.env(
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:exitcode=23",
    );
    cmd
}

/// Runs a self-checking program on `kind` to its end; its output.
pub fn run(p: Program, kind: BackendKind, args: &[&str]) -> String {
    run_env(p, args, &[("RINGPORT_BACKEND", env_value(kind))])
}

/// Runs a self-checking program with `env` to its end (within the limit);
/// its output. Fails the test if it fails.
pub fn run_env(p: Program, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = command(p, env, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the program");
    let deadline = Instant::now() + LIMIT.unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} did not finish within the limit", p.name());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}\n{}",
        p.name(),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A server program running as a child process.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    name: &'static str,
}

impl Server {
    /// Starts `p` on `kind` with `args`.
    pub fn start(p: Program, kind: BackendKind, args: &[&str]) -> Server {
        let mut child = command(p, &[("RINGPORT_BACKEND", env_value(kind))], args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the server");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
            name: p.name(),
        }
    }

    /// Waits (within the limit) for an output line that starts with or
    /// contains `pat`, not matched before; returns it.
    pub fn expect_line(&mut self, pat: &str) -> String {
        let deadline = Instant::now() + LIMIT.unwrap();
        loop {
            if let Some(i) = self.seen.iter().position(|l| l.contains(pat)) {
                return self.seen.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{}: no line with {pat:?} within the limit; unmatched lines: {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// Closes the server's standard input (its signal to stop).
    pub fn close_stdin(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.flush();
        }
    }

    /// Waits (within the limit) for the server to exit with status 0.
    pub fn expect_exit_ok(&mut self) {
        let deadline = Instant::now() + LIMIT.unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within the limit",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the server is still running.
    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts connections at `addr` (a seed server
/// prints nothing when it starts listening): connects until one succeeds,
/// a bounded number of times, failing at once if the server died.
pub fn wait_for_listener(addr: SocketAddr, server: &mut Server) {
    for _ in 0..3000 {
        assert!(server.running(), "{} exited", server.name);
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on {addr}");
}

// ---- the seed texts ----------------------------------------------------

/// `shared/seeds` in a directory above this crate, if there is one.
fn seeds_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RINGPORT_SEEDS") {
        return Some(PathBuf::from(d));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/seeds"))
        .find(|d| d.is_dir())
}

/// Writes the compilable text of the seed whose file name starts with
/// `prefix` into `dir/out`; `None` if the seeds are not here.
fn seed_source(dir: &Path, prefix: &str, out: &str, make: fn(&str) -> String) -> Option<PathBuf> {
    let seeds = seeds_dir()?;
    let file = std::fs::read_dir(&seeds)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with(prefix))?;
    let text = std::fs::read_to_string(file.path()).ok()?;
    let path = dir.join(out);
    std::fs::write(&path, make(&text)).unwrap();
    Some(path)
}

/// Replaces `from` (which must occur exactly `n` times) with `to`.
fn edit(text: &str, from: &str, to: &str, n: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        n,
        "the seed text changed: {from:?} does not occur {n} times"
    );
    text.replace(from, to)
}

/// The blog formatting undone: non-breaking and ideographic spaces.
fn unformat(text: &str) -> String {
    text.replace(['\u{a0}', '\u{3000}'], " ")
}

/// Seed 003 (Microsoft's echo sample) as it compiles on Win64: the code
/// from its first include to the end, with
/// * the blog's `#i nclude` put back to `#include`, its non-breaking spaces
///   to spaces;
/// * Win64's edits: the pointer key cast to `ULONG_PTR` (a `DWORD` holds
///   half a pointer on Win64), the key's out-parameter as `(PULONG_PTR)&`
///   (an `LPDWORD` is the wrong type there), and `int main`.
fn seed_003_text(text: &str) -> String {
    let start = text
        .find("#i nclude <winsock2.h>")
        .expect("seed 003's code");
    let code = unformat(&text[start..]);
    let code = edit(&code, "#i nclude", "#include", 3);
    let code = edit(
        &code,
        "(DWORD) PerHandleData",
        "(ULONG_PTR) PerHandleData",
        1,
    );
    let code = edit(
        &code,
        "(LPDWORD)&PerHandleData",
        "(PULONG_PTR)&PerHandleData",
        1,
    );
    edit(&code, "void main(void)", "int main(void)", 1)
}

/// Seed 000 (the message server) as it compiles on Win64: the code from
/// its first include to the closing remarks, with
/// * the blog's formatting undone: the `OutErr` macro's line
///   continuations, printed as `/`, back to `\` (the last one, before the
///   next `#define`, dropped), ideographic and non-breaking spaces to
///   spaces;
/// * Win64's edits, as for seed 003: `(ULONG_PTR)` key, `(PULONG_PTR)&`
///   out-parameter, `int main`.
fn seed_000_text(text: &str) -> String {
    let start = text
        .find("#include \"winerror.h\"")
        .expect("seed 000's code");
    let end = text
        .find("好了，本篇文章")
        .expect("seed 000's closing remarks");
    let code = unformat(&text[start..end]);
    let mut lines: Vec<String> = code.lines().map(str::to_string).collect();
    let first = lines
        .iter()
        .position(|l| l.starts_with("#define OutErr"))
        .expect("the OutErr macro");
    let mut i = first;
    while lines[i].trim_end().ends_with('/') {
        let next_continues = lines
            .get(i + 1)
            .is_some_and(|n| n.trim_start().starts_with("<<"));
        let l = lines[i].trim_end();
        let body = &l[..l.len() - 1];
        lines[i] = if next_continues {
            format!("{body}\\")
        } else {
            body.to_string()
        };
        if !next_continues {
            break;
        }
        i += 1;
    }
    assert!(i > first, "the macro's continuations were found");
    let code = lines.join("\n") + "\n";
    let code = edit(&code, "(DWORD)PerHandleData", "(ULONG_PTR)PerHandleData", 1);
    let code = edit(
        &code,
        "(LPDWORD)&PerHandleData",
        "(PULONG_PTR)&PerHandleData",
        1,
    );
    edit(&code, "void main()", "int main()", 1)
}

/// Set in the copy of this test that runs inside the network namespace.
const IN_NETNS: &str = "RINGPORT_C_IN_NETNS";

/// Starts a seed server (which listens on a fixed port of every address)
/// inside a private network namespace, where only loopback exists: the
/// test re-runs itself there (`unshare -rn`), and that copy starts the
/// server and gets `Some`. Outside, this returns `None` after that copy
/// passed; also `None` (with a note) when the seeds or `unshare` are not
/// available.
pub fn seed_server(p: Program, kind: BackendKind, test: &str) -> Option<Server> {
    if std::env::var_os(IN_NETNS).is_some() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("run ip");
        assert!(up.success(), "ip link set lo up");
        return Some(Server::start(p, kind, &[]));
    }
    if binary(p).is_none() {
        eprintln!("SKIPPED: the seed texts (shared/seeds) are not here");
        return None;
    }
    let unshare_works = Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare_works {
        eprintln!("SKIPPED: no private network namespace here (unshare -rn)");
        return None;
    }
    let name = format!("{}::{test}", env_value(kind));
    let status = Command::new("unshare")
        .arg("-rn")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .env("RINGPORT_C_BIN_DIR", built())
        .status()
        .expect("run unshare");
    assert!(status.success(), "{name} failed in its network namespace");
    None
}
