//! Signals as completions (`Signals`), on both backends. Runs without the
//! test harness (see Cargo.toml): blocking signals and sending them to the
//! process needs the process to have this one thread, or a thread with the
//! default mask could take the signal and die of it.

use std::process::Command;
use std::time::Duration;

use ringport::{BackendKind, CompletionPort, OpKind, Signals};

const LIMIT: Option<Duration> = Some(Duration::from_secs(20));

/// Sends `sig` (a `kill -s` name) to this process from another process.
fn kill(sig: &str) {
    let status = Command::new("kill")
        .args(["-s", sig, &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn port(kind: BackendKind) -> Option<CompletionPort> {
    match CompletionPort::builder().backend(kind).build() {
        Ok(p) => Some(p),
        Err(e) if kind == BackendKind::IoUring => {
            println!("SKIPPED: io_uring unavailable here: {e}");
            None
        }
        Err(e) => panic!("{kind}: {e}"),
    }
}

fn signals_arrive_as_completions(kind: BackendKind) {
    let Some(port) = port(kind) else { return };
    let signals =
        Signals::new(&port, &[libc::SIGINT, libc::SIGTERM, libc::SIGUSR1], 42).expect("signals");
    for (name, num) in [
        ("INT", libc::SIGINT),
        ("TERM", libc::SIGTERM),
        ("USR1", libc::SIGUSR1),
    ] {
        signals.watch().unwrap();
        kill(name);
        let c = port.get(LIMIT).expect("the signal as a completion");
        assert_eq!((c.kind(), c.key()), (OpKind::Read, 42));
        assert_eq!(Signals::signal_of(&c), Some(num), "{kind}: {c:?}");
        // Sent by the `kill` process, not by us.
        let sender = Signals::sender_of(&c).unwrap();
        assert!(sender != 0 && sender != std::process::id(), "{sender}");
    }
    // A signal that came while no read was posted waits for the next one.
    kill("TERM");
    signals.watch().unwrap();
    let c = port.get(LIMIT).unwrap();
    assert_eq!(Signals::signal_of(&c), Some(libc::SIGTERM));
    // A watch cancelled returns no signal.
    let id = signals.watch().unwrap();
    port.cancel(id).unwrap();
    let c = port.get(LIMIT).unwrap();
    assert!(
        c.is_cancelled() && Signals::signal_of(&c).is_none(),
        "{c:?}"
    );
}

fn not_a_signal_is_refused() {
    let port = CompletionPort::new(1).unwrap();
    let err = Signals::new(&port, &[12345], 1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
}

fn main() {
    let mut passed = 0;
    for kind in [BackendKind::IoUring, BackendKind::Epoll] {
        signals_arrive_as_completions(kind);
        println!("test {kind}::signals_arrive_as_completions ... ok");
        passed += 1;
    }
    not_a_signal_is_refused();
    println!("test not_a_signal_is_refused ... ok");
    passed += 1;
    println!("test result: ok. {passed} passed");
}
