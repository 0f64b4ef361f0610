//! Every route of the REST API against a real server on a temporary SQLite file: statuses, the
//! seed's field names and types, and the log entry each mutation writes.

use flagtower_tests::{Server, TestStore, assert_seed_shape, for_each_store, seed_fixture};
use serde_json::{Value, json};

for_each_store!(
    the_seed_walkthrough_has_the_seed_shapes,
    every_mutation_writes_its_log_entry,
    statuses_of_every_route,
    patch_is_partial_and_state_moves_only_through_is_active,
    every_change_reaches_the_in_process_publisher,
    timeseries_buckets_count_the_reported_events,
    answers_are_bounded_pages_of_a_long_history,
);

async fn the_seed_walkthrough_has_the_seed_shapes(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();

    // Apps.
    let r = c.post("/api/apps", &seed_fixture("create_app.request")).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.payload()["title"], "First App");
    // The original returned only id, title and created_at here; we return the whole app.
    for k in ["id", "title", "created_at"] {
        assert!(r.payload().get(k).is_some(), "{k} in {}", r.json);
    }
    let app1 = r.payload()["id"].as_i64().unwrap();
    let r = c.post("/api/apps", &json!({"title": "Second App"})).await;
    assert_eq!(r.status, 201);
    let app2 = r.payload()["id"].as_i64().unwrap();
    let r = c.get("/api/apps").await;
    assert_eq!(r.status, 200);
    assert_seed_shape("list_apps.response", &r.json);
    assert_eq!(r.payload().as_array().unwrap().len(), 2);
    let r = c.get(&format!("/api/apps/{app2}")).await;
    assert_seed_shape("get_app.response", &r.json);
    let r = c.patch(&format!("/api/apps/{app2}"), &seed_fixture("rename_app.request")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("rename_app.response", &r.json);
    assert_eq!(r.payload()["title"], "App with Edited name");

    // Flags.
    let r = c.post(&format!("/api/apps/{app1}/flags"), &seed_fixture("create_flag.request")).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_seed_shape("create_flag.response", &r.json);
    let mut expected = seed_fixture("create_flag.response")["payload"].clone();
    let flag = r.payload()["id"].as_i64().unwrap();
    for k in ["id", "app_id", "created_at", "updated_at"] {
        expected[k] = r.payload()[k].clone();
    }
    assert_eq!(r.payload(), &expected, "a new flag has exactly the seed's defaults");
    let r = c.post(&format!("/api/apps/{app1}/flags"), &json!({"title": "App 1 Flag 2"})).await;
    assert_eq!(r.status, 201);
    let r = c.get(&format!("/api/apps/{app1}/flags")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("list_flags.response", &r.json);
    let ids: Vec<i64> =
        r.payload().as_array().unwrap().iter().map(|f| f["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "flags by id");
    let r = c.get(&format!("/api/flags/{flag}")).await;
    assert_seed_shape("get_flag.response", &r.json);
    assert_eq!(r.payload()["logs"][0]["action_type"], "create");

    let r = c.patch(&format!("/api/flags/{flag}"), &seed_fixture("update_flag.request")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_seed_shape("update_flag.response", &r.json);
    let mut expected = seed_fixture("update_flag.response")["payload"].clone();
    for k in ["id", "app_id", "created_at", "updated_at"] {
        expected[k] = r.payload()[k].clone();
    }
    assert_eq!(r.payload(), &expected, "the seed's PATCH gives the seed's result");

    let r = c.patch_empty(&format!("/api/flags/{flag}/toggle")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("toggle_flag.response", &r.json);
    assert_eq!(
        (r.payload()["is_active"].clone(), r.payload()["circuit_status"].clone()),
        (json!(true), json!("close"))
    );

    let r = c.post_empty(&format!("/api/flags/circuit/{flag}/open")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("circuit_open.response", &r.json);
    assert_eq!(r.payload(), &json!(flag));
    let r = c.post_empty(&format!("/api/flags/circuit/{flag}/close")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("circuit_close.response", &r.json);

    // Logs.
    let r = c.get("/api/logs").await;
    assert_eq!(r.status, 200);
    assert_seed_shape("list_logs.response", &r.json);
    let r = c.get(&format!("/api/logs/{app1}")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("app_logs.response", &r.json);

    // Keys.
    let r = c.get("/api/keys").await;
    assert_eq!(r.status, 200);
    assert_seed_shape("get_key.response", &r.json);
    let old = r.payload()["id"].clone();
    let r = c.post_empty("/api/keys").await;
    assert_eq!(r.status, 201);
    assert_seed_shape("create_key.response", &r.json);
    assert_ne!(r.payload()["id"], old);
    assert_eq!(c.get("/api/keys").await.payload()["id"], r.payload()["id"]);

    // Metrics.
    let r =
        c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 137, "failure": 4})).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.payload(), &json!({"success": 137, "failure": 4}));
    let r = c.get(&format!("/api/flags/{flag}/timeseries?timeRange=30000&timeBucket=3000")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("timeseries.response", &r.json);

    // Deletion.
    let r = c.delete(&format!("/api/flags/{flag}")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("delete_flag.response", &r.json);
    assert_eq!(r.payload(), &json!(flag));
    let r = c.delete(&format!("/api/apps/{app2}")).await;
    assert_eq!(r.status, 200);
    assert_seed_shape("delete_app.response", &r.json);
    server.stop().await;
}

async fn every_mutation_writes_its_log_entry(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c
        .post(&format!("/api/apps/{app}/flags"), &json!({"title": "f", "description": "d"}))
        .await
        .payload()["id"]
        .as_i64()
        .unwrap();
    let steps: Vec<(&str, reqwest_like::Call)> = vec![
        ("flag_on", reqwest_like::Call::PatchEmpty(format!("/api/flags/{flag}/toggle"))),
        (
            "flag_off",
            reqwest_like::Call::Patch(
                format!("/api/flags/{flag}/toggle"),
                json!({"is_active": false}),
            ),
        ),
        (
            "update",
            reqwest_like::Call::Patch(
                format!("/api/flags/{flag}"),
                json!({"rollout_percentage": 33.33}),
            ),
        ),
        ("circuit_close", reqwest_like::Call::Post(format!("/api/flags/circuit/{flag}/close"))),
        ("circuit_open", reqwest_like::Call::Post(format!("/api/flags/circuit/{flag}/open"))),
        ("delete", reqwest_like::Call::Delete(format!("/api/flags/{flag}"))),
    ];
    let mut expected = vec!["create"];
    for (action, call) in steps {
        let r = call.run(&c).await;
        assert_eq!(r.status, 200, "{action}: {}", r.json);
        expected.push(action);
        let logs = c.get(&format!("/api/logs/{app}")).await;
        // Newest first.
        let actions: Vec<&str> = logs
            .payload()
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|l| l["action_type"].as_str().unwrap())
            .collect();
        assert_eq!(actions, expected, "after {action}");
    }
    let all = c.get("/api/logs").await;
    let all = all.payload().as_array().unwrap();
    assert_eq!(all[0]["action_type"], "delete", "newest first");
    assert_eq!(all[0]["log_description"], "Flag Deleted");
    assert_eq!(all[0]["flag_title"], "f");
    let descriptions: Vec<&str> =
        all.iter().map(|l| l["log_description"].as_str().unwrap()).collect();
    assert_eq!(
        descriptions,
        [
            "Flag Deleted",
            "Circuit Tripped Open",
            "Circuit Closed",
            "Flag Updated",
            "Flag Turned Off",
            "Flag Turned On",
            "Flag Created"
        ]
    );
    // The flag is gone, its history is not.
    c.get(&format!("/api/flags/{flag}")).await.expect_error(404);
    // Deleting the app writes a delete entry per flag it still had.
    let f2 = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "g"})).await;
    assert_eq!(c.delete(&format!("/api/apps/{app}")).await.status, 200);
    let all = c.get("/api/logs").await;
    assert_eq!(all.payload()[0]["flag_id"], json!(f2));
    assert_eq!(all.payload()[0]["action_type"], "delete");
    assert_eq!(all.payload().as_array().unwrap().len(), 9);
    c.get(&format!("/api/logs/{app}")).await.expect_error(404);
    server.stop().await;
}

/// A tiny enum of requests, so the table above reads as data.
mod reqwest_like {
    use flagtower_tests::{Client, Reply};
    use serde_json::Value;

    pub(crate) enum Call {
        Patch(String, Value),
        PatchEmpty(String),
        Post(String),
        Delete(String),
    }

    impl Call {
        pub(crate) async fn run(&self, c: &Client) -> Reply {
            match self {
                Self::Patch(p, b) => c.patch(p, b).await,
                Self::PatchEmpty(p) => c.patch_empty(p).await,
                Self::Post(p) => c.post_empty(p).await,
                Self::Delete(p) => c.delete(p).await,
            }
        }
    }
}

async fn statuses_of_every_route(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let missing = 987_654;

    // 404 for every unknown app or flag, on every route that names one.
    for path in [
        format!("/api/apps/{missing}"),
        format!("/api/apps/{missing}/flags"),
        format!("/api/flags/{missing}"),
        format!("/api/logs/{missing}"),
        format!("/api/flags/{missing}/timeseries"),
    ] {
        c.get(&path).await.expect_error(404);
    }
    c.patch(&format!("/api/apps/{missing}"), &json!({"title": "x"})).await.expect_error(404);
    c.delete(&format!("/api/apps/{missing}")).await.expect_error(404);
    c.post(&format!("/api/apps/{missing}/flags"), &json!({"title": "x"})).await.expect_error(404);
    c.patch(&format!("/api/flags/{missing}"), &json!({"title": "x"})).await.expect_error(404);
    c.patch_empty(&format!("/api/flags/{missing}/toggle")).await.expect_error(404);
    c.delete(&format!("/api/flags/{missing}")).await.expect_error(404);
    c.post_empty(&format!("/api/flags/circuit/{missing}/open")).await.expect_error(404);
    c.post_empty(&format!("/api/flags/circuit/{missing}/close")).await.expect_error(404);
    c.post(&format!("/api/flags/{missing}/events"), &json!({"success": 1})).await.expect_error(404);

    // Unknown routes.
    for path in [
        "/api",
        "/api/",
        "/api/nope",
        "/api/apps/1/flags/2",
        "/api/flags/circuit/1/toggle",
        "/assets/nope.js",
    ] {
        c.get(path).await.expect_error(404);
    }
    // API answers are never cached.
    assert_eq!(c.get("/api/apps").await.headers["cache-control"], "no-store");
    assert_eq!(c.get("/api/nope").await.headers["cache-control"], "no-store");
    // Every other path is a dashboard page: the browser's router shows it (or its not-found).
    for path in ["/", "/apps", "/flags/1", "/no/such/page"] {
        let r = c.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], "text/html; charset=utf-8", "{path}");
    }
    c.send(http::Method::POST, "/logs", None, "").await.expect_error(405);

    // Wrong methods: 405 with Allow.
    for (method, path, allow) in [
        ("PUT", "/api/apps".to_owned(), "GET, POST"),
        ("DELETE", "/api/apps".to_owned(), "GET, POST"),
        ("POST", format!("/api/apps/{app}"), "GET, PATCH, DELETE"),
        ("GET", format!("/api/flags/{flag}/toggle"), "PATCH"),
        ("GET", format!("/api/flags/circuit/{flag}/open"), "POST"),
        ("POST", "/api/logs".to_owned(), "GET"),
        ("DELETE", "/api/keys".to_owned(), "GET, POST"),
        ("OPTIONS", "/api/apps".to_owned(), "GET, POST"),
        ("BREW", "/api/apps".to_owned(), "GET, POST"),
    ] {
        let m = http::Method::from_bytes(method.as_bytes()).unwrap();
        let r = c.send(m, &path, None, bytes::Bytes::new()).await;
        r.expect_error(405);
        assert_eq!(r.headers.get("allow").unwrap(), allow, "{method} {path}");
    }

    // 409 for duplicate titles, case-insensitively.
    c.post("/api/apps", &json!({"title": "a"})).await.expect_error(409);
    let b = c.create("/api/apps", &json!({"title": "B"})).await;
    c.patch(&format!("/api/apps/{b}"), &json!({"title": " A "})).await.expect_error(409);
    let r = c.post(&format!("/api/apps/{app}/flags"), &json!({"title": "F"})).await;
    let err = r.expect_error(409);
    assert_eq!(err["field"], "title");
    assert_eq!(err["message"], "a flag titled \"F\" already exists");
    assert_eq!(
        c.post(&format!("/api/apps/{b}/flags"), &json!({"title": "f"})).await.status,
        201,
        "titles are per app"
    );

    // Health.
    let r = c.get("/healthz").await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!({"status": "ok", "store": "ok", "publisher": "ok"}))
    );
    server.stop().await;
}

