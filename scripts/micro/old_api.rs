// The port API before the core reshape (227b709: post(key, user, value),
// timeout(after, key, user)).
use ringport::{BackendKind, Completion, CompletionPort, Handle, OpKind};
use std::time::{Duration, Instant};
const LIMIT: Option<Duration> = Some(Duration::from_secs(10));
fn port(kind: BackendKind) -> CompletionPort {
    CompletionPort::builder().backend(kind).concurrency(1).build().unwrap()
}
fn post(p: &CompletionPort, v: usize) {
    p.post(1, 2, v).unwrap()
}
fn timer(p: &CompletionPort) {
    p.timeout(Duration::ZERO, 0, 0).unwrap();
}
fn recv(p: &CompletionPort, h: &Handle, buf: Vec<u8>) {
    p.recv(h, buf, 0).unwrap();
}
fn send_all(p: &CompletionPort, h: &Handle, buf: Vec<u8>) {
    p.send_all(h, buf, 0).unwrap();
}
fn take_buf(c: &mut Completion) -> Vec<u8> {
    c.take_buf().unwrap()
}
include!("body.rs");
