//! The live stream (`GET /api/stream`), log pages and app counts, over real HTTP, on both stores.

use flagtower_tests::{Server, TestStore, for_each_store};
use serde_json::json;

for_each_store!(
    every_change_reaches_the_stream_in_order,
    log_pages_filter_and_link,
    apps_with_counts
);

/// Two Tower processes on one database: only PostgreSQL can be shared (a SQLite file serves one
/// process; the in-process case is `every_change_reaches_the_stream_in_order`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_made_by_another_process_reach_the_stream() {
    let Some(store) = TestStore::postgres().await else { return };
    changes_made_by_another_process_reach_the_stream(store).await;
}

async fn every_change_reaches_the_stream_in_order(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    // Like every route, with or without a trailing slash; other methods are refused.
    let mut other = c.events("/api/stream/").await;
    assert_eq!(other.next().await.unwrap().name, "hello");
    drop(other);
    let r = c.post_empty("/api/stream").await;
    assert_eq!((r.status, r.headers["allow"].to_str().unwrap()), (405, "GET"));
    let mut events = c.events("/api/stream").await;
    assert_eq!(events.next().await.unwrap().name, "hello");

    let app = c.create("/api/apps", &json!({"title": "Shop"})).await;
    let e = events.next().await.unwrap();
    assert_eq!(
        (e.name.as_str(), &e.data["app"]["title"], &e.data["deleted"]),
        ("app", &json!("Shop"), &json!(false))
    );

    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "beta"})).await;
    let e = events.next().await.unwrap();
    assert_eq!(e.name, "ruleset");
    assert_eq!(e.data["app_id"], app);
    assert_eq!(e.data["revision"], 1);
    assert_eq!(e.data["ruleset"][0]["title"], "beta");
    // Exactly what SDKs get: the ruleset the relay publishes.
    let published = loop {
        match server.publisher().latest(flagtower_core::AppId::new(app)) {
            Some(r) if r.revision.get() == 1 => break r,
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    assert_eq!(
        e.data["ruleset"],
        serde_json::from_slice::<serde_json::Value>(&published.body).unwrap()
    );
    let e = events.next().await.unwrap();
    assert_eq!(e.name, "log");
    assert_eq!(e.data["action_type"], "create");
    assert_eq!(e.data["flag_id"], flag);
    assert_eq!(e.data["app_id"], app);
    assert_eq!(e.data["flag_deleted"], false);

    assert_eq!(c.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status, 200);
    let e = events.until("ruleset").await;
    assert_eq!(
        (e.data["revision"].as_i64(), e.data["ruleset"][0]["is_active"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(events.until("log").await.data["action_type"], "flag_on");

    assert_eq!(c.post_empty(&format!("/api/flags/circuit/{flag}/open")).await.status, 200);
    let e = events.until("ruleset").await;
    assert_eq!(e.data["ruleset"][0]["circuit_status"], "open");
    assert_eq!(events.until("log").await.data["action_type"], "circuit_open");

    assert_eq!(c.patch(&format!("/api/apps/{app}"), &json!({"title": "Store"})).await.status, 200);
    let e = events.next().await.unwrap();
    assert_eq!((e.name.as_str(), &e.data["app"]["title"]), ("app", &json!("Store")));

    assert_eq!(c.delete(&format!("/api/flags/{flag}")).await.status, 200);
    let e = events.until("ruleset").await;
    assert_eq!(e.data["ruleset"], json!([]));
    let e = events.until("log").await;
    assert_eq!((&e.data["action_type"], &e.data["flag_deleted"]), (&json!("delete"), &json!(true)));

    assert_eq!(c.delete(&format!("/api/apps/{app}")).await.status, 200);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = events.next().await.unwrap();
        seen.push(match e.name.as_str() {
            "app" => (e.name, e.data["deleted"].clone()),
            "ruleset" => (e.name, e.data["ruleset"].clone()),
            other => panic!("unexpected {other}: {}", e.data),
        });
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen, [("app".to_owned(), json!(true)), ("ruleset".to_owned(), json!([]))]);

    // The next change is the next event.
    let other = c.create("/api/apps", &json!({"title": "Other"})).await;
    let e = events.next().await.unwrap();
    assert_eq!((e.name.as_str(), &e.data["app"]["id"]), ("app", &json!(other)));

    // Shutting down ends open streams instead of waiting for them.
    let stopping = tokio::spawn(server.stop());
    assert!(
        events.next_within(std::time::Duration::from_secs(20)).await.is_none(),
        "the stream ends"
    );
    stopping.await.unwrap();
}

async fn changes_made_by_another_process_reach_the_stream(store: TestStore) {
    let watched = Server::start(&store).await;
    let other = Server::start(&store).await;
    let mut events = watched.client().events("/api/stream").await;
    assert_eq!(events.next().await.unwrap().name, "hello");
    let c = other.client();
    let app = c.create("/api/apps", &json!({"title": "Elsewhere"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    for _ in 0..3 {
        assert_eq!(c.patch_empty(&format!("/api/flags/{flag}/toggle")).await.status, 200);
    }
    // Seen by polling the shared database: the app, then every log entry in order.
    let e = events.until("app").await;
    assert_eq!(e.data["app"]["id"], app);
    let mut actions = Vec::new();
    while actions.len() < 4 {
        let e = events.next().await.expect("stream open");
        if e.name == "log" {
            actions.push(e.data["action_type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(actions, ["create", "flag_on", "flag_off", "flag_on"]);
    let latest = watched.client().get(&format!("/api/flags/{flag}")).await;
    assert_eq!(latest.payload()["is_active"], true);
    // Renames and deletions too.
    assert_eq!(
        c.patch(&format!("/api/apps/{app}"), &json!({"title": "Renamed"})).await.status,
        200
    );
    let e = events.until("app").await;
    assert_eq!((&e.data["app"]["title"], &e.data["deleted"]), (&json!("Renamed"), &json!(false)));
    assert_eq!(c.delete(&format!("/api/apps/{app}")).await.status, 200);
    let e = events.until("app").await;
    assert_eq!((&e.data["app"]["id"], &e.data["deleted"]), (&json!(app), &json!(true)));
    other.stop().await;
    watched.stop().await;
}

async fn log_pages_filter_and_link(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let keep = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "keep"})).await;
    let gone = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "gone"})).await;
    for _ in 0..4 {
        c.patch_empty(&format!("/api/flags/{keep}/toggle")).await;
    }
    c.delete(&format!("/api/flags/{gone}")).await;

    // Without parameters: the whole log in the original shape (checked against the seed in
    // api.rs). With them: pages.
    assert_eq!(c.get("/api/logs").await.payload().as_array().unwrap().len(), 7);
    let page = c.get("/api/logs?limit=3").await;
    let page = page.payload().as_array().unwrap().clone();
    assert_eq!(page.len(), 3);
    assert_eq!(page[0]["action_type"], "delete");
    assert_eq!(page[0]["flag_deleted"], true);
    assert_eq!(page[1]["flag_deleted"], false);
    let before = page[2]["log_id"].as_i64().unwrap();
    let next = c.get(&format!("/api/logs?limit=3&before={before}")).await;
    let next = next.payload().as_array().unwrap().clone();
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|l| l["log_id"].as_i64().unwrap() < before));
    // `after`: the entries just after one, shown newest first.
    let first = page[2]["log_id"].as_i64().unwrap() - 3;
    let after = c.get(&format!("/api/logs?after={first}&limit=2")).await;
    let ids: Vec<i64> =
        after.payload().as_array().unwrap().iter().map(|l| l["log_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [first + 2, first + 1]);
    let ons = c.get("/api/logs?action=flag_on").await;
    let ons = ons.payload().as_array().unwrap().clone();
    assert_eq!(ons.len(), 2);
    assert!(ons.iter().all(|l| l["action_type"] == "flag_on" && l["flag_id"] == keep));
    assert_eq!(
        c.get(&format!("/api/logs?app={app}&limit=500")).await.payload().as_array().unwrap().len(),
        7
    );

    for bad in
        ["limit=0", "limit=1001", "limit=x", "before=-1", "after=x", "action=launch", "app=x"]
    {
        let r = c.get(&format!("/api/logs?{bad}")).await;
        let err = r.expect_error(400);
        assert!(
            err["message"].as_str().unwrap().contains(bad.split('=').next().unwrap()),
            "{bad}: {err}"
        );
    }
}

async fn apps_with_counts(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let a = c.create("/api/apps", &json!({"title": "A"})).await;
    let b = c.create("/api/apps", &json!({"title": "B"})).await;
    let on =
        c.create(&format!("/api/apps/{a}/flags"), &json!({"title": "on", "is_active": true})).await;
    c.create(&format!("/api/apps/{a}/flags"), &json!({"title": "off"})).await;
    let tripped = c
        .create(&format!("/api/apps/{a}/flags"), &json!({"title": "tripped", "is_active": true}))
        .await;
    c.post_empty(&format!("/api/flags/circuit/{tripped}/open")).await;
    let _ = on;
    let r = c.get("/api/apps?counts=true").await;
    let apps = r.payload().as_array().unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0]["id"], a);
    assert_eq!(apps[0]["title"], "A");
    assert_eq!(
        apps[0]["flag_counts"],
        json!({"total": 3, "active": 1, "closed": 1, "recovering": 0, "open": 2})
    );
    assert_eq!(apps[1]["id"], b);
    assert_eq!(
        apps[1]["flag_counts"],
        json!({"total": 0, "active": 0, "closed": 0, "recovering": 0, "open": 0})
    );
    // Without the parameter, the original shape.
    assert!(c.get("/api/apps").await.payload()[0].get("flag_counts").is_none());
    c.get("/api/apps?counts=maybe").await.expect_error(400);
}
