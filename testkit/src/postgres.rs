//! A fresh, uniquely named database per test on a real PostgreSQL server, dropped afterwards.
//!
//! The server comes from `TOWER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `./scripts/test` starts one when none is
//! there). When it cannot be reached, [`TestDatabase::create`] says so ([`crate::missing`]) and
//! returns `None`. The databases are created and dropped over a plain connection (the test
//! server is local); what the test connects with is its own business: [`TestDatabase::url`].

use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable naming the test server.
pub const URL_VAR: &str = "TOWER_TEST_POSTGRES_URL";
/// The default test server.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var(URL_VAR).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// `url` with its database replaced by `db` (parsed by the `url` crate; a URL it cannot
/// parse is a test setup error).
pub fn url_with_database(url: &str, db: &str) -> String {
    let mut parsed =
        url::Url::parse(url).unwrap_or_else(|e| panic!("{URL_VAR} is not a URL ({e})"));
    parsed.set_path(&format!("/{db}"));
    parsed.to_string()
}

/// A database created for one test; dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs one statement on the test server over a connection of its own.
async fn admin(server: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(server, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let done = client.batch_execute(sql).await;
    drop(client);
    let _ = driver.await;
    done
}

impl TestDatabase {
    /// Creates a fresh database, or `None` when no server is reachable (see the module docs).
    pub async fn create() -> Option<Self> {
        let server = server_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "tower_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            nanos % 1_000_000
        );
        match admin(&server, &format!("CREATE DATABASE {name}")).await {
            Ok(()) => {}
            Err(e) if e.as_db_error().is_none() => {
                // Userinfo is never printed: only where the server was looked for.
                // Where it was looked for, never the userinfo.
                let at = url::Url::parse(&server).map_or("?".to_owned(), |u| {
                    format!("{}:{}", u.host_str().unwrap_or("?"), u.port().unwrap_or(5432))
                });
                crate::missing(&format!(
                    "PostgreSQL is not reachable at {at} ({e}); set {URL_VAR} or run ./scripts/test, which starts one"
                ));
                return None;
            }
            Err(e) => panic!("CREATE DATABASE {name}: {e}"),
        }
        let url = url_with_database(&server, &name);
        Some(Self { server, name, url })
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(admin(&server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
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
