//! Rulesets over NATS JetStream with a private nats-server: what each change puts on the wire,
//! late subscribers, outages of NATS and of Tower, concurrency, and authentication.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use flagtower_core::AppId;
use flagtower_tests::{Client, NatsServer, NatsVersion, Server, TestStore, for_each_nats};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Each named `async fn(TestStore, NatsVersion)` as four tests: `sqlite::nats_oldest::NAME` …
/// `postgres::nats_newest::NAME`.
macro_rules! for_each_store_and_nats {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            mod nats_oldest { $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::super::$name(flagtower_tests::TestStore::sqlite().await, flagtower_tests::NatsVersion::Oldest).await
                }
            )* }
            mod nats_newest { $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::super::$name(flagtower_tests::TestStore::sqlite().await, flagtower_tests::NatsVersion::Newest).await
                }
            )* }
        }
        mod postgres {
            mod nats_oldest { $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(store) = flagtower_tests::TestStore::postgres().await else { return };
                    super::super::$name(store, flagtower_tests::NatsVersion::Oldest).await
                }
            )* }
            mod nats_newest { $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(store) = flagtower_tests::TestStore::postgres().await else { return };
                    super::super::$name(store, flagtower_tests::NatsVersion::Newest).await
                }
            )* }
        }
    };
}

for_each_store_and_nats!(
    each_change_publishes_one_ruleset,
    concurrent_changes_end_with_the_newest_ruleset,
    a_change_that_would_outgrow_max_payload_is_refused_and_nothing_is_written,
);

for_each_nats!(
    rulesets_committed_while_nats_is_down_arrive_within_5_s_of_its_return,
    a_change_committed_by_a_tower_that_died_before_publishing_is_published_at_restart,
    two_towers_on_one_database_never_publish_an_older_revision_after_a_newer_one,
    a_wrong_token_is_a_clear_startup_error,
    an_existing_stream_is_adopted_or_refused_with_a_reason,
    a_wiped_stream_is_recreated_and_refilled_at_start,
    an_app_past_max_payload_never_holds_back_another,
    tower_s_earlier_stream_is_upgraded_in_place_keeping_the_last_message_per_subject,
    the_original_tower_s_stream_is_upgraded_in_place_keeping_the_last_message_per_subject,
);

async fn next(sub: &mut async_nats::Subscriber, timeout: Duration) -> Option<async_nats::Message> {
    tokio::time::timeout(timeout, sub.next()).await.ok().flatten()
}

fn header(m: &async_nats::Message, name: &str) -> String {
    m.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned()).unwrap_or_default()
}

/// The latest ruleset of an app as a subscriber that starts now reads it: JetStream's
/// deliver-last-per-subject on `apps.<appId>.>`, the filter the Tailslide SDKs use.
async fn latest_on_stream(client: &async_nats::Client, app: i64) -> Option<(u64, Value)> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("flags_ruleset").await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("apps.{app}.>"),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let m = tokio::time::timeout(Duration::from_secs(1), messages.next())
        .await
        .expect("in time")?
        .expect("message");
    let rev = m.headers.as_ref()?.get("Tower-Revision")?.as_str().parse().ok()?;
    Some((rev, serde_json::from_slice(&m.payload).ok()?))
}

/// Reads messages until one carries `final_revision` and returns it, asserting that revisions
/// never go back (nor repeat, when `strict`).
async fn follow_to(
    sub: &mut async_nats::Subscriber,
    final_revision: u64,
    strict: bool,
) -> async_nats::Message {
    let mut last: Option<u64> = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = next(sub, deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("the newest revision arrives");
        let rev: u64 = header(&m, "Tower-Revision").parse().unwrap();
        assert!(
            last.is_none_or(|last| rev > last || (!strict && rev == last)),
            "revision {rev} was published after {last:?}"
        );
        last = Some(rev);
        if rev == final_revision {
            return m;
        }
    }
}

async fn flags_of(c: &Client, app: i64) -> Value {
    c.get(&format!("/api/apps/{app}/flags")).await.payload().clone()
}

