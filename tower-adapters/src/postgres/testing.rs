//! Test support: a fresh, uniquely named database per test on a real PostgreSQL server, dropped
//! afterwards.
//!
//! The server comes from `TOWER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached, [`TestDatabase::create`]
//! says so loudly on stderr and returns `None` so the test can skip, unless
//! `TOWER_REQUIRE_SERVICES=1`, in which case it panics.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PostgresOptions, PostgresStore};

/// The variable naming the test server.
pub const URL_VAR: &str = "TOWER_TEST_POSTGRES_URL";
/// The default test server.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Whether tests must fail rather than skip when a service is missing.
pub fn services_required() -> bool {
    std::env::var("TOWER_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `db`.
pub fn url_with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[after_scheme..].find('/').map_or(base.len(), |i| after_scheme + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database created for one test; dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    admin: PostgresOptions,
    name: String,
    url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TestDatabase {
    /// Creates a fresh database, or `None` when no server is reachable (see the module docs).
    pub async fn create() -> Option<Self> {
        let server = server_url();
        let admin = match PostgresOptions::from_url(&server) {
            Ok(o) => o.pool_size(1),
            Err(e) => panic!("{URL_VAR} is invalid: {e}"),
        };
        let pool = admin.pool().expect("pool");
        let client = match pool.get().await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!(
                    "PostgreSQL is not reachable at {} ({e}); set {URL_VAR} or run ./scripts/test, which starts one",
                    admin.target()
                );
                if services_required() {
                    panic!("TOWER_REQUIRE_SERVICES=1: {msg}");
                }
                eprintln!("\n!!!!! SKIPPED: {msg}\n");
                return None;
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "tower_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos % 1_000_000
        );
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = url_with_database(&server, &name);
        Some(Self { admin, name, url })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options for the database.
    pub fn options(&self) -> PostgresOptions {
        self.admin.clone().with_dbname(&self.name).pool_size(8)
    }

    /// Opens a store on the database (migrating it on first open).
    pub async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.options()).await.expect("open the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async move {
                let pool = admin.pool().map_err(|e| e.to_string())?;
                let client = pool.get().await.map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(url_with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            url_with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(url_with_database("postgres://h", "x"), "postgres://h/x");
    }
}
