//! Publishing a ruleset to NATS JetStream: encode the app's flags, publish with the
//! de-duplication headers, wait for JetStream's acknowledgement (file storage), for apps of 1,
//! 100 and 1 000 flags, against a private local nats-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use flagtower_adapters::nats::{NatsOptions, NatsPublisher};
use flagtower_benches::nats_server::NatsServer;
use flagtower_core::{AppId, EncodedRuleset, Origin, Publisher, Revision, Ruleset};

fn publish(c: &mut Criterion) {
    let server = NatsServer::start();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let publisher =
        Arc::new(rt.block_on(NatsPublisher::connect(&NatsOptions::new(&server.url))).unwrap());
    // Every publish carries a new revision, so JetStream's de-duplication never short-cuts it.
    let revision = AtomicU64::new(0);
    let mut g = c.benchmark_group("nats_publish");
    for n in [1usize, 100, 1000] {
        let flags = flagtower_benches::sample_flags(n);
        g.bench_with_input(BenchmarkId::new("encode+publish+ack", n), &flags, |b, flags| {
            b.to_async(&rt).iter(|| {
                let rev = revision.fetch_add(1, Ordering::Relaxed) + 1;
                let ruleset = Ruleset {
                    app_id: AppId::new(n as i64),
                    revision: Revision::new(rev),
                    flags: flags.clone(),
                };
                let publisher = Arc::clone(&publisher);
                async move {
                    publisher
                        .publish(&EncodedRuleset::new(&ruleset, Origin::Manual))
                        .await
                        .unwrap();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