async fn each_change_publishes_one_ruleset(store: TestStore, version: NatsVersion) {
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let watcher = nats.client().await;
    let mut sub = watcher.subscribe("apps.>").await.unwrap();
    watcher.flush().await.unwrap();

    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    // A new app's empty ruleset goes out at once (revision 0), so an SDK can start on it.
    let m = next(&mut sub, Duration::from_secs(5)).await.expect("the new app published");
    assert_eq!(m.subject.as_str(), format!("apps.{app}.update.manual"));
    assert_eq!(header(&m, "Nats-Msg-Id"), format!("{app}-0"));
    assert_eq!(serde_json::from_slice::<Value>(&m.payload).unwrap(), json!([]));
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let mut revision = 0;
    let mut expect = |m: async_nats::Message, body: Value| {
        revision += 1;
        assert_eq!(m.subject.as_str(), format!("apps.{app}.update.manual"));
        assert_eq!(header(&m, "Nats-Msg-Id"), format!("{app}-{revision}"));
        assert_eq!(header(&m, "Tower-Revision"), revision.to_string());
        let got: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            got, body,
            "revision {revision}: the JSON array of the app's flags, no envelope"
        );
    };
    let m = next(&mut sub, Duration::from_secs(5)).await.expect("flag creation published");
    expect(m, flags_of(&c, app).await);

    let steps: Vec<(&str, String, Option<Value>)> = vec![
        ("PATCH", format!("/api/flags/{flag}"), Some(json!({"rollout_percentage": 12.5}))),
        ("PATCH", format!("/api/flags/{flag}/toggle"), None),
        ("POST", format!("/api/flags/circuit/{flag}/open"), None),
        ("POST", format!("/api/flags/circuit/{flag}/close"), None),
        ("DELETE", format!("/api/flags/{flag}"), None),
    ];
    for (method, path, body) in steps {
        let r = match (method, body) {
            ("PATCH", Some(b)) => c.patch(&path, &b).await,
            ("PATCH", None) => c.patch_empty(&path).await,
            ("POST", _) => c.post_empty(&path).await,
            _ => c.delete(&path).await,
        };
        assert_eq!(r.status, 200, "{method} {path}");
        let m = next(&mut sub, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{method} {path} published"));
        expect(m, flags_of(&c, app).await);
    }
    // A change that changes nothing publishes nothing.
    let other = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "g"})).await;
    let m = next(&mut sub, Duration::from_secs(5)).await.unwrap();
    expect(m, flags_of(&c, app).await);
    c.patch(&format!("/api/flags/{other}/toggle"), &json!({"is_active": false})).await;
    assert!(
        next(&mut sub, Duration::from_millis(300)).await.is_none(),
        "a no-op publishes nothing"
    );

    assert_eq!(c.delete(&format!("/api/apps/{app}")).await.status, 200);
    let m = next(&mut sub, Duration::from_secs(5)).await.expect("app deletion published");
    expect(m, json!([]));
    assert!(
        next(&mut sub, Duration::from_millis(300)).await.is_none(),
        "exactly one message per change"
    );

    // A subscriber that starts now reads the latest ruleset.
    let (rev, body) = latest_on_stream(&watcher, app).await.expect("the latest ruleset is kept");
    assert_eq!((rev, body), (revision, json!([])));

    // The stream is the one SDKs expect.
    let js = jetstream::new(watcher.clone());
    let mut s = js.get_stream("flags_ruleset").await.unwrap();
    let cfg = s.info().await.unwrap().config.clone();
    assert_eq!(cfg.subjects, vec!["apps.*.>".to_owned()]);
    assert_eq!(cfg.storage, jetstream::stream::StorageType::File);
    assert_eq!(cfg.max_messages_per_subject, 1);
    assert!(cfg.duplicate_window >= Duration::from_secs(120));
    // Every Tailslide SDK's consumer filter is accepted on it: `apps.<id>.>` (Python, JS, Ruby),
    // `>` (Go), and `apps.*.update.manual` (Aerobat, the original Tower's breaker).
    for filter in [format!("apps.{app}.>"), ">".to_owned(), "apps.*.update.manual".to_owned()] {
        s.create_consumer(jetstream::consumer::pull::Config {
            filter_subject: filter.clone(),
            deliver_policy: DeliverPolicy::Last,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("the filter {filter} is refused: {e}"));
    }
    server.stop().await;
}

