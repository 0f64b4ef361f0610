//! The `Store` implementation on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use flagtower_core::command::{FlagCommand, NewFlag};
use flagtower_core::model::{
    Description, IntervalMs, Percent, RecoveryProfile, UserList, Webhooks,
};
use flagtower_core::plan::FlagWrite;
use flagtower_core::ruleset;
use flagtower_core::{
    Action, App, AppCursor, AppId, Change, Flag, FlagId, LogEntry, LogId, LogQuery, LogRecord,
    Origin, Pending, Resource, Revision, Ruleset, SdkKey, Store, StoreError, Timestamp, Title,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::{MAX_ATTEMPTS, PostgresStore, from_sql_time, is_retryable, map_pg, to_sql_time};

use crate::sql::{
    APP_COLUMNS, CURSORS_SQL, Corrupt, FLAG_COLUMNS, LOG_COLUMNS, LogParam, log_query, parse_state,
    state_name,
};

/// A failure inside a transaction: either already a store error (not found, conflict), or a
/// PostgreSQL error that may deserve a retry.
enum Fail {
    Store(StoreError),
    Pg(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

fn corrupt(msg: String) -> Fail {
    Fail::Store(StoreError::Backend(Box::new(Corrupt(msg))))
}

/// Runs `$body` in a transaction on a pooled connection and commits it; retries the whole
/// transaction on serialization failures and deadlocks, up to `MAX_ATTEMPTS` times.
macro_rules! transact {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut client = $store.client().await?;
            let result: Result<_, Fail> = async {
                let $tx = client.transaction().await?;
                let out = $body;
                $tx.commit().await?;
                Ok(out)
            }
            .await;
            match result {
                Ok(v) => break Ok(v),
                Err(Fail::Pg(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "retrying transaction");
                    continue;
                }
                Err(Fail::Pg(e)) => break Err(map_pg(e)),
                Err(Fail::Store(e)) => break Err(e),
            }
        }
    }};
}

/// Runs `$body` in a read-only, repeatable-read transaction (one consistent snapshot).
macro_rules! snapshot {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut client = $store.client().await?;
        let result: Result<_, Fail> = async {
            let $tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let out = $body;
            $tx.commit().await?;
            Ok(out)
        }
        .await;
        match result {
            Ok(v) => Ok(v),
            Err(Fail::Pg(e)) => Err(map_pg(e)),
            Err(Fail::Store(e)) => Err(e),
        }
    }};
}

fn app_from_row(r: &Row) -> Result<App, Fail> {
    Ok(App {
        id: AppId::new(r.try_get(0)?),
        title: Title::parse(r.try_get(1)?).map_err(|e| corrupt(format!("app title: {e}")))?,
        created_at: from_sql_time(r.try_get(2)?),
        updated_at: from_sql_time(r.try_get(3)?),
    })
}

