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
//! ```text
//! propagation --server URL --nats NATS_URL --app ID --flag ID [--changes N]
//! ```
//!
//! measures a server already running (this Tower's binary, or the original Node.js Tower) the
//! same way for both: each toggle sets `{"is_active": …}` (the original's toggle takes the value),
//! and the receiver is a core NATS subscription to `apps.<app>.update.manual`, timestamped as
//! each message arrives, on a task of its own; a sample ends at the first message whose ruleset
//! shows the flag in its new state.
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
    let mut external = External::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--client" => use_client = true,
            "--server" => external.server = args.next(),
            "--nats" => external.nats = args.next(),
            "--app" => external.app = args.next().and_then(|v| v.parse().ok()),
            "--flag" => external.flag = args.next().and_then(|v| v.parse().ok()),
            "--changes" => changes = args.next().and_then(|v| v.parse().ok()).expect("--changes N"),
            "--store" => store_kind = args.next().expect("--store sqlite|postgres"),
            other => panic!("unknown argument {other}"),
        }
    }
    if external.server.is_some() {
        return measure_external(&external, changes);
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

/// A server already running, to measure from outside.
#[derive(Default)]
struct External {
    server: Option<String>,
    nats: Option<String>,
    app: Option<i64>,
    flag: Option<i64>,
}

fn measure_external(external: &External, changes: usize) {
    let server = external.server.clone().expect("--server URL");
    let nats = external.nats.clone().expect("--nats URL");
    let (app, flag) = (external.app.expect("--app ID"), external.flag.expect("--flag ID"));
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let nc = async_nats::connect(&nats).await.expect("connect to NATS");
        let mut sub = nc.subscribe(format!("apps.{app}.update.manual")).await.unwrap();
        nc.flush().await.unwrap();
        // Each message's arrival time and the flag's state in it, taken as it arrives.
        let (tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let at = Instant::now();
                let flags: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                let state = flags.as_array().and_then(|flags| {
                    flags.iter().find(|f| f["id"].as_i64() == Some(flag))?["is_active"].as_bool()
                });
                if tx.send((at, state)).is_err() {
                    return;
                }
            }
        });
        let api = flagtower_tests::Client::new(&server);
        let current = api.get(&format!("/api/flags/{flag}")).await;
        let mut state = current.payload()["is_active"].as_bool().expect("the flag's state");
        let mut samples = Vec::with_capacity(changes);
        // From the toggle's answer to the ruleset's arrival: the part after the commit (the
        // answer follows the commit; a ruleset that came first counts as zero).
        let mut after_reply = Vec::with_capacity(changes);
        for _ in 0..changes {
            let want = !state;
            while arrivals.try_recv().is_ok() {}
            let started = Instant::now();
            let reply =
                api.patch(&format!("/api/flags/{flag}/toggle"), &serde_json::json!({"is_active": want})).await;
            let answered = Instant::now();
            assert_eq!(reply.status, 200, "the toggle");
            loop {
                let (at, seen) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                    .await
                    .expect("a ruleset within 10 s")
                    .expect("the subscription is alive");
                if seen == Some(want) && at >= started {
                    samples.push(at - started);
                    after_reply.push(at.saturating_duration_since(answered));
                    break;
                }
            }
            state = want;
        }
        samples.sort_unstable();
        after_reply.sort_unstable();
        let pct = |of: &[Duration], p: f64| {
            of[((of.len() as f64 * p) as usize).min(of.len() - 1)].as_secs_f64() * 1000.0
        };
        println!(
            "server={server} receiver=core-subscription changes={changes} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} after_reply_p50_ms={:.2} after_reply_p99_ms={:.2}",
            pct(&samples, 0.5),
            pct(&samples, 0.9),
            pct(&samples, 0.99),
            pct(&samples, 1.0),
            pct(&after_reply, 0.5),
            pct(&after_reply, 0.99)
        );
    });
}