async fn concurrent_changes_end_with_the_newest_ruleset(store: TestStore, version: NatsVersion) {
    const N: usize = 200;
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let watcher = nats.client().await;
    let mut sub = watcher.subscribe("apps.>").await.unwrap();
    watcher.flush().await.unwrap();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let mut tasks = Vec::new();
    for _ in 0..N {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let final_revision = (N + 1) as u64;
    let m = follow_to(&mut sub, final_revision, true).await;
    let body: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(body, flags_of(&c, app).await, "the last message equals the database");
    let (rev, body) = latest_on_stream(&watcher, app).await.unwrap();
    assert_eq!((rev, body), (final_revision, flags_of(&c, app).await));
    server.stop().await;
}

async fn rulesets_committed_while_nats_is_down_arrive_within_5_s_of_its_return(
    version: NatsVersion,
) {
    let Some(mut nats) = NatsServer::start_on(version, None, None).await else { return };
    let store = TestStore::sqlite().await;
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let mut apps = Vec::new();
    for i in 0..5 {
        let app = c.create("/api/apps", &json!({"title": format!("app {i}")})).await;
        let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
        apps.push((app, flag));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    nats.kill();
    // 50 changes across the 5 apps: the API keeps working.
    for i in 0..50 {
        let (_, flag) = apps[i % 5];
        let r = if i % 3 == 0 {
            c.patch(&format!("/api/flags/{flag}"), &json!({"rollout_percentage": i})).await
        } else {
            c.patch_empty(&format!("/api/flags/{flag}/toggle")).await
        };
        assert_eq!(r.status, 200, "change {i} while NATS is down");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = c.get("/healthz").await;
        assert_eq!(h.status, 200, "the store is up");
        if h.json["publisher"] == "degraded" {
            break;
        }
        assert!(Instant::now() < deadline, "the publisher never reported degraded: {}", h.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.restart().await;
    let back = Instant::now();
    let watcher = nats.client().await;
    let mut pending: HashMap<i64, u64> = HashMap::new();
    for (app, _) in &apps {
        pending.insert(*app, server.tower.index(AppId::new(*app)).await.unwrap().revision.get());
    }
    while !pending.is_empty() {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "not published within 5 s of NATS's return: {pending:?}"
        );
        for (app, _) in &apps {
            if let Some(want) = pending.get(app).copied()
                && let Some((rev, body)) = latest_on_stream(&watcher, *app).await
                && rev == want
            {
                assert_eq!(body, flags_of(&c, *app).await);
                pending.remove(app);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = c.get("/healthz").await;
    assert_eq!(h.json["publisher"], "ok", "{}", h.json);
    server.stop().await;
}

async fn a_change_committed_by_a_tower_that_died_before_publishing_is_published_at_restart(
    version: NatsVersion,
) {
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let store = TestStore::sqlite().await;
    // The crashed process: its change and outbox record committed, nothing published.
    let s = store.open().await;
    let t = flagtower_core::Timestamp::from_millis(1_700_000_000_000);
    let app = s.create_app(&flagtower_core::Title::parse("crashed").unwrap(), t).await.unwrap();
    let nf = flagtower_core::NewFlag {
        title: flagtower_core::Title::parse("f").unwrap(),
        settings: Default::default(),
    };
    let flag =
        s.create_flag(app.id, &nf, t, &flagtower_core::Actor::anonymous()).await.unwrap().value;
    let committed = s
        .change_flag(
            flag.id,
            &flagtower_core::FlagCommand::Toggle(None),
            flagtower_core::Origin::Manual,
            t,
            &flagtower_core::Actor::anonymous(),
        )
        .await
        .unwrap()
        .revision
        .unwrap();
    assert_eq!(s.pending().await.unwrap().len(), 1, "the outbox holds the unpublished change");
    drop(s);
    // The restart.
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let watcher = nats.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((rev, body)) = latest_on_stream(&watcher, app.id.get()).await
            && rev == committed.get()
        {
            assert_eq!(body[0]["is_active"], true);
            break;
        }
        assert!(Instant::now() < deadline, "the committed change was never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Marked published right after JetStream's acknowledgement, which may follow the message.
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.pending_apps().await > 0 {
        assert!(Instant::now() < deadline, "never marked published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

async fn two_towers_on_one_database_never_publish_an_older_revision_after_a_newer_one(
    version: NatsVersion,
) {
    const N: usize = 120;
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let Some(store) = TestStore::postgres().await else { return };
    let a =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let b =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let (ca, cb) = (a.client(), b.client());
    let watcher = nats.client().await;
    let mut sub = watcher.subscribe("apps.>").await.unwrap();
    watcher.flush().await.unwrap();
    let app = ca.create("/api/apps", &json!({"title": "shared"})).await;
    let flag = cb.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        tasks.push(tokio::spawn(async move {
            c.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let final_revision = (N + 1) as u64;
    // Two processes may publish the same revision (JetStream drops the repeat), never an older one.
    follow_to(&mut sub, final_revision, false).await;
    a.stop().await;
    b.stop().await;
}

async fn a_wrong_token_is_a_clear_startup_error(version: NatsVersion) {
    let Some(nats) = NatsServer::start_on(version, Some("right-token"), None).await else { return };
    for options in [
        flagtower_adapters::nats::NatsOptions::new(nats.url()).token("wrong-token"),
        flagtower_adapters::nats::NatsOptions::new(nats.url()),
    ] {
        let err = flagtower_adapters::nats::NatsPublisher::connect(&options).await.unwrap_err();
        let shown = format!("{err} | {err:?} | {}", flagtower_core::ErrorChain(&err));
        assert!(matches!(err, flagtower_adapters::nats::ConnectError::Auth { .. }), "{shown}");
        assert!(shown.contains("refused the credentials"), "{shown}");
        assert!(
            !shown.contains("wrong-token") && !shown.contains("right-token"),
            "the token is never shown: {shown}"
        );
    }
    let ok = flagtower_adapters::nats::NatsOptions::new(nats.url()).token("right-token");
    flagtower_adapters::nats::NatsPublisher::connect(&ok)
        .await
        .expect("the right token is accepted");
}

async fn an_existing_stream_is_adopted_or_refused_with_a_reason(version: NatsVersion) {
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    // Someone made the stream for other subjects with a short window: Tower adds what it needs.
    js.create_stream(jetstream::stream::Config {
        name: "flags_ruleset".into(),
        subjects: vec!["legacy.>".into()],
        max_messages_per_subject: 1,
        duplicate_window: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    flagtower_tests::nats_publisher(&nats).await;
    let cfg = js.get_stream("flags_ruleset").await.unwrap().info().await.unwrap().config.clone();
    assert!(
        cfg.subjects.contains(&"apps.*.>".to_owned())
            && cfg.subjects.contains(&"legacy.>".to_owned())
    );
    assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
    // One that keeps history per subject would change what SDKs read: refused, with the fix.
    js.create_stream(jetstream::stream::Config {
        name: "history".into(),
        subjects: vec!["history.>".into()],
        max_messages_per_subject: 10,
        ..Default::default()
    })
    .await
    .unwrap();
    let err = flagtower_adapters::nats::NatsPublisher::connect(
        &flagtower_adapters::nats::NatsOptions::new(nats.url()).stream("history"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("keeps 10 messages per subject"), "{err}");
}

async fn a_wiped_stream_is_recreated_and_refilled_at_start(version: NatsVersion) {
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let store = TestStore::sqlite().await;
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let mut apps = Vec::new();
    for i in 0..3 {
        let app = c.create("/api/apps", &json!({"title": format!("app {i}")})).await;
        c.post(&format!("/api/apps/{app}/flags"), &json!({"title": "f", "is_active": true})).await;
        apps.push(app);
    }
    server.stop().await;
    let watcher = nats.client().await;
    jetstream::new(watcher.clone()).delete_stream("flags_ruleset").await.unwrap();

    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let deadline = Instant::now() + Duration::from_secs(5);
    for app in apps {
        loop {
            if let Some((_, body)) = latest_on_stream(&watcher, app).await
                && body == flags_of(&c, app).await
            {
                break;
            }
            assert!(Instant::now() < deadline, "app {app} was not republished");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
}

/// A comma-separated list of `n` user ids: about 8 bytes each.
fn users(n: usize) -> String {
    (0..n).map(|i| format!("user-{i}")).collect::<Vec<_>>().join(",")
}

async fn a_change_that_would_outgrow_max_payload_is_refused_and_nothing_is_written(
    store: TestStore,
    version: NatsVersion,
) {
    const MAX_PAYLOAD: usize = 8 * 1024;
    let limit = MAX_PAYLOAD - flagtower_adapters::nats::HEADER_ALLOWANCE;
    let Some(nats) = NatsServer::start_on(version, None, Some(MAX_PAYLOAD)).await else { return };
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let before = c.get(&format!("/api/flags/{flag}")).await.payload().clone();

    let r =
        c.patch(&format!("/api/flags/{flag}"), &json!({"white_listed_users": users(1500)})).await;
    let err = r.expect_error(422);
    assert_eq!(err["code"], "ruleset_too_large");
    let message = err["message"].as_str().unwrap();
    assert!(message.contains(&format!("over the {limit} bytes")), "names the limit: {message}");
    let size: usize = message
        .split("ruleset ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("names the size: {message}"));
    assert!(size > limit, "{message}");
    let r = c
        .post(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "g", "description": "x".repeat(10_000)}),
        )
        .await;
    assert_eq!(r.expect_error(422)["code"], "ruleset_too_large");

    // Nothing was written: the flag, its log, the app's flags and its revision are as before.
    assert_eq!(c.get(&format!("/api/flags/{flag}")).await.payload(), &before);
    assert_eq!(flags_of(&c, app).await.as_array().unwrap().len(), 1);
    // A change that fits goes through and is published as the app's second revision.
    let r =
        c.patch(&format!("/api/flags/{flag}"), &json!({"white_listed_users": users(100)})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let watcher = nats.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some((rev, body)) = latest_on_stream(&watcher, app).await
            && rev == 2
        {
            assert_eq!(body, flags_of(&c, app).await);
            break;
        }
        assert!(Instant::now() < deadline, "the change that fits was not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let h = c.get("/healthz").await;
    assert_eq!((h.json["publisher"].clone(), h.json["store"].clone()), (json!("ok"), json!("ok")));
    server.stop().await;
}

/// Waits until `sub` delivers the app's ruleset with `is_active` of its first flag equal to
/// `active`; returns how long it took.
async fn arrives(sub: &mut async_nats::Subscriber, active: bool) -> Duration {
    let start = Instant::now();
    loop {
        let m = next(sub, Duration::from_secs(1).saturating_sub(start.elapsed()))
            .await
            .unwrap_or_else(|| panic!("the change (is_active={active}) did not arrive within 1 s"));
        let body: Value = serde_json::from_slice(&m.payload).unwrap();
        if body[0]["is_active"] == active {
            return start.elapsed();
        }
    }
}

fn unpublished(h: &Value, app: i64) -> Option<Value> {
    h["unpublished"].as_array()?.iter().find(|u| u["app_id"] == app).cloned()
}

async fn an_app_past_max_payload_never_holds_back_another(version: NatsVersion) {
    const MAX_PAYLOAD: usize = 16 * 1024;
    let Some(nats) = NatsServer::start_on(version, None, Some(MAX_PAYLOAD)).await else { return };
    let store = TestStore::sqlite().await;
    // Grown by an earlier Tower whose publisher allowed more (the in-process one has no limit):
    // 3 flags of about 8 KB each, on both sides of an app that fits.
    let earlier = Server::start(&store).await;
    let c = earlier.client();
    let first = c.create("/api/apps", &json!({"title": "first"})).await;
    let big = c.create("/api/apps", &json!({"title": "big"})).await;
    let last = c.create("/api/apps", &json!({"title": "last"})).await;
    let mut big_flags = Vec::new();
    for i in 0..3 {
        let body = json!({"title": format!("wide {i}"), "white_listed_users": users(1000)});
        big_flags.push(c.create(&format!("/api/apps/{big}/flags"), &body).await);
    }
    let mut small = Vec::new();
    for app in [first, last] {
        small
            .push((app, c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await));
    }
    earlier.stop().await;

    let watcher = nats.client().await;
    for round in 0..2 {
        // Round 0: the first start on this NATS; round 1: a restart of Tower.
        let server =
            Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await)
                .await;
        let c = server.client();
        let deadline = Instant::now() + Duration::from_secs(5);
        for (app, _) in &small {
            while latest_on_stream(&watcher, *app).await.is_none_or(|(rev, _)| rev < 1) {
                assert!(Instant::now() < deadline, "round {round}: app {app} was not republished");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // The big app is reported: which, why, since when; and not retried in a loop. (After a
        // restart the small apps' rulesets are already on the stream: wait for the report.)
        let deadline = Instant::now() + Duration::from_secs(5);
        let h = loop {
            let h = c.get("/healthz").await;
            if unpublished(&h.json, big).is_some() {
                break h;
            }
            assert!(Instant::now() < deadline, "round {round}: never reported: {}", h.json);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(h.status, 200);
        assert_eq!(
            (h.json["store"].clone(), h.json["publisher"].clone()),
            (json!("ok"), json!("degraded"))
        );
        let u = unpublished(&h.json, big).unwrap_or_else(|| panic!("round {round}: {}", h.json));
        assert_eq!(
            (u["stage"].clone(), u["rejected"].clone()),
            (json!("publisher"), json!(true)),
            "{u}"
        );
        assert!(u["reason"].as_str().unwrap().contains("max payload"), "{u}");
        assert!(u["since"].as_str().is_some_and(|s| s.ends_with('Z')), "{u}");
        assert_eq!(h.json["unpublished_count"], 1, "only the big app: {}", h.json);
        // Changes to the other apps keep arriving within a second.
        for (app, flag) in &small {
            let mut sub = watcher.subscribe(format!("apps.{app}.>")).await.unwrap();
            watcher.flush().await.unwrap();
            for _ in 0..3 {
                let r = c.patch_empty(&format!("/api/flags/{flag}/toggle")).await;
                let active = r.payload()["is_active"].as_bool().unwrap();
                arrives(&mut sub, active).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let h = c.get("/healthz").await;
        assert_eq!(
            unpublished(&h.json, big).unwrap()["attempts"],
            1,
            "no retry in a loop: {}",
            h.json
        );
        if round == 0 {
            server.stop().await;
            continue;
        }
        // Shrinking the app is allowed although it is over the limit, and publishes it as
        // soon as it fits.
        let mut sub = watcher.subscribe(format!("apps.{big}.>")).await.unwrap();
        watcher.flush().await.unwrap();
        for flag in &big_flags[..2] {
            let r =
                c.patch(&format!("/api/flags/{flag}"), &json!({"white_listed_users": ""})).await;
            assert_eq!(r.status, 200, "{}", r.json);
        }
        let m = next(&mut sub, Duration::from_secs(1)).await.expect("published once it fits");
        assert_eq!(serde_json::from_slice::<Value>(&m.payload).unwrap(), flags_of(&c, big).await);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let h = c.get("/healthz").await;
            if h.json["publisher"] == "ok" {
                assert!(unpublished(&h.json, big).is_none(), "{}", h.json);
                break;
            }
            assert!(Instant::now() < deadline, "still degraded: {}", h.json);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.stop().await;
    }
}

/// The newest message on `subject` in `stream`.
async fn last_on(js: &jetstream::Context, stream: &str, subject: &str) -> Vec<u8> {
    let stream = js.get_stream(stream).await.unwrap();
    let m = stream
        .get_last_raw_message_by_subject(subject)
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    m.payload.to_vec()
}

/// Creates the stream of `config` holding `messages` (subject, body; in order), lets a Tower
/// publisher connect to it, and returns the stream's configuration after that.
async fn adopted(
    nats: &NatsServer,
    js: &jetstream::Context,
    config: jetstream::stream::Config,
    messages: &[(&str, &str)],
) -> jetstream::stream::Config {
    js.create_stream(config.clone()).await.unwrap();
    for (subject, body) in messages {
        js.publish(subject.to_string(), body.to_string().into()).await.unwrap().await.unwrap();
    }
    flagtower_tests::nats_publisher(nats).await;
    js.get_stream(&config.name).await.unwrap().info().await.unwrap().config.clone()
}

/// What an SDK reads first: the newest message matching its filter `apps.<app>.>`.
async fn sdk_first_read(client: &async_nats::Client, app: i64) -> Vec<u8> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("flags_ruleset").await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("apps.{app}.>"),
            deliver_policy: DeliverPolicy::Last,
            ..Default::default()
        })
        .await
        .expect("the SDK's filter is accepted");
    let mut messages = consumer.messages().await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(2), messages.next()).await.unwrap().unwrap();
    m.unwrap().payload.to_vec()
}

async fn tower_s_earlier_stream_is_upgraded_in_place_keeping_the_last_message_per_subject(
    version: NatsVersion,
) {
    let Some(nats) = NatsServer::start_on(version, None, None).await else { return };
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    let earlier = jetstream::stream::Config {
        name: "flags_ruleset".into(),
        subjects: vec!["apps.*.update.*".into()],
        max_messages_per_subject: 1,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let messages = [
        ("apps.1.update.manual", "[1]"),
        ("apps.1.update.manual", "[2]"),
        ("apps.2.update.circuit", "[3]"),
    ];
    let cfg = adopted(&nats, &js, earlier, &messages).await;
    assert_eq!(cfg.subjects, ["apps.*.>"]);
    assert_eq!(last_on(&js, "flags_ruleset", "apps.1.update.manual").await, b"[2]");
    assert_eq!(last_on(&js, "flags_ruleset", "apps.2.update.circuit").await, b"[3]");
    assert_eq!(sdk_first_read(&client, 1).await, b"[2]");
    assert_eq!(sdk_first_read(&client, 2).await, b"[3]");
}

async fn the_original_tower_s_stream_is_upgraded_in_place_keeping_the_last_message_per_subject(
    version: NatsVersion,
) {
    let Some(nats) = NatsServer::start_on(version, Some("myToken"), None).await else { return };
    let client = nats.client().await;
    let js = jetstream::new(client.clone());
    // As the original Tower made it: the server's defaults (unlimited messages per subject),
    // its own subjects, and one exact subject added for each app it published.
    let node_subjects = [
        "apps",
        "circuit_open",
        "circuit_close",
        "circuit_recovery_start",
        "circuit_recovery_update",
        "apps.1.update.manual",
        "apps.1.update.circuit",
        "apps.2.update.manual",
    ];
    let original = jetstream::stream::Config {
        name: "flags_ruleset".into(),
        subjects: node_subjects.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let messages = [
        ("apps.1.update.manual", "[1]"),
        ("apps.1.update.circuit", "[2]"),
        ("apps.1.update.manual", "[3]"),
        ("apps.2.update.manual", "[4]"),
    ];
    let cfg = adopted(&nats, &js, original, &messages).await;
    assert_eq!(
        cfg.subjects,
        [
            "apps",
            "circuit_open",
            "circuit_close",
            "circuit_recovery_start",
            "circuit_recovery_update",
            "apps.*.>"
        ]
    );
    assert_eq!(cfg.max_messages_per_subject, 1);
    assert_eq!(last_on(&js, "flags_ruleset", "apps.1.update.manual").await, b"[3]");
    assert_eq!(last_on(&js, "flags_ruleset", "apps.1.update.circuit").await, b"[2]");
    assert_eq!(last_on(&js, "flags_ruleset", "apps.2.update.manual").await, b"[4]");
    assert_eq!(sdk_first_read(&client, 1).await, b"[3]");
    // A Tower on it publishes on the new subjects, and adopting it again changes nothing.
    let store = TestStore::sqlite().await;
    let server =
        Server::start_with(store.open().await, flagtower_tests::nats_publisher(&nats).await).await;
    let app = server.client().create("/api/apps", &json!({"title": "A"})).await;
    server.client().create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let subject = format!("apps.{app}.update.manual");
    let c = server.client();
    let stream = js.get_stream("flags_ruleset").await.unwrap();
    loop {
        if let Ok(m) = stream.get_last_raw_message_by_subject(&subject).await
            && serde_json::from_slice::<Value>(&m.payload).ok() == Some(flags_of(&c, app).await)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not published on the adopted stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = js.get_stream("flags_ruleset").await.unwrap().info().await.unwrap().config.clone();
    assert_eq!(again, cfg);
    server.stop().await;
}
