//! A service that guards a code path with a Tower flag through OpenFeature, evaluated locally
//! from NATS JetStream, and reports how each guarded call went so Tower's breaker can trip it.
//!
//! It embeds a Tower of its own (a temporary SQLite file, publishing to the NATS of
//! `TOWER_NATS_URL`, default `nats://127.0.0.1:4222`, on its own stream `tower_example`, deleted
//! at the start and the end) to have something to follow; a real service follows the Tower its
//! operators run. Run it with a NATS server with JetStream (`nats-server -js`):
//!
//! ```text
//! cargo run -p flagtower-examples --example openfeature
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use flagtower_adapters::nats::{NatsOptions, NatsPublisher};
use flagtower_adapters::openfeature::TowerProvider;
use flagtower_core::breaker::BreakerSettings;
use flagtower_core::client::FlagClient;
use flagtower_core::input::parse_new_flag;
use flagtower_core::{Bucketing, InMemoryMetrics, SystemClock, Title, Tower};
use open_feature::{EvaluationContext, OpenFeature};

const STREAM: &str = "tower_example";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TOWER_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = async_nats::connect(&url).await?;
    let js = async_nats::jetstream::new(nats);
    let _ = js.delete_stream(STREAM).await; // a previous run's, whose revisions would be newer

    // The Tower the operators run (here: embedded, with a flag on for everyone).
    let dir = tempfile::tempdir()?;
    let store = flagtower_adapters::sqlite::SqliteStore::open(dir.path().join("tower.db")).await?;
    let options = NatsOptions::new(&url).stream(STREAM);
    let metrics = Arc::new(InMemoryMetrics::default());
    let tower = Tower::builder(Arc::new(store))
        .publisher(Arc::new(NatsPublisher::connect(&options).await?))
        .metrics(metrics.clone())
        .breaker(BreakerSettings { interval_ms: 100, ..Default::default() })
        .start()
        .await?;
    let app = tower.create_app(&Title::parse("Checkout")?).await?;
    let body = serde_json::json!({"title": "new-checkout", "is_active": true, "error_threshold_percentage": 20});
    tower.create_flag(app.id, &parse_new_flag(&body)?).await?;

    // The service: follow the app's rulesets, report outcomes, evaluate through OpenFeature.
    let flags = FlagClient::new(app.id, Bucketing::Tower);
    let follower = flagtower_adapters::nats::follow(flags.clone(), options, None);
    let reporter = flags.report_to(metrics, Arc::new(SystemClock), Duration::from_millis(100));
    OpenFeature::singleton_mut().await.set_provider(TowerProvider::new(flags.clone())).await;
    let client = OpenFeature::singleton().await.create_client();
    let started = Instant::now();
    while !flags.ready() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("no ruleset from NATS within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "ruleset revision {:?} received from NATS after {:?}",
        flags.revision(),
        started.elapsed()
    );

    // Guarded calls: the new code path runs while the flag is on, and its failures are
    // reported; once they are evidence enough, the breaker turns the flag off.
    let mut calls = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ctx = EvaluationContext::default().with_targeting_key(format!("user-{calls}"));
        let on = client.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
        if !on {
            println!("after {calls} guarded calls the breaker turned new-checkout off");
            break;
        }
        calls += 1;
        // The new path fails half the time: well above the 20 % threshold.
        if calls % 2 == 0 {
            flags.record_failure("new-checkout");
        } else {
            flags.record_success("new-checkout");
        }
        if Instant::now() > deadline {
            return Err("the breaker did not trip within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let logs = tower.app_logs(app.id).await?;
    let trip = logs.last().ok_or("no log")?;
    println!("{}: {}", trip.action.description(), trip.detail.as_deref().unwrap_or(""));

    follower.abort();
    reporter.abort();
    tower.shutdown().await;
    let _ = js.delete_stream(STREAM).await;
    Ok(())
}
