//! Tower's benchmarks: criterion benches (`benches/`) and an HTTP load generator
//! (`src/bin/loadgen.rs`). Results and the commands that reproduce them are in
//! `benches/README.md`.

pub mod nats_server;

use flagtower_core::model::{Description, UserList, Webhooks};
use flagtower_core::{AppId, Flag, FlagId, Percent, Timestamp, Title};

/// `n` flags of one app, with realistic titles, descriptions and whitelists.
pub fn sample_flags(n: usize) -> Vec<Flag> {
    (1..=n)
        .map(|i| {
            let mut f = Flag::new(
                AppId::new(1),
                Title::parse(&format!("feature-{i:04}-rollout")).expect("title"),
                Timestamp::from_millis(1_700_000_000_000 + i as i64),
            )
            .with_id(FlagId::new(i as i64));
            f.description = Description::parse("Gradual rollout of the new checkout flow")
                .expect("description");
            f.rollout_percentage = Percent::from_tenths((i * 37 % 1001) as u16).expect("percent");
            f.white_listed_users = UserList::parse("alice,bob,carol").expect("users");
            f.webhooks =
                Webhooks::parse("https://hooks.example.com/services/T0/B0/x").expect("webhooks");
            f
        })
        .collect()
}

/// The store a benchmark runs on, with what keeps it alive.
pub struct BenchStore {
    /// The store.
    pub store: std::sync::Arc<dyn flagtower_core::Store>,
    /// What it is, for the report.
    pub description: String,
    _dir: Option<tempfile::TempDir>,
    _db: Option<flagtower_testkit::TestDatabase>,
}

/// Opens `kind`: `sqlite` (a temporary file) or `postgres` (a fresh database on the server of
/// `TOWER_TEST_POSTGRES_URL`, dropped with the returned value).
pub async fn open_store(kind: &str) -> BenchStore {
    match kind {
        "sqlite" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("bench.db");
            let store =
                flagtower_adapters::sqlite::SqliteStore::open(&path).await.expect("open SQLite");
            BenchStore {
                store: std::sync::Arc::new(store),
                description: format!("SQLite {}", path.display()),
                _dir: Some(dir),
                _db: None,
            }
        }
        "postgres" => {
            let db = flagtower_testkit::TestDatabase::create()
                .await
                .expect("a PostgreSQL server (TOWER_TEST_POSTGRES_URL)");
            let store = flagtower_tests::TestDatabaseExt::open(&db).await;
            BenchStore {
                description: format!("PostgreSQL {}", store.target()),
                store: std::sync::Arc::new(store),
                _dir: None,
                _db: Some(db),
            }
        }
        other => panic!("unknown store {other}: sqlite or postgres"),
    }
}
