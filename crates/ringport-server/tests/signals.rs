//! A server stops on SIGTERM through `StopSignal` (no signal code in the
//! application), on both backends.

mod common;

use std::io::Read;
use std::time::Duration;

use ringport::BackendKind;
use ringport_server::StopSignal;

use common::*;

fn sigterm_stops_the_server(kind: BackendKind) {
    let Some(b) = builder(kind) else { return };
    // Installed before the signal can come: it is never lost.
    let signal = StopSignal::install().unwrap();
    assert!(!signal.wait_timeout(Duration::ZERO), "no signal yet");
    let (h, rx) = Recorder::new(true);
    let server = b.start(h).unwrap();
    let mut c = client(server.local_addr());
    assert_eq!(round_trip(&mut c, b"hi"), b"hi");
    let stopper = std::thread::spawn(move || server.stop_on(&signal));
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
        .unwrap();
    let stats = stopper.join().unwrap();
    assert_eq!(disconnect_reason(&rx), "shutdown");
    assert_eq!((stats.connections, stats.shutdown_closes), (0, 1));
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the client sees the server's close");
    // A request made after that signal waits for the next one.
    assert!(!StopSignal::install().unwrap().wait_timeout(Duration::ZERO));
}

both_backends!(sigterm_stops_the_server);
