//! Criterion micro-benchmarks (placeholder; being written).
use criterion::{criterion_group, criterion_main, Criterion};

fn post_get(c: &mut Criterion) {
    let port = ringport::CompletionPort::new(1).expect("port");
    c.bench_function("post_get", |b| {
        b.iter(|| {
            port.post(0, 0, 0).expect("post");
            port.get(None).expect("get")
        })
    });
}

criterion_group!(benches, post_get);
criterion_main!(benches);
