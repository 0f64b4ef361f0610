//! Flag health on a private RedisTimeSeries: the timeseries and events routes, what SDKs write,
//! the keys Tower prepares, and an outage of Redis.

use std::sync::Arc;
use std::time::Duration;

use flagtower_adapters::redis::{RedisMetrics, RedisOptions};
use flagtower_core::{InProcessPublisher, Tower};
use flagtower_testkit::RedisServer;
use flagtower_tests::{Server, TestStore};
use serde_json::json;

async fn tower_on(store: &TestStore, redis: &RedisServer, retention_ms: u64) -> Server {
    let metrics = RedisMetrics::connect(&RedisOptions::new(redis.url()).retention_ms(retention_ms))
        .await
        .unwrap();
    Server::start_built(
        Tower::builder(store.open().await)
            .publisher(InProcessPublisher::new())
            .metrics(Arc::new(metrics)),
    )
    .await
}

fn now_ms() -> i64 {
    flagtower_core::Clock::now(&flagtower_core::SystemClock).as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_of_the_timeseries_route_count_what_sdks_write() {
    let Some(redis) = RedisServer::start().await else { return };
    let store = TestStore::sqlite().await;
    let server = tower_on(&store, &redis, 3_600_000).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    // Tower prepared both keys with its retention and a summing duplicate policy.
    let mut conn = redis.connection().await;
    for key in [format!("{flag}:success"), format!("{flag}:failure")] {
        let info = format!(
            "{:?}",
            redis::cmd("TS.INFO").arg(&key).query_async::<redis::Value>(&mut conn).await.unwrap()
        )
        .to_lowercase();
        assert!(info.contains("3600000") && info.contains("sum"), "{key}: {info}");
    }

    for (i, (range, width, n_buckets)) in
        [(30_000i64, 3_000i64, 10usize), (600_000, 30_000, 20), (3_600_000, 180_000, 20)]
            .into_iter()
            .enumerate()
    {
        // A fresh flag per window: Tower prepares its keys, so same-millisecond SDK writes add up.
        let flag = c
            .post(&format!("/api/apps/{app}/flags"), &json!({"title": format!("w{i}")}))
            .await
            .payload()["id"]
            .as_i64()
            .unwrap();
        let mut c2 = redis.connection().await;
        // Samples spread over the window, away from its first and last bucket (whose edges move
        // while the test runs), several in one millisecond.
        let t0 = now_ms();
        let mut samples = Vec::new();
        for k in 0..30 {
            let ts = t0 - width - 1 - (k * (range - 3 * width) / 30);
            let status = if k % 3 == 0 { "failure" } else { "success" };
            for _ in 0..(1 + k % 3) {
                flagtower_tests::sdk_ts_add(&mut c2, flag, app, status, &ts.to_string()).await;
                samples.push((ts, status));
            }
        }
        let r = c
            .get(&format!("/api/flags/{flag}/timeseries?timeRange={range}&timeBucket={width}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let buckets = r.payload().as_array().unwrap();
        assert_eq!(buckets.len(), n_buckets, "{range}/{width}");
        let ts: Vec<i64> = buckets.iter().map(|b| b["timestamp"].as_i64().unwrap()).collect();
        assert!(ts.iter().all(|t| t % width == 0), "edges are multiples of the width: {ts:?}");
        assert!(ts.windows(2).all(|w| w[1] - w[0] == width), "ascending, no gaps");
        let last = *ts.last().unwrap();
        assert!(
            last <= now_ms() && now_ms() < last + width + 1_000,
            "the last bucket is the current one"
        );
        for b in buckets {
            let start = b["timestamp"].as_i64().unwrap();
            let want = |st: &str| {
                samples
                    .iter()
                    .filter(|(t, s)| *s == st && *t >= start && *t < start + width)
                    .count() as u64
            };
            assert_eq!(
                b["success"].as_u64().unwrap(),
                want("success"),
                "bucket {start} of {range}/{width}"
            );
            assert_eq!(
                b["failure"].as_u64().unwrap(),
                want("failure"),
                "bucket {start} of {range}/{width}"
            );
        }
        let zero = buckets.iter().filter(|b| b["success"] == 0 && b["failure"] == 0).count();
        assert!(zero >= 1, "empty buckets are zeros");
    }

    // The events route writes through the same store.
    let r =
        c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 5, "failure": 2})).await;
    assert_eq!(r.status, 202);
    let r = c.get(&format!("/api/flags/{flag}/timeseries?timeRange=30000&timeBucket=3000")).await;
    let total = r.payload().as_array().unwrap().iter().fold((0, 0), |(s, f), b| {
        (s + b["success"].as_u64().unwrap(), f + b["failure"].as_u64().unwrap())
    });
    assert!(total.0 >= 5 && total.1 >= 2, "{total:?}");
    c.get("/api/flags/987654/timeseries").await.expect_error(404);
    c.get(&format!("/api/flags/{flag}/timeseries?timeRange=1000000&timeBucket=1"))
        .await
        .expect_error(400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_flags_get_their_keys_at_start() {
    let Some(redis) = RedisServer::start().await else { return };
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let mut flags = Vec::new();
    for i in 0..3 {
        flags.push(
            c.post(&format!("/api/apps/{app}/flags"), &json!({"title": format!("f{i}")}))
                .await
                .payload()["id"]
                .as_i64()
                .unwrap(),
        );
    }
    server.stop().await;
    // The same flags, now with Redis: their keys appear without any write.
    let server = tower_on(&store, &redis, 60_000).await;
    let mut conn = redis.connection().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for flag in flags {
        for status in ["success", "failure"] {
            loop {
                let exists: i64 = redis::cmd("EXISTS")
                    .arg(format!("{flag}:{status}"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if exists == 1 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{flag}:{status} was not created at start"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_a_503_on_metrics_only_and_heals_without_a_restart() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let store = TestStore::sqlite().await;
    let server = tower_on(&store, &redis, 3_600_000).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    assert_eq!(
        c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 1})).await.status,
        202
    );

    redis.kill();
    let r = c.get(&format!("/api/flags/{flag}/timeseries")).await;
    assert_eq!(r.expect_error(503)["code"], "unavailable");
    assert!(r.headers.get("retry-after").is_some());
    c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 1})).await.expect_error(503);
    // The rest of the API does not need Redis.
    assert_eq!(c.get(&format!("/api/flags/{flag}")).await.status, 200);
    assert_eq!(c.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status, 200);
    assert_eq!(c.get("/healthz").await.status, 200);

    redis.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 3})).await;
        if r.status == 202 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {} after Redis came back", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = c.get(&format!("/api/flags/{flag}/timeseries?timeRange=30000&timeBucket=3000")).await;
    assert_eq!(r.status, 200);
    let s: u64 =
        r.payload().as_array().unwrap().iter().map(|b| b["success"].as_u64().unwrap()).sum();
    assert!(s >= 3, "counts written after the outage are read back: {}", r.json);
    server.stop().await;
}
