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
    let tower = flagtower_core::Tower::builder(store.open().await).start().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = flagtower_http::ServerOptions {
        allowed_hosts: vec!["tower.internal".to_owned()],
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(flagtower_http::run_with(
        listener,
        tower.clone(),
        async move {
            let _ = stopped.await;
        },
        options,
    ));
    let c = flagtower_tests::Client::new(&format!("http://{addr}"));
    let ok = c
        .send_with(Method::GET, "/api/apps", &[("host", "Tower.Internal:8080")], json!(null))
        .await;
    assert_eq!(ok.status, 200);
    let no =
        c.send_with(Method::GET, "/api/apps", &[("host", "other.internal")], json!(null)).await;
    assert_eq!(no.status, 421);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    tower.shutdown().await;
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
