//! The PostgreSQL store: the same Tower on a shared production database, for several Tower
//! processes at once.
//!
//! - tokio-postgres with a deadpool connection pool; TLS per libpq's `sslmode` (see [`tls`]).
//! - Configured from a `postgres://` URL, with the libpq variables (`PGHOST`, `PGPORT`,
//!   `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`) filling what the URL
//!   leaves out ([`PostgresOptions::from_url_and_env`]). The connection string is never printed:
//!   `Debug` and errors show host, port, database and user only.
//! - Versioned migrations embedded in the binary, applied at open inside one transaction holding
//!   an advisory lock, so processes starting together apply them once.
//! - Every write locks its app's row first (`SELECT … FOR UPDATE`): writes to one app are
//!   serialized, so its revision grows by exactly one per change, and locks are always taken in
//!   the order app → flag (no deadlocks between Tower's own transactions). Serialization failures
//!   and deadlocks are retried a bounded number of times anyway.
//! - Errors are mapped by SQLSTATE: unique violation → `AlreadyExists`, connection failures and
//!   pool timeouts → `Unavailable`, the rest → `Backend`.

mod batch;
mod lease;
mod queries;
mod tls;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use flagtower_core::{StoreError, Timestamp};
use tokio_postgres::error::SqlState;

/// Migrations, in order; `tower_schema_migrations` records which are applied.
const MIGRATIONS: &[&str] = &[
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
    include_str!("schema_v6.sql"),
];

/// The advisory lock key that serializes migrations ("tower" in ASCII).
const MIGRATION_LOCK: i64 = 0x0074_6f77_6572;

/// How often a transaction that hit a serialization failure or deadlock is tried in all.
const MAX_ATTEMPTS: u32 = 5;