async fn patch_is_partial_and_state_moves_only_through_is_active(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let created = c
        .post(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "f", "is_active": true, "white_listed_users": " u1, ,u2 "}),
        )
        .await;
    assert_eq!(created.status, 201);
    let flag = created.payload()["id"].as_i64().unwrap();
    assert_eq!(created.payload()["is_active"], true, "a create body may turn the flag on");
    assert_eq!(created.payload()["circuit_status"], "close");
    assert_eq!(created.payload()["white_listed_users"], "u1,u2");

    // circuit_status and read-only fields in a body are accepted and ignored.
    let r = c
        .patch(&format!("/api/flags/{flag}"), &json!({"description": "new", "circuit_status": "open", "id": 99, "app_id": 42, "created_at": "x"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let p = r.payload();
    assert_eq!(
        (p["description"].clone(), p["is_active"].clone(), p["circuit_status"].clone()),
        (json!("new"), json!(true), json!("close"))
    );
    assert_eq!((p["id"].clone(), p["app_id"].clone()), (json!(flag), json!(app)));
    assert_eq!(p["title"], "f", "fields not in the body keep their values");
    assert_eq!(p["white_listed_users"], "u1,u2");

    // Percentages round to the nearest tenth.
    let r = c
        .patch(
            &format!("/api/flags/{flag}"),
            &json!({"rollout_percentage": 33.333, "error_threshold_percentage": 12.35}),
        )
        .await;
    assert_eq!(r.payload()["rollout_percentage"], json!(33.3));
    assert!(
        r.payload()["error_threshold_percentage"] == json!(12.4)
            || r.payload()["error_threshold_percentage"] == json!(12.3)
    );

    // A PATCH with is_active moves the state; the toggle body sets it.
    let r = c.patch(&format!("/api/flags/{flag}"), &json!({"is_active": false})).await;
    assert_eq!(
        (r.payload()["is_active"].clone(), r.payload()["circuit_status"].clone()),
        (json!(false), json!("open"))
    );
    let r = c.patch(&format!("/api/flags/{flag}/toggle"), &json!({"is_active": true})).await;
    assert_eq!(r.payload()["circuit_status"], "close");
    let r = c.patch(&format!("/api/flags/{flag}/toggle"), &json!({"is_active": true})).await;
    assert_eq!(r.status, 200, "setting the current state is a no-op, not an error");

    // Trip through the API: off with 0 % recovery; close: on with 100 %.
    c.post_empty(&format!("/api/flags/circuit/{flag}/open")).await;
    let f = c.get(&format!("/api/flags/{flag}")).await;
    assert_eq!(
        (
            f.payload()["is_active"].clone(),
            f.payload()["circuit_status"].clone(),
            f.payload()["circuit_recovery_percentage"].clone()
        ),
        (json!(false), json!("open"), json!(0))
    );
    c.post_empty(&format!("/api/flags/circuit/{flag}/close")).await;
    let f = c.get(&format!("/api/flags/{flag}")).await;
    assert_eq!(
        (
            f.payload()["is_active"].clone(),
            f.payload()["circuit_status"].clone(),
            f.payload()["circuit_recovery_percentage"].clone()
        ),
        (json!(true), json!("close"), json!(100))
    );
    server.stop().await;
}

async fn every_change_reaches_the_in_process_publisher(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let mut sub = server.publisher().subscribe();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let mut r = next(&mut sub).await;
    if r.revision.get() == 0 {
        // The new app's empty ruleset, unless the flag's creation overtook it.
        assert_eq!(&r.body[..], b"[]");
        r = next(&mut sub).await;
    }
    assert_eq!(
        (r.app_id.get(), r.revision.get(), r.subject()),
        (app, 1, format!("apps.{app}.update.manual"))
    );
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        c.get(&format!("/api/apps/{app}/flags")).await.payload().clone(),
        "the ruleset is the REST flags array"
    );

    c.patch_empty(&format!("/api/flags/{flag}/toggle")).await;
    let r = next(&mut sub).await;
    assert_eq!(r.revision.get(), 2);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body[0]["is_active"], true);

    assert_eq!(c.delete(&format!("/api/apps/{app}")).await.status, 200);
    let r = next(&mut sub).await;
    assert_eq!((r.revision.get(), &r.body[..]), (3, &b"[]"[..]));
    server.stop().await;
}