fn flag_from_row(r: &Row) -> Result<Flag, Fail> {
    let pct = |i: usize| -> Result<Percent, Fail> {
        let v: i16 = r.try_get(i)?;
        u16::try_from(v)
            .ok()
            .and_then(Percent::from_tenths)
            .ok_or_else(|| corrupt(format!("percent {v}")))
    };
    let ms = |i: usize| -> Result<IntervalMs, Fail> {
        let v: i32 = r.try_get(i)?;
        u32::try_from(v)
            .map_err(|_| ())
            .and_then(|v| IntervalMs::new(v).map_err(|_| ()))
            .map_err(|()| corrupt(format!("interval {v}")))
    };
    let text = |i: usize| -> Result<&str, Fail> { Ok(r.try_get(i)?) };
    let bad = |what: &str, e: flagtower_core::model::InvalidValue| corrupt(format!("{what}: {e}"));
    let state = parse_state(text(4)?).map_err(|e| Fail::Store(StoreError::Backend(Box::new(e))))?;
    Ok(Flag {
        id: FlagId::new(r.try_get(0)?),
        app_id: AppId::new(r.try_get(1)?),
        title: Title::parse(text(2)?).map_err(|e| bad("title", e))?,
        description: Description::parse(text(3)?).map_err(|e| bad("description", e))?,
        state,
        rollout_percentage: pct(5)?,
        white_listed_users: UserList::parse(text(6)?).map_err(|e| bad("whitelist", e))?,
        error_threshold_percentage: pct(7)?,
        is_recoverable: r.try_get(8)?,
        circuit_recovery_percentage: pct(9)?,
        circuit_recovery_delay: ms(10)?,
        circuit_initial_recovery_percentage: pct(11)?,
        circuit_recovery_rate: ms(12)?,
        circuit_recovery_increment_percentage: pct(13)?,
        circuit_recovery_profile: RecoveryProfile::parse(text(14)?)
            .map_err(|e| bad("profile", e))?,
        webhooks: Webhooks::parse(text(15)?).map_err(|e| bad("webhooks", e))?,
        created_at: from_sql_time(r.try_get(16)?),
        updated_at: from_sql_time(r.try_get(17)?),
        breaker: flagtower_core::breaker::BreakerClock {
            since: from_sql_time(r.try_get(18)?),
            recovery_due: r.try_get::<_, Option<std::time::SystemTime>>(19)?.map(from_sql_time),
            next_step_due: r.try_get::<_, Option<std::time::SystemTime>>(20)?.map(from_sql_time),
        },
    })
}

fn log_from_row(r: &Row) -> Result<LogEntry, Fail> {
    log_from_row_at(r, 0)
}

/// A log entry from the `LOG_COLUMNS` starting at column `at`.
fn log_from_row_at(r: &Row, at: usize) -> Result<LogEntry, Fail> {
    let action: &str = r.try_get(at + 3)?;
    Ok(LogEntry {
        id: LogId::new(r.try_get(at)?),
        flag_id: FlagId::new(r.try_get(at + 1)?),
        app_id: AppId::new(r.try_get(at + 2)?),
        action: Action::parse(action).ok_or_else(|| corrupt(format!("action {action:?}")))?,
        flag_title: r.try_get(at + 4)?,
        flag_description: r.try_get(at + 5)?,
        created_at: from_sql_time(r.try_get(at + 6)?),
        detail: r.try_get(at + 7)?,
    })
}

fn key_from_row(r: &Row) -> Result<SdkKey, Fail> {
    Ok(SdkKey {
        id: r.try_get(0)?,
        created_at: from_sql_time(r.try_get(1)?),
        updated_at: from_sql_time(r.try_get(2)?),
    })
}

/// A unique violation becomes `AlreadyExists`; anything else stays a PostgreSQL error.
fn taken(what: Resource, title: &Title) -> impl FnOnce(tokio_postgres::Error) -> Fail + '_ {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Fail::Store(StoreError::AlreadyExists { what, title: title.as_str().to_owned() })
        } else {
            Fail::Pg(e)
        }
    }
}

async fn live_app(tx: &Transaction<'_>, id: AppId, lock: bool) -> Result<App, Fail> {
    let sql = if lock {
        "SELECT id, title, created_at, updated_at FROM apps WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    } else {
        "SELECT id, title, created_at, updated_at FROM apps WHERE id = $1 AND deleted_at IS NULL"
    };
    let stmt = tx.prepare_cached(sql).await?;
    match tx.query_opt(&stmt, &[&id.get()]).await? {
        Some(row) => app_from_row(&row),
        None => Err(StoreError::NotFound(Resource::App).into()),
    }
}

