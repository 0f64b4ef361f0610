//! What an attacker on the same network or behind a browser meets: over real HTTP, against the
//! real server.

use flagtower_tests::{Server, TestStore};
use http::Method;
use serde_json::json;

/// DNS rebinding: a page on another name that resolves to 127.0.0.1 sends its own `Host`; a Tower
/// on a loopback address answers it 421 and writes nothing, loopback names get through, and
/// every answer says `nosniff`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_tower_refuses_other_host_names() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let port = server.addr.port();
    for host in ["evil.example", &format!("evil.example:{port}"), "127.0.0.1.nip.io"] {
        let r = c
            .send_with(Method::POST, "/api/apps", &[("host", host)], json!({"title": "pwned"}))
            .await;
        let e = r.expect_error(421);
        assert_eq!(e["code"], "misdirected_request", "{host}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
        let page = c.send_with(Method::GET, "/", &[("host", host)], json!(null)).await;
        assert_eq!(page.status, 421, "the dashboard too, for {host}");
    }
    assert!(c.get("/api/apps").await.payload().as_array().unwrap().is_empty(), "nothing written");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), "[::1]".to_owned()] {
        let r = c.send_with(Method::GET, "/api/apps", &[("host", &host)], json!(null)).await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff");
    }
    server.stop().await;
}

/// `TOWER_ALLOWED_HOSTS` adds names to a loopback Tower (a local proxy's name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_host_names_are_answered() {
    let store = TestStore::sqlite().await;
    let options = flagtower_http::ServerOptions {
        allowed_hosts: vec!["tower.internal".to_owned()],
        ..Default::default()
    };
    let server = Server::start_with_options(&store, options).await;
    let c = server.client();
    let ok = c
        .send_with(Method::GET, "/api/apps", &[("host", "Tower.Internal:8080")], json!(null))
        .await;
    assert_eq!(ok.status, 200);
    let no =
        c.send_with(Method::GET, "/api/apps", &[("host", "other.internal")], json!(null)).await;
    assert_eq!(no.status, 421);
    server.stop().await;
}

