//! Propagation: from a toggle sent to the API to the new ruleset received by a JetStream
//! subscriber (an ordered push consumer, as an SDK would use), over N sequential toggles.
//!
//! ```text
//! cargo run --release -p flagtower-benches --bin propagation -- [--changes N] [--store sqlite|postgres] [--client]
//! ```
//!
//! With `--client`, the receiver is a `FlagClient` fed by `flagtower_adapters::nats::follow`
//! (what a Rust service links) instead of a bare consumer.
//!
//! Starts a private nats-server (`TOWER_TEST_NATS_SERVER`, or `nats-server`) and Tower in this
//! process on a temporary SQLite file or a fresh PostgreSQL database (`TOWER_TEST_POSTGRES_URL`).
//! Each sample is measured from just before the PATCH is sent to the arrival of the message
//! carrying its revision, so it includes the HTTP request, the commit, the relay, the publish
//! with its JetStream acknowledgement, and delivery to the consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use flagtower_adapters::nats::{NatsOptions, NatsPublisher};
use flagtower_benches::nats_server::NatsServer;
use futures_util::StreamExt;

fn main() {
    let mut changes = 1000usize;
    let mut store_kind = "sqlite".to_owned();
    let mut use_client = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--client" => use_client = true,
            "--changes" => changes = args.next().and_then(|v| v.parse().ok()).expect("--changes N"),
            "--store" => store_kind = args.next().expect("--store sqlite|postgres"),
            other => panic!("unknown argument {other}"),
        }
    }
    let nats = NatsServer::start();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let bench = flagtower_benches::open_store(&store_kind).await;
        let store = Arc::clone(&bench.store);
        let publisher = NatsPublisher::connect(&NatsOptions::new(&nats.url)).await.unwrap();
        let tower = flagtower_core::Tower::builder(store).publisher(Arc::new(publisher)).start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // No per-client limit: the bench is one client making changes as fast as it can.
                let options =
                    flagtower_http::ServerOptions { rate_limit: None, ..Default::default() };
                tokio::spawn(flagtower_http::run_with(listener, tower, std::future::pending(), options));

        let api = flagtower_tests::Client::new(&format!("http://{addr}"));
        let app = api.create("/api/apps", &serde_json::json!({"title": "propagation"})).await;
        let flag = api.create(&format!("/api/apps/{app}/flags"), &serde_json::json!({"title": "f"})).await;

        let nc = async_nats::connect(&nats.url).await.unwrap();
        let js = jetstream::new(nc);
        let stream = js.get_stream("flags_ruleset").await.unwrap();
        let consumer = stream
            .create_consumer(jetstream::consumer::push::OrderedConfig {
                deliver_subject: format!("_bench.{app}"),
                filter_subject: format!("apps.{app}.update.*"),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let client = flagtower_core::client::FlagClient::new(flagtower_core::AppId::new(app), flagtower_core::Bucketing::Tower);
        let follower = flagtower_adapters::nats::follow(client.clone(), NatsOptions::new(&nats.url), None);
        let mut revisions = client.revisions();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut samples = Vec::with_capacity(changes);
        for i in 0..changes {
            let want = (i + 2) as u64; // creation was revision 1
            let started = Instant::now();
            assert_eq!(api.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status, 200);
            if use_client {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    revisions.wait_for(|r| r.is_some_and(|r| r.get() >= want)),
                )
                .await
                .expect("the client within 10 s")
                .expect("the client is alive");
                samples.push(started.elapsed());
                continue;
            }
            loop {
                let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
                    .await
                    .expect("a ruleset within 10 s")
                    .unwrap()
                    .unwrap();
                let rev: u64 = m.headers.as_ref().unwrap().get("Tower-Revision").unwrap().as_str().parse().unwrap();
                if rev >= want {
                    samples.push(started.elapsed());
                    break;
                }
            }
        }
        samples.sort_unstable();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0;
        follower.abort();
        let receiver = if use_client { "flag-client" } else { "consumer" };
        println!(
            "store={store_kind} receiver={receiver} changes={changes} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        drop(bench);
    });
}