async fn flag_by_id(tx: &Transaction<'_>, id: FlagId) -> Result<Flag, Fail> {
    let stmt =
        tx.prepare_cached(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1")).await?;
    match tx.query_opt(&stmt, &[&id.get()]).await? {
        Some(row) => flag_from_row(&row),
        None => Err(StoreError::NotFound(Resource::Flag).into()),
    }
}

/// Locks the flag's app (the order every writer follows: app, then flag) and reads the flag as
/// it is once the lock is held.
async fn lock_flag(tx: &Transaction<'_>, id: FlagId) -> Result<Flag, Fail> {
    let stmt = tx
        .prepare_cached(
            "SELECT 1 FROM apps WHERE id = (SELECT app_id FROM flags WHERE id = $1) FOR UPDATE",
        )
        .await?;
    if tx.query_opt(&stmt, &[&id.get()]).await?.is_none() {
        return Err(StoreError::NotFound(Resource::Flag).into());
    }
    // Read committed: this statement sees every change committed before we got the lock.
    flag_by_id(tx, id).await
}

/// The log entry of `write`, if it has one.
async fn write_entry(tx: &Transaction<'_>, write: &FlagWrite, now: Timestamp) -> Result<(), Fail> {
    let Some(log) = &write.log else { return Ok(()) };
    let flag = &write.flag;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO logs (flag_id, app_id, action_type, flag_title, flag_description, created_at, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &flag.id.get(),
            &flag.app_id.get(),
            &log.action.as_str(),
            &flag.title.as_str(),
            &flag.description.as_str(),
            &to_sql_time(now),
            &log.detail.as_deref(),
        ],
    )
    .await?;
    Ok(())
}

/// Bumps the app's revision and writes the outbox record, in one statement.
async fn bump(
    tx: &Transaction<'_>,
    app: AppId,
    origin: Origin,
    now: Timestamp,
) -> Result<Revision, Fail> {
    let stmt = tx
        .prepare_cached(
            "WITH r AS (UPDATE apps SET revision = revision + 1 WHERE id = $1 RETURNING id, revision)
             INSERT INTO outbox (app_id, revision, origin, created_at)
             SELECT id, revision, $2, $3 FROM r RETURNING revision",
        )
        .await?;
    let row = tx.query_one(&stmt, &[&app.get(), &origin.as_str(), &to_sql_time(now)]).await?;
    Ok(Revision::new(row.try_get::<_, i64>(0)? as u64))
}

/// The 17 columns of a flag after `id`, in `FLAG_COLUMNS` order with `title_key` after `title`
/// (`created_at` last).
fn flag_values(f: &Flag) -> FlagValues<'_> {
    FlagValues {
        app_id: f.app_id.get(),
        title: f.title.as_str(),
        title_key: f.title.key(),
        description: f.description.as_str(),
        state: state_name(f.state),
        rollout: f.rollout_percentage.tenths() as i16,
        users: f.white_listed_users.as_str(),
        threshold: f.error_threshold_percentage.tenths() as i16,
        recoverable: f.is_recoverable,
        recovery: f.circuit_recovery_percentage.tenths() as i16,
        delay: f.circuit_recovery_delay.get() as i32,
        initial: f.circuit_initial_recovery_percentage.tenths() as i16,
        rate: f.circuit_recovery_rate.get() as i32,
        increment: f.circuit_recovery_increment_percentage.tenths() as i16,
        profile: f.circuit_recovery_profile.as_str(),
        webhooks: f.webhooks.as_str(),
        updated_at: to_sql_time(f.updated_at),
        created_at: to_sql_time(f.created_at),
        since: to_sql_time(f.breaker.since),
        recovery_due: f.breaker.recovery_due.map(to_sql_time),
        next_step_due: f.breaker.next_step_due.map(to_sql_time),
    }
}

struct FlagValues<'a> {
    app_id: i64,
    title: &'a str,
    title_key: String,
    description: &'a str,
    state: &'static str,
    rollout: i16,
    users: &'a str,
    threshold: i16,
    recoverable: bool,
    recovery: i16,
    delay: i32,
    initial: i16,
    rate: i32,
    increment: i16,
    profile: &'static str,
    webhooks: &'a str,
    updated_at: std::time::SystemTime,
    created_at: std::time::SystemTime,
    since: std::time::SystemTime,
    recovery_due: Option<std::time::SystemTime>,
    next_step_due: Option<std::time::SystemTime>,
}

