// The port API of this tree (operation builders).
use ringport::op;
use ringport::{BackendKind, CompletionPort};
use std::time::{Duration, Instant};
const LIMIT: Option<Duration> = Some(Duration::from_secs(10));
fn port(kind: BackendKind) -> CompletionPort {
    CompletionPort::builder().backend(kind).concurrency(1).build().unwrap()
}
fn post(p: &CompletionPort, v: usize) {
    p.post(op::Packet::new(v).key(1).user(2)).unwrap()
}
fn timer(p: &CompletionPort) {
    p.submit(op::Timeout::new(Duration::ZERO)).unwrap();
}
include!("body.rs");