/// Why the PostgreSQL store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL or a libpq variable is malformed.
    #[error("invalid PostgreSQL configuration: {0}")]
    Config(String),
    /// TLS could not be set up.
    #[error("PostgreSQL TLS: {0}")]
    Tls(String),
    /// The pool could not be built.
    #[error("cannot create the PostgreSQL connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// The server could not be reached or refused us.
    #[error("cannot connect to PostgreSQL at {target}")]
    Connect {
        /// host:port/database (user), without the password.
        target: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// A migration failed.
    #[error("PostgreSQL migration to version {version} failed")]
    Migrate {
        /// The version being applied.
        version: usize,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The database was migrated by a newer Tower.
    #[error(
        "PostgreSQL database has schema version {found}, newer than this Tower's {known}; upgrade Tower"
    )]
    TooNew {
        /// Its version.
        found: i64,
        /// Ours.
        known: usize,
    },
}

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresOptions {
    config: tokio_postgres::Config,
    root_cert: Option<PathBuf>,
    pool_size: usize,
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("target", &self.target())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresOptions {
    /// From a `postgres://user:password@host:port/database?sslmode=…` URL alone.
    pub fn from_url(url: &str) -> Result<Self, OpenError> {
        Self::from_url_and_env(Some(url), |_| None)
    }

    /// From a URL (or none), with the libpq variables read through `env` filling in what it
    /// leaves out: `PGHOST` (default `localhost`), `PGPORT` (5432), `PGUSER` (`postgres`),
    /// `PGPASSWORD`, `PGDATABASE` (the user name), `PGSSLMODE` (`prefer`), `PGSSLROOTCERT`.
    pub fn from_url_and_env(
        url: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OpenError> {
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let pg_port = match env("PGPORT") {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| OpenError::Config(format!("PGPORT `{p}` is not a port number")))?,
            ),
            None => None,
        };
        let url = url.map(|u| fill_port(u, pg_port));
        let mut config = match &url {
            // tokio-postgres's own messages never include the password.
            Some(u) => {
                tokio_postgres::Config::from_str(u).map_err(|e| OpenError::Config(e.to_string()))?
            }
            None => tokio_postgres::Config::new(),
        };
        if config.get_hosts().is_empty() {
            let host = env("PGHOST").unwrap_or_else(|| "localhost".to_owned());
            for h in host.split(',') {
                if h.starts_with('/') {
                    config.host_path(h);
                } else {
                    config.host(h);
                }
            }
        }
        if config.get_ports().is_empty() {
            config.port(pg_port.unwrap_or(5432));
        }
        if config.get_user().is_none() {
            config.user(env("PGUSER").unwrap_or_else(|| "postgres".to_owned()));
        }
        if config.get_password().is_none()
            && let Some(pw) = env("PGPASSWORD")
        {
            config.password(pw);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE").or_else(|| config.get_user().map(str::to_owned));
            if let Some(db) = db {
                config.dbname(db);
            }
        }
        if !url.as_deref().is_some_and(|u| u.contains("sslmode="))
            && let Some(mode) = env("PGSSLMODE")
        {
            config.ssl_mode(match mode.as_str() {
                "disable" => tokio_postgres::config::SslMode::Disable,
                "prefer" | "allow" => tokio_postgres::config::SslMode::Prefer,
                "require" => tokio_postgres::config::SslMode::Require,
                other => {
                    return Err(OpenError::Config(format!(
                        "PGSSLMODE `{other}` is not supported (disable, prefer or require)"
                    )));
                }
            });
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("tower");
        }
        Ok(Self { config, root_cert: env("PGSSLROOTCERT").map(PathBuf::from), pool_size: 16 })
    }

    /// The most connections the pool opens (default 16).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// The database name.
    pub fn dbname(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// These options with another database.
    pub fn with_dbname(mut self, db: &str) -> Self {
        self.config.dbname(db);
        self
    }

    /// `host:port/database (user)`: what logs and errors show; never the password.
    pub fn target(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "{host}:{port}/{} (user {})",
            self.config.get_dbname().unwrap_or("?"),
            self.config.get_user().unwrap_or("?")
        )
    }

    pub(crate) fn pool(&self) -> Result<Pool, OpenError> {
        let tls = tls::connector(self.root_cert.as_deref())?;
        let manager = Manager::from_config(
            self.config.clone(),
            tls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(OpenError::Pool)
    }
}

/// `url` with the port `pg_port` when it names a host but no port: tokio-postgres would take
/// 5432 there, libpq takes `PGPORT`. Parsed by the `url` crate; a URL without a host (the
/// libpq form `postgres://user@/db`, which the `url` crate does not take) is left as it is,
/// since tokio-postgres then reads no host and no port, and `PGHOST` and `PGPORT` fill both.
fn fill_port(raw: &str, pg_port: Option<u16>) -> String {
    let Some(port) = pg_port else { return raw.to_owned() };
    match url::Url::parse(raw) {
        Ok(mut url) if url.host_str().is_some_and(|h| !h.is_empty()) && url.port().is_none() => {
            match url.set_port(Some(port)) {
                Ok(()) => url.to_string(),
                Err(()) => raw.to_owned(),
            }
        }
        _ => raw.to_owned(),
    }
}

/// The channel every committed change notifies (`NOTIFY tower_changes`), so that every Tower
/// process on the database reads it at once.
pub(crate) const CHANGES_CHANNEL: &str = "tower_changes";

/// Listens on [`CHANGES_CHANNEL`] with a connection of its own and wakes `wake` at each
/// notification but those whose payload is `own` (this store handle's), until `stop` (Tower
/// shuts down or is dropped), and once each time the `LISTEN` takes effect, since what committed
/// before it was told to no one; a lost connection is opened again (with backoff), and `wake`
/// woken then too.
pub(crate) async fn listen(
    options: PostgresOptions,
    own: std::sync::Arc<str>,
    wake: std::sync::Weak<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        let once = listen_once(&options, &own, &wake);
        let stopped = async {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        };
        let result = tokio::select! {
            r = once => r,
            () = stopped => return,
        };
        match result {
            Ok(()) => return,
            Err(e) => tracing::warn!(
                target_db = %options.target(),
                error = %flagtower_core::ErrorChain(&*e),
                "cannot listen for other processes' changes; the live feed polls meanwhile"
            ),
        }
        match wake.upgrade() {
            Some(w) => w.notify_one(),
            None => return,
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(100);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// One listening connection, until it fails (`Err`) or `wake` is gone (`Ok`).
async fn listen_once(
    options: &PostgresOptions,
    own: &str,
    wake: &std::sync::Weak<tokio::sync::Notify>,
) -> Result<(), flagtower_core::BoxError> {
    use futures_util::StreamExt;
    let tls = tls::connector(options.root_cert.as_deref())?;
    let (client, mut connection) = options.config.connect(tls).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANGES_CHANNEL}");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done?;
                listening = true;
                tracing::debug!(target_db = %options.target(), "listening for other processes' changes");
                // What committed before the LISTEN took effect was told to no one: read once.
                match wake.upgrade() {
                    Some(w) => w.notify_one(),
                    None => return Ok(()),
                }
            }
            message = messages.next() => match message {
                // This handle's own change: the service saw it when it committed.
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) if n.payload() == own => {}
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => match wake.upgrade() {
                    Some(w) => w.notify_one(),
                    None => return Ok(()),
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("the connection closed".into()),
            },
        }
    }
}

