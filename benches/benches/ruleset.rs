//! Ruleset serialization: the JSON array published for an app of 1, 100 and 1 000 flags, and
//! decoding it back as an SDK would.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flagtower_core::ruleset::{decode_flags, encode_flags};

fn ruleset(c: &mut Criterion) {
    let mut g = c.benchmark_group("ruleset");
    for n in [1usize, 100, 1000] {
        let flags = flagtower_benches::sample_flags(n);
        let body = encode_flags(&flags);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("encode", n), &flags, |b, f| {
            b.iter(|| encode_flags(f))
        });
        g.bench_with_input(BenchmarkId::new("decode", n), &body, |b, body| {
            b.iter(|| decode_flags(body).expect("decodes"))
        });
    }
    g.finish();
}

criterion_group!(benches, ruleset);
criterion_main!(benches);
