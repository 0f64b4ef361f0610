//! The `Store` implementation on PostgreSQL.

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use flagtower_core::command::{FlagCommand, NewFlag};
use flagtower_core::plan::FlagWrite;
use flagtower_core::ruleset;
use flagtower_core::{
    Actor, App, AppCursor, AppId, Change, ChangeMark, Changed, Flag, FlagId, LogEntry, LogId,
    LogQuery, LogRecord, Origin, Pending, Resource, Revision, Ruleset, SdkKey, Store, StoreError,
    Timestamp, Title,
};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::sql;

use super::batch::FlagChange;
use super::{MAX_ATTEMPTS, PostgresStore, from_sql_time, is_retryable, map_pg, to_sql_time};

use std::collections::HashMap;
use std::sync::LazyLock;

use tokio_postgres::types::Type;

use crate::sql::{
    Columns, Corrupt, FLAG_COLUMNS, LOG_COLUMNS, LogParam, Value, flag_values, insert_flag,
    log_query, read_app, read_flag, read_log, stmt, update_flag,
};

/// A failure inside a transaction: either already a store error (not found, conflict), or a
/// PostgreSQL error that may deserve a retry.
pub(crate) enum Fail {
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

/// Runs `$body` (a future of `Result<_, Fail>`) with `$open` an [`Open`] pooled connection, on
/// which it begins a transaction and pipelines its `COMMIT` with its writes; tries it again on
/// serialization failures and deadlocks, up to `MAX_ATTEMPTS` times in all. The connection goes
/// back to the pool with no transaction open.
macro_rules! pipelined {
    ($store:expr, |$open:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let $open = Open::new($store.client().await?);
            match $body.await {
                Ok(done) => {
                    $open.committed();
                    break Ok(done);
                }
                Err(fail) => {
                    // The transaction may still be open (a failure before the writes, or the
                    // early lease's behind a failed commit): end it, and return the connection
                    // (and give up the early lease) only once it has.
                    let early = $open.take_early();
                    let client = $open.close();
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                    drop(early);
                    match fail {
                        Fail::Pg(e) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                            tracing::debug!(attempt, error = %e, "retrying transaction");
                        }
                        Fail::Pg(e) => break Err(map_pg(e)),
                        Fail::Store(e) => break Err(e),
                    }
                }
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
    read_app(r)
}

impl Columns for Row {
    type Error = Fail;

    fn int(&self, name: &str) -> Result<i64, Fail> {
        opt_int(self, name)?.ok_or_else(|| corrupt(format!("{name} is NULL")))
    }

    fn text(&self, name: &str) -> Result<String, Fail> {
        Ok(self.try_get(name)?)
    }

    fn bool(&self, name: &str) -> Result<bool, Fail> {
        Ok(self.try_get(name)?)
    }

    fn time(&self, name: &str) -> Result<Timestamp, Fail> {
        Ok(from_sql_time(self.try_get(name)?))
    }

    fn opt_time(&self, name: &str) -> Result<Option<Timestamp>, Fail> {
        Ok(self.try_get::<_, Option<std::time::SystemTime>>(name)?.map(from_sql_time))
    }

    fn opt_text(&self, name: &str) -> Result<Option<String>, Fail> {
        Ok(self.try_get(name)?)
    }

    fn corrupt(what: String) -> Fail {
        corrupt(what)
    }
}

/// An integer column that may be NULL, read at its width: each is as narrow as its values allow.
fn opt_int(r: &Row, name: &str) -> Result<Option<i64>, Fail> {
    let ty = r.columns().iter().find(|c| c.name() == name).map(|c| c.type_().clone());
    Ok(match ty {
        Some(Type::INT2) => r.try_get::<_, Option<i16>>(name)?.map(i64::from),
        Some(Type::INT4) => r.try_get::<_, Option<i32>>(name)?.map(i64::from),
        _ => r.try_get::<_, Option<i64>>(name)?,
    })
}

/// Binds a column's value at the width of the parameter PostgreSQL expects.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bool(v) => v.to_sql(ty, out),
            Value::Time(t) => to_sql_time(*t).to_sql(ty, out),
            Value::OptTime(t) => t.map(to_sql_time).to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Each value checks its own type as it converts.
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn flag_from_row(r: &Row) -> Result<Flag, Fail> {
    read_flag(r)
}

fn log_from_row(r: &Row) -> Result<LogEntry, Fail> {
    read_log(r, "")
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
    static LOCKED: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *stmt::LIVE_APP));
    let sql = if lock { LOCKED.as_str() } else { stmt::LIVE_APP.as_str() };
    let stmt = tx.prepare_cached(sql).await?;
    match tx.query_opt(&stmt, &[&id.get()]).await? {
        Some(row) => app_from_row(&row),
        None => Err(StoreError::NotFound(Resource::App).into()),
    }
}

/// Locks the flag's app (the order every writer follows: app, then flag) and reads the flag as
/// it is once the lock is held.
async fn lock_flag(tx: &impl GenericClient, id: FlagId) -> Result<Flag, Fail> {
    let lock = tx
        .prepare_cached(
            "SELECT 1 FROM apps WHERE id = (SELECT app_id FROM flags WHERE id = $1) FOR UPDATE",
        )
        .await?;
    let read = tx.prepare_cached(&stmt::FLAG_BY_ID).await?;
    // One round trip: the read is queued behind the lock, and the server runs it once the lock
    // is held, with a snapshot of its own (read committed), so it sees every change committed
    // before the lock was granted.
    let id = id.get();
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let (locked, row) = tokio::join!(tx.query_opt(&lock, &params), tx.query_opt(&read, &params));
    if locked?.is_none() {
        return Err(StoreError::NotFound(Resource::Flag).into());
    }
    match row? {
        Some(row) => flag_from_row(&row),
        None => Err(StoreError::NotFound(Resource::Flag).into()),
    }
}