/// Tells the other Tower processes on the database that this one committed a change: one
/// `NOTIFY` on [`CHANGES_CHANNEL`] after the commit, on a connection of the pool.
///
/// Not inside the change's own transaction: PostgreSQL takes one database-wide lock in a
/// notifying transaction's pre-commit and holds it to the transaction's end, its fsync included,
/// so with `NOTIFY` in every change all changes of all apps committed one flush at a time
/// (1 200/s in all on a disk that flushes in 0.65 ms, whatever the number of connections). The
/// announcement's own transaction writes nothing durable and does not wait for its flush
/// (`synchronous_commit = off`), and the changes that commit while one is on its way share the
/// next; after one is sent, the next waits [`ANNOUNCE_GAP`], so that a busy process sends at most
/// a few hundred a second (one per change cost an eighth of the changes/s spread over 100 apps).
/// One that is lost (this process stops between a commit and its announcement, or the
/// database cannot be reached) delays the others' reading of that change to their next poll.
/// The least time between two announcements of one store handle: what another process's
/// dashboard may wait beyond the first change of a burst.
pub(crate) const ANNOUNCE_GAP: Duration = Duration::from_millis(5);

#[derive(Clone)]
pub(crate) struct Announcer {
    due: tokio::sync::mpsc::Sender<()>,
}

impl Announcer {
    /// Starts the announcing task; it ends when the last handle is dropped.
    fn start(pool: Pool, instance: &str, target: String) -> Self {
        let (due, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        // The payload is the handle's name, made of digits, hex digits and a dash only, so it
        // can stand in the statement text; one simple query is one round trip.
        debug_assert!(instance.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let batch = format!(
            "BEGIN; SET LOCAL synchronous_commit = off; \
             SELECT pg_notify('{CHANGES_CHANNEL}', '{instance}'); COMMIT"
        );
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                let sent = match pool.get().await {
                    Ok(client) => client.batch_execute(&batch).await.map_err(map_pg),
                    Err(e) => Err(map_pool(e)),
                };
                if let Err(e) = sent {
                    tracing::warn!(
                        target_db = %target,
                        error = %flagtower_core::ErrorChain(&e),
                        "cannot tell other Tower processes about a change; they read it at their next poll"
                    );
                }
                tokio::time::sleep(ANNOUNCE_GAP).await;
            }
        });
        Self { due }
    }

    /// After a commit: an announcement follows (the one already waiting, if there is one).
    pub(crate) fn announce(&self) {
        // Full: one is waiting already, and it is sent after this commit.
        let _ = self.due.try_send(());
    }
}