impl FlagValues<'_> {
    /// $1..$17, then `last` as $18.
    fn params<'p>(&'p self, last: &'p (dyn ToSql + Sync)) -> [&'p (dyn ToSql + Sync); 21] {
        [
            &self.app_id,
            &self.title,
            &self.title_key,
            &self.description,
            &self.state,
            &self.rollout,
            &self.users,
            &self.threshold,
            &self.recoverable,
            &self.recovery,
            &self.delay,
            &self.initial,
            &self.rate,
            &self.increment,
            &self.profile,
            &self.webhooks,
            &self.updated_at,
            last,
            &self.since,
            &self.recovery_due,
            &self.next_step_due,
        ]
    }
}

/// Where the log columns start in the flag-with-logs query: after the flag's.
const LOGS_AT: usize = 21;

const INSERT_FLAG: &str = "INSERT INTO flags (app_id, title, title_key, description, state,
        rollout_tenths, white_listed_users, error_threshold_tenths, is_recoverable,
        recovery_tenths, recovery_delay_ms, initial_recovery_tenths, recovery_rate_ms,
        recovery_increment_tenths, recovery_profile, webhooks, updated_at, created_at,
        breaker_since, recovery_due_at, next_step_due_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21)
    RETURNING id";

const UPDATE_FLAG: &str = "UPDATE flags SET app_id = $1, title = $2, title_key = $3,
        description = $4, state = $5, rollout_tenths = $6, white_listed_users = $7,
        error_threshold_tenths = $8, is_recoverable = $9, recovery_tenths = $10,
        recovery_delay_ms = $11, initial_recovery_tenths = $12, recovery_rate_ms = $13,
        recovery_increment_tenths = $14, recovery_profile = $15, webhooks = $16, updated_at = $17,
        breaker_since = $19, recovery_due_at = $20, next_step_due_at = $21
    WHERE id = $18";