async fn timeseries_buckets_count_the_reported_events(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    for (s, f) in [(10, 1), (5, 0), (0, 3)] {
        assert_eq!(
            c.post(&format!("/api/flags/{flag}/events"), &json!({"success": s, "failure": f}))
                .await
                .status,
            202
        );
    }
    let r = c.get(&format!("/api/flags/{flag}/timeseries")).await;
    let buckets = r.payload().as_array().unwrap();
    assert_eq!(buckets.len(), 10, "600000 ms in 60000 ms buckets by default");
    let ts: Vec<i64> = buckets.iter().map(|b| b["timestamp"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[1] - w[0] == 60_000), "ascending, evenly spaced: {ts:?}");
    let total = |k: &str| buckets.iter().map(|b| b[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("success"), total("failure")), (15, 4));
    assert_eq!(buckets.last().unwrap()["success"], 15, "the events are in the newest bucket");
    // Bad parameters are 400s.
    c.get(&format!("/api/flags/{flag}/timeseries?timeRange=abc")).await.expect_error(400);
    c.get(&format!("/api/flags/{flag}/timeseries?timeRange=1000&timeBucket=0"))
        .await
        .expect_error(400);
    c.get(&format!("/api/flags/{flag}/timeseries?timeRange=100000000&timeBucket=1"))
        .await
        .expect_error(400);
    server.stop().await;
}