/// The log entry of `write`, if it has one.
async fn write_entry(
    tx: &impl GenericClient,
    write: &FlagWrite,
    now: Timestamp,
) -> Result<(), Fail> {
    let Some(log) = &write.log else { return Ok(()) };
    let flag = &write.flag;
    let stmt = tx.prepare_cached(stmt::INSERT_LOG).await?;
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
            &log.actor.as_str(),
            &sql::changes_text(log.changes.as_ref()),
        ],
    )
    .await?;
    Ok(())
}

/// Bumps the app's revision and writes the outbox record, in one statement.
async fn bump(
    tx: &impl GenericClient,
    app: AppId,
    origin: Origin,
    now: Timestamp,
) -> Result<Revision, Fail> {
    bump_by(tx, app, 1, origin, now).await
}

/// The revision bump and outbox record of [`bump_by`].
const BUMP: &str =
    "WITH r AS (UPDATE apps SET revision = revision + $2 WHERE id = $1 RETURNING id, revision)
     INSERT INTO outbox (app_id, revision, origin, created_at)
     SELECT id, revision, $3, $4 FROM r
     RETURNING revision";

/// [`bump`] for `changes` changes at once: the revision grows by that many, and the outbox
/// records the last (the relay publishes an app's newest revision only).
async fn bump_by(
    tx: &impl GenericClient,
    app: AppId,
    changes: i64,
    origin: Origin,
    now: Timestamp,
) -> Result<Revision, Fail> {
    let stmt = tx.prepare_cached(BUMP).await?;
    let row =
        tx.query_one(&stmt, &[&app.get(), &changes, &origin.as_str(), &to_sql_time(now)]).await?;
    Ok(Revision::new(row.try_get::<_, i64>(0)? as u64))
}

/// [`BUMP`] for several apps at once: each app's revision grows by its number of changes
/// (`$2`), and its outbox records the newest, with the origin and time of its last change;
/// returns each app's newest revision.
const BUMP_APPS: &str = "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], \
     $4::timestamptz[]) AS u(app, n, origin, at)), \
     r AS (UPDATE apps a SET revision = a.revision + u.n FROM u WHERE a.id = u.app \
     RETURNING a.id, a.revision) \
     INSERT INTO outbox (app_id, revision, origin, created_at) \
     SELECT r.id, r.revision, u.origin, u.at FROM r JOIN u ON u.app = r.id \
     RETURNING app_id, revision";

/// The update of several flags in one statement: `$1` their ids, then one array per column of
/// [`sql::FLAG_FIELDS`], in its order.
static UPDATE_FLAGS: LazyLock<String> = LazyLock::new(|| {
    let names: Vec<&str> = sql::FLAG_FIELDS.iter().map(|(c, _)| *c).collect();
    let sets: Vec<String> = names.iter().map(|c| format!("{c} = u.{c}")).collect();
    let arrays: Vec<String> = sql::FLAG_FIELDS
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}[]", i + 2, pg_type(*kind)))
        .collect();
    format!(
        "UPDATE flags f SET {} FROM unnest($1::bigint[], {}) AS u(id, {}) WHERE f.id = u.id",
        sets.join(", "),
        arrays.join(", "),
        names.join(", ")
    )
});

/// The PostgreSQL type of a column of `kind`, as the schema declares it.
fn pg_type(kind: sql::Kind) -> &'static str {
    match kind {
        sql::Kind::Id => "bigint",
        sql::Kind::Tenths => "smallint",
        sql::Kind::Millis => "integer",
        sql::Kind::Text => "text",
        sql::Kind::Bool => "boolean",
        sql::Kind::Time | sql::Kind::OptTime => "timestamptz",
    }
}

/// A pooled connection on which a transaction may be open: when it is dropped unclosed (the
/// request went away mid-change), a task rolls the transaction back before the connection goes
/// back to the pool.
/// The most flags [`Written`] remembers; past it, it starts over.
const MAX_WRITTEN: usize = 10_000;

/// Each flag as this handle last wrote it, with the app's revision after that write.
#[derive(Default)]
pub(crate) struct Written(std::sync::Mutex<HashMap<FlagId, (Flag, Revision)>>);

impl Written {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<FlagId, (Flag, Revision)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn guess(&self, id: FlagId) -> Option<(Flag, Revision)> {
        self.map().get(&id).cloned()
    }

    /// Remembers what a change wrote, or forgets the flag when it failed.
    fn remember(&self, id: FlagId, result: &Result<Change<Flag>, StoreError>) {
        let mut map = self.map();
        match result {
            Ok(Change { value, revision: Some(revision), .. }) => {
                if map.len() >= MAX_WRITTEN && !map.contains_key(&id) {
                    map.clear();
                }
                map.insert(id, (value.clone(), *revision));
            }
            Ok(_) => {}
            Err(_) => {
                map.remove(&id);
            }
        }
    }
}

/// A change's revision and outbox record when its app is still at the revision `$4` (the one
/// its flag, `$5`, was guessed at) and the flag is still there; no row otherwise. Its app
/// ($1), origin ($2) and time ($3).
const GUESSED_BUMP: &str = "WITH r AS (UPDATE apps SET revision = revision + 1 \
     WHERE id = $1 AND revision = $4 AND EXISTS (SELECT 1 FROM flags WHERE id = $5 AND app_id = $1) \
     RETURNING id, revision) \
     INSERT INTO outbox (app_id, revision, origin, created_at) \
     SELECT id, revision, $2, $3 FROM r RETURNING revision";

/// True in the transaction that bumped app `$n` (its trigger stamps the row with it).
fn bumped_here(n: usize) -> String {
    format!("EXISTS (SELECT 1 FROM apps WHERE id = ${n} AND changed = pg_current_xact_id())")
}

/// [`UPDATE_FLAG`], made only in the transaction that bumped its app (the parameter after it).
static GUESSED_UPDATE: LazyLock<String> = LazyLock::new(|| {
    format!("{} AND {}", update_flag('$'), bumped_here(crate::sql::FLAG_FIELDS.len() + 2))
});