/// A Tower [`flagtower_core::Store`] on PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    target: String,
    /// For the connection that listens for other processes' changes.
    options: PostgresOptions,
    /// This handle's name in its notifications' payload, so that its listener skips its own
    /// changes (the service has seen those already) and wakes only for others'.
    pub(crate) instance: std::sync::Arc<str>,
    pub(crate) announcer: Announcer,
    /// The lanes in which one app's changes wait to commit together.
    pub(crate) batcher: batch::Batcher,
    /// The publication lease a change alone takes in its own round trip, for this process's
    /// relay.
    pub(crate) early: std::sync::Arc<lease::EarlyLeases>,
    /// Each flag as this handle last wrote it, with the app revision of that write: what a
    /// change alone guesses the flag is, to make itself in one round trip.
    pub(crate) written: std::sync::Arc<queries::Written>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore").field("target", &self.target).finish()
    }
}

impl PostgresStore {
    /// Connects, and brings the schema up to date.
    pub async fn open(options: &PostgresOptions) -> Result<Self, OpenError> {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let instance: std::sync::Arc<str> = format!("{}-{started:x}", std::process::id()).into();
        let pool = options.pool()?;
        let store = Self {
            announcer: Announcer::start(pool.clone(), &instance, options.target()),
            batcher: batch::Batcher::default(),
            early: std::sync::Arc::default(),
            written: std::sync::Arc::default(),
            pool,
            target: options.target(),
            options: options.clone(),
            instance,
        };
        store.migrate().await.map_err(|e| match e {
            MigrateError::Open(e) => e,
            MigrateError::Store(source) => {
                OpenError::Connect { target: store.target.clone(), source }
            }
        })?;
        tracing::info!(target_db = %store.target, "PostgreSQL store ready");
        Ok(store)
    }

    /// host:port/database (user).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn migrate(&self) -> Result<(), MigrateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(map_pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS tower_schema_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(map_pg)?;
        let row = tx
            .query_one("SELECT coalesce(max(version), 0)::bigint FROM tower_schema_migrations", &[])
            .await
            .map_err(map_pg)?;
        let applied: i64 = row.get(0);
        if applied > MIGRATIONS.len() as i64 {
            return Err(MigrateError::Open(OpenError::TooNew {
                found: applied,
                known: MIGRATIONS.len(),
            }));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = i + 1;
            let fail = |e| MigrateError::Open(OpenError::Migrate { version, source: map_pg(e) });
            tx.batch_execute(sql).await.map_err(fail)?;
            tx.execute(
                "INSERT INTO tower_schema_migrations (version) VALUES ($1)",
                &[&(version as i32)],
            )
            .await
            .map_err(fail)?;
            tracing::info!(target_db = %self.target, version, "PostgreSQL schema migrated");
        }
        tx.commit().await.map_err(map_pg)?;
        Ok(())
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(map_pool)
    }
}

enum MigrateError {
    Open(OpenError),
    Store(StoreError),
}

impl From<StoreError> for MigrateError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Whether an error means the server cannot be reached (or is shutting down, or full).
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        let c = code.code();
        return c.starts_with("08") // connection exception
            || c.starts_with("53") // insufficient resources (too many connections, disk full)
            || c.starts_with("57P"); // admin shutdown, crash shutdown, cannot connect now
    }
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    // tokio-postgres reports a connect timeout without a source.
    e.to_string().starts_with("timeout")
}

/// Maps a tokio-postgres error to the store's categories.
pub(crate) fn map_pg(e: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// Maps a pool error: a timeout waiting for a connection is `Unavailable`.
pub(crate) fn map_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => map_pg(e),
        e @ (PoolError::Timeout(_) | PoolError::Closed) => StoreError::Unavailable(Box::new(e)),
        e => StoreError::Backend(Box::new(e)),
    }
}

/// Whether a transaction should be tried again.
pub(crate) fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

pub(crate) fn to_sql_time(t: Timestamp) -> SystemTime {
    let ms = t.as_millis();
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

pub(crate) fn from_sql_time(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        Err(e) => {
            Timestamp::from_millis(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX))
        }
    }
}

#[cfg(test)]
mod tests;
