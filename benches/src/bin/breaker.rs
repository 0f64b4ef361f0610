//! The circuit breaker's cost and speed:
//! - one check of 1 000 monitored flags (10 apps × 100 flags, each with counts to read), timed
//!   over repeated checks, on SQLite or PostgreSQL, with in-memory metrics;
//! - from the failure that crosses the threshold (reported through the API) to the tripped
//!   ruleset received on `apps.<id>.update.circuit` from a private nats-server, with the
//!   default 1 s interval.
//!
//! ```text
//! cargo run --release -p flagtower-benches --bin breaker -- [--store sqlite|postgres] [--trips N]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use flagtower_adapters::nats::{NatsOptions, NatsPublisher};
use flagtower_benches::nats_server::NatsServer;
use flagtower_core::breaker::BreakerSettings;
use flagtower_core::input::parse_new_flag;
use flagtower_core::{Counts, InMemoryMetrics, MetricsStore, Title, Tower};
use futures_util::StreamExt;

fn main() {
    let mut store_kind = "sqlite".to_owned();
    let mut trips = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--store" => store_kind = args.next().expect("sqlite|postgres"),
            "--trips" => trips = args.next().and_then(|v| v.parse().ok()).expect("--trips N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let bench = flagtower_benches::open_store(&store_kind).await;
        let store = Arc::clone(&bench.store);

        // 1. One check of 1 000 monitored flags.
        let metrics = Arc::new(InMemoryMetrics::default());
        let tower = Tower::builder(Arc::clone(&store)).metrics(metrics.clone()).start().await.unwrap();
        let now = flagtower_core::Clock::now(&flagtower_core::SystemClock);
        for a in 0..10 {
            let app = tower.create_app(&Title::parse(&format!("app {a}")).unwrap()).await.unwrap();
            for f in 0..100 {
                let body = serde_json::json!({"title": format!("f{f}"), "is_active": true});
                let flag = tower.create_flag(app.id, &parse_new_flag(&body).unwrap()).await.unwrap();
                // Healthy traffic: read, never tripped, so every check does the full work.
                metrics.record(flag.id, app.id, Counts { success: 100, failure: 1 }, now).await.unwrap();
            }
        }
        let settings = BreakerSettings::default();
        let mut times = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let moved = tower.check_circuits(settings).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(moved, 0);
        }
        times.sort_unstable();
        println!(
            "store={store_kind} check_of_1000_flags: p50_ms={:.2} max_ms={:.2} (store reads per check: 1 list of apps + 10 lists of flags; 1 000 metrics reads)",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times.last().unwrap().as_secs_f64() * 1000.0
        );
        tower.shutdown().await;

        // 2. Failure → tripped ruleset on NATS, with the engine at its default interval.
        let nats = NatsServer::start();
        let publisher = NatsPublisher::connect(&NatsOptions::new(&nats.url)).await.unwrap();
        let tower = Tower::builder(Arc::clone(&store)).publisher(Arc::new(publisher)).breaker(settings).start().await.unwrap();
        let client = async_nats::connect(&nats.url).await.unwrap();
        let app = tower.create_app(&Title::parse("trips").unwrap()).await.unwrap();
        let mut sub = client.subscribe(format!("apps.{}.update.circuit", app.id)).await.unwrap();
        client.flush().await.unwrap();
        let mut latencies = Vec::new();
        for i in 0..trips {
            let body = serde_json::json!({"title": format!("t{i}"), "is_active": true});
            let flag = tower.create_flag(app.id, &parse_new_flag(&body).unwrap()).await.unwrap();
            // Spread the reports over the interval, as real failures would be.
            tokio::time::sleep(Duration::from_millis(100 + (i as u64 * 389) % 1000)).await;
            let t = Instant::now();
            // Enough to be evidence, at α = 0.01, of a failure rate above the 50 % threshold.
            tower.record_events(flag.id, Counts { success: 0, failure: 20 }).await.unwrap();
            loop {
                let m = tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("a trip").unwrap();
                let rs: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                let tripped = rs.as_array().unwrap().iter().any(|f| f["id"].as_i64() == Some(flag.id.get()) && f["circuit_status"] == "open");
                if tripped {
                    latencies.push(t.elapsed());
                    break;
                }
            }
        }
        latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "store={store_kind} failure_to_tripped_ruleset (interval 1000 ms, {trips} trips): min_ms={:.1} p50_ms={:.1} max_ms={:.1}",
            ms(latencies[0]),
            ms(latencies[latencies.len() / 2]),
            ms(*latencies.last().unwrap())
        );
        tower.shutdown().await;
        drop(bench);
    });
}
