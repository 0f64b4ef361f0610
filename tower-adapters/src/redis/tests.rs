//! The Redis metrics store against real servers.

use std::sync::Arc;

use flagtower_core::{AppId, Counts, FlagId, MetricsStore, Timestamp};

use super::*;
use flagtower_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let Some(server) = RedisServer::start().await else { return };
    let server = Arc::new(server);
    flagtower_core::conformance::metrics::run(|| {
        let server = Arc::clone(&server);
        async move {
            let mut c = server.connection().await;
            redis::cmd("FLUSHALL").query_async::<()>(&mut c).await.unwrap();
            Arc::new(RedisMetrics::connect(&RedisOptions::new(server.url())).await.unwrap())
                as Arc<dyn MetricsStore>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_writes_are_all_counted_once_tower_prepared_the_keys() {
    const WRITERS: usize = 4;
    const EACH: usize = 500;
    let Some(server) = RedisServer::start().await else { return };
    let m = RedisMetrics::connect(&RedisOptions::new(server.url()).retention_ms(120_000))
        .await
        .unwrap();
    let (flag, app) = (FlagId::new(42), AppId::new(7));
    // An SDK wrote first, creating the key with the server's default (BLOCK) policy.
    let mut c = server.connection().await;
    redis::cmd("TS.ADD")
        .arg("42:success")
        .arg("*")
        .arg(1)
        .arg("LABELS")
        .arg("status")
        .arg("success")
        .arg("flagId")
        .arg(42)
        .arg("appId")
        .arg(7)
        .query_async::<i64>(&mut c)
        .await
        .unwrap();
    m.prepare(flag, app).await.unwrap();
    // What the Tailslide SDKs send: one TS.ADD per event, from several connections, many per ms.
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = server.url();
            tokio::spawn(async move {
                let mut c = redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                for i in 0..EACH {
                    let status = if (i + w) % 5 == 0 { "failure" } else { "success" };
                    redis::cmd("TS.ADD")
                        .arg(format!("42:{status}"))
                        .arg("*")
                        .arg(1)
                        .arg("LABELS")
                        .arg("status")
                        .arg(status)
                        .arg("flagId")
                        .arg(42)
                        .arg("appId")
                        .arg(7)
                        .query_async::<i64>(&mut c)
                        .await
                        .unwrap_or_else(|e| panic!("an SDK write was refused: {e}"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let now = flagtower_core::Clock::now(&flagtower_core::SystemClock);
    let b = m.buckets(flag, now.plus_millis(-60_000), now, 60_000).await.unwrap();
    let (s, f) = b.iter().fold((0, 0), |(s, f), b| (s + b.success, f + b.failure));
    assert_eq!(s + f, 1 + (WRITERS * EACH) as u64, "every event counted");
    assert_eq!(f, (WRITERS * EACH / 5) as u64);
    // Both keys carry Tower's retention, duplicate policy and labels.
    for key in ["42:success", "42:failure"] {
        let info: redis::Value = redis::cmd("TS.INFO").arg(key).query_async(&mut c).await.unwrap();
        let text = format!("{info:?}").to_lowercase();
        assert!(text.contains("retentiontime") && text.contains("120000"), "{key}: {text}");
        assert!(text.contains("sum"), "duplicate policy sums: {text}");
        assert!(text.contains("flagid") && text.contains("appid"), "labels: {text}");
    }
    // Tower's own writes at one millisecond add up too.
    let at = Timestamp::from_millis(now.as_millis() - 5_000);
    for _ in 0..10 {
        m.record(flag, app, Counts { success: 2, failure: 1 }, at).await.unwrap();
    }
    let b = m.buckets(flag, at, at, 1).await.unwrap();
    assert_eq!((b[0].success, b[0].failure), (20, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_module_is_refused_with_what_to_run() {
    let Some(server) = RedisServer::start_plain().await else { return };
    let mut c = server.connection().await;
    let has_ts: bool = {
        let modules: redis::Value =
            redis::cmd("MODULE").arg("LIST").query_async(&mut c).await.unwrap();
        contains_name(&modules, "timeseries")
    };
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await.unwrap();
    let v8 = info.contains("redis_version:8") || info.contains("redis_version:9");
    if has_ts || v8 {
        eprintln!("note: the plain redis-server has time-series support; nothing to refuse");
        return;
    }
    let err = RedisMetrics::connect(&RedisOptions::new(server.url())).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectError::NoTimeSeries { .. }), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port)) && text.contains("redistimeseries.so"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let err = RedisMetrics::connect(&RedisOptions::new("redis://:hunter2@127.0.0.1:1"))
        .await
        .unwrap_err();
    let shown = format!("{err} | {err:?} | {}", flagtower_core::ErrorChain(&err));
    assert!(matches!(err, ConnectError::Connect { .. }), "{shown}");
    assert!(!shown.contains("hunter2") && shown.contains("127.0.0.1:1"), "{shown}");
}

#[test]
fn the_seeds_json_form_is_understood() {
    let o = RedisOptions::from_node_redis_json(r#"{"socket":{"host":"localhost"}}"#).unwrap();
    assert_eq!(o.target(), "redis://localhost:6379");
    let o = RedisOptions::from_node_redis_json(
        r#"{"socket":{"host":"r","port":6380},"password":"pw","database":2}"#,
    )
    .unwrap();
    assert_eq!(o.target(), "redis://***@r:6380");
    assert!(!format!("{o:?}").contains("pw"));
    assert!(RedisOptions::from_node_redis_json("nope").is_err());
    assert!(RedisOptions::from_node_redis_json(r#"{"socket":{"port":99999}}"#).is_err());
}
