//! # flagtower-adapters
//!
//! Implementations of `flagtower-core`'s ports for real backends, one module per backend, each
//! behind a cargo feature:
//!
//! | module | feature | port |
//! |---|---|---|
//! | [`sqlite`] | `sqlite` (default) | `Store` on a SQLite file |
//! | `postgres` | `postgres` | `Store` on PostgreSQL, shared by several Tower processes |
//! | `nats` | `nats` | `Publisher` on NATS JetStream, the stream SDKs read; `follow`, which feeds a `FlagClient` from it |
//! | `openfeature` | `openfeature` | an OpenFeature provider (`open-feature` crate) over a `FlagClient` |
//! | `redis` | `redis` | `MetricsStore` on RedisTimeSeries, the series SDKs write |
//! | `webhook` | `webhook` | `Notifier` over HTTP(S), for the breaker's webhooks |
//! | `events` | `events` | `OutcomeSink` over HTTP(S): a `FlagClient`'s outcomes sent to Tower's events route |
//!
//! [`open_store`] picks the store from a URL (`sqlite://PATH` or `postgres://…`), so a binary can
//! take it from its configuration.
#![warn(missing_docs, unreachable_pub)]

use std::sync::Arc;

use flagtower_core::Store;

#[cfg(feature = "events")]
pub mod events;
#[cfg(any(feature = "webhook", feature = "events"))]
mod http_client;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "openfeature")]
pub mod openfeature;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "webhook")]
pub mod webhook;

/// Why [`open_store`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The URL is not one Tower understands.
    #[error("unsupported store URL scheme `{scheme}` (expected sqlite:// or postgres://)")]
    UnknownScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The URL names a backend this binary was built without.
    #[error(
        "store URL scheme `{scheme}` needs the `{feature}` cargo feature, which this build does not include"
    )]
    NotCompiled {
        /// The scheme given.
        scheme: String,
        /// The feature to enable.
        feature: &'static str,
    },
    /// The URL is malformed.
    #[error("invalid store URL: {0}")]
    Invalid(String),
    /// The SQLite file could not be opened.
    #[cfg(feature = "sqlite")]
    #[error(transparent)]
    Sqlite(#[from] sqlite::OpenError),
    /// PostgreSQL could not be opened.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] postgres::OpenError),
}

/// Opens the store a URL names: `sqlite://PATH` (relative, or absolute as `sqlite:///abs/path`)
/// or `postgres://…` (see [`open_store_with_env`] for the libpq variables).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, OpenStoreError> {
    open_store_with_env(url, |_| None).await
}

/// [`open_store`], with `env` supplying the libpq variables (`PGHOST`, `PGPASSWORD`, …) that a
/// `postgres://` URL leaves out.
pub async fn open_store_with_env(
    url: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Store>, OpenStoreError> {
    #[cfg(not(feature = "postgres"))]
    let _ = &env;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| OpenStoreError::Invalid("expected SCHEME://…".to_owned()))?;
    match scheme {
        "sqlite" => {
            if rest.is_empty() {
                return Err(OpenStoreError::Invalid("sqlite:// needs a file path".to_owned()));
            }
            #[cfg(feature = "sqlite")]
            {
                Ok(Arc::new(sqlite::SqliteStore::open(rest).await?))
            }
            #[cfg(not(feature = "sqlite"))]
            {
                Err(OpenStoreError::NotCompiled { scheme: scheme.to_owned(), feature: "sqlite" })
            }
        }
        "postgres" | "postgresql" => {
            #[cfg(feature = "postgres")]
            {
                let options = postgres::PostgresOptions::from_url_and_env(Some(url), env)?;
                Ok(Arc::new(postgres::PostgresStore::open(&options).await?))
            }
            #[cfg(not(feature = "postgres"))]
            {
                Err(OpenStoreError::NotCompiled { scheme: scheme.to_owned(), feature: "postgres" })
            }
        }
        other => Err(OpenStoreError::UnknownScheme { scheme: other.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_checked() {
        let e = |u: &'static str| async move { open_store(u).await.unwrap_err().to_string() };
        assert!(e("mysql://x").await.contains("unsupported store URL scheme `mysql`"));
        #[cfg(not(feature = "postgres"))]
        assert!(e("postgres://u:secret@h/db").await.contains("`postgres` cargo feature"));
        let unreachable = e("postgres://u:secret@127.0.0.1:1/db?connect_timeout=1").await;
        assert!(!unreachable.contains("secret"), "{unreachable}");
        assert!(e("tower.db").await.contains("invalid store URL"));
        assert!(e("sqlite://").await.contains("needs a file path"));
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("x.db").display());
        open_store(&url).await.unwrap().ping().await.unwrap();
    }
}
