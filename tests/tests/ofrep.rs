//! OpenFeature's Remote Evaluation Protocol over HTTP: the answers are the evaluator's, errors
//! are in the protocol's shape, the bulk answer is cached by its ETag and announced by its event
//! stream; and the official OFREP providers (Python `openfeature-provider-ofrep`, Node
//! `@openfeature/ofrep-provider`), unchanged, against the real binary.

use std::time::{Duration, Instant};

use flagtower_core::{AppId, Bucketing};
use flagtower_tests::{
    Client, Driver, Server, TestStore, TowerProcess, for_each_store, program_from,
};
use http::Method;
use serde_json::{Value, json};

for_each_store!(
    answers_are_the_evaluators_and_errors_the_protocols,
    bulk_answers_carry_an_etag_and_an_event_stream
);

/// An app with four flags: `beta` (on at 30 %, `alice` whitelisted), `everyone` (on), `off`,
/// and `new cart` (on at 100 %, a title with a space). Returns the app id and flag ids.
async fn shop(c: &Client) -> (i64, [i64; 4]) {
    let app = c.create("/api/apps", &json!({"title": "Shop"})).await;
    let flags = format!("/api/apps/{app}/flags");
    let beta = c
        .create(
            &flags,
            &json!({"title": "beta", "is_active": true, "rollout_percentage": 30, "white_listed_users": "alice"}),
        )
        .await;
    let everyone = c.create(&flags, &json!({"title": "everyone", "is_active": true})).await;
    let off = c.create(&flags, &json!({"title": "off", "white_listed_users": "alice"})).await;
    let cart = c.create(&flags, &json!({"title": "new cart", "is_active": true})).await;
    (app, [beta, everyone, off, cart])
}

fn eval_path(app: i64, key: &str) -> String {
    format!("/api/apps/{app}/ofrep/v1/evaluate/flags/{key}")
}

fn context(user: Option<&str>) -> Value {
    match user {
        Some(u) => json!({"context": {"targetingKey": u, "plan": "pro"}}),
        None => json!({"context": {}}),
    }
}

#[track_caller]
fn failure(r: &flagtower_tests::Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.json["errorCode"], code, "{}", r.json);
    assert!(r.json["errorDetails"].as_str().is_some_and(|d| !d.is_empty()), "{}", r.json);
}

async fn answers_are_the_evaluators_and_errors_the_protocols(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let (app, [beta, everyone, off, _]) = shop(&c).await;

    let r = c.post(&eval_path(app, "beta"), &context(Some("alice"))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.json,
        json!({"key": "beta", "value": true, "reason": "TARGETING_MATCH", "variant": "on",
               "metadata": {"flagId": beta, "appId": app, "revision": 4, "circuitStatus": "close"}})
    );
    let r = c.post(&eval_path(app, "everyone"), &context(None)).await;
    assert_eq!((r.json["value"].clone(), r.json["reason"].clone()), (json!(true), json!("STATIC")));
    assert_eq!(r.json["metadata"]["flagId"], everyone);
    let r = c.post(&eval_path(app, "off"), &context(Some("alice"))).await;
    assert_eq!(
        (r.json["value"].clone(), r.json["reason"].clone(), r.json["variant"].clone()),
        (json!(false), json!("DISABLED"), json!("off")),
        "an open circuit is off for everyone, whitelist included"
    );
    assert_eq!(r.json["metadata"]["flagId"], off);
    let r = c.post(&eval_path(app, "new%20cart"), &context(Some("x"))).await;
    assert_eq!((r.status, r.json["key"].clone()), (200, json!("new cart")));

    // A thousand users get exactly the evaluator's answers, about 30 % of them on.
    let index = server.tower.index(AppId::new(app)).await.unwrap();
    let mut on = 0;
    for u in 0..1000 {
        let user = format!("user-{u}");
        let r = c.post(&eval_path(app, "beta"), &context(Some(&user))).await;
        let want = index.evaluate("beta", Some(&user), Bucketing::Tower).unwrap().unwrap();
        assert_eq!(r.json["value"], want.enabled, "{user}");
        assert_eq!(r.json["reason"], "SPLIT", "{user}");
        on += usize::from(want.enabled);
    }
    assert!((250..350).contains(&on), "{on} of 1000 users at 30 %");

    // Errors, in the protocol's shape.
    let r = c.post(&eval_path(app, "beta"), &context(None)).await;
    failure(&r, 400, "TARGETING_KEY_MISSING");
    assert_eq!(r.json["key"], "beta");
    let r = c.post(&eval_path(app, "nope"), &context(Some("u"))).await;
    failure(&r, 404, "FLAG_NOT_FOUND");
    assert_eq!(r.json["key"], "nope");
    failure(&c.post(&eval_path(999, "beta"), &context(Some("u"))).await, 404, "FLAG_NOT_FOUND");
    let bad =
        c.send(Method::POST, &eval_path(app, "beta"), Some("application/json"), "{nope").await;
    failure(&bad, 400, "PARSE_ERROR");
    failure(&c.post(&eval_path(app, "beta"), &json!({"context": 5})).await, 400, "INVALID_CONTEXT");
    let r = c.post(&eval_path(app, "beta"), &json!({"context": {"targetingKey": 7}})).await;
    failure(&r, 400, "INVALID_CONTEXT");
    let r = c.get(&eval_path(app, "beta")).await;
    assert_eq!((r.status, r.headers["allow"].to_str().unwrap()), (405, "POST"));

    // At the root, the app is a header.
    let root = c
        .send_with(
            Method::POST,
            "/ofrep/v1/evaluate/flags/beta",
            &[("tower-app", &app.to_string())],
            context(Some("alice")),
        )
        .await;
    assert_eq!((root.status, root.json["reason"].clone()), (200, json!("TARGETING_MATCH")));
    let r = c.post("/ofrep/v1/evaluate/flags/beta", &context(Some("alice"))).await;
    failure(&r, 400, "GENERAL");

    // The configuration is an existing app's only (schemathesis found a deleted app's answered).
    assert_eq!(c.get(&format!("/api/apps/{app}/ofrep/v1/configuration")).await.status, 200);
    assert_eq!(c.get("/api/apps/999/ofrep/v1/configuration").await.status, 404);

    // A change made here is answered at once.
    assert_eq!(c.patch_empty(&format!("/api/flags/{beta}/toggle")).await.status, 200);
    let r = c.post(&eval_path(app, "beta"), &context(Some("alice"))).await;
    assert_eq!(
        (r.json["reason"].clone(), r.json["metadata"]["revision"].clone()),
        (json!("DISABLED"), json!(5))
    );
    server.stop().await;
}