/// [`stmt::INSERT_LOG`], made only in the transaction that bumped its app (`$2`).
static GUESSED_LOG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO logs (flag_id, app_id, action_type, flag_title, flag_description, \
         created_at, detail, actor, changes) SELECT $1::bigint, $2::bigint, $3::text, $4::text, \
         $5::text, $6::timestamptz, $7::text, $8::text, $9::text WHERE {}",
        bumped_here(2)
    )
});

struct Open {
    client: Option<deadpool_postgres::Client>,
    /// An early publication lease the transaction's round trip takes (see `super::lease`),
    /// with what its statements gave once they have run: on commit its connection is kept for
    /// it rather than going back to the pool; otherwise it is given up only once the
    /// connection's transaction has ended, so that the relay waiting for it is not refused by
    /// its lock.
    early: std::sync::Mutex<Option<(super::lease::Reservation, Option<super::lease::Early>)>>,
}

impl Open {
    fn new(client: deadpool_postgres::Client) -> Self {
        Self { client: Some(client), early: std::sync::Mutex::new(None) }
    }

    fn early(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<(super::lease::Reservation, Option<super::lease::Early>)>>
    {
        self.early.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes `app`'s publication lease early in this transaction's round trip, when this
    /// process's relay can use one: its statements, prepared before anything is sent, for
    /// [`Open::send_early`].
    async fn reserve_early(
        &self,
        store: &PostgresStore,
        app: AppId,
    ) -> Result<Option<(AppId, super::lease::EarlyStatements)>, tokio_postgres::Error> {
        let statements = super::lease::Reservation::prepare(self.client()).await?;
        let Some(reservation) = store.early.reserve(app) else { return Ok(None) };
        *self.early() = Some((reservation, None));
        Ok(Some((app, statements)))
    }

    /// Sends the early lease's statements (queued behind the transaction's `COMMIT` when
    /// polled after it), and keeps what they gave.
    async fn send_early(&self, early: Option<&(AppId, super::lease::EarlyStatements)>) {
        let Some((app, statements)) = early else { return };
        let leased = super::lease::Reservation::send(self.client(), *app, statements).await;
        if let Some((_, early)) = self.early().as_mut() {
            *early = Some(leased);
        }
    }

    /// The early lease's reservation, taken out (to be dropped once its transaction ended).
    fn take_early(&self) -> Option<(super::lease::Reservation, Option<super::lease::Early>)> {
        self.early().take()
    }

    /// The transaction committed: the connection goes back to the pool, or to the early lease
    /// its round trip took.
    fn committed(self) {
        let early = self.take_early();
        let client = self.close();
        match early {
            Some((reservation, Some(early))) => reservation.keep(client, early),
            _ => drop(client),
        }
    }

    fn client(&self) -> &deadpool_postgres::Client {
        self.client.as_ref().expect("open until closed")
    }

    /// The connection, its transaction ended (or to be ended by the caller).
    fn close(mut self) -> deadpool_postgres::Client {
        self.client.take().expect("open until closed")
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let early = self.take_early();
        if let Some(client) = self.client.take() {
            tokio::spawn(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(deadpool_postgres::Object::take(client));
                }
                drop(early);
            });
        }
    }
}

/// The ruleset of `app` from its rows of [`super::lease::RULESETS`].
pub(super) fn ruleset_from(rows: Vec<Row>, app: AppId) -> Result<Ruleset, StoreError> {
    let read = || -> Result<Ruleset, Fail> {
        let Some(first) = rows.first() else {
            return Err(StoreError::NotFound(Resource::App).into());
        };
        let revision = Revision::new(first.try_get::<_, i64>("app_revision")? as u64);
        let mut flags = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<_, Option<i64>>("id")?.is_some() {
                flags.push(flag_from_row(row)?);
            }
        }
        Ok(Ruleset { app_id: app, revision, flags })
    };
    read().map_err(|e| match e {
        Fail::Store(e) => e,
        Fail::Pg(e) => map_pg(e),
    })
}

/// Log entries as the columns of one `INSERT … SELECT FROM unnest(…)`.
#[derive(Default)]
struct LogColumns {
    flag: Vec<i64>,
    app: Vec<i64>,
    action: Vec<&'static str>,
    title: Vec<String>,
    description: Vec<String>,
    at: Vec<std::time::SystemTime>,
    detail: Vec<Option<String>>,
    actor: Vec<String>,
    changes: Vec<Option<String>>,
}

impl LogColumns {
    fn push(&mut self, flag: &Flag, log: &flagtower_core::plan::LogWrite, now: Timestamp) {
        self.flag.push(flag.id.get());
        self.app.push(flag.app_id.get());
        self.action.push(log.action.as_str());
        self.title.push(flag.title.as_str().to_owned());
        self.description.push(flag.description.as_str().to_owned());
        self.at.push(to_sql_time(now));
        self.detail.push(log.detail.clone());
        self.actor.push(log.actor.as_str().to_owned());
        self.changes.push(sql::changes_text(log.changes.as_ref()));
    }
}

impl PostgresStore {
    /// [`Store::change_flag_within`] in a transaction of its own, in two round trips: `BEGIN`,
    /// the lock and the read in the first; the writes and `COMMIT` in the second. When a
    /// statement of the second fails, PostgreSQL ends the aborted transaction at that `COMMIT`
    /// by rolling it back; a change that changes nothing rolls back at once (its lock is all it
    /// took), and one that lengthens the flag's JSON under a size limit reads the app's flags
    /// with its writes and commits or rolls back after checking them.
    pub(crate) async fn change_flag_alone(
        &self,
        change: &FlagChange,
    ) -> Result<Change<Flag>, StoreError> {
        let result = pipelined!(self, |open| self.change_flag_once(&open, change));
        self.written.remember(change.id, &result);
        self.announced(result)
    }