/// A client that sends a whole oversized body before reading (as curl does) reads the 413:
/// the server keeps reading what is left while the answer goes out, instead of closing under a
/// client that is still writing (a reset, seen as a broken pipe). REST and OFREP alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_its_413_read() {
    use std::io::{Read, Write};
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let addr = server.addr;
    let statuses = tokio::task::spawn_blocking(move || {
        (0..6)
            .map(|i| {
                let path = ["/api/apps", "/ofrep/v1/evaluate/flags"][i % 2];
                let body = vec![b' '; 8 * 1024 * 1024];
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTower-App: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                // Write everything first, then read: no reader on another thread.
                let written = s.write_all(head.as_bytes()).and_then(|()| s.write_all(&body));
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                let text = String::from_utf8_lossy(&answer).into_owned();
                (written.is_ok(), text.split(' ').nth(1).unwrap_or("none").to_owned(), text)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (written, status, text) in statuses {
        assert!(written, "the body could not be sent: the server closed under the client");
        assert_eq!(status, "413", "{text:.300}");
        assert!(text.to_lowercase().contains("connection: close"), "{text:.300}");
    }
    server.stop().await;
}

/// The status of `GET /api/stream`, read without waiting for the (endless) body; the open
/// connection, which holds the stream while it is kept.
async fn stream_status(base: &str) -> (u16, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    s.write_all(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut head = vec![0u8; 64];
    let n = s.read(&mut head).await.unwrap();
    let status =
        String::from_utf8_lossy(&head[..n]).split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    (status, s)
}

/// Live streams are capped (each holds a connection and a file descriptor): beyond the cap a new
/// one gets 503 with `Retry-After`, and a place frees when a stream ends. Connections beyond
/// theirs wait and are served once one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_connections_have_limits_and_recover() {
    let options =
        flagtower_http::ServerOptions { max_streams: 2, max_connections: 3, ..Default::default() };
    let store = TestStore::sqlite().await;
    let server = Server::start_with_options(&store, options).await;
    let base = server.base.clone();
    let c = flagtower_tests::Client::new(&base);
    let mut first = c.events("/api/stream").await;
    let mut second = flagtower_tests::Client::new(&base).events("/api/stream").await;
    assert_eq!(first.next().await.unwrap().name, "hello");
    assert_eq!(second.next().await.unwrap().name, "hello");
    let third = flagtower_tests::Client::new(&base).get("/api/stream").await;
    let e = third.expect_error(503);
    assert_eq!(e["code"], "busy");
    assert_eq!(third.headers["retry-after"], "1");
    drop(first);
    // The dropped stream's place frees once the server sees the connection go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let again = loop {
        let (status, conn) = stream_status(&base).await;
        if status == 200 {
            break conn;
        }
        assert!(std::time::Instant::now() < deadline, "a place never freed ({status})");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    drop(again);
    // Connections: `second` holds one of three; two more idle keep-alive ones fill them, and
    // a fourth waits until one closes.
    let a = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let b = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let waiting = tokio::spawn({
        let base = base.clone();
        async move { flagtower_tests::Client::new(&base).get("/healthz").await.status }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a connection beyond the limit waits");
    drop(a);
    drop(b);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
    assert_eq!(status.expect("served once a connection ended").unwrap(), 200);
    drop(second);
    server.stop().await;
}

const ALICE: &str = "alice-admin-secret-0123456789";

/// A server that requires admin tokens (`alice`), sessions lasting `idle`.
async fn guarded(store: &TestStore, idle: std::time::Duration) -> Server {
    let options = flagtower_http::ServerOptions {
        admin_tokens: flagtower_http::AdminTokens::parse(&format!(
            "alice:{ALICE},ci:ci-admin-secret-0123456789"
        ))
        .unwrap(),
        session_idle: idle,
        ..Default::default()
    };
    Server::start_with_options(store, options).await
}

/// Every route, with no token, a wrong one, the SDK key, a rotated-out SDK key and an admin
/// token: the SDK key opens the SDK routes (flag events, OFREP) and nothing else; `/healthz` and
/// the dashboard's files are open; everything else needs an admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_the_right_token() {
    let store = TestStore::sqlite().await;
    let server = guarded(&store, flagtower_http::SESSION_IDLE).await;
    let anon = server.client();
    let admin = server.client().with_bearer(ALICE);
    let app = admin.create("/api/apps", &json!({"title": "shop"})).await;
    let flag = admin.create(&format!("/api/apps/{app}/flags"), &json!({"title": "checkout"})).await;
    let old_key = admin.get("/api/keys").await.payload()["id"].as_str().unwrap().to_owned();
    let key = admin.post_empty("/api/keys").await.payload()["id"].as_str().unwrap().to_owned();
    assert_ne!(key, old_key);

    let ofrep = format!("/api/apps/{app}/ofrep/v1");
    let user = json!({"context": {"targetingKey": "u1"}});
    // (method, path, body, an SDK route)
    let routes: Vec<(Method, String, serde_json::Value, bool)> = vec![
        (Method::GET, "/api/apps".into(), json!(null), false),
        (Method::GET, "/api/apps?counts=true".into(), json!(null), false),
        (Method::POST, "/api/apps".into(), json!({"title": "other"}), false),
        (Method::GET, format!("/api/apps/{app}"), json!(null), false),
        (Method::PATCH, format!("/api/apps/{app}"), json!({"title": "shop"}), false),
        (Method::GET, format!("/api/apps/{app}/flags"), json!(null), false),
        (Method::POST, format!("/api/apps/{app}/flags"), json!({"title": "f2"}), false),
        (Method::GET, format!("/api/flags/{flag}"), json!(null), false),
        (Method::PATCH, format!("/api/flags/{flag}"), json!({"description": "d"}), false),
        (Method::PATCH, format!("/api/flags/{flag}/toggle"), json!({"is_active": true}), false),
        (Method::POST, format!("/api/flags/{flag}/events"), json!({"success": 1}), true),
        (Method::GET, format!("/api/flags/{flag}/timeseries"), json!(null), false),
        (Method::POST, format!("/api/flags/circuit/{flag}/open"), json!(null), false),
        (Method::POST, format!("/api/flags/circuit/{flag}/close"), json!(null), false),
        (Method::GET, "/api/logs".into(), json!(null), false),
        (Method::GET, "/api/logs?limit=5".into(), json!(null), false),
        (Method::GET, format!("/api/logs/{app}"), json!(null), false),
        (Method::GET, "/api/keys".into(), json!(null), false),
        (Method::POST, format!("{ofrep}/evaluate/flags/checkout"), user.clone(), true),
        (Method::POST, format!("{ofrep}/evaluate/flags"), user.clone(), true),
        (Method::GET, format!("{ofrep}/configuration"), json!(null), true),
        (Method::GET, "/metrics".into(), json!(null), false),
        (Method::GET, "/api/openapi.json".into(), json!(null), false),
        (Method::GET, "/api/nope".into(), json!(null), false),
        (Method::DELETE, "/api/flags/999".into(), json!(null), false),
        (Method::DELETE, "/api/apps/999".into(), json!(null), false),
    ];
    let wrong = format!("Bearer {ALICE}x");
    let sdk = format!("Bearer {key}");
    let old_sdk = format!("Bearer {old_key}");
    for (method, path, body, sdk_route) in &routes {
        let send = |auth: Option<String>| {
            let headers: Vec<(&str, String)> =
                auth.into_iter().map(|a| ("authorization", a)).collect();
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            let anon = anon.clone();
            async move {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                anon.send_with(method, &path, &headers, body).await
            }
        };
        for (who, auth) in [
            ("no token", None),
            ("a wrong token", Some(wrong.clone())),
            ("a rotated-out SDK key", Some(old_sdk.clone())),
        ] {
            let r = send(auth).await;
            let e = r.expect_error(401);
            assert_eq!(e["code"], "unauthorized", "{method} {path} with {who}");
            assert!(
                r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"),
                "{method} {path} with {who}"
            );
        }
        let r = send(Some(sdk.clone())).await;
        if *sdk_route {
            assert!(r.status < 300, "{method} {path} with the SDK key: {}", r.status);
        } else {
            assert_eq!(
                r.expect_error(403)["code"],
                "forbidden",
                "{method} {path} with the SDK key"
            );
        }
        let r = send(Some(format!("Bearer {ALICE}"))).await;
        assert!(
            ![401, 403].contains(&r.status),
            "{method} {path} with an admin token: {} {}",
            r.status,
            r.json
        );
    }
    // Streams: refused without a token, opened with one.
    let r = anon.send_with(Method::GET, "/api/stream", &[], json!(null)).await;
    r.expect_error(401);
    let mut live = admin.events("/api/stream").await;
    live.until("hello").await;
    let r = anon.send_with(Method::GET, &format!("{ofrep}/events"), &[], json!(null)).await;
    r.expect_error(401);
    // Opened (200, text/event-stream) with the SDK key.
    let sdk_stream = server.client().with_bearer(&key).events(&format!("{ofrep}/events")).await;
    drop(sdk_stream);
    // Open without a token: the health check and the dashboard (its sign-in screen is there).
    assert_eq!(anon.get("/healthz").await.status, 200);
    assert_eq!(anon.get("/").await.status, 200);
    assert_eq!(anon.get("/assets/main.js").await.status, 200);
    // The root OFREP routes name the app in a header and take the key the same way.
    let r = anon
        .send_with(
            Method::POST,
            "/ofrep/v1/evaluate/flags/checkout",
            &[("tower-app", &app.to_string()), ("authorization", &sdk)],
            user.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = anon
        .send_with(
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            &[("tower-app", &app.to_string())],
            user,
        )
        .await;
    r.expect_error(401);
    server.stop().await;
}

fn session_cookie(r: &flagtower_tests::Reply) -> String {
    let set = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

/// Signing in sets a session cookie that opens the API; a change with it must come from the
/// server's own pages (a cross-site form's empty POST is refused); signing out ends it, and an
/// idle one expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_sign_in_refuse_cross_site_changes_sign_out_and_expire() {
    let store = TestStore::sqlite().await;
    let server = guarded(&store, std::time::Duration::from_secs(2)).await;
    let c = server.client();
    let admin = server.client().with_bearer(ALICE);
    let app = admin.create("/api/apps", &json!({"title": "shop"})).await;
    let flag = admin.create(&format!("/api/apps/{app}/flags"), &json!({"title": "checkout"})).await;

    c.get("/api/session").await.expect_error(401);
    let r = c.post("/api/session", &json!({"token": "not-a-token"})).await;
    assert_eq!(r.expect_error(401)["code"], "unauthorized");
    assert!(r.headers.get("set-cookie").is_none());
    c.post("/api/session", &json!({})).await.expect_error(422);
    let r = c.post("/api/session", &json!({"token": ALICE})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.payload()["name"], "alice");
    assert_eq!(r.payload()["authentication"], true);
    assert!(!r.headers["set-cookie"].to_str().unwrap().contains("Secure"), "plain http here");
    let cookie = session_cookie(&r);
    let with = |extra: &[(&'static str, String)]| {
        let mut h = vec![("cookie", cookie.clone())];
        h.extend_from_slice(extra);
        h
    };
    let send = |method: Method, path: String, headers: Vec<(&'static str, String)>| {
        let c = c.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.send_with(method, &path, &headers, json!(null)).await
        }
    };
    let me = send(Method::GET, "/api/session".into(), with(&[])).await;
    assert_eq!(me.payload()["name"], "alice");
    assert_eq!(send(Method::GET, "/api/apps".into(), with(&[])).await.status, 200);

    // CSRF: a cross-site page's POST carries the cookie but another Origin, or none. (A new,
    // inactive flag's circuit reads `open`: closing it is the change an attacker would make.)
    let status = || async {
        admin.get(&format!("/api/flags/{flag}")).await.payload()["circuit_status"].clone()
    };
    assert_eq!(status().await, "open");
    let open = format!("/api/flags/circuit/{flag}/close");
    let evil = with(&[("origin", "http://evil.example".into())]);
    let r = send(Method::POST, open.clone(), evil).await;
    assert_eq!(r.expect_error(403)["code"], "forbidden");
    let r =
        send(Method::POST, open.clone(), with(&[("sec-fetch-site", "cross-site".into())])).await;
    r.expect_error(403);
    let r = c.send(Method::POST, &open, Some("text/plain"), "").await;
    r.expect_error(401);
    assert_eq!(status().await, "open", "nothing changed");
    let own = with(&[("origin", server.base.clone())]);
    assert_eq!(send(Method::POST, open.clone(), own).await.status, 200);
    assert_eq!(status().await, "close");
    let fetch = with(&[("sec-fetch-site", "same-origin".into())]);
    let reopen = format!("/api/flags/circuit/{flag}/open");
    assert_eq!(send(Method::POST, reopen, fetch).await.status, 200);
    assert_eq!(status().await, "open");

    // Renewed in the second half of its life; an idle one expires.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = send(Method::GET, "/api/apps".into(), with(&[])).await;
    assert_eq!(r.status, 200);
    let renewed = session_cookie(&r);
    assert_ne!(renewed, cookie);
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let r = send(Method::GET, "/api/apps".into(), with(&[])).await;
    assert_eq!(r.expect_error(401)["code"], "unauthorized", "the first cookie expired");
    let r = send(Method::GET, "/api/apps".into(), vec![("cookie", renewed.clone())]).await;
    assert_eq!(r.status, 200, "the renewed one lives on");

    // Signing out clears the cookie and ends the session.
    let out = send(
        Method::DELETE,
        "/api/session".into(),
        vec![("cookie", renewed.clone()), ("origin", server.base.clone())],
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let r = send(Method::GET, "/api/apps".into(), vec![("cookie", renewed)]).await;
    r.expect_error(401);
    server.stop().await;
}

/// Every log route and the live stream say who made each change and what an edit changed:
/// the admin token's name, `anonymous` without authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_says_who_changed_what() {
    let store = TestStore::sqlite().await;
    let server = guarded(&store, flagtower_http::SESSION_IDLE).await;
    let alice = server.client().with_bearer(ALICE);
    let ci = server.client().with_bearer("ci-admin-secret-0123456789");
    let app = alice.create("/api/apps", &json!({"title": "shop"})).await;
    let flag = alice
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "checkout", "rollout_percentage": 25}),
        )
        .await;
    let mut live = alice.events("/api/stream").await;
    live.until("hello").await;
    let r = ci.patch(&format!("/api/flags/{flag}"), &json!({"rollout_percentage": 50})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let event = live.until("log").await;
    let streamed = event.data;
    assert_eq!(streamed["actor"], "ci");
    assert_eq!(streamed["changes"], json!({"rollout_percentage": [25, 50]}));

    let page = alice.get("/api/logs?limit=10").await;
    let rows = page.payload().as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r["action_type"].as_str().unwrap(), r["actor"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [("update", "ci"), ("create", "alice")]
    );
    assert_eq!(rows[1]["changes"], serde_json::Value::Null);
    for path in ["/api/logs".to_owned(), format!("/api/logs/{app}")] {
        let all = alice.get(&path).await;
        let update = all
            .payload()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action_type"] == "update")
            .cloned();
        let update = update.unwrap_or_else(|| panic!("{path}: {}", all.json));
        assert_eq!(
            (update["actor"].clone(), update["changes"].clone()),
            (json!("ci"), json!({"rollout_percentage": [25, 50]})),
            "{path}"
        );
    }
    let own = alice.get(&format!("/api/flags/{flag}")).await;
    let logs = own.payload()["logs"].as_array().unwrap().clone();
    assert_eq!(logs.last().unwrap()["actor"], "ci");
    server.stop().await;

    // Without tokens: anonymous.
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "open"})).await;
    c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let page = c.get("/api/logs?limit=1").await;
    assert_eq!(page.payload()[0]["actor"], "anonymous");
    server.stop().await;
}

