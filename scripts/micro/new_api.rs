// The port API of this tree (operation builders).
use ringport::op;
use ringport::{BackendKind, Completion, CompletionPort, Handle, OpKind};
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
fn recv(p: &CompletionPort, h: &Handle, buf: Vec<u8>) {
    p.submit(op::Recv::new(h, buf)).unwrap();
}
fn send_all(p: &CompletionPort, h: &Handle, buf: Vec<u8>) {
    p.submit(op::SendAll::new(h, buf)).unwrap();
}
fn take_buf(c: &mut Completion) -> Vec<u8> {
    c.take_buf::<Vec<u8>>().unwrap()
}
include!("body.rs");