    /// A change alone in one round trip, when this handle wrote the flag last: made from the
    /// flag as it was written, every write guarded by the app's revision then. `None` when the
    /// guess was wrong (the app changed since; nothing was written) or cannot be checked that
    /// way: a change of nothing (which writes nothing to check), or one that lengthens the flag
    /// under a size limit.
    async fn change_guessed(
        &self,
        open: &Open,
        change: &FlagChange,
    ) -> Result<Option<Change<Flag>>, Fail> {
        let FlagChange { id, ref command, origin, now, ref by, max_ruleset_bytes } = *change;
        let Some((guess, revision)) = self.written.guess(id) else { return Ok(None) };
        let Some(write) = FlagWrite::change(&guess, command, origin, now, by) else {
            return Ok(None);
        };
        let next = &write.flag;
        if max_ruleset_bytes.is_some() && ruleset::grows(Some(&guess), next) {
            return Ok(None);
        }
        let client = open.client();
        let bump = client.prepare_cached(GUESSED_BUMP).await?;
        let update = client.prepare_cached(&GUESSED_UPDATE).await?;
        let log = client.prepare_cached(&GUESSED_LOG).await?;
        let early = open.reserve_early(self, next.app_id).await?;
        let app = next.app_id.get();
        let expected = revision.get() as i64;
        let at = to_sql_time(now);
        let mut v = flag_params(next, Some(id.get()));
        v.push(Value::Int(app));
        let params = as_params(&v);
        let origin_text = write.origin.as_str();
        let flag_id = id.get();
        let bump_params: [&(dyn ToSql + Sync); 5] = [&app, &origin_text, &at, &expected, &flag_id];
        // The app first, as every write locks it: app, then flag.
        let (begun, bumped, updated, logged, committed, ()) = tokio::join!(
            client.batch_execute("BEGIN"),
            client.query_opt(&bump, &bump_params),
            client.execute(&update, &params),
            async {
                let Some(entry) = &write.log else { return Ok(0) };
                client
                    .execute(
                        &log,
                        &[
                            &id.get(),
                            &app,
                            &entry.action.as_str(),
                            &next.title.as_str(),
                            &next.description.as_str(),
                            &at,
                            &entry.detail.as_deref(),
                            &entry.actor.as_str(),
                            &sql::changes_text(entry.changes.as_ref()),
                        ],
                    )
                    .await
            },
            client.batch_execute("COMMIT"),
            open.send_early(early.as_ref()),
        );
        begun?;
        let bumped = bumped?;
        updated.map_err(taken(Resource::Flag, &next.title))?;
        logged?;
        committed?;
        let Some(row) = bumped else {
            // The app changed since: nothing was written. The early lease's transaction (if
            // any) ends, and only then is it given up, before the change is made the usual way
            // on this connection.
            if early.is_some() {
                client.batch_execute("ROLLBACK").await?;
                drop(open.take_early());
            }
            return Ok(None);
        };
        let revision = Revision::new(row.try_get::<_, i64>(0)? as u64);
        let action = write.action();
        Ok(Some(Change::written(write.flag, revision, action)))
    }

    async fn change_flag_once(
        &self,
        open: &Open,
        change: &FlagChange,
    ) -> Result<Change<Flag>, Fail> {
        let FlagChange { id, ref command, origin, now, ref by, max_ruleset_bytes } = *change;
        if let Some(done) = self.change_guessed(open, change).await? {
            return Ok(done);
        }
        let client = open.client();
        // Prepared (or found in the connection's cache) before anything is sent: the writes'
        // helpers prepare theirs before sending, and a statement still being prepared when the
        // pipelined `COMMIT` went out would run after it, outside the transaction.
        let update = client.prepare_cached(&UPDATE_FLAG).await?;
        client.prepare_cached(stmt::INSERT_LOG).await?;
        client.prepare_cached(BUMP).await?;
        let (begun, current) = tokio::join!(client.batch_execute("BEGIN"), lock_flag(client, id));
        begun?;
        let current = current?;
        let Some(write) = FlagWrite::change(&current, command, origin, now, by) else {
            client.batch_execute("ROLLBACK").await?;
            return Ok(Change::unchanged(current));
        };
        let next = &write.flag;
        let v = flag_params(next, Some(id.get()));
        let params = as_params(&v);
        // Only a change that lengthens the flag's JSON can push the ruleset over the limit;
        // one that does not (most toggles, every trip) commits with its writes.
        let limit = max_ruleset_bytes.filter(|_| ruleset::grows(Some(&current), next));
        // Committing with its writes, it may take its app's publication lease behind its
        // `COMMIT`, for this process's relay.
        let early = match limit {
            None => open.reserve_early(self, next.app_id).await?,
            Some(_) => None,
        };
        // Pipelined, and checked in order, so that when the update fails (a taken title) its
        // error is the one reported, not the "transaction aborted" of the statements behind it.
        let (updated, logged, bumped, then, ()) = tokio::join!(
            client.execute(&update, &params),
            write_entry(client, &write, now),
            bump(client, next.app_id, write.origin, now),
            async {
                match limit {
                    None => client.batch_execute("COMMIT").await.map(|()| None).map_err(Fail::from),
                    Some(_) => flags_of(client, next.app_id).await.map(Some),
                }
            },
            open.send_early(early.as_ref()),
        );
        updated.map_err(taken(Resource::Flag, &next.title))?;
        logged?;
        let revision = bumped?;
        if let (Some(limit), Some(flags)) = (limit, then?) {
            ruleset::check_size(&flags, limit)?;
            client.batch_execute("COMMIT").await?;
        }
        let action = write.action();
        Ok(Change::written(write.flag, revision, action))
    }

