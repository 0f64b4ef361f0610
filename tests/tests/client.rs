//! The Rust client: `FlagClient` fed by `flagtower_adapters::nats::follow`, on the oldest and the
//! newest nats-server: a late start reads the newest ruleset, changes follow, a NATS restart is
//! caught up, the cache file answers while NATS is unreachable, and the answers are the OFREP
//! endpoint's for 10 000 users.

use std::time::{Duration, Instant};

use flagtower_adapters::nats::NatsOptions;
use flagtower_core::client::FlagClient;
use flagtower_core::{AppId, Bucketing, Revision};
use flagtower_tests::{NatsServer, NatsVersion, Server, TestStore, for_each_nats};
use serde_json::json;

for_each_nats!(a_client_follows_its_app_through_restarts_and_answers_like_ofrep);

async fn until(what: &str, within: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_client_follows_its_app_through_restarts_and_answers_like_ofrep(version: NatsVersion) {
    let Some(mut nats) = NatsServer::start_on(version, Some("sdk-key"), None).await else { return };
    let store = TestStore::sqlite().await;
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "Shop"})).await;
    let beta = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "beta", "is_active": true, "rollout_percentage": 37.5, "white_listed_users": "alice"}),
        )
        .await;
    for _ in 0..2 {
        c.patch_empty(&format!("/api/flags/{beta}/toggle")).await;
    }
    let now = server.tower.index(AppId::new(app)).await.unwrap().revision;

    // A late start reads the newest ruleset.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("flags.json");
    let client = FlagClient::new(AppId::new(app), Bucketing::Tower);
    let options = NatsOptions::new(nats.url()).token("sdk-key");
    let follower =
        flagtower_adapters::nats::follow(client.clone(), options.clone(), Some(cache.clone()));
    until("the newest ruleset", Duration::from_secs(5), || client.revision() == Some(now)).await;
    assert!(client.is_enabled("beta", "alice"));

    // The same answers as the OFREP endpoint.
    for u in 0..10_000 {
        let user = format!("user-{u}");
        let r = c
            .post(
                &format!("/api/apps/{app}/ofrep/v1/evaluate/flags/beta"),
                &json!({"context": {"targetingKey": user}}),
            )
            .await;
        assert_eq!(client.is_enabled("beta", &user), r.json["value"] == true, "{user}");
    }

    // A change follows in milliseconds.
    let toggled = Instant::now();
    c.patch_empty(&format!("/api/flags/{beta}/toggle")).await;
    until("the toggle", Duration::from_secs(2), || !client.is_enabled("beta", "alice")).await;
    eprintln!("the client saw the toggle after {:?}", toggled.elapsed());

    // NATS restarts, with a change committed while it was down: caught up, never going back.
    nats.kill();
    c.patch_empty(&format!("/api/flags/{beta}/toggle")).await;
    let down = server.tower.index(AppId::new(app)).await.unwrap().revision;
    nats.restart().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while client.revision() != Some(down) {
        if Instant::now() > deadline {
            let h = c.get("/healthz").await;
            panic!(
                "the client holds {:?}, not {down:?}; Tower's health: {}",
                client.revision(),
                h.json
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.is_enabled("beta", "alice"));
    assert!(
        !client.offer(AppId::new(app), Revision::new(1), &[]),
        "an older ruleset never replaces it"
    );
    follower.abort();

    // With NATS unreachable, a new client answers from the cache file at once.
    nats.kill();
    let offline = FlagClient::new(AppId::new(app), Bucketing::Tower);
    let f = flagtower_adapters::nats::follow(offline.clone(), options, Some(cache));
    until("the cached ruleset", Duration::from_secs(2), || offline.revision() == Some(down)).await;
    assert!(offline.is_enabled("beta", "alice"));
    f.abort();
    server.stop().await;
}

/// Through the `open-feature` crate with Tower's provider: reasons, variants and metadata as
/// OFREP gives them; and outcomes reported by the client are what Tower counts and trips on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfeature_answers_locally_and_reported_outcomes_trip_the_breaker() {
    use flagtower_core::{InMemoryMetrics, InProcessPublisher, SystemClock, Tower};
    use open_feature::{EvaluationContext, EvaluationErrorCode, EvaluationReason, OpenFeature};
    use std::sync::Arc;

    let store = TestStore::sqlite().await;
    let publisher = InProcessPublisher::new();
    let metrics = Arc::new(InMemoryMetrics::default());
    let builder = Tower::builder(store.open().await)
        .publisher(publisher.clone())
        .metrics(metrics.clone())
        .breaker(flagtower_tests::FAST_BREAKER);
    let server = Server::start_built(builder).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "Shop"})).await;
    let checkout = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "checkout", "is_active": true, "error_threshold_percentage": 20, "white_listed_users": "alice"}),
        )
        .await;
    c.create(
        &format!("/api/apps/{app}/flags"),
        &json!({"title": "beta", "is_active": true, "rollout_percentage": 30}),
    )
    .await;

    let flags = FlagClient::new(AppId::new(app), Bucketing::Tower);
    tokio::spawn(flags.clone().follow_in_process(publisher.subscribe()));
    let reporter = flags.report_to(metrics, Arc::new(SystemClock), Duration::from_millis(50));
    let current = server.tower.index(AppId::new(app)).await.unwrap().revision;
    until("the app's current ruleset", Duration::from_secs(5), || {
        flags.revision() == Some(current)
    })
    .await;
    OpenFeature::singleton_mut()
        .await
        .set_provider(flagtower_adapters::openfeature::TowerProvider::new(flags.clone()))
        .await;
    let of = OpenFeature::singleton().await.create_client();
    let alice = EvaluationContext::default().with_targeting_key("alice");
    let d = of.get_bool_details("checkout", Some(&alice), None).await.unwrap();
    assert_eq!(
        (d.value, d.reason, d.variant.as_deref()),
        (true, Some(EvaluationReason::TargetingMatch), Some("on"))
    );
    assert!(
        format!("{:?}", d.flag_metadata).contains(&format!("{checkout}")),
        "{:?}",
        d.flag_metadata
    );
    let e = of.get_bool_details("beta", None, None).await.unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::TargetingKeyMissing);
    let e = of.get_bool_details("nope", Some(&alice), None).await.unwrap_err();
    assert_eq!(e.code, EvaluationErrorCode::FlagNotFound);
    assert_eq!(
        of.get_int_value("beta", Some(&alice), None).await.unwrap_err().code,
        EvaluationErrorCode::TypeMismatch
    );
    for u in 0..200 {
        let user = format!("user-{u}");
        let ctx = EvaluationContext::default().with_targeting_key(user.clone());
        let d = of.get_bool_details("beta", Some(&ctx), None).await.unwrap();
        let want = server.tower.index(AppId::new(app)).await.unwrap().evaluate(
            "beta",
            Some(&user),
            Bucketing::Tower,
        );
        assert_eq!(d.value, want.unwrap().unwrap().enabled, "{user}");
    }

    // The guarded calls' outcomes, reported without waiting: counted by Tower, and a
    // regression trips the flag, which the client then sees off.
    for _ in 0..30 {
        flags.record_success("checkout");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.counts(checkout).await != (30, 0) {
        assert!(Instant::now() < deadline, "successes not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..40 {
        flags.record_failure("checkout");
    }
    until("the trip, seen by the client", Duration::from_secs(5), || {
        !flags.is_enabled("checkout", "bob")
    })
    .await;
    let d = of.get_bool_details("checkout", Some(&alice), None).await.unwrap();
    assert_eq!(
        (d.value, d.reason),
        (false, Some(EvaluationReason::Disabled)),
        "tripped: off even for alice"
    );
    assert_eq!(c.counts(checkout).await, (30, 40));
    reporter.abort();
    server.stop().await;
}

/// Outcomes sent to Tower's events route by `TowerEvents`: counted as SDK reports are, kept while
/// Tower is unreachable and delivered once it is back, and a flag Tower does not know (404) does
/// not hold up the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_reach_tower_through_the_events_route() {
    use flagtower_adapters::events::TowerEvents;
    use flagtower_core::model::{Flag, FlagId, Title};
    use flagtower_core::{SystemClock, Timestamp};
    use flagtower_tests::TcpProxy;
    use std::sync::Arc;

    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "Shop"})).await;
    let checkout = c
        .create(&format!("/api/apps/{app}/flags"), &json!({"title": "checkout", "is_active": true}))
        .await;
    let proxy = TcpProxy::start(server.addr).await;
    let sink = Arc::new(
        TowerEvents::new(&format!("http://{}/", proxy.addr))
            .unwrap()
            .timeout(Duration::from_secs(1)),
    );

    // The app's flags as Tower publishes them, plus one Tower never had.
    let flags = FlagClient::new(AppId::new(app), Bucketing::Tower);
    let index = server.tower.index(AppId::new(app)).await.unwrap();
    let mut ghost =
        Flag::new(AppId::new(app), Title::parse("ghost").unwrap(), Timestamp::from_millis(0))
            .with_id(FlagId::new(checkout + 1000));
    ghost.state = flagtower_core::model::CircuitState::On;
    let mut listed = vec![ghost];
    listed.extend(server.tower.list_flags(AppId::new(app)).await.unwrap());
    assert!(flags.offer(AppId::new(app), index.revision, &listed));
    let reporter = flags.report_to(sink.clone(), Arc::new(SystemClock), Duration::from_millis(50));

    for _ in 0..3 {
        flags.record_success("checkout");
    }
    flags.record_failure("checkout");
    flags.record_failure("checkout");
    flags.record_failure("ghost");
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.counts(checkout).await != (3, 2) {
        assert!(Instant::now() < deadline, "counts {:?}", c.counts(checkout).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Tower unreachable: the outcome is kept through failed rounds and arrives after.
    proxy.cut();
    flags.record_failure("checkout");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.counts(checkout).await, (3, 2), "nothing arrived while cut");
    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.counts(checkout).await != (3, 3) {
        assert!(Instant::now() < deadline, "counts {:?}", c.counts(checkout).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!format!("{sink:?}").contains("127.0.0.1"), "{sink:?}");
    reporter.abort();
    server.stop().await;
}
