//! The harness of Tower's end-to-end tests: a real server (the same [`flagtower_http::run`] the
//! binary uses) on a free port, the stores it runs on, and helpers to compare JSON shapes with
//! the seed's golden fixtures. What does not depend on Tower's crates (service launchers, the
//! HTTP client, the proxy, …) is `flagtower-testkit`'s, re-exported here.
#![warn(missing_docs, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use flagtower_core::{InProcessPublisher, Store, Tower};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use flagtower_testkit::*;

/// A [`TestDatabase`] as Tower's PostgreSQL store opens it.
#[allow(async_fn_in_trait)]
pub trait TestDatabaseExt {
    /// Options for the database, with the pool size the tests use.
    fn options(&self) -> flagtower_adapters::postgres::PostgresOptions;
    /// Opens a store on the database (migrating it on first open).
    async fn open(&self) -> flagtower_adapters::postgres::PostgresStore;
}

impl TestDatabaseExt for TestDatabase {
    fn options(&self) -> flagtower_adapters::postgres::PostgresOptions {
        flagtower_adapters::postgres::PostgresOptions::from_url(self.url())
            .expect("the test database URL")
            .pool_size(8)
    }

    async fn open(&self) -> flagtower_adapters::postgres::PostgresStore {
        flagtower_adapters::postgres::PostgresStore::open(&self.options())
            .await
            .expect("open the test database")
    }
}

/// A Tower publisher on a private nats-server.
pub async fn nats_publisher(nats: &NatsServer) -> Arc<flagtower_adapters::nats::NatsPublisher> {
    let mut o = flagtower_adapters::nats::NatsOptions::new(nats.url());
    if let Some(t) = &nats.token {
        o = o.token(t);
    }
    Arc::new(flagtower_adapters::nats::NatsPublisher::connect(&o).await.expect("NATS publisher"))
}

/// A store for one test: a temporary SQLite file, or a fresh PostgreSQL database.
pub enum TestStore {
    /// A SQLite file in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A database created for this test (dropped afterwards).
    Postgres(Box<TestDatabase>),
}

impl TestStore {
    /// A temporary SQLite file.
    pub async fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    /// A fresh PostgreSQL database, or `None` (said loudly) when no server is reachable and
    /// `TOWER_REQUIRE_SERVICES` is not set.
    pub async fn postgres() -> Option<Self> {
        TestDatabase::create().await.map(|db| Self::Postgres(Box::new(db)))
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

/// Where the tests' webhooks go: receivers on this machine, which Tower refuses unless told
/// (`TOWER_WEBHOOK_ALLOW=127.0.0.1`).
pub fn local_webhooks() -> flagtower_core::destinations::Destinations {
    flagtower_core::destinations::Destinations::parse("127.0.0.1").expect("a valid list")
}

/// A notifier and server options that let webhooks reach receivers on this machine.
pub fn local_webhook_setup()
-> (flagtower_adapters::webhook::HttpNotifier, flagtower_http::ServerOptions) {
    let notifier = flagtower_adapters::webhook::HttpNotifier::with_destinations(local_webhooks())
        .expect("webhook client");
    let options =
        flagtower_http::ServerOptions { webhook_allow: local_webhooks(), ..Default::default() };
    (notifier, options)
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
        Self::start_built_with(builder, flagtower_http::ServerOptions::default()).await
    }

    /// [`Server::start_built`] with other server options.
    pub async fn start_built_with(
        builder: flagtower_core::TowerBuilder,
        options: flagtower_http::ServerOptions,
    ) -> Server {
        let tower = builder.start().await.expect("start Tower");
        Self::serve_with(tower, "127.0.0.1:0".parse().expect("address"), options).await
    }

    /// Starts a server on `store` with other server options (limits, allowed hosts).
    pub async fn start_with_options(
        store: &TestStore,
        options: flagtower_http::ServerOptions,
    ) -> Server {
        let tower = Tower::builder(store.open().await).start().await.expect("start Tower");
        Self::serve_with(tower, "127.0.0.1:0".parse().expect("address"), options).await
    }

    /// Serves a started Tower on `addr` (a stopped server's address, to restart it).
    pub async fn serve(tower: Tower, addr: SocketAddr) -> Server {
        Self::serve_with(tower, addr, flagtower_http::ServerOptions::default()).await
    }

    /// [`Server::serve`] with other server options.
    pub async fn serve_with(
        tower: Tower,
        addr: SocketAddr,
        options: flagtower_http::ServerOptions,
    ) -> Server {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task =
            tokio::spawn(flagtower_http::run_with(listener, tower.clone(), shutdown, options));
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
    // Log entries carry two fields the original did not have (who made the change and what it
    // changed; documented, and checked by the security tests): the rest is the seed's shape.
    fn without_additions(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| {
                        !(o.contains_key("action_type") && (*k == "actor" || *k == "changes"))
                    })
                    .map(|(k, v)| (k.clone(), without_additions(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(without_additions).collect()),
            other => other.clone(),
        }
    }
    assert_eq!(
        shape(&without_additions(actual)),
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