    /// The changes of `jobs` in one transaction ([`super::batch`]), of one app or of several:
    /// each one's result as if they had been made one after the other, in their order. `Err`
    /// when the transaction failed (nothing was written).
    ///
    /// Two round trips, however many changes and apps: `BEGIN`, the locks and the read in the
    /// first; in the second, every flag's update, every log entry and every app's revision and
    /// outbox record, each one statement over arrays, and the `COMMIT`. (A change that lengthens
    /// its flag under a size limit reads its app's flags in between.) So a transaction of many
    /// changes costs the database about what one change alone does.
    pub(crate) async fn change_flags(
        &self,
        jobs: &[FlagChange],
    ) -> Result<Vec<Result<Change<Flag>, StoreError>>, StoreError> {
        let results = pipelined!(self, |open| self.change_flags_once(&open, jobs))?;
        // Each flag with its app's newest revision of the batch: the flags of a batch are
        // written in one transaction, so none changed after its own last change in it.
        let mut newest: HashMap<AppId, Revision> = HashMap::new();
        for change in results.iter().flatten() {
            if let Some(revision) = change.revision {
                let n = newest.entry(change.value.app_id).or_insert(revision);
                *n = (*n).max(revision);
            }
        }
        for (job, result) in jobs.iter().zip(&results) {
            match result {
                Ok(change) if change.revision.is_some() => {
                    let revision = newest.get(&change.value.app_id).copied().or(change.revision);
                    self.written.remember(job.id, &Ok(Change { revision, ..change.clone() }));
                }
                other => self.written.remember(job.id, other),
            }
        }
        if results.iter().any(|r| matches!(r, Ok(change) if change.revision.is_some())) {
            self.announcer.announce();
        }
        Ok(results)
    }

    async fn change_flags_once(
        &self,
        open: &Open,
        jobs: &[FlagChange],
    ) -> Result<Vec<Result<Change<Flag>, StoreError>>, Fail> {
        static READ: LazyLock<String> = LazyLock::new(|| {
            format!("SELECT {} FROM flags WHERE id = ANY($1)", FLAG_COLUMNS.as_str())
        });
        // The apps of the flags, locked in the order of their ids (every batch takes them in
        // that order, and a lone change takes one: no deadlock). A flag's app never changes,
        // so the apps can be found before they are locked.
        const LOCK: &str = "SELECT id FROM apps WHERE id IN (SELECT app_id FROM flags WHERE id = ANY($1)) \
             ORDER BY id FOR UPDATE";
        const LOGS: &str = "INSERT INTO logs (flag_id, app_id, action_type, flag_title, \
            flag_description, created_at, detail, actor, changes) \
            SELECT f, ap, a, t, d, c, de, ac, ch FROM unnest($1::bigint[], $2::bigint[], \
            $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[], \
            $9::text[]) WITH ORDINALITY AS u(f, ap, a, t, d, c, de, ac, ch, n) ORDER BY n";
        let client = open.client();
        // Prepared (or found in the connection's cache) before anything is sent, as in
        // `change_flag_once`: a statement prepared after the pipelined `COMMIT` went out would
        // run outside the transaction.
        let lock = client.prepare_cached(LOCK).await?;
        let read = client.prepare_cached(&READ).await?;
        let update = client.prepare_cached(&UPDATE_FLAGS).await?;
        let logs = client.prepare_cached(LOGS).await?;
        let bump = client.prepare_cached(BUMP_APPS).await?;
        let ids: Vec<i64> = jobs.iter().map(|j| j.id.get()).collect();
        let params: [&(dyn ToSql + Sync); 1] = [&ids];
        // One round trip: the read is queued behind the locks, and runs once they are held,
        // with a snapshot of its own, as in `lock_flag`.
        let (begun, locked, rows) = tokio::join!(
            client.batch_execute("BEGIN"),
            client.query(&lock, &params),
            client.query(&read, &params)
        );
        begun?;
        let locked: Vec<i64> = locked?.iter().map(|r| r.get(0)).collect();
        let mut flags = HashMap::new();
        for row in rows? {
            let flag = flag_from_row(&row)?;
            if !locked.contains(&flag.app_id.get()) {
                return Err(corrupt(format!("flag {} was not locked with its app", flag.id)));
            }
            flags.insert(flag.id, flag);
        }
        // An app's flags, read when a size check needs them, kept as the writes leave them.
        let mut all: HashMap<AppId, Vec<Flag>> = HashMap::new();
        let mut results: Vec<Result<Change<Flag>, StoreError>> = Vec::with_capacity(jobs.len());
        let mut writes: Vec<(usize, FlagWrite)> = Vec::new();
        for job in jobs {
            let Some(current) = flags.get(&job.id) else {
                results.push(Err(StoreError::NotFound(Resource::Flag)));
                continue;
            };
            let Some(write) =
                FlagWrite::change(current, &job.command, job.origin, job.now, &job.by)
            else {
                results.push(Ok(Change::unchanged(current.clone())));
                continue;
            };
            let app = current.app_id;
            if let Some(limit) = job.max_ruleset_bytes
                && ruleset::grows(Some(current), &write.flag)
            {
                let mut after = match all.get(&app) {
                    Some(known) => known.clone(),
                    None => {
                        let mut read = flags_of(client, app).await?;
                        for f in &mut read {
                            if let Some(now) = flags.get(&f.id) {
                                f.clone_from(now);
                            }
                        }
                        read
                    }
                };
                after.iter_mut().filter(|f| f.id == job.id).for_each(|f| f.clone_from(&write.flag));
                if let Err(e) = ruleset::check_size(&after, limit) {
                    results.push(Err(e));
                    continue;
                }
                all.insert(app, after);
            } else if let Some(all) = all.get_mut(&app) {
                all.iter_mut().filter(|f| f.id == job.id).for_each(|f| f.clone_from(&write.flag));
            }
            flags.insert(job.id, write.flag.clone());
            results.push(Ok(Change::unchanged(write.flag.clone())));
            writes.push((results.len() - 1, write));
        }
        if writes.is_empty() {
            client.batch_execute("ROLLBACK").await?;
            return Ok(results);
        }
        // Each flag is written once, as the last of its changes leaves it; every change has its
        // log entry (but a recovery step's), in order; each app's revision grows by its number
        // of changes, and its outbox records the last.
        let mut written: Vec<FlagId> = writes.iter().map(|(_, w)| w.flag.id).collect();
        written.sort_unstable();
        written.dedup();
        let mut columns: Vec<Vec<Value>> =
            vec![Vec::with_capacity(written.len()); sql::FLAG_FIELDS.len()];
        for id in &written {
            for (column, value) in columns.iter_mut().zip(flag_values(&flags[id])) {
                column.push(value);
            }
        }
        let written: Vec<i64> = written.iter().map(|id| id.get()).collect();
        // Per app: its number of changes, and the origin and time of its last.
        let mut apps: Vec<(AppId, i64, Origin, Timestamp)> = Vec::new();
        let mut log = LogColumns::default();
        for (i, w) in &writes {
            let now = jobs[*i].now;
            match apps.iter_mut().find(|a| a.0 == w.flag.app_id) {
                Some(a) => *a = (a.0, a.1 + 1, w.origin, now),
                None => apps.push((w.flag.app_id, 1, w.origin, now)),
            }
            if let Some(entry) = &w.log {
                log.push(&w.flag, entry, now);
            }
        }
        let bumps = (
            apps.iter().map(|a| a.0.get()).collect::<Vec<_>>(),
            apps.iter().map(|a| a.1).collect::<Vec<_>>(),
            apps.iter().map(|a| a.2.as_str()).collect::<Vec<_>>(),
            apps.iter().map(|a| to_sql_time(a.3)).collect::<Vec<_>>(),
        );
        let bump_params: [&(dyn ToSql + Sync); 4] = [&bumps.0, &bumps.1, &bumps.2, &bumps.3];
        let mut update_params: Vec<&(dyn ToSql + Sync)> = vec![&written];
        update_params.extend(columns.iter().map(|c| c as &(dyn ToSql + Sync)));
        // Pipelined, and checked in order: when a statement fails, the `COMMIT` behind it ends
        // the aborted transaction by rolling it back, and the statement's error is reported.
        let (updated, logged, bumped, committed) = tokio::join!(
            client.execute(&update, &update_params),
            async {
                if log.flag.is_empty() {
                    return Ok(0);
                }
                let columns: [&(dyn ToSql + Sync); 9] = [
                    &log.flag,
                    &log.app,
                    &log.action,
                    &log.title,
                    &log.description,
                    &log.at,
                    &log.detail,
                    &log.actor,
                    &log.changes,
                ];
                client.execute(&logs, &columns).await
            },
            client.query(&bump, &bump_params),
            client.batch_execute("COMMIT"),
        );
        updated?;
        logged?;
        let bumped = bumped?;
        committed?;
        // Each app's revisions, handed out to its changes in order.
        let mut next = HashMap::new();
        for row in bumped {
            let (app, last): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            let n = apps.iter().find(|a| a.0.get() == app).map_or(0, |a| a.1);
            next.insert(AppId::new(app), (last + 1 - n) as u64);
        }
        for (i, write) in writes {
            let Some(revision) = next.get_mut(&write.flag.app_id) else {
                return Err(corrupt(format!("app {} was not bumped", write.flag.app_id)));
            };
            let action = write.action();
            results[i] = Ok(Change::written(write.flag, Revision::new(*revision), action));
            *revision += 1;
        }
        Ok(results)
    }

