//! Bad input: each case gets its documented status and a JSON error, the server keeps serving,
//! and the data is unchanged afterwards.

use std::io::{Read, Write};

use bytes::Bytes;
use flagtower_tests::{Client, Server, TestStore, for_each_store};
use http::Method;
use serde_json::{Value, json};

for_each_store!(
    bad_requests_get_their_status_and_change_nothing,
    strange_but_valid_strings_are_stored_literally,
    many_bad_requests_at_once_do_not_hurt_good_ones,
);

/// Everything a client can read, to compare before and after the bad requests.
async fn snapshot(c: &Client) -> Value {
    let apps = c.get("/api/apps").await.payload().clone();
    let mut flags = Vec::new();
    for app in apps.as_array().unwrap() {
        let id = app["id"].as_i64().unwrap();
        let list = c.get(&format!("/api/apps/{id}/flags")).await.payload().clone();
        for f in list.as_array().unwrap() {
            flags.push(c.get(&format!("/api/flags/{}", f["id"])).await.payload().clone());
        }
    }
    json!({"apps": apps, "flags": flags, "logs": c.get("/api/logs").await.payload().clone(), "key": c.get("/api/keys").await.payload().clone()})
}

/// Sends raw bytes on a fresh connection and returns the status code of the response. Writes
/// on another thread while reading, so an answer the server sends before reading everything (and
/// the reset that may follow) is still seen.
fn raw_status(addr: std::net::SocketAddr, request: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut writer = s.try_clone().unwrap();
    let request = request.to_vec();
    // The server may answer (413) and close before reading everything: ignore write errors.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let head = String::from_utf8_lossy(&buf);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// (method, path, content type, body, expected status, field the error names)
type Case = (Method, String, Option<&'static str>, String, u16, Option<&'static str>);

async fn bad_requests_get_their_status_and_change_nothing(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let app = c.create("/api/apps", &json!({"title": "A"})).await;
    let flag = c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await;
    let before = snapshot(&c).await;

    let apps = "/api/apps".to_owned();
    let flags = format!("/api/apps/{app}/flags");
    let one = format!("/api/flags/{flag}");
    let toggle = format!("/api/flags/{flag}/toggle");
    let events = format!("/api/flags/{flag}/events");
    let json_ct = Some("application/json");
    let long = "x".repeat(10_000);

    let cases: Vec<Case> = vec![
        // Malformed JSON and bodies that are not objects.
        (Method::POST, apps.clone(), json_ct, "{\"title\": ".into(), 400, None),
        (Method::POST, apps.clone(), json_ct, "{'title': 'x'}".into(), 400, None),
        (Method::POST, apps.clone(), json_ct, "[\"title\"]".into(), 400, None),
        (Method::POST, apps.clone(), json_ct, "\"title\"".into(), 400, None),
        (
            Method::POST,
            apps.clone(),
            json_ct,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            400,
            None,
        ),
        (Method::POST, apps.clone(), json_ct, "{\"title\": \"a\"} trailing".into(), 400, None),
        (Method::POST, apps.clone(), json_ct, "".into(), 400, None),
        (Method::PATCH, one.clone(), json_ct, "{\"rollout_percentage\": 1e999}".into(), 400, None),
        // Wrong types.
        (Method::POST, apps.clone(), json_ct, "{\"title\": 42}".into(), 422, Some("title")),
        (Method::POST, apps.clone(), json_ct, "{\"title\": null}".into(), 422, Some("title")),
        (Method::POST, apps.clone(), json_ct, "{\"title\": [\"a\"]}".into(), 422, Some("title")),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"is_active\": \"true\"}".into(),
            422,
            Some("is_active"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"rollout_percentage\": \"50\"}".into(),
            422,
            Some("rollout_percentage"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"description\": 5}".into(),
            422,
            Some("description"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"white_listed_users\": [\"a\"]}".into(),
            422,
            Some("white_listed_users"),
        ),
        (
            Method::PATCH,
            toggle.clone(),
            json_ct,
            "{\"is_active\": 1}".into(),
            422,
            Some("is_active"),
        ),
        (
            Method::POST,
            events.clone(),
            json_ct,
            "{\"success\": \"1\"}".into(),
            422,
            Some("success"),
        ),
        // Out-of-range numbers.
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"rollout_percentage\": 100.5}".into(),
            422,
            Some("rollout_percentage"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"error_threshold_percentage\": -1}".into(),
            422,
            Some("error_threshold_percentage"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"circuit_recovery_delay\": 99}".into(),
            422,
            Some("circuit_recovery_delay"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"circuit_recovery_rate\": 99999999999999999999}".into(),
            422,
            Some("circuit_recovery_rate"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"circuit_recovery_rate\": 150.5}".into(),
            422,
            Some("circuit_recovery_rate"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"circuit_recovery_increment_percentage\": 0}".into(),
            422,
            Some("circuit_recovery_increment_percentage"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"circuit_recovery_profile\": \"cubic\"}".into(),
            422,
            Some("circuit_recovery_profile"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            "{\"webhooks\": \"javascript:alert(1)\"}".into(),
            422,
            Some("webhooks"),
        ),
        (Method::POST, events.clone(), json_ct, "{\"success\": -1}".into(), 422, Some("success")),
        (
            Method::POST,
            events.clone(),
            json_ct,
            "{\"success\": 0, \"failure\": 0}".into(),
            422,
            Some("success"),
        ),
        // Titles.
        (Method::POST, apps.clone(), json_ct, "{\"title\": \"\"}".into(), 422, Some("title")),
        (
            Method::POST,
            apps.clone(),
            json_ct,
            "{\"title\": \"   \\t \"}".into(),
            422,
            Some("title"),
        ),
        (
            Method::POST,
            apps.clone(),
            json_ct,
            json!({"title": long}).to_string(),
            422,
            Some("title"),
        ),
        (Method::POST, apps.clone(), json_ct, "{}".into(), 422, Some("title")),
        (
            Method::POST,
            flags.clone(),
            json_ct,
            "{\"rollout_percentage\": 5}".into(),
            422,
            Some("title"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            json!({"title": long}).to_string(),
            422,
            Some("title"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            json!({"description": "d".repeat(10_001)}).to_string(),
            422,
            Some("description"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            r#"{"description": "nul \u0000 byte"}"#.into(),
            422,
            Some("description"),
        ),
        (
            Method::POST,
            apps.clone(),
            json_ct,
            r#"{"title": "nul \u0000 byte"}"#.into(),
            422,
            Some("title"),
        ),
        (
            Method::PATCH,
            one.clone(),
            json_ct,
            r#"{"white_listed_users": "a,\u0000"}"#.into(),
            422,
            Some("white_listed_users"),
        ),
        // Unknown fields.
        (
            Method::POST,
            apps.clone(),
            json_ct,
            "{\"title\": \"x\", \"owner\": \"me\"}".into(),
            422,
            Some("owner"),
        ),
        (
            Method::POST,
            flags.clone(),
            json_ct,
            "{\"title\": \"x\", \"revision\": 3}".into(),
            422,
            Some("revision"),
        ),
        (Method::PATCH, one.clone(), json_ct, "{\"deleted\": true}".into(), 422, Some("deleted")),
        (Method::PATCH, toggle.clone(), json_ct, "{\"on\": true}".into(), 422, Some("on")),
        // Ids.
        (Method::GET, "/api/flags/-1".into(), None, "".into(), 400, None),
        (Method::GET, "/api/flags/abc".into(), None, "".into(), 400, None),
        (Method::GET, "/api/flags/1.5".into(), None, "".into(), 400, None),
        (Method::GET, "/api/flags/9223372036854775808".into(), None, "".into(), 400, None),
        (Method::GET, "/api/apps/99999999999999999999999".into(), None, "".into(), 400, None),
        (Method::PATCH, "/api/flags/-3/toggle".into(), json_ct, "".into(), 400, None),
        (Method::GET, "/api/flags/9223372036854775807".into(), None, "".into(), 404, None),
        (Method::GET, "/api/flags/0".into(), None, "".into(), 400, None),
        (Method::GET, "/api/apps/0/flags".into(), None, "".into(), 400, None),
        (
            Method::GET,
            "/api/flags/1/timeseries?timeRange=1000&timeBucket=1001".into(),
            None,
            "".into(),
            400,
            None,
        ),
        // Content types.
        (Method::POST, apps.clone(), Some("text/plain"), "{\"title\": \"x\"}".into(), 415, None),
        (
            Method::POST,
            apps.clone(),
            Some("application/x-www-form-urlencoded"),
            "title=x".into(),
            415,
            None,
        ),
        (Method::POST, apps.clone(), None, "{\"title\": \"x\"}".into(), 415, None),
        // A change without a body must still say it is JSON: what a cross-site form sends (an
        // empty text/plain or form POST) is refused.
        (Method::POST, format!("/api/flags/circuit/{flag}/open"), None, "".into(), 415, None),
        (
            Method::POST,
            format!("/api/flags/circuit/{flag}/open"),
            Some("text/plain"),
            "".into(),
            415,
            None,
        ),
        (
            Method::POST,
            "/api/keys".into(),
            Some("application/x-www-form-urlencoded"),
            "".into(),
            415,
            None,
        ),
        (Method::PATCH, toggle.clone(), None, "".into(), 415, None),
        (Method::DELETE, one.clone(), None, "".into(), 415, None),
        // Methods.
        (Method::PUT, apps.clone(), json_ct, "{\"title\": \"x\"}".into(), 405, None),
        (Method::from_bytes(b"PURGE").unwrap(), one.clone(), None, "".into(), 405, None),
        // Bodies over 1 MiB.
    ];
    for (method, path, ct, body, status, field) in cases {
        let label = format!("{method} {path} {:.80}", body);
        let r = c.send(method, &path, ct, Bytes::from(body)).await;
        let err = r.expect_error(status);
        assert_eq!(err["field"].as_str(), field, "{label}: {}", r.json);
        assert!(
            !r.json.to_string().to_lowercase().contains("sqlite"),
            "{label} leaks internals: {}",
            r.json
        );
        assert_eq!(c.get("/healthz").await.status, 200, "still serving after {label}");
    }

    // A body over the limit is refused as soon as its Content-Length is read, before any of it
    // is sent…
    let addr = server.addr;
    let req = format!("POST /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 2 * 1024 * 1024).into_bytes();
    assert_eq!(tokio::task::spawn_blocking(move || raw_status(addr, &req)).await.unwrap(), 413);
    // …and so is one without Content-Length (chunked), once it passes the limit.
    let mut req = b"POST /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..20 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(tokio::task::spawn_blocking(move || raw_status(addr, &req)).await.unwrap(), 413);
    // Garbage that is not HTTP at all.
    let status = tokio::task::spawn_blocking(move || raw_status(addr, b"HELLO THERE\r\n\r\n"))
        .await
        .unwrap();
    assert_eq!(status, 400);

    assert_eq!(snapshot(&c).await, before, "no bad request changed anything");
    server.stop().await;
}

async fn strange_but_valid_strings_are_stored_literally(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    for title in [
        "Robert'); DROP TABLE apps;--",
        "1 OR 1=1",
        "日本語のアプリ 🚀",
        "emoji 👩‍👩‍👧‍👦 family",
        "<script>alert(1)</script>",
        "%s %n {} \\ \" '",
    ] {
        let r = c.post("/api/apps", &json!({"title": title})).await;
        assert_eq!(r.status, 201, "{title}: {}", r.json);
        let id = r.payload()["id"].as_i64().unwrap();
        assert_eq!(c.get(&format!("/api/apps/{id}")).await.payload()["title"], title);
        let r = c
            .post(&format!("/api/apps/{id}/flags"), &json!({"title": title, "description": title}))
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(r.payload()["description"], title);
    }
    // Exactly 255 characters (not bytes) is fine; surrounding whitespace is trimmed.
    let max = "é".repeat(255);
    let r = c.post("/api/apps", &json!({"title": format!("  {max}  ")})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.payload()["title"], max);
    assert_eq!(c.get("/api/apps").await.payload().as_array().unwrap().len(), 7);
    server.stop().await;
}

async fn many_bad_requests_at_once_do_not_hurt_good_ones(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let bad = c
                .send(Method::POST, "/api/apps", Some("application/json"), Bytes::from("{nope"))
                .await;
            assert_eq!(bad.status, 400);
            let good = c.post("/api/apps", &json!({"title": format!("app {i}")})).await;
            assert_eq!(good.status, 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(c.get("/api/apps").await.payload().as_array().unwrap().len(), 50);
    server.stop().await;
}

/// A server on a temporary SQLite file with other timeouts.
async fn serve_with(
    options: flagtower_http::ServerOptions,
) -> (tempfile::TempDir, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        flagtower_adapters::sqlite::SqliteStore::open(dir.path().join("t.db")).await.unwrap();
    let tower = flagtower_core::Tower::builder(std::sync::Arc::new(store)).start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(flagtower_http::run_with(listener, tower, std::future::pending(), options));
    (dir, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    let (_dir, addr) = serve_with(flagtower_http::ServerOptions {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let read = s.read_to_end(&mut buf);
        (read.is_ok(), started.elapsed(), String::from_utf8_lossy(&buf).into_owned())
    })
    .await
    .unwrap();
    let (closed, waited, reply) = outcome;
    assert!(closed, "the server closed the connection instead of waiting forever");
    assert!(waited < std::time::Duration::from_secs(5), "closed after {waited:?}");
    assert!(!reply.contains("200 OK"), "{reply}");
    // A complete request on a new connection is still served.
    let c = flagtower_tests::Client::new(&format!("http://{addr}"));
    assert_eq!(c.get("/api/apps").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_completes_gets_a_408() {
    let (_dir, addr) = serve_with(flagtower_http::ServerOptions {
        body_read_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    // Promise 100 bytes, send 10.
    let req = b"POST /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"title\": ".to_vec();
    let status = tokio::task::spawn_blocking(move || raw_status(addr, &req)).await.unwrap();
    assert_eq!(status, 408);
    let c = flagtower_tests::Client::new(&format!("http://{addr}"));
    assert!(
        c.get("/api/apps").await.payload().as_array().unwrap().is_empty(),
        "nothing was written"
    );
}
