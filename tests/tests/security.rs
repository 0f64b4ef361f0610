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
/// client that is still writing (a reset, seen as a broken pipe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_its_413_read() {
    use std::io::{Read, Write};
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let addr = server.addr;
    let statuses = tokio::task::spawn_blocking(move || {
        (0..5)
            .map(|_| {
                let body = vec![b' '; 8 * 1024 * 1024];
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
                let head = format!(
                    "POST /api/apps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
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