    /// `result`, announced to the other Tower processes ([`super::Announcer`]) when it wrote
    /// something.
    fn announced<T>(&self, result: Result<Change<T>, StoreError>) -> Result<Change<T>, StoreError> {
        if matches!(&result, Ok(change) if change.revision.is_some()) {
            self.announcer.announce();
        }
        result
    }
}

/// The 17 columns of a flag after `id`, in `FLAG_COLUMNS` order with `title_key` after `title`
/// (`created_at` last).
/// A flag's columns ([`flag_values`]) and `extra` after them, as statement parameters.
fn flag_params(f: &Flag, extra: Option<i64>) -> Vec<Value> {
    let mut values = flag_values(f);
    values.extend(extra.map(Value::Int));
    values
}

fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

static INSERT_FLAG: LazyLock<String> = LazyLock::new(|| insert_flag('$'));
static UPDATE_FLAG: LazyLock<String> = LazyLock::new(|| update_flag('$'));

async fn flags_of(tx: &impl GenericClient, app: AppId) -> Result<Vec<Flag>, Fail> {
    let stmt = tx.prepare_cached(&stmt::FLAGS_OF_APP).await?;
    tx.query(&stmt, &[&app.get()]).await?.iter().map(flag_from_row).collect()
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
            let stmt = tx.prepare_cached(&stmt::LIVE_APPS).await?;
            tx.query(&stmt, &[]).await?.iter().map(app_from_row).collect::<Result<Vec<_>, _>>()?
        })
    }

    async fn get_app(&self, id: AppId) -> Result<App, StoreError> {
        snapshot!(self, |tx| { live_app(&tx, id, false).await? })
    }

    async fn apps_with_flags(&self) -> Result<Vec<(App, Vec<Flag>)>, StoreError> {
        snapshot!(self, |tx| {
            let apps = tx.prepare_cached(&stmt::LIVE_APPS).await?;
            let flags = tx.prepare_cached(&stmt::FLAGS_OF_LIVE_APPS).await?;
            let (apps, flags) = tokio::join!(tx.query(&apps, &[]), tx.query(&flags, &[]));
            let apps = apps?.iter().map(app_from_row).collect::<Result<Vec<_>, _>>()?;
            let flags = flags?.iter().map(flag_from_row).collect::<Result<Vec<_>, _>>()?;
            sql::apps_with_flags(apps, flags)
        })
    }

    fn notify_changes(
        &self,
        wake: std::sync::Weak<tokio::sync::Notify>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        tokio::spawn(super::listen(self.options.clone(), self.instance.clone(), wake, stop));
        true
    }

    async fn app_summaries(
        &self,
    ) -> Result<Vec<(App, flagtower_core::model::FlagCounts)>, StoreError> {
        snapshot!(self, |tx| {
            let stmt = tx.prepare_cached(stmt::APP_SUMMARIES).await?;
            tx.query(&stmt, &[])
                .await?
                .iter()
                .map(sql::read_app_summary)
                .collect::<Result<Vec<_>, _>>()?
        })
    }

    async fn create_app(&self, title: &Title, now: Timestamp) -> Result<App, StoreError> {
        let app = transact!(self, |tx| {
            let stmt = tx.prepare_cached(stmt::INSERT_APP).await?;
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
        })?;
        self.announcer.announce();
        Ok(app)
    }

    async fn rename_app(
        &self,
        id: AppId,
        title: &Title,
        now: Timestamp,
    ) -> Result<App, StoreError> {
        let app = transact!(self, |tx| {
            let app = live_app(&tx, id, true).await?;
            let stmt = tx.prepare_cached(stmt::RENAME_APP).await?;
            tx.execute(&stmt, &[&title.as_str(), &title.key(), &to_sql_time(now), &id.get()])
                .await
                .map_err(taken(Resource::App, title))?;
            App { title: title.clone(), updated_at: now, ..app }
        })?;
        self.announcer.announce();
        Ok(app)
    }

    async fn delete_app(
        &self,
        id: AppId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<App>, StoreError> {
        self.announced(transact!(self, |tx| {
            let app = live_app(&tx, id, true).await?;
            // Every flag's `FlagWrite::delete` entry, in one statement.
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO logs (flag_id, app_id, action_type, flag_title, flag_description, created_at, actor)
                     SELECT id, app_id, 'delete', title, description, $2, $3 FROM flags WHERE app_id = $1 ORDER BY id",
                )
                .await?;
            tx.execute(&stmt, &[&id.get(), &to_sql_time(now), &by.as_str()]).await?;
            let stmt = tx.prepare_cached(stmt::DELETE_APP_FLAGS).await?;
            tx.execute(&stmt, &[&id.get()]).await?;
            let stmt = tx.prepare_cached(stmt::SOFT_DELETE_APP).await?;
            tx.execute(&stmt, &[&id.get(), &to_sql_time(now)]).await?;
            let revision = bump(&tx, id, Origin::Manual, now).await?;
            Change::written(app, revision, None)
        }))
    }

    async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, StoreError> {
        snapshot!(self, |tx| {
            live_app(&tx, app, false).await?;
            flags_of(&tx, app).await?
        })
    }

    async fn get_flag(&self, id: FlagId) -> Result<Flag, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&stmt::FLAG_BY_ID).await.map_err(map_pg)?;
        match client.query_opt(&stmt, &[&id.get()]).await.map_err(map_pg)? {
            Some(row) => flag_from_row(&row).map_err(|e| match e {
                Fail::Store(e) => e,
                Fail::Pg(e) => map_pg(e),
            }),
            None => Err(StoreError::NotFound(Resource::Flag)),
        }
    }

    async fn flag_with_logs(
        &self,
        id: FlagId,
        limit: u32,
    ) -> Result<(Flag, Vec<LogEntry>), StoreError> {
        // One statement: one snapshot and one round trip for the flag and its newest logs (the
        // flag's columns repeat on each log row; the log's are named `log_…`).
        static SQL: LazyLock<String> = LazyLock::new(|| {
            let flag = FLAG_COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>();
            let log =
                LOG_COLUMNS.split(", ").map(|c| format!("l.{c} AS log_{c}")).collect::<Vec<_>>();
            format!(
                "SELECT {}, {} FROM flags f LEFT JOIN LATERAL (SELECT * FROM logs WHERE flag_id = f.id ORDER BY id DESC LIMIT $2) l ON true WHERE f.id = $1 ORDER BY l.id",
                flag.join(", "),
                log.join(", ")
            )
        });
        let client = self.client().await?;
        let stmt = client.prepare_cached(&SQL).await.map_err(map_pg)?;
        let rows = client.query(&stmt, &[&id.get(), &i64::from(limit)]).await.map_err(map_pg)?;
        let unfail = |e| match e {
            Fail::Store(e) => e,
            Fail::Pg(e) => map_pg(e),
        };
        let first = rows.first().ok_or(StoreError::NotFound(Resource::Flag))?;
        let flag = flag_from_row(first).map_err(unfail)?;
        let mut logs = Vec::with_capacity(rows.len());
        for row in &rows {
            if opt_int(row, "log_id").map_err(unfail)?.is_some() {
                logs.push(read_log(row, "log_").map_err(unfail)?);
            }
        }
        Ok((flag, logs))
    }

    async fn create_flag_within(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let planned = FlagWrite::create(app, flag, now, by);
        self.announced(transact!(self, |tx| {
            live_app(&tx, app, true).await?;
            let mut write = planned.clone();
            let v = flag_params(&write.flag, None);
            let stmt = tx.prepare_cached(&INSERT_FLAG).await?;
            let row = tx
                .query_one(&stmt, &as_params(&v))
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
        }))
    }

    async fn change_flag_within(
        &self,
        id: FlagId,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let change = FlagChange {
            id,
            command: command.clone(),
            origin,
            now,
            by: by.clone(),
            max_ruleset_bytes,
        };
        let alone = match self.batcher.change(self, change).await {
            Ok(done) => return done,
            Err(alone) => alone,
        };
        let change = self.change_flag_alone(&alone).await;
        if let Ok(change) = &change {
            self.batcher.learn(id, change.value.app_id);
        }
        change
    }

    async fn delete_flag(
        &self,
        id: FlagId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        self.announced(transact!(self, |tx| {
            let write = FlagWrite::delete(&lock_flag(&tx, id).await?, by);
            write_entry(&tx, &write, now).await?;
            let stmt = tx.prepare_cached(stmt::DELETE_FLAG).await?;
            tx.execute(&stmt, &[&id.get()]).await?;
            let revision = bump(&tx, write.flag.app_id, write.origin, now).await?;
            let action = write.action();
            Change::written(write.flag, revision, action)
        }))
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
                Ok(LogRecord { entry, flag_deleted: r.bool("flag_deleted")? })
            })
            .collect::<Result<_, Fail>>()
            .map_err(|e| match e {
                Fail::Store(e) => e,
                Fail::Pg(e) => map_pg(e),
            })
    }

    async fn changed_since(&self, since: Option<ChangeMark>) -> Result<Changed, StoreError> {
        // Log ids and transaction ids are taken in one order and committed in another, so no
        // counter marks "what committed after": the mark is instead the oldest transaction
        // still running (in the cluster) when this statement's snapshot was taken. Every
        // transaction that commits later has an id at least that large, and migration 5's
        // trigger stamps each app row with the id of the transaction that last changed it, so
        // `changed >= mark` misses nothing; it repeats the apps changed by transactions that
        // were still running or finished since, which the feed recognises as seen.
        const SQL: &str = concat!(
            "WITH m AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) SELECT m.xmin::text AS mark, ",
            sql::cursor_columns!(),
            " FROM m LEFT JOIN apps a ON a.changed >= $1::text::xid8 ORDER BY a.id"
        );
        let since = since.map_or_else(|| "0".to_owned(), |m| m.get().to_string());
        let client = self.client().await?;
        let stmt = client.prepare_cached(SQL).await.map_err(map_pg)?;
        let rows = client.query(&stmt, &[&since]).await.map_err(map_pg)?;
        let read = || -> Result<Changed, Fail> {
            let mut mark = ChangeMark::default();
            let mut apps = Vec::with_capacity(rows.len());
            for r in &rows {
                let xmin: String = r.try_get("mark")?;
                mark = ChangeMark::new(
                    xmin.parse().map_err(|_| corrupt(format!("snapshot xmin {xmin:?}")))?,
                );
                // The `LEFT JOIN`'s one row of no app when none changed.
                if r.try_get::<_, Option<i64>>("id")?.is_none() {
                    continue;
                }
                apps.push(AppCursor {
                    app: app_from_row(r)?,
                    deleted: r.bool("deleted")?,
                    revision: Revision::new(r.int("revision")? as u64),
                    last_log: opt_int(r, "last_log")?.map(LogId::new),
                });
            }
            Ok(Changed { apps, mark })
        };
        read().map_err(|e| match e {
            Fail::Store(e) => e,
            Fail::Pg(e) => map_pg(e),
        })
    }

    async fn sdk_key(&self) -> Result<Option<SdkKey>, StoreError> {
        snapshot!(self, |tx| {
            match tx.query_opt(stmt::SDK_KEY, &[]).await? {
                Some(row) => Some(key_from_row(&row)?),
                None => None,
            }
        })
    }

    async fn ensure_sdk_key(&self, candidate: &SdkKey) -> Result<SdkKey, StoreError> {
        transact!(self, |tx| {
            tx.execute(
                stmt::ENSURE_SDK_KEY,
                &[
                    &candidate.id,
                    &to_sql_time(candidate.created_at),
                    &to_sql_time(candidate.updated_at),
                ],
            )
            .await?;
            key_from_row(&tx.query_one(stmt::SDK_KEY, &[]).await?)?
        })
    }

    async fn replace_sdk_key(&self, key: &SdkKey) -> Result<SdkKey, StoreError> {
        transact!(self, |tx| {
            tx.execute(
                stmt::REPLACE_SDK_KEY,
                &[&key.id, &to_sql_time(key.created_at), &to_sql_time(key.updated_at)],
            )
            .await?;
            key.clone()
        })
    }

    async fn ruleset(&self, app: AppId) -> Result<Ruleset, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&super::lease::RULESETS).await.map_err(map_pg)?;
        ruleset_from(client.query(&stmt, &[&vec![app.get()]]).await.map_err(map_pg)?, app)
    }

    async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        // One statement is one snapshot: no transaction around it.
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT DISTINCT ON (app_id) app_id, revision, origin FROM outbox
                 ORDER BY app_id, revision DESC",
            )
            .await
            .map_err(map_pg)?;
        let rows = client.query(&stmt, &[]).await.map_err(map_pg)?;
        let read = || -> Result<Vec<Pending>, Fail> {
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let origin: &str = row.try_get(2)?;
                out.push(Pending {
                    app_id: AppId::new(row.try_get(0)?),
                    revision: Revision::new(row.try_get::<_, i64>(1)? as u64),
                    origin: Origin::parse(origin)
                        .ok_or_else(|| corrupt(format!("origin {origin:?}")))?,
                });
            }
            Ok(out)
        };
        read().map_err(|e| match e {
            Fail::Store(e) => e,
            Fail::Pg(e) => map_pg(e),
        })
    }

    async fn mark_published(&self, app: AppId, revision: Revision) -> Result<(), StoreError> {
        // One round trip, and no wait for the commit's fsync: a mark lost in a crash only makes
        // the relay publish that revision again, which JetStream de-duplicates by message id.
        // (Integers only in the text: the simple protocol takes no parameters.)
        let sql = format!(
            "BEGIN; SET LOCAL synchronous_commit TO off; \
             DELETE FROM outbox WHERE app_id = {} AND revision <= {}; COMMIT",
            app.get(),
            revision.get() as i64,
        );
        let client = self.client().await?;
        client.batch_execute(&sql).await.map_err(map_pg)
    }

    fn coordination(&self) -> Option<std::sync::Arc<dyn flagtower_core::Coordination>> {
        Some(std::sync::Arc::new(super::lease::PostgresCoordination::new(self.clone())))
    }
}
