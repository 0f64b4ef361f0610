//! RedisTimeSeries ingestion and queries through the adapter: events recorded per second by
//! concurrent writers on the one multiplexed connection (requests pipelined), and the latency of
//! a 1 h window in 3 min buckets while that load runs.
//!
//! ```text
//! TOWER_TEST_REDIS_SERVER=$(./scripts/redis-timeseries) \
//!   cargo run --release -p flagtower-benches --bin metrics -- [--writers N] [--seconds S]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flagtower_adapters::redis::{RedisMetrics, RedisOptions};
use flagtower_core::{AppId, Clock, Counts, FlagId, MetricsStore, SystemClock, TimeWindow};
use flagtower_testkit::RedisServer;

fn main() {
    let mut writers = 32usize;
    let mut seconds = 10u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--writers" => writers = args.next().and_then(|v| v.parse().ok()).expect("--writers N"),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let server = RedisServer::start().await.expect("a RedisTimeSeries server (TOWER_TEST_REDIS_SERVER)");
        let m = Arc::new(RedisMetrics::connect(&RedisOptions::new(server.url())).await.unwrap());
        let (flag, app) = (FlagId::new(1), AppId::new(1));
        m.prepare(flag, app).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let (m, stop, events) = (Arc::clone(&m), Arc::clone(&stop), Arc::clone(&events));
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let counts = if (i + w as u64).is_multiple_of(10) { Counts { success: 0, failure: 1 } } else { Counts { success: 1, failure: 0 } };
                    m.record(flag, app, counts, SystemClock.now()).await.unwrap();
                    events.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        // A chart polling the last hour in 3-minute buckets, while the writers run.
        let window = TimeWindow::new(3_600_000, 180_000).unwrap();
        let mut latencies = Vec::new();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(seconds) {
            let t = Instant::now();
            let now = SystemClock.now();
            let b = m.buckets(flag, window.from(now), now, window.bucket_ms()).await.unwrap();
            latencies.push(t.elapsed());
            assert!(b.iter().any(|b| b.success > 0), "the writers' counts are visible");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let total = events.load(Ordering::Relaxed);
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "writers={writers} events={total} events_per_s={:.0} query_1h_3min: n={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            total as f64 / seconds as f64,
            latencies.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    });
}
