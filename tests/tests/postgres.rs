//! Tower processes sharing one PostgreSQL: two servers behave as one, and an outage of the
//! database is a 503 that heals without a restart.

use std::time::{Duration, Instant};

use flagtower_adapters::postgres::{PostgresOptions, PostgresStore};
use flagtower_tests::{Server, TcpProxy, TestStore, url_with_addr};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_database_behave_as_one() {
    const N: usize = 40;
    let Some(store) = TestStore::postgres().await else { return };
    let (a, b) = (Server::start(&store).await, Server::start(&store).await);
    let (ca, cb) = (a.client(), b.client());
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
    let logs = ca.get(&format!("/api/logs/{app}")).await;
    let logs = logs.payload().as_array().unwrap().clone();
    assert_eq!(logs.len(), N + 1, "exactly one log entry per toggle");
    let last = logs[0]["action_type"].as_str().unwrap().to_owned();
    for c in [&ca, &cb] {
        let f = c.get(&format!("/api/flags/{flag}")).await;
        assert_eq!(
            f.payload()["is_active"],
            json!(last == "flag_on"),
            "final state = last committed write"
        );
    }
    let ruleset = store.open().await.ruleset(flagtower_core::AppId::new(app)).await.unwrap();
    assert_eq!(ruleset.revision.get(), 1 + N as u64, "one revision per change, no gaps");

    // The same title sent to both servers at once: one 201, one 409.
    for round in 0..10 {
        let body = json!({"title": format!("race {round}")});
        let (ra, rb) = tokio::join!(ca.post("/api/apps", &body), cb.post("/api/apps", &body));
        let mut statuses = [ra.status, rb.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_503_that_heals_without_a_restart() {
    let Some(store) = TestStore::postgres().await else { return };
    let TestStore::Postgres(db) = &store else { unreachable!() };
    // The database as the test URL names it, reached through a proxy we can cut.
    let target = {
        let opts = flagtower_tests::TestDatabaseExt::options(&**db);
        let t = opts.target();
        let hostport = t.split('/').next().unwrap();
        tokio::net::lookup_host(hostport).await.unwrap().next().expect("the test server's address")
    };
    let proxy = TcpProxy::start(target).await;
    let opts =
        PostgresOptions::from_url(&url_with_addr(db.url(), proxy.addr)).unwrap().pool_size(4);
    let pg = PostgresStore::open(&opts).await.unwrap();
    let server = Server::start_on(std::sync::Arc::new(pg)).await;
    let c = server.client();
    assert_eq!(c.post("/api/apps", &json!({"title": "before"})).await.status, 201);
    // A dashboard's live stream, open through the outage.
    let mut events = c.events("/api/stream").await;
    assert_eq!(events.next().await.unwrap().name, "hello");

    proxy.cut();
    // Long enough for the live feed's polls to fail against the cut database.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let r = c.get("/api/apps").await;
        let err = r.expect_error(503);
        assert_eq!(err["code"], "unavailable");
        assert!(r.headers.get("retry-after").is_some(), "Retry-After on a 503");
    }
    c.post("/api/apps", &json!({"title": "during"})).await.expect_error(503);
    let h = c.get("/healthz").await;
    assert_eq!(
        (h.status, h.json["status"].clone(), h.json["store"].clone()),
        (503, json!("unavailable"), json!("unavailable"))
    );
    // The relay cannot read the outbox either: a store problem, not the publisher's.
    assert_eq!(h.json["publisher"], "ok", "{}", h.json);
    assert!(h.json["store_error"]["reason"].is_string(), "{}", h.json);

    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = c.get("/api/apps").await;
        if r.status == 200 {
            let titles: Vec<_> =
                r.payload().as_array().unwrap().iter().map(|a| a["title"].clone()).collect();
            assert_eq!(titles, [json!("before")], "nothing was written during the outage");
            break;
        }
        assert!(Instant::now() < deadline, "still {} after the database came back", r.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.post("/api/apps", &json!({"title": "after"})).await.status, 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = c.get("/healthz").await;
        if h.status == 200 && h.json["store"] == "ok" {
            assert_eq!(h.json["publisher"], "ok");
            assert!(h.json.get("store_error").is_none(), "{}", h.json);
            break;
        }
        assert!(Instant::now() < deadline, "the store is not ok again: {}", h.json);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The feed read through the outage and resumes on the same stream.
    let e = events.until("app").await;
    assert_eq!(e.data["app"]["title"], "after");
    server.stop().await;
}

/// Two Tower processes on `store`: A, and B, whose feed polls once an hour, so only PostgreSQL's
/// NOTIFY can bring A's changes to it within a test's wait.
async fn writer_and_listener(store: &TestStore) -> (Server, Server) {
    let a = Server::start(store).await;
    let b = Server::start_built(
        flagtower_core::Tower::builder(store.open().await).feed_poll(Duration::from_secs(3600)),
    )
    .await;
    (a, b)
}

/// Another process's change reaches this process's live stream when it commits: PostgreSQL's
/// NOTIFY wakes the feed, not its poll (set to an hour here, so only the notification can bring
/// the event within the test's wait). Also after the listening connection is cut and back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_process_s_change_reaches_the_stream_at_once() {
    let Some(store) = TestStore::postgres().await else { return };
    let (a, b) = writer_and_listener(&store).await;
    let (ca, cb) = (a.client(), b.client());
    let app = ca.create("/api/apps", &json!({"title": "shared"})).await;
    let mut stream = cb.events("/api/stream").await;
    stream.until("hello").await;
    let flag = ca.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let started = Instant::now();
    let toggled = ca.patch_empty(&format!("/api/flags/{flag}/toggle")).await;
    assert_eq!(toggled.status, 200);
    loop {
        let event = stream
            .next_within(Duration::from_secs(20))
            .await
            .expect("the change arrives long before the feed's hourly poll");
        if event.name == "log" && event.data["action_type"] == "flag_on" {
            break;
        }
    }
    eprintln!("a change on A reached B's stream {:?} after the request", started.elapsed());

    // The listening connection cut by the server (a failover, an idle-connection killer):
    // it comes back by itself, and changes reach the stream again.
    let flagtower_tests::TestStore::Postgres(db) = &store else { unreachable!() };
    let (admin, connection) =
        tokio_postgres::connect(db.url(), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let cut = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap();
    assert!(cut >= 2, "both Towers listen ({cut} connections cut)");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut arrived = false;
    while !arrived {
        assert!(Instant::now() < deadline, "no change reached the stream after the cut");
        // Toggle until one arrives: the first may commit before the listener is back.
        assert_eq!(ca.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status, 200);
        let wait = Duration::from_millis(500);
        while let Ok(Some(event)) =
            tokio::time::timeout(wait, stream.next_within(Duration::from_secs(60))).await
        {
            if event.name == "log" {
                arrived = true;
                break;
            }
        }
    }
    a.stop().await;
    b.stop().await;
}

/// Two processes on one database, each with its read model: a change made through one shows in
/// the other's reads as soon as its feed hears of it (NOTIFY), although that one answers from
/// memory, and its feed's own poll is an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_s_change_shows_in_this_one_s_reads() {
    let Some(store) = TestStore::postgres().await else { return };
    let (a, b) = writer_and_listener(&store).await;
    let (ca, cb) = (a.client(), b.client());
    let app = ca.create("/api/apps", &json!({"title": "shared"})).await;
    let flag = ca.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let path = format!("/api/flags/{flag}");
    let list = format!("/api/apps/{app}/flags");
    for round in 0..10 {
        // B reads (and keeps) the answer, A changes the flag, B's reads show it soon.
        let before = cb.get(&path).await;
        assert_eq!(before.status, 200);
        assert_eq!(cb.get(&list).await.status, 200);
        let toggled = ca.patch_empty(&format!("{path}/toggle")).await;
        let now = toggled.payload()["is_active"].clone();
        assert_ne!(before.payload()["is_active"], now);
        let started = Instant::now();
        loop {
            let (one, all) = (cb.get(&path).await, cb.get(&list).await);
            if one.payload()["is_active"] == now && all.payload()[0]["is_active"] == now {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "round {round}: B still answers the flag as it was"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if round == 0 {
            eprintln!("A's change showed in B's reads {:?} after it returned", started.elapsed());
        }
    }
    // And an app created through A is in B's list of apps.
    assert_eq!(cb.get("/api/apps").await.payload().as_array().unwrap().len(), 1);
    ca.create("/api/apps", &json!({"title": "second"})).await;
    let started = Instant::now();
    while cb.get("/api/apps").await.payload().as_array().unwrap().len() != 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "B never lists A's new app");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// A change committed by another process reaches this process's relay when it commits:
/// PostgreSQL's NOTIFY wakes the relay to read the outbox (its poll is an hour away here), so the
/// change is published even though the process that made it publishes nothing (a bare store
/// handle here; a process whose publisher is down, or that died after the commit, in life).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_s_commit_wakes_this_one_s_relay() {
    use flagtower_core::{Actor, InProcessPublisher, NewFlag, Timestamp, Title, Tower};
    let Some(store) = TestStore::postgres().await else { return };
    let writer = store.open().await;
    let t = Timestamp::from_millis(1_700_000_000_000);
    let app = writer.create_app(&Title::parse("elsewhere").unwrap(), t).await.unwrap().id;
    let publisher = InProcessPublisher::new();
    let config = flagtower_core::RelayConfig {
        poll_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let tower = Tower::builder(store.open().await)
        .publisher(publisher.clone())
        .relay_config(config)
        .feed_poll(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let published = |at_least: u64| {
        let publisher = publisher.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if publisher.latest(app).is_some_and(|r| r.revision.get() >= at_least) {
                    return;
                }
                assert!(Instant::now() < deadline, "revision {at_least} was not published");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // At start the relay publishes every app.
    published(0).await;
    for i in 1..=3 {
        let nf = NewFlag {
            title: Title::parse(&format!("f{i}")).unwrap(),
            settings: Default::default(),
        };
        writer.create_flag(app, &nf, t, &Actor::anonymous()).await.unwrap();
        published(i).await;
    }
    tower.shutdown().await;
}
