//! Live stream fan-out: from a toggle sent to the API to its `ruleset` event received by each of
//! N dashboards connected to `GET /api/stream`.
//!
//! ```text
//! cargo run --release -p flagtower-benches --bin stream -- [--subscribers N] [--changes N] [--store sqlite|postgres]
//! ```
//!
//! Starts Tower in this process (a temporary SQLite file or a fresh PostgreSQL database), opens
//! `--subscribers` event streams over real HTTP connections, then sends `--changes` toggles one
//! after another; for each, every subscriber's arrival time of the event carrying the new
//! revision is a sample (so it includes the commit, the feed's read of the store, the broadcast
//! and the HTTP chunk).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

fn main() {
    let (mut subscribers, mut changes) = (100usize, 200usize);
    let mut store_kind = "sqlite".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--subscribers" => {
                subscribers = args.next().and_then(|v| v.parse().ok()).expect("--subscribers N")
            }
            "--changes" => changes = args.next().and_then(|v| v.parse().ok()).expect("--changes N"),
            "--store" => store_kind = args.next().expect("--store sqlite|postgres"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let bench = flagtower_benches::open_store(&store_kind).await;
        let tower = flagtower_core::Tower::builder(Arc::clone(&bench.store)).start().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(flagtower_http::run(listener, tower, std::future::pending()));
        let api = flagtower_tests::Client::new(&format!("http://{addr}"));
        let app = api.create("/api/apps", &serde_json::json!({"title": "stream"})).await;
        let flag = api.create(&format!("/api/apps/{app}/flags"), &serde_json::json!({"title": "f"})).await;

        // Each subscriber reports (revision, arrival) for every ruleset event.
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
        for _ in 0..subscribers {
            let api = api.clone();
            let tx = tx.clone();
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                let mut events = api.events("/api/stream").await;
                while let Some(e) = events.next_within(Duration::from_secs(3600)).await {
                    let now = Instant::now();
                    match e.name.as_str() {
                        "hello" => drop(ready_tx.send(())),
                        "ruleset" => drop(tx.send((e.data["revision"].as_u64().unwrap(), now))),
                        _ => {}
                    }
                }
            });
        }
        drop(tx);
        for _ in 0..subscribers {
            ready_rx.recv().await.unwrap();
        }

        let mut samples = Vec::with_capacity(changes * subscribers);
        for i in 0..changes {
            let want = (i + 2) as u64; // creation was revision 1
            let started = Instant::now();
            assert_eq!(api.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status, 200);
            let mut got = 0;
            while got < subscribers {
                let (rev, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                    .await
                    .expect("every subscriber's event within 10 s")
                    .unwrap();
                if rev >= want {
                    samples.push(at.saturating_duration_since(started));
                    got += 1;
                }
            }
        }
        samples.sort_unstable();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "store={store_kind} subscribers={subscribers} changes={changes} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
        drop(bench);
    });
}