async fn flags_of(tx: &Transaction<'_>, app: AppId) -> Result<Vec<Flag>, Fail> {
    let stmt = tx
        .prepare_cached(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE app_id = $1 ORDER BY id"))
        .await?;
    tx.query(&stmt, &[&app.get()]).await?.iter().map(flag_from_row).collect()
}

async fn logs_where(
    tx: &Transaction<'_>,
    filter: &str,
    id: Option<i64>,
) -> Result<Vec<LogEntry>, Fail> {
    let stmt = tx.prepare_cached(&format!("SELECT {LOG_COLUMNS} FROM logs {filter}")).await?;
    let rows = match id {
        Some(id) => tx.query(&stmt, &[&id]).await?,
        None => tx.query(&stmt, &[]).await?,
    };
    rows.iter().map(log_from_row).collect()
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(map_pg)?;
        Ok(())
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        snapshot!(self, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE deleted_at IS NULL ORDER BY id"
                ))
                .await?;
            tx.query(&stmt, &[]).await?.iter().map(app_from_row).collect::<Result<Vec<_>, _>>()?
        })
    }

    async fn get_app(&self, id: AppId) -> Result<App, StoreError> {
        snapshot!(self, |tx| { live_app(&tx, id, false).await? })
    }

    async fn create_app(&self, title: &Title, now: Timestamp) -> Result<App, StoreError> {
        transact!(self, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO apps (title, title_key, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
                )
                .await?;
            let row = tx
                .query_one(&stmt, &[&title.as_str(), &title.key(), &to_sql_time(now)])
                .await
                .map_err(taken(Resource::App, title))?;
            App {
                id: AppId::new(row.try_get(0)?),
                title: title.clone(),
                created_at: now,
                updated_at: now,
            }
        })
    }

    async fn rename_app(
        &self,
        id: AppId,
        title: &Title,
        now: Timestamp,
    ) -> Result<App, StoreError> {
        transact!(self, |tx| {
            let app = live_app(&tx, id, true).await?;
            let stmt = tx
                .prepare_cached(
                    "UPDATE apps SET title = $1, title_key = $2, updated_at = $3 WHERE id = $4",
                )
                .await?;
            tx.execute(&stmt, &[&title.as_str(), &title.key(), &to_sql_time(now), &id.get()])
                .await
                .map_err(taken(Resource::App, title))?;
            App { title: title.clone(), updated_at: now, ..app }
        })
    }

    async fn delete_app(&self, id: AppId, now: Timestamp) -> Result<Change<App>, StoreError> {
        transact!(self, |tx| {
            let app = live_app(&tx, id, true).await?;
            // Every flag's `FlagWrite::delete` entry, in one statement.
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (flag_id, app_id, action_type, flag_title, flag_description, created_at)
                     SELECT id, app_id, 'delete', title, description, $2 FROM flags WHERE app_id = $1 ORDER BY id",
                )
                .await?;
            tx.execute(&stmt, &[&id.get(), &to_sql_time(now)]).await?;
            let stmt = tx.prepare_cached("DELETE FROM flags WHERE app_id = $1").await?;
            tx.execute(&stmt, &[&id.get()]).await?;
            let stmt = tx.prepare_cached("UPDATE apps SET deleted_at = $2 WHERE id = $1").await?;
            tx.execute(&stmt, &[&id.get(), &to_sql_time(now)]).await?;
            let revision = bump(&tx, id, Origin::Manual, now).await?;
            Change::written(app, revision, None)
        })
    }

    async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, StoreError> {
        snapshot!(self, |tx| {
            live_app(&tx, app, false).await?;
            flags_of(&tx, app).await?
        })
    }

    async fn get_flag(&self, id: FlagId) -> Result<Flag, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {FLAG_COLUMNS} FROM flags WHERE id = $1"))
            .await
            .map_err(map_pg)?;
        match client.query_opt(&stmt, &[&id.get()]).await.map_err(map_pg)? {
            Some(row) => flag_from_row(&row).map_err(|e| match e {
                Fail::Store(e) => e,
                Fail::Pg(e) => map_pg(e),
            }),
            None => Err(StoreError::NotFound(Resource::Flag)),
        }
    }

    async fn flag_with_logs(&self, id: FlagId) -> Result<(Flag, Vec<LogEntry>), StoreError> {
        // One statement: one snapshot and one round trip for the flag and its logs (the flag's
        // columns repeat on each log row; the log's start at `LOGS_AT`).
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let prefixed = |cols: &str, p: &str| {
                cols.split(", ").map(|c| format!("{p}.{c}")).collect::<Vec<_>>().join(", ")
            };
            format!(
                "SELECT {}, {} FROM flags f LEFT JOIN logs l ON l.flag_id = f.id WHERE f.id = $1 ORDER BY l.id",
                prefixed(FLAG_COLUMNS, "f"),
                prefixed(LOG_COLUMNS, "l")
            )
        });
        let client = self.client().await?;
        let stmt = client.prepare_cached(&SQL).await.map_err(map_pg)?;
        let rows = client.query(&stmt, &[&id.get()]).await.map_err(map_pg)?;
        let unfail = |e| match e {
            Fail::Store(e) => e,
            Fail::Pg(e) => map_pg(e),
        };
        let first = rows.first().ok_or(StoreError::NotFound(Resource::Flag))?;
        let flag = flag_from_row(first).map_err(unfail)?;
        let mut logs = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<_, Option<i64>>(LOGS_AT).map_err(map_pg)?.is_some() {
                logs.push(log_from_row_at(row, LOGS_AT).map_err(unfail)?);
            }
        }
        Ok((flag, logs))
    }

    async fn create_flag_within(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let planned = FlagWrite::create(app, flag, now);
        transact!(self, |tx| {
            live_app(&tx, app, true).await?;
            let mut write = planned.clone();
            let v = flag_values(&write.flag);
            let stmt = tx.prepare_cached(INSERT_FLAG).await?;
            let row = tx
                .query_one(&stmt, &v.params(&v.created_at))
                .await
                .map_err(taken(Resource::Flag, &write.flag.title))?;
            write.flag.id = FlagId::new(row.try_get(0)?);
            if let Some(limit) = max_ruleset_bytes {
                ruleset::check_size(&flags_of(&tx, app).await?, limit)?;
            }
            write_entry(&tx, &write, now).await?;
            let revision = bump(&tx, app, write.origin, now).await?;
            let action = write.action();
            Change::written(write.flag, revision, action)
        })
    }

    async fn change_flag_within(
        &self,
        id: FlagId,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        transact!(self, |tx| {
            let current = lock_flag(&tx, id).await?;
            match FlagWrite::change(&current, command, origin, now) {
                None => Change::unchanged(current),
                Some(write) => {
                    let next = &write.flag;
                    let v = flag_values(next);
                    let raw_id = id.get();
                    let stmt = tx.prepare_cached(UPDATE_FLAG).await?;
                    // Pipelined: the three statements are queued together by the first poll
                    // (tokio's join! polls its branches in order the first time) and answer in
                    // order. All three are awaited and checked in order, so when the update
                    // fails (a taken title), its error is the one reported, not the "transaction
                    // aborted" of the two behind it.
                    let params = v.params(&raw_id);
                    let (updated, logged, bumped) = tokio::join!(
                        tx.execute(&stmt, &params),
                        write_entry(&tx, &write, now),
                        bump(&tx, next.app_id, write.origin, now),
                    );
                    updated.map_err(taken(Resource::Flag, &next.title))?;
                    logged?;
                    let revision = bumped?;
                    // Only a change that lengthens the flag's JSON can push the ruleset over
                    // the limit; one that does not (most toggles, every trip) skips this read.
                    if let Some(limit) = max_ruleset_bytes
                        && ruleset::grows(Some(&current), next)
                    {
                        ruleset::check_size(&flags_of(&tx, next.app_id).await?, limit)?;
                    }
                    let action = write.action();
                    Change::written(write.flag, revision, action)
                }
            }
        })
    }

    async fn delete_flag(&self, id: FlagId, now: Timestamp) -> Result<Change<Flag>, StoreError> {
        transact!(self, |tx| {
            let write = FlagWrite::delete(&lock_flag(&tx, id).await?);
            write_entry(&tx, &write, now).await?;
            let stmt = tx.prepare_cached("DELETE FROM flags WHERE id = $1").await?;
            tx.execute(&stmt, &[&id.get()]).await?;
            let revision = bump(&tx, write.flag.app_id, write.origin, now).await?;
            let action = write.action();
            Change::written(write.flag, revision, action)
        })
    }

    async fn list_logs(&self) -> Result<Vec<LogEntry>, StoreError> {
        snapshot!(self, |tx| { logs_where(&tx, "ORDER BY id DESC", None).await? })
    }

    async fn app_logs(&self, app: AppId) -> Result<Vec<LogEntry>, StoreError> {
        snapshot!(self, |tx| {
            live_app(&tx, app, false).await?;
            logs_where(&tx, "WHERE app_id = $1 ORDER BY id", Some(app.get())).await?
        })
    }

    async fn query_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let (sql, params) = log_query(query, '$');
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| match p {
                LogParam::Int(n) => n as &(dyn ToSql + Sync),
                LogParam::Text(t) => t as &(dyn ToSql + Sync),
            })
            .collect();
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(map_pg)?;
        let rows = client.query(&stmt, &refs).await.map_err(map_pg)?;
        rows.iter()
            .map(|r| {
                let entry = log_from_row(r)?;
                Ok(LogRecord { entry, flag_deleted: r.try_get(8)? })
            })
            .collect::<Result<_, Fail>>()
            .map_err(|e| match e {
                Fail::Store(e) => e,
                Fail::Pg(e) => map_pg(e),
            })
    }

    async fn cursors(&self) -> Result<Vec<AppCursor>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(CURSORS_SQL).await.map_err(map_pg)?;
        let rows = client.query(&stmt, &[]).await.map_err(map_pg)?;
        rows.iter()
            .map(|r| {
                Ok(AppCursor {
                    app: app_from_row(r)?,
                    deleted: r.try_get(4)?,
                    revision: Revision::new(r.try_get::<_, i64>(5)? as u64),
                    last_log: r.try_get::<_, Option<i64>>(6)?.map(LogId::new),
                })
            })
            .collect::<Result<_, Fail>>()
            .map_err(|e| match e {
                Fail::Store(e) => e,
                Fail::Pg(e) => map_pg(e),
            })
    }

    async fn sdk_key(&self) -> Result<Option<SdkKey>, StoreError> {
        snapshot!(self, |tx| {
            match tx.query_opt("SELECT id, created_at, updated_at FROM sdk_key", &[]).await? {
                Some(row) => Some(key_from_row(&row)?),
                None => None,
            }
        })
    }

    async fn ensure_sdk_key(&self, candidate: &SdkKey) -> Result<SdkKey, StoreError> {
        transact!(self, |tx| {
            tx.execute(
                "INSERT INTO sdk_key (singleton, id, created_at, updated_at) VALUES (1, $1, $2, $3)
                 ON CONFLICT (singleton) DO NOTHING",
                &[
                    &candidate.id,
                    &to_sql_time(candidate.created_at),
                    &to_sql_time(candidate.updated_at),
                ],
            )
            .await?;
            key_from_row(
                &tx.query_one("SELECT id, created_at, updated_at FROM sdk_key", &[]).await?,
            )?
        })
    }

    async fn replace_sdk_key(&self, key: &SdkKey) -> Result<SdkKey, StoreError> {
        transact!(self, |tx| {
            tx.execute(
                "INSERT INTO sdk_key (singleton, id, created_at, updated_at) VALUES (1, $1, $2, $3)
                 ON CONFLICT (singleton) DO UPDATE SET id = excluded.id,
                    created_at = excluded.created_at, updated_at = excluded.updated_at",
                &[&key.id, &to_sql_time(key.created_at), &to_sql_time(key.updated_at)],
            )
            .await?;
            key.clone()
        })
    }

    async fn ruleset(&self, app: AppId) -> Result<Ruleset, StoreError> {
        snapshot!(self, |tx| {
            let stmt = tx
                .prepare_cached("SELECT revision, deleted_at IS NOT NULL FROM apps WHERE id = $1")
                .await?;
            let row = match tx.query_opt(&stmt, &[&app.get()]).await? {
                Some(row) => row,
                None => return Err(StoreError::NotFound(Resource::App).into()),
            };
            let revision: i64 = row.try_get(0)?;
            let deleted: bool = row.try_get(1)?;
            let flags = if deleted { Vec::new() } else { flags_of(&tx, app).await? };
            Ruleset { app_id: app, revision: Revision::new(revision as u64), flags }
        })
    }

    async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        snapshot!(self, |tx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT DISTINCT ON (app_id) app_id, revision, origin FROM outbox
                     ORDER BY app_id, revision DESC",
                )
                .await?;
            let mut out = Vec::new();
            for row in tx.query(&stmt, &[]).await? {
                let origin: &str = row.try_get(2)?;
                out.push(Pending {
                    app_id: AppId::new(row.try_get(0)?),
                    revision: Revision::new(row.try_get::<_, i64>(1)? as u64),
                    origin: Origin::parse(origin)
                        .ok_or_else(|| corrupt(format!("origin {origin:?}")))?,
                });
            }
            out
        })
    }

    async fn mark_published(&self, app: AppId, revision: Revision) -> Result<(), StoreError> {
        transact!(self, |tx| {
            let stmt = tx
                .prepare_cached("DELETE FROM outbox WHERE app_id = $1 AND revision <= $2")
                .await?;
            tx.execute(&stmt, &[&app.get(), &(revision.get() as i64)]).await?;
        })
    }

    fn coordination(&self) -> Option<std::sync::Arc<dyn flagtower_core::Coordination>> {
        Some(std::sync::Arc::new(PostgresCoordination { store: self.clone() }))
    }
}

