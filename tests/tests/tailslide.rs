//! The real Tailslide Python SDK (`tailslide-sdk` 0.1.7 from PyPI), unchanged, against Tower on
//! NATS JetStream and RedisTimeSeries, on the oldest and the newest nats-server: it initializes
//! from the app's ruleset (or a new app's empty one), evaluates flags, follows a toggle and a
//! circuit trip, and its `emit_success` / `emit_failure` are what Tower counts and trips on.
//!
//! The SDK runs in `tests/tailslide/driver.py` under the Python of `TOWER_TEST_TAILSLIDE_PYTHON`
//! (a virtualenv that `./scripts/test` makes under target/tools).

use std::time::Duration;

use flagtower_core::Tower;
use flagtower_tests::{
    Client, Driver, NatsServer, NatsVersion, Server, TestStore, for_each_nats, program_from,
};
use serde_json::{Value, json};

for_each_nats!(the_python_sdk_reads_evaluates_follows_and_reports);

/// The SDK key: the NATS token the SDKs connect with.
const SDK_KEY: &str = "myToken";

/// The Tailslide Python SDK in a child process.
struct Sdk(Driver);

impl Sdk {
    /// Starts the driver, or `None` (said loudly; a failure under `TOWER_REQUIRE_SERVICES=1`)
    /// when no Python with the SDK is configured.
    fn start() -> Option<Self> {
        let python = program_from(
            "TOWER_TEST_TAILSLIDE_PYTHON",
            "a Python with tailslide-sdk 0.1.7 (pip install tailslide-sdk==0.1.7)",
        )?;
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tailslide/driver.py");
        Some(Self(Driver::start(&python, &[driver])))
    }

    async fn call(&mut self, cmd: Value) -> Value {
        self.0.call(cmd).await
    }

    async fn active(&mut self, flag: &str, user: &str) -> bool {
        let a = self.call(json!({"op": "active", "flag": flag, "user": user})).await;
        a["active"].as_bool().unwrap()
    }

    /// Waits until the SDK's copy of `flag` has `field == value`; milliseconds it took.
    async fn wait(&mut self, flag: &str, field: &str, value: Value) -> f64 {
        let cmd =
            json!({"op": "wait", "flag": flag, "field": field, "value": value, "timeout": 10});
        self.call(cmd).await["ms"].as_f64().unwrap()
    }

    /// Disconnects it and waits for it to exit.
    async fn close(mut self) {
        self.call(json!({"op": "close"})).await;
        self.0.wait().await;
    }
}

async fn counted_until(c: &Client, flag: i64, want: (u64, u64)) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = c.counts(flag).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "counted {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_python_sdk_reads_evaluates_follows_and_reports(version: NatsVersion) {
    let Some(mut sdk) = Sdk::start() else { return };
    let Some(nats) = NatsServer::start_on(version, Some(SDK_KEY), None).await else { return };
    let Some(redis) = flagtower_testkit::RedisServer::start().await else {
        return;
    };
    let metrics = flagtower_adapters::redis::RedisMetrics::connect(
        &flagtower_adapters::redis::RedisOptions::new(redis.url()),
    )
    .await
    .unwrap();
    let store = TestStore::sqlite().await;
    let builder = Tower::builder(store.open().await)
        .publisher(flagtower_tests::nats_publisher(&nats).await)
        .metrics(std::sync::Arc::new(metrics))
        .breaker(flagtower_tests::FAST_BREAKER);
    let server = Server::start_built(builder).await;
    let c = server.client();
    // Another app first, so that the SDK's app is not the stream's only one.
    let other = c.create("/api/apps", &json!({"title": "Other"})).await;
    c.create(&format!("/api/apps/{other}/flags"), &json!({"title": "checkout"})).await;
    let app = c.create("/api/apps", &json!({"title": "Shop"})).await;
    let checkout = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "checkout", "is_active": true, "error_threshold_percentage": 20}),
        )
        .await;
    let beta = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "beta", "white_listed_users": "alice", "rollout_percentage": 0}),
        )
        .await;
    let flags = c.get(&format!("/api/apps/{app}/flags")).await.payload().clone();

    // It initializes from the app's newest ruleset, exactly as Tower serves it.
    let init = sdk
        .call(json!({
            "op": "init", "nats": nats.url(), "stream": "flags_ruleset", "app_id": app,
            "sdk_key": SDK_KEY, "redis_host": "127.0.0.1", "redis_port": redis.port, "user": "bob",
        }))
        .await;
    assert_eq!(init["flags"], flags, "the SDK holds the app's ruleset");
    eprintln!("tailslide-sdk initialized on {}", nats.version);

    // It evaluates: on for everyone, off for everyone, the whitelist beside a 0 % rollout.
    assert!(sdk.active("checkout", "bob").await);
    assert!(!sdk.active("beta", "alice").await, "beta is off");
    // It follows a toggle.
    assert_eq!(c.patch_empty(&format!("/api/flags/{beta}/toggle")).await.status, 200);
    let ms = sdk.wait("beta", "is_active", json!(true)).await;
    eprintln!("the SDK saw the toggle {ms:.1} ms after the API answered");
    assert!(sdk.active("beta", "alice").await, "alice is whitelisted");
    assert!(!sdk.active("beta", "bob").await, "bob is outside a 0 % rollout");

    // What it emits is what Tower counts: successes first, so the failure rate stays under the
    // 20 % threshold on the way (5 in 35).
    sdk.call(json!({"op": "emit", "flag": "checkout", "status": "success", "count": 30})).await;
    sdk.call(json!({"op": "emit", "flag": "checkout", "status": "failure", "count": 5})).await;
    counted_until(&c, checkout, (30, 5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sdk.active("checkout", "bob").await, "a healthy flag stays on");

    // A regression it reports trips the circuit, and the SDK sees the flag go off.
    sdk.call(json!({"op": "emit", "flag": "checkout", "status": "failure", "count": 60})).await;
    let ms = sdk.wait("checkout", "circuit_status", json!("open")).await;
    eprintln!("the SDK saw the trip {ms:.1} ms after its last failure");
    assert!(!sdk.active("checkout", "bob").await, "a tripped flag is off");
    let f = c.get(&format!("/api/flags/{checkout}")).await.payload().clone();
    assert_eq!(
        (f["is_active"].clone(), f["circuit_status"].clone()),
        (json!(false), json!("open"))
    );
    assert_eq!(f["logs"].as_array().unwrap().last().unwrap()["action_type"], "circuit_open");
    counted_until(&c, checkout, (30, 65)).await;
    // The other app's flag of the same title is untouched: the SDK read only its own app.
    let held = sdk.call(json!({"op": "flags"})).await;
    assert!(held["flags"].as_array().unwrap().iter().all(|f| f["app_id"] == app), "{held}");

    sdk.close().await;

    // An SDK can start on a new app before its first flag, and sees the flag when it comes.
    let Some(mut fresh) = Sdk::start() else { return };
    let empty = c.create("/api/apps", &json!({"title": "New"})).await;
    let init = fresh
        .call(json!({
            "op": "init", "nats": nats.url(), "stream": "flags_ruleset", "app_id": empty,
            "sdk_key": SDK_KEY, "redis_host": "127.0.0.1", "redis_port": redis.port, "user": "bob",
        }))
        .await;
    assert_eq!(init["flags"], json!([]));
    c.create(&format!("/api/apps/{empty}/flags"), &json!({"title": "first", "is_active": true}))
        .await;
    fresh.wait("first", "is_active", json!(true)).await;
    assert!(fresh.active("first", "bob").await);
    fresh.close().await;
    server.stop().await;
}