/// Webhooks go to public addresses only: a list naming a loopback, private or link-local
/// address (or a name resolving to one) is refused when saved (422, `webhooks`), and a
/// notifier refuses such a destination at the connection too, so a list written before, or a
/// name that resolves elsewhere later, gets nowhere. `TOWER_WEBHOOK_ALLOW` opens what it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_only_public_or_listed_destinations() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "shop"})).await;
    for hook in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://[::1]:8080/x",
        "http://[fd00::1]/x",
        "http://localhost:9/x",
        "https://u:hunter2@192.168.1.1/x",
    ] {
        let r = c
            .post(&format!("/api/apps/{app}/flags"), &json!({"title": "f", "webhooks": hook}))
            .await;
        let e = r.expect_error(422);
        assert_eq!(e["field"], "webhooks", "{hook}");
        assert!(e["message"].as_str().unwrap().contains("TOWER_WEBHOOK_ALLOW"), "{hook}: {e}");
        assert!(!e["message"].as_str().unwrap().contains("hunter2"), "{e}");
    }
    // A name that does not resolve here is accepted, and checked when it is used.
    let flag = c
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "f", "webhooks": "https://hooks.example.invalid/T0"}),
        )
        .await;
    let r =
        c.patch(&format!("/api/flags/{flag}"), &json!({"webhooks": "http://127.0.0.1/x"})).await;
    assert_eq!(r.expect_error(422)["field"], "webhooks");
    server.stop().await;

    // Allowed by TOWER_WEBHOOK_ALLOW: saved, and delivered.
    let receiver = flagtower_tests::WebhookReceiver::start().await;
    let (notifier, options) = flagtower_tests::local_webhook_setup();
    let store = TestStore::sqlite().await;
    let tower =
        flagtower_core::Tower::builder(store.open().await).notifier(std::sync::Arc::new(notifier));
    let server = Server::start_built_with(tower, options).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "shop"})).await;
    let r = c
        .post(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "f", "webhooks": format!("{}/ok", receiver.base)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    server.stop().await;

    // At the connection: a notifier with the default rule refuses a loopback receiver, by
    // address and by name, for good (no retry), and never reaches it.
    use flagtower_core::Notifier;
    let public_only = flagtower_adapters::webhook::HttpNotifier::new().unwrap();
    let port = receiver.base.rsplit(':').next().unwrap().to_owned();
    for url in [format!("{}/ok", receiver.base), format!("http://localhost:{port}/ok")] {
        match public_only.notify(&url, "tripped").await {
            Err(flagtower_core::NotifyError::Rejected(e)) => {
                assert!(e.to_string().contains("loopback"), "{url}: {e}")
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let allowed = flagtower_adapters::webhook::HttpNotifier::with_destinations(
        flagtower_tests::local_webhooks(),
    )
    .unwrap();
    allowed.notify(&format!("{}/ok", receiver.base), "tripped").await.expect("delivered");
}

/// A client making changes faster than its limit gets 429 with `Retry-After`, and can go on
/// once it has waited; reads, SDK events and other clients are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_have_a_per_client_rate_limit() {
    let store = TestStore::sqlite().await;
    let options = flagtower_http::ServerOptions {
        rate_limit: Some(flagtower_http::RateLimit::per_second(2)),
        ..Default::default()
    };
    let server = Server::start_with_options(&store, options).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "shop"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let toggle = format!("/api/flags/{flag}/toggle");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(c.patch_empty(&toggle).await.status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (18..=22).contains(&ok),
        "a burst of 20 (less the 2 creations), then refusals: {statuses:?}"
    );
    let refused = c.patch_empty(&toggle).await;
    assert_eq!(refused.expect_error(429)["code"], "rate_limited");
    let wait: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Reads and the SDKs' events are not changes an operator makes.
    assert_eq!(c.get(&format!("/api/flags/{flag}")).await.status, 200);
    let events = c.post(&format!("/api/flags/{flag}/events"), &json!({"success": 1})).await;
    assert_eq!(events.status, 202);
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(c.patch_empty(&toggle).await.status, 200, "recovered after Retry-After");
    server.stop().await;
}