async fn next(sub: &mut flagtower_core::Subscription) -> flagtower_core::EncodedRuleset {
    tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
        .await
        .expect("a ruleset within 5 s")
        .expect("publisher alive")
}

/// However long the history, an answer is a page: a flag comes with its newest 100 entries
/// (`?logs=N` up to 1 000), and the log routes answer pages (500 by default, `limit` up to
/// 1 000) with a `Link` to the next, which reads on to the end.
async fn answers_are_bounded_pages_of_a_long_history(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "busy"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    // 1 200 entries (1 creation and 1 199 toggles), written through the server's Tower: the
    // same rows as through the API, without its rate limit.
    let tower = server.tower.acting_as(flagtower_core::Actor::named("loop"));
    for _ in 0..1199 {
        tower.toggle_flag(flagtower_core::FlagId::new(flag), None).await.unwrap();
    }
    let one = c.get(&format!("/api/flags/{flag}")).await;
    let logs = one.payload()["logs"].as_array().unwrap().clone();
    assert_eq!(logs.len(), 100, "the newest 100");
    assert!(
        logs.windows(2).all(|w| w[0]["log_id"].as_i64() < w[1]["log_id"].as_i64()),
        "oldest first"
    );
    assert_eq!(logs.last().unwrap()["log_id"], 1200);
    let more = c.get(&format!("/api/flags/{flag}?logs=1000")).await;
    assert_eq!(more.payload()["logs"].as_array().unwrap().len(), 1000);
    c.get(&format!("/api/flags/{flag}?logs=1001")).await.expect_error(400);
    c.get(&format!("/api/flags/{flag}?logs=0")).await.expect_error(400);

    for (path, shape_key) in
        [("/api/logs".to_owned(), "log_id"), (format!("/api/logs/{app}"), "id")]
    {
        let mut next = Some(path.clone());
        let mut seen = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            let page = c.get(&url).await;
            assert_eq!(page.status, 200, "{url}: {}", page.json);
            let entries = page.payload().as_array().unwrap().clone();
            assert!(entries.len() <= 500, "{url}");
            seen.extend(entries.iter().map(|e| e[shape_key].as_i64().unwrap()));
            pages += 1;
            next = page.headers.get("link").map(|l| {
                let l = l.to_str().unwrap();
                assert!(l.ends_with("rel=\"next\""), "{l}");
                l.trim_start_matches('<').split('>').next().unwrap().to_owned()
            });
        }
        assert_eq!(pages, 3, "{path}: 500 + 500 + 200");
        assert_eq!(
            seen,
            (1..=1200).rev().collect::<Vec<i64>>(),
            "{path}: every entry once, newest first"
        );
    }
    let big = c.get("/api/logs?limit=1000").await;
    assert_eq!(big.payload().as_array().unwrap().len(), 1000);
    c.get("/api/logs?limit=1001").await.expect_error(400);
    server.stop().await;
}