async fn bulk_answers_carry_an_etag_and_an_event_stream(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let (app, [beta, ..]) = shop(&c).await;
    let bulk = format!("/api/apps/{app}/ofrep/v1/evaluate/flags");

    let r = c.post(&bulk, &context(Some("alice"))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let keys: Vec<&str> =
        r.json["flags"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["beta", "everyone", "off", "new cart"]);
    for f in r.json["flags"].as_array().unwrap() {
        let single = c
            .post(
                &eval_path(app, &f["key"].as_str().unwrap().replace(' ', "%20")),
                &context(Some("alice")),
            )
            .await;
        assert_eq!(f, &single.json, "the bulk answer is the single ones");
    }
    let stream = &r.json["eventStreams"][0];
    assert_eq!(stream["type"], "sse");
    let url = stream["url"].as_str().unwrap();
    assert_eq!(url, format!("{}/api/apps/{app}/ofrep/v1/events", server.base));
    let etag = r.headers["etag"].to_str().unwrap().to_owned();

    // Unchanged: 304. Another user, or a change: another tag.
    let again =
        c.send_with(Method::POST, &bulk, &[("if-none-match", &etag)], context(Some("alice"))).await;
    assert_eq!((again.status, again.raw.len()), (304, 0));
    assert_eq!(again.headers["etag"].to_str().unwrap(), etag);
    let other = c.post(&bulk, &context(Some("bob"))).await;
    assert_ne!(other.headers["etag"].to_str().unwrap(), etag);
    // Without a user the partial rollout says so, and the rest is answered.
    let anonymous = c.post(&bulk, &context(None)).await;
    assert_eq!(anonymous.json["flags"][0]["errorCode"], "TARGETING_KEY_MISSING");
    assert_eq!(anonymous.json["flags"][1]["value"], true);

    // The event stream announces each new revision of this app, and only of this app.
    let mut events = c.events(&format!("/api/apps/{app}/ofrep/v1/events")).await;
    let other_app = c.create("/api/apps", &json!({"title": "Other"})).await;
    c.create(&format!("/api/apps/{other_app}/flags"), &json!({"title": "x"})).await;
    assert_eq!(c.patch_empty(&format!("/api/flags/{beta}/toggle")).await.status, 200);
    let e = events.next().await.expect("an event");
    assert_eq!(e.data, json!({"type": "refetchEvaluation", "lastModified": 5}));
    let changed =
        c.send_with(Method::POST, &bulk, &[("if-none-match", &etag)], context(Some("alice"))).await;
    assert_eq!(changed.status, 200, "a new revision is a new answer");
    assert_eq!(changed.json["flags"][0]["reason"], "DISABLED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_s_change_is_answered_within_a_second_or_two() {
    let Some(store) = TestStore::postgres().await else { return };
    let (a, b) = (Server::start(&store).await, Server::start(&store).await);
    let (ca, cb) = (a.client(), b.client());
    let (app, [beta, ..]) = shop(&ca).await;
    let r = cb.post(&eval_path(app, "beta"), &context(Some("alice"))).await;
    assert_eq!(r.json["reason"], "TARGETING_MATCH");
    assert_eq!(ca.patch_empty(&format!("/api/flags/{beta}/toggle")).await.status, 200);
    let changed = Instant::now();
    loop {
        let r = cb.post(&eval_path(app, "beta"), &context(Some("alice"))).await;
        if r.json["reason"] == "DISABLED" {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(3), "still {}", r.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("another process answered the change after {:?}", changed.elapsed());
    a.stop().await;
    b.stop().await;
}

/// The official providers' drivers, when installed: (name, program, arguments).
fn providers() -> Vec<(&'static str, std::ffi::OsString, Vec<String>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ofrep");
    let mut out = Vec::new();
    if let Some(python) = program_from(
        "TOWER_TEST_OFREP_PYTHON",
        "a Python with openfeature-provider-ofrep (tests/ofrep/requirements.txt)",
    ) {
        out.push(("python", python, vec![format!("{dir}/python_driver.py")]));
    }
    if let Some(node) =
        program_from("TOWER_TEST_NODE", "node, with `npm ci --prefix tests/ofrep` done")
    {
        out.push(("node", node, vec![format!("{dir}/node_driver.mjs")]));
    }
    out
}

async fn bool_details(d: &mut Driver, flag: &str, user: Option<&str>) -> Value {
    d.call(json!({"op": "bool", "flag": flag, "default": false, "targeting_key": user, "attributes": {"plan": "pro"}}))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_providers_evaluate_through_the_binary() {
    let providers = providers();
    if providers.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tower.db").display());
    let tower = TowerProcess::start(&[("TOWER_STORE_URL", &db)]);
    let c = tower.client();
    let (app, [beta, ..]) = shop(&c).await;
    let base = format!("{}/api/apps/{app}", tower.base);
    for (name, program, args) in providers {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut d = Driver::start(&program, &args);
        d.call(json!({"op": "init", "base_url": base, "timeout": 5})).await;
        let a = bool_details(&mut d, "beta", Some("alice")).await;
        assert_eq!(
            (
                a["value"].clone(),
                a["reason"].clone(),
                a["variant"].clone(),
                a["error_code"].clone()
            ),
            (json!(true), json!("TARGETING_MATCH"), json!("on"), Value::Null),
            "{name}: {a}"
        );
        assert_eq!(a["flag_metadata"]["flagId"], beta, "{name}: {a}");
        assert_eq!(a["flag_metadata"]["circuitStatus"], "close", "{name}: {a}");
        let a = bool_details(&mut d, "off", Some("alice")).await;
        assert_eq!(
            (a["value"].clone(), a["reason"].clone()),
            (json!(false), json!("DISABLED")),
            "{name}: {a}"
        );
        let a = bool_details(&mut d, "everyone", None).await;
        assert_eq!(
            (a["value"].clone(), a["reason"].clone()),
            (json!(true), json!("STATIC")),
            "{name}: {a}"
        );
        let a = bool_details(&mut d, "nope", Some("u")).await;
        assert_eq!(
            (a["value"].clone(), a["error_code"].clone()),
            (json!(false), json!("FLAG_NOT_FOUND")),
            "{name}: {a}"
        );
        let a = bool_details(&mut d, "beta", None).await;
        assert_eq!(a["error_code"], "TARGETING_KEY_MISSING", "{name}: {a}");
        // Users of a partial rollout get what the protocol answers them.
        for u in 0..40 {
            let user = format!("user-{u}");
            let want = c.post(&eval_path(app, "beta"), &context(Some(&user))).await;
            let a = bool_details(&mut d, "beta", Some(&user)).await;
            assert_eq!(
                (a["value"].clone(), a["reason"].clone()),
                (want.json["value"].clone(), json!("SPLIT")),
                "{name} {user}: {a}"
            );
        }
        // A toggle is answered at once.
        assert_eq!(c.patch_empty(&format!("/api/flags/{beta}/toggle")).await.status, 200);
        let a = bool_details(&mut d, "beta", Some("alice")).await;
        assert_eq!(a["reason"], "DISABLED", "{name}: {a}");
        assert_eq!(c.patch_empty(&format!("/api/flags/{beta}/toggle")).await.status, 200);
        d.call(json!({"op": "close"})).await;
        d.wait().await;
        eprintln!("{name} OFREP provider: every answer as specified");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailslide_bucketing_gives_the_tailslide_sdks_answers() {
    let Some(python) =
        program_from("TOWER_TEST_OFREP_PYTHON", "a Python with openfeature-provider-ofrep")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tower.db").display());
    let tower =
        TowerProcess::start(&[("TOWER_STORE_URL", &db), ("TOWER_ROLLOUT_HASH", "tailslide")]);
    let c = tower.client();
    let app = c.create("/api/apps", &json!({"title": "Legacy"})).await;
    c.create(
        &format!("/api/apps/{app}/flags"),
        &json!({"title": "f", "is_active": true, "rollout_percentage": 25}),
    )
    .await;
    let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/ofrep/python_driver.py");
    let mut d = Driver::start(&python, &[driver]);
    d.call(json!({"op": "init", "base_url": format!("{}/api/apps/{app}", tower.base)})).await;
    // md5 buckets: alice 0, user-1 20, bob 32 (what the Tailslide Python SDK computes).
    for (user, on) in [("alice", true), ("user-1", true), ("bob", false)] {
        let a = bool_details(&mut d, "f", Some(user)).await;
        assert_eq!(a["value"], on, "{user}: {a}");
    }
    d.call(json!({"op": "close"})).await;
    d.wait().await;
}