/// The breaker's leadership: a session-level advisory lock on a connection taken out of the
/// pool for good; closing it (drop, or the process dying) frees the lock.
struct PgLeader {
    client: deadpool_postgres::ClientWrapper,
}

#[async_trait]
impl flagtower_core::LeaderLease for PgLeader {
    async fn alive(&mut self) -> bool {
        !self.client.is_closed() && self.client.simple_query("SELECT 1").await.is_ok()
    }
}

/// The leases of the processes sharing one database: advisory locks, held on connections of
/// their own, so they end with the connection (and the process).
#[derive(Debug)]
pub(crate) struct PostgresCoordination {
    store: PostgresStore,
}

impl PostgresCoordination {
    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.store.client().await
    }
}

#[async_trait]
impl flagtower_core::Coordination for PostgresCoordination {
    async fn lease_publication(
        &self,
        app: AppId,
    ) -> Result<Option<Box<dyn flagtower_core::PublicationLease>>, StoreError> {
        // A transaction-scoped advisory lock, held on a connection of its own until the lease is
        // released (COMMIT) or dropped (the connection is closed, which releases it too).
        let client = self.client().await?;
        client.batch_execute("BEGIN").await.map_err(map_pg)?;
        let granted = async {
            let granted: bool = client
                .query_one(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended('tower-publish:' || ($1::bigint)::text, 0))",
                    &[&app.get()],
                )
                .await?
                .try_get(0)?;
            if !granted {
                client.batch_execute("COMMIT").await?;
            }
            Ok::<_, tokio_postgres::Error>(granted)
        }
        .await;
        let granted = match granted {
            Ok(granted) => granted,
            Err(e) => {
                // The connection may still be inside the transaction: close it rather than hand
                // it back to the pool (`RecyclingMethod::Fast` would not notice).
                drop(deadpool_postgres::Object::take(client));
                return Err(map_pg(e));
            }
        };
        if !granted {
            return Ok(None);
        }
        Ok(Some(Box::new(PgLease { client: Some(client) })))
    }

    async fn lease_breaker(
        &self,
    ) -> Result<Option<Box<dyn flagtower_core::LeaderLease>>, StoreError> {
        let client = deadpool_postgres::Object::take(self.client().await?);
        let led: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtextextended('tower-breaker', 0))", &[])
            .await
            .map_err(map_pg)?
            .try_get(0)
            .map_err(map_pg)?;
        Ok(led.then(|| Box::new(PgLeader { client }) as Box<dyn flagtower_core::LeaderLease>))
    }
}

/// A held publication lock (see `lease_publication`).
struct PgLease {
    client: Option<deadpool_postgres::Client>,
}

#[async_trait]
impl flagtower_core::PublicationLease for PgLease {
    async fn release(mut self: Box<Self>) {
        if let Some(client) = self.client.take()
            && let Err(e) = client.batch_execute("COMMIT").await
        {
            tracing::warn!(error = %e, "releasing the publication lock failed; closing its connection");
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        // Not released (the relay was cancelled): never hand a connection that is inside a
        // transaction back to the pool; closing it releases the lock.
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}
