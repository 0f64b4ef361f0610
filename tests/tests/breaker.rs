//! The circuit breaker end to end: failures reported through the API trip a flag, the circuit
//! subject carries it, recovery ramps it back in, a manual toggle-off stops recovery, and a
//! restart resumes it.

use std::time::{Duration, Instant};

use flagtower_core::breaker::BreakerSettings;
use flagtower_core::{InProcessPublisher, Origin, Tower};
use flagtower_tests::{Client, Server, TestStore, for_each_store};
use serde_json::{Value, json};

for_each_store!(failures_trip_a_flag_and_recovery_closes_it, a_manual_toggle_off_stops_recovery);

const SETTINGS: BreakerSettings =
    BreakerSettings { interval_ms: 100, window_ms: 5_000, min_requests: 10, alpha_ppm: 10_000 };

async fn start(store: &TestStore) -> (Server, std::sync::Arc<InProcessPublisher>) {
    let publisher = InProcessPublisher::new();
    let builder = Tower::builder(store.open().await).publisher(publisher.clone()).breaker(SETTINGS);
    (Server::start_built(builder).await, publisher)
}

async fn flag_until(
    c: &Client,
    flag: i64,
    within: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let f = c.get(&format!("/api/flags/{flag}")).await.payload().clone();
        if ok(&f) {
            return f;
        }
        assert!(Instant::now() < deadline, "{what}: {f}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn recoverable_flag(c: &Client) -> i64 {
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    c.create(
        &format!("/api/apps/{app}/flags"),
        &json!({"title": "f", "is_active": true, "error_threshold_percentage": 50, "is_recoverable": true,
                "circuit_recovery_delay": 300, "circuit_recovery_rate": 150,
                "circuit_initial_recovery_percentage": 10, "circuit_recovery_increment_percentage": 30}),
    )
    .await
}

async fn failures_trip_a_flag_and_recovery_closes_it(store: TestStore) {
    let (server, publisher) = start(&store).await;
    let c = server.client();
    let flag = recoverable_flag(&c).await;
    // One failure is not enough (the minimum is 10 requests).
    c.post(&format!("/api/flags/{flag}/events"), &json!({"failure": 1})).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(c.get(&format!("/api/flags/{flag}")).await.payload()["is_active"], true);

    // Nor is a ratio over the threshold on a handful of requests: 6 of 10 is no evidence that
    // the flag fails more than half of the time.
    c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 4, "failure": 5})).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(c.get(&format!("/api/flags/{flag}")).await.payload()["is_active"], true);

    let mut sub = publisher.subscribe();
    let reported = Instant::now();
    c.post(&format!("/api/flags/{flag}/events"), &json!({"failure": 20})).await;
    let tripped =
        flag_until(&c, flag, Duration::from_secs(2), "tripped", |f| f["is_active"] == false).await;
    let took = reported.elapsed();
    assert_eq!(
        (tripped["circuit_status"].clone(), tripped["circuit_recovery_percentage"].clone()),
        (json!("open"), json!(0))
    );
    eprintln!("tripped {took:?} after the failures were reported");
    // The ruleset went out on the circuit subject.
    loop {
        let r = tokio::time::timeout(Duration::from_secs(2), sub.next())
            .await
            .expect("a ruleset")
            .unwrap();
        if r.origin == Origin::Circuit {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body[0]["is_active"], false);
            assert!(r.subject().ends_with(".update.circuit"));
            break;
        }
    }
    // Recovery: 10 % → 40 % → 70 % → closed, with the percentages published on the way.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let f = c.get(&format!("/api/flags/{flag}")).await.payload().clone();
        if f["circuit_status"] == "recovery" {
            let p = f["circuit_recovery_percentage"].as_f64().unwrap();
            if seen.last() != Some(&p) {
                seen.push(p);
            }
        }
        if f["circuit_status"] == "close" {
            assert_eq!(
                (f["is_active"].clone(), f["circuit_recovery_percentage"].clone()),
                (json!(true), json!(100))
            );
            break;
        }
        assert!(Instant::now() < deadline, "recovery did not close: {f}, saw {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !seen.is_empty() && seen.windows(2).all(|w| w[0] < w[1]),
        "rising percentages: {seen:?}"
    );
    assert!(seen.iter().all(|p| [10.0, 40.0, 70.0].contains(p)), "{seen:?}");
    // The log tells the story; intermediate steps are not logged.
    let logs = c.get(&format!("/api/flags/{flag}")).await.payload()["logs"].clone();
    let actions: Vec<&str> =
        logs.as_array().unwrap().iter().map(|l| l["action_type"].as_str().unwrap()).collect();
    assert_eq!(actions, ["create", "circuit_open", "circuit_recovery", "circuit_close"]);
    let actors: Vec<&str> =
        logs.as_array().unwrap().iter().map(|l| l["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["anonymous", "breaker", "breaker", "breaker"], "who made each change");
    // The trip says why, in numbers, beside the original description.
    assert_eq!(logs[1]["log_description"], "Circuit Tripped Open");
    assert_eq!(
        logs[1]["detail"],
        "20 requests, 20 failures: failure rate above 50 % with 99 % confidence"
    );
    assert!(logs[2].get("detail").is_none(), "only trips carry a detail: {}", logs[2]);
    // The failures that tripped it do not trip it again after it closed.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(c.get(&format!("/api/flags/{flag}")).await.payload()["circuit_status"], "close");
    server.stop().await;
}

async fn a_manual_toggle_off_stops_recovery(store: TestStore) {
    let (server, _) = start(&store).await;
    let c = server.client();
    let flag = recoverable_flag(&c).await;
    c.post(&format!("/api/flags/{flag}/events"), &json!({"failure": 20})).await;
    flag_until(&c, flag, Duration::from_secs(3), "recovering", |f| {
        f["circuit_status"] == "recovery"
    })
    .await;
    assert_eq!(
        c.patch(&format!("/api/flags/{flag}/toggle"), &json!({"is_active": false})).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let f = c.get(&format!("/api/flags/{flag}")).await.payload().clone();
    assert_eq!(
        (f["is_active"].clone(), f["circuit_status"].clone()),
        (json!(false), json!("open")),
        "{f}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_recovery_resumes_it() {
    let store = TestStore::sqlite().await;
    let (server, _) = start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "f", "is_active": true, "is_recoverable": true, "circuit_recovery_delay": 100,
                    "circuit_recovery_rate": 600, "circuit_initial_recovery_percentage": 50,
                    "circuit_recovery_increment_percentage": 50}),
        )
        .await;
    c.post(&format!("/api/flags/{flag}/events"), &json!({"failure": 20})).await;
    flag_until(&c, flag, Duration::from_secs(3), "recovering", |f| {
        f["circuit_status"] == "recovery"
    })
    .await;
    server.stop().await;
    // Down for longer than a step: the new process picks up from the stored state.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (server, _) = start(&store).await;
    let c = server.client();
    let f = flag_until(&c, flag, Duration::from_secs(3), "closed after the restart", |f| {
        f["circuit_status"] == "close"
    })
    .await;
    assert_eq!(f["circuit_recovery_percentage"], 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_tell_each_transition_and_retry_a_flaky_receiver() {
    let receiver = flagtower_tests::WebhookReceiver::start().await;
    let store = TestStore::sqlite().await;
    let (notifier, options) = flagtower_tests::local_webhook_setup();
    let builder = Tower::builder(store.open().await)
        .breaker(SETTINGS)
        .notifier(std::sync::Arc::new(notifier))
        .webhook_backoff(Duration::from_millis(50));
    let server = Server::start_built_with(builder, options).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "Checkout"})).await;
    let hooks = format!("{0}/ok/T0/B0/secret,{0}/flaky/x,{0}/gone/x", receiver.base);
    let flag = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "new-cart", "is_active": true, "is_recoverable": true, "webhooks": hooks,
                    "circuit_recovery_delay": 200, "circuit_recovery_rate": 100,
                    "circuit_initial_recovery_percentage": 50, "circuit_recovery_increment_percentage": 50}),
        )
        .await;
    c.post(&format!("/api/flags/{flag}/events"), &json!({"failure": 20})).await;
    flag_until(&c, flag, Duration::from_secs(5), "closed again", |f| {
        f["circuit_status"] == "close"
    })
    .await;
    let texts = |prefix: &str| -> Vec<String> {
        receiver
            .received()
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, b)| b["text"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let want = [
        "new-cart in Checkout has tripped open! 20 requests, 20 failures: failure rate above 50 % with 99 % confidence",
        "new-cart in Checkout started recovering!",
        "new-cart in Checkout recovered successfully and closed!",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    while texts("/flaky").len() < 3 || texts("/ok").len() < 3 {
        assert!(Instant::now() < deadline, "ok: {:?}, flaky: {:?}", texts("/ok"), texts("/flaky"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ok = texts("/ok");
    ok.sort();
    let mut sorted = want.map(str::to_owned).to_vec();
    sorted.sort();
    assert_eq!(ok, sorted, "one message per transition, the Slack texts");
    assert!(receiver.hits("/flaky/x") >= 5, "the flaky receiver's 500s were retried");
    assert_eq!(receiver.hits("/gone/x"), 3, "a 404 is not retried");
    // What /metrics says of it: the three moves, and the deliveries by result.
    let series = [
        r#"tower_breaker_moves_total{kind="trip"} 1"#,
        r#"tower_breaker_moves_total{kind="start_recovery"} 1"#,
        r#"tower_breaker_moves_total{kind="close"} 1"#,
        r#"tower_webhook_deliveries_total{result="delivered"} 6"#,
        r#"tower_webhook_deliveries_total{result="failed"} 3"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8(c.get("/metrics").await.raw.to_vec()).unwrap();
        let retried = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"tower_webhook_deliveries_total{result="retried"} "#))
            .and_then(|n| n.parse::<u64>().ok());
        let checks = text
            .lines()
            .find_map(|l| l.strip_prefix("tower_breaker_checks_total "))
            .and_then(|n| n.parse::<u64>().ok());
        if series.iter().all(|s| text.lines().any(|l| l == *s))
            && retried.is_some_and(|n| n >= 2)
            && checks.is_some_and(|n| n >= 1)
        {
            break;
        }
        assert!(Instant::now() < deadline, "metrics never said so:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_towers_one_breaker_runs_and_the_other_takes_over() {
    let Some(store) = TestStore::postgres().await else { return };
    let (a, _) = start(&store).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a leads
    let (b, _) = start(&store).await;
    let cb = b.client();
    let flag = recoverable_flag(&cb).await;
    // Counts are in b's memory; the leading breaker (a's) cannot see them, and b's waits.
    cb.post(&format!("/api/flags/{flag}/events"), &json!({"failure": 20})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        cb.get(&format!("/api/flags/{flag}")).await.payload()["is_active"],
        true,
        "b's breaker is not running"
    );
    // a goes away: b's breaker takes over within a few intervals and trips the flag.
    a.stop().await;
    flag_until(&cb, flag, Duration::from_secs(3), "tripped by the new leader", |f| {
        f["circuit_status"] != "close"
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_nats_and_redis_timeseries_sdk_failures_trip_a_flag() {
    use futures_util::StreamExt;
    let Some(store) = TestStore::postgres().await else { return };
    let Some(nats) = flagtower_tests::NatsServer::start(None).await else { return };
    let Some(redis) = flagtower_testkit::RedisServer::start().await else {
        return;
    };
    let receiver = flagtower_tests::WebhookReceiver::start().await;
    let (notifier, options) = flagtower_tests::local_webhook_setup();
    let metrics = flagtower_adapters::redis::RedisMetrics::connect(
        &flagtower_adapters::redis::RedisOptions::new(redis.url()),
    )
    .await
    .unwrap();
    let builder = Tower::builder(store.open().await)
        .publisher(flagtower_tests::nats_publisher(&nats).await)
        .metrics(std::sync::Arc::new(metrics))
        .breaker(SETTINGS)
        .notifier(std::sync::Arc::new(notifier));
    let server = Server::start_built_with(builder, options).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "Checkout"})).await;
    let flag = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "new-cart", "is_active": true, "webhooks": format!("{}/ok", receiver.base)}),
        )
        .await;
    let watcher = nats.client().await;
    let mut sub = watcher.subscribe(format!("apps.{app}.update.circuit")).await.unwrap();
    watcher.flush().await.unwrap();
    // What a Tailslide SDK sends: one TS.ADD per guarded call, into the keys Tower prepared.
    let mut conn = redis.connection().await;
    for i in 0..30 {
        let status = if i == 0 { "success" } else { "failure" };
        flagtower_tests::sdk_ts_add(&mut conn, flag, app, status, "*").await;
    }
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a ruleset on the circuit subject")
        .unwrap();
    let body: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        (body[0]["id"].as_i64(), body[0]["is_active"].clone(), body[0]["circuit_status"].clone()),
        (Some(flag), json!(false), json!("open"))
    );
    let logs = c.get(&format!("/api/logs/{app}")).await;
    assert_eq!(logs.payload()[0]["action_type"], "circuit_open", "the newest entry");
    let deadline = Instant::now() + Duration::from_secs(5);
    while receiver.received().is_empty() {
        assert!(Instant::now() < deadline, "no webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = receiver.received()[0].1["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("new-cart in Checkout has tripped open! ")
            && text.ends_with("failures: failure rate above 50 % with 99 % confidence"),
        "{text}"
    );
    server.stop().await;
}