/// `GET /metrics` in Prometheus's text format: requests by route template, method and status
/// with their durations, flags by circuit state, open live streams and what is unpublished.
/// Behind the admin tokens when there are some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_requests_flags_and_streams() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "shop"})).await;
    for title in ["a", "b", "c"] {
        c.create(&format!("/api/apps/{app}/flags"), &json!({"title": title})).await;
    }
    c.patch("/api/flags/1/toggle", &json!({"is_active": true})).await;
    for _ in 0..3 {
        assert_eq!(c.get("/api/flags/1").await.status, 200);
    }
    c.get("/api/flags/999").await.expect_error(404);
    let mut live = c.events("/api/stream").await;
    live.until("hello").await;
    let r = c.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.raw.to_vec()).unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        value(r#"tower_http_requests_total{route="/api/flags/:id",method="GET",status="200"}"#),
        3.0
    );
    assert_eq!(
        value(r#"tower_http_requests_total{route="/api/flags/:id",method="GET",status="404"}"#),
        1.0
    );
    assert_eq!(
        value(
            r#"tower_http_requests_total{route="/api/apps/:id/flags",method="POST",status="201"}"#
        ),
        3.0
    );
    assert_eq!(value(r#"tower_http_request_duration_seconds_count{route="/api/flags/:id"}"#), 4.0);
    assert_eq!(value(r#"tower_flags{state="closed"}"#), 1.0);
    assert_eq!(value(r#"tower_flags{state="open"}"#), 2.0);
    assert_eq!(value("tower_live_streams"), 1.0);
    assert_eq!(value("tower_unpublished_apps"), 0.0);
    assert_eq!(value("tower_unpublished_seconds"), 0.0);
    assert!(text.contains("# HELP tower_http_requests HTTP requests"), "{text}");
    // The store's operations, timed by the core: two flag reads with their logs (the first of
    // three reads of one flag, which the read model answers after that, and one of a flag that
    // does not exist), one change of a flag, three creations.
    assert_eq!(value(r#"tower_store_operation_duration_seconds_count{op="flag_with_logs"}"#), 2.0);
    assert_eq!(value("tower_read_model_hits_total"), 2.0);
    assert_eq!(value("tower_read_model_misses_total"), 2.0);
    assert_eq!(value("tower_read_model_answers"), 1.0);
    assert!(value("tower_read_model_bytes") > 100.0);
    assert_eq!(value(r#"tower_store_operation_duration_seconds_count{op="change_flag"}"#), 1.0);
    assert_eq!(value(r#"tower_store_operation_duration_seconds_count{op="create_flag"}"#), 3.0);
    assert_eq!(
        value(r#"tower_store_operation_duration_seconds_bucket{le="+Inf",op="change_flag"}"#),
        1.0
    );
    // Every change committed here was published: the commit → publish histogram counts them
    // (a publication carrying several changes counts once).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = String::from_utf8(c.get("/metrics").await.raw.to_vec()).unwrap();
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix("tower_publish_latency_seconds_count "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no publish latency in:\n{text}"));
        let inf = text
            .lines()
            .find_map(|l| l.strip_prefix(r#"tower_publish_latency_seconds_bucket{le="+Inf"} "#))
            .and_then(|n| n.parse::<u64>().ok());
        // And the app's newest revision (three creations and a toggle: 4) as published here.
        let published = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!(r#"tower_published_revision{{app="{app}"}} "#)))
            .and_then(|n| n.parse::<u64>().ok());
        if count >= 1 && inf == Some(count) && published == Some(4) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no publication measured:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(live);
    server.stop().await;

    // With admin tokens, metrics need one.
    let store = TestStore::sqlite().await;
    let options = flagtower_http::ServerOptions {
        admin_tokens: flagtower_http::AdminTokens::parse("prom:prometheus-secret-0123").unwrap(),
        ..Default::default()
    };
    let server = Server::start_with_options(&store, options).await;
    server.client().get("/metrics").await.expect_error(401);
    let r = server.client().with_bearer("prometheus-secret-0123").get("/metrics").await;
    assert_eq!(r.status, 200);
    server.stop().await;
}

/// The read model answers the read routes from memory, and never with an answer older than a
/// change made through this process: every change's answer is followed by reads that show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_serves_reads_and_never_a_stale_one() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let metric = |text: &str, series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    let hits = || async {
        let text = String::from_utf8(c.get("/metrics").await.raw.to_vec()).unwrap();
        metric(&text, "tower_read_model_hits_total")
    };
    let app = c.create("/api/apps", &json!({"title": "shop"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let path = format!("/api/flags/{flag}");
    let first = c.get(&path).await;
    assert_eq!(first.status, 200);
    let before = hits().await;
    for _ in 0..5 {
        let again = c.get(&path).await;
        assert_eq!(again.raw, first.raw, "the same answer while nothing changed");
    }
    assert_eq!(hits().await - before, 5, "answered from the read model");
    // Every kind of change shows in the very next read.
    for round in 0..20 {
        let toggled = c.patch_empty(&format!("{path}/toggle")).await;
        assert_eq!(toggled.status, 200);
        let read = c.get(&path).await;
        assert_eq!(read.payload()["is_active"], toggled.payload()["is_active"], "round {round}");
        assert_eq!(read.payload()["logs"].as_array().unwrap().len(), 2 + round);
    }
    let edited = c.patch(&path, &json!({"rollout_percentage": 42})).await;
    assert_eq!(edited.status, 200);
    assert_eq!(c.get(&path).await.payload()["rollout_percentage"], 42);
    let list = format!("/api/apps/{app}/flags");
    assert_eq!(c.get(&list).await.payload().as_array().unwrap().len(), 1);
    c.create(&list, &json!({"title": "g"})).await;
    assert_eq!(c.get(&list).await.payload().as_array().unwrap().len(), 2);
    assert_eq!(c.get("/api/apps").await.payload()[0]["title"], "shop");
    assert_eq!(c.patch(&format!("/api/apps/{app}"), &json!({"title": "store"})).await.status, 200);
    assert_eq!(c.get("/api/apps").await.payload()[0]["title"], "store");
    let counts = c.get("/api/apps?counts=true").await;
    assert_eq!(counts.payload()[0]["flag_counts"]["closed"], 0, "{}", counts.json);
    assert_eq!(c.post_empty(&format!("/api/flags/circuit/{flag}/close")).await.status, 200);
    let counts = c.get("/api/apps?counts=true").await;
    assert_eq!(counts.payload()[0]["flag_counts"]["closed"], 1, "{}", counts.json);
    assert_eq!(c.delete(&path).await.status, 200);
    c.get(&path).await.expect_error(404);
    assert_eq!(c.delete(&format!("/api/apps/{app}")).await.status, 200);
    c.get(&list).await.expect_error(404);
    assert_eq!(c.get("/api/apps").await.payload().as_array().unwrap().len(), 0);
    server.stop().await;
}
