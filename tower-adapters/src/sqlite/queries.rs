//! The `Store` implementation: one function per operation, each in one transaction.

use async_trait::async_trait;
use flagtower_core::command::{FlagCommand, NewFlag};
use flagtower_core::plan::{FlagWrite, LogWrite};
use flagtower_core::ruleset;
use flagtower_core::{
    Actor, App, AppCursor, AppId, Change, ChangeMark, Changed, Flag, FlagId, LogEntry, LogId,
    LogQuery, LogRecord, Origin, Pending, Resource, Revision, Ruleset, SdkKey, Store, StoreError,
    Timestamp, Title,
};
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::{SqliteStore, corrupt, is_unique_violation, map_err};

use crate::sql::{
    self, Columns, LOG_COLUMNS, LogParam, Value, flag_values, insert_flag, log_query, read_app,
    read_flag, read_log, stmt, update_flag,
};
use std::sync::LazyLock;

fn conversion(idx: usize, e: impl Into<flagtower_core::BoxError>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
}

fn app_from_row(r: &Row<'_>) -> rusqlite::Result<App> {
    read_app(r)
}

/// A shared statement (`sql::stmt`) with SQLite's placeholders, rendered once per call site.
macro_rules! sqlite {
    ($sql:expr) => {{
        static SQL: LazyLock<String> = LazyLock::new(|| crate::sql::for_sqlite(&$sql));
        SQL.as_str()
    }};
}

impl Columns for Row<'_> {
    type Error = rusqlite::Error;

    fn int(&self, name: &str) -> rusqlite::Result<i64> {
        self.get(name)
    }

    fn text(&self, name: &str) -> rusqlite::Result<String> {
        self.get(name)
    }

    fn bool(&self, name: &str) -> rusqlite::Result<bool> {
        self.get(name)
    }

    fn time(&self, name: &str) -> rusqlite::Result<Timestamp> {
        self.get(name).map(Timestamp::from_millis)
    }

    fn opt_time(&self, name: &str) -> rusqlite::Result<Option<Timestamp>> {
        Ok(self.get::<_, Option<i64>>(name)?.map(Timestamp::from_millis))
    }

    fn opt_text(&self, name: &str) -> rusqlite::Result<Option<String>> {
        self.get(name)
    }

    fn corrupt(what: String) -> rusqlite::Error {
        conversion(0, corrupt(what))
    }
}

/// SQLite stores every kind as INTEGER or TEXT: times as milliseconds since the epoch.
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Sql};
        Ok(ToSqlOutput::Owned(match self {
            Value::Int(v) => Sql::Integer(*v),
            Value::Text(v) => Sql::Text(v.clone()),
            Value::Bool(v) => Sql::Integer(i64::from(*v)),
            Value::Time(t) => Sql::Integer(t.as_millis()),
            Value::OptTime(t) => t.map_or(Sql::Null, |t| Sql::Integer(t.as_millis())),
        }))
    }
}

fn flag_from_row(r: &Row<'_>) -> rusqlite::Result<Flag> {
    read_flag(r)
}

fn log_from_row(r: &Row<'_>) -> rusqlite::Result<LogEntry> {
    read_log(r, "")
}

fn live_app(tx: &Transaction<'_>, id: AppId) -> Result<App, StoreError> {
    tx.prepare_cached(sqlite!(stmt::LIVE_APP))
        .and_then(|mut s| s.query_row([id.get()], app_from_row).optional())
        .map_err(map_err)?
        .ok_or(StoreError::NotFound(Resource::App))
}

fn flag_by_id(tx: &Transaction<'_>, id: FlagId) -> Result<Flag, StoreError> {
    tx.prepare_cached(sqlite!(stmt::FLAG_BY_ID))
        .and_then(|mut s| s.query_row([id.get()], flag_from_row).optional())
        .map_err(map_err)?
        .ok_or(StoreError::NotFound(Resource::Flag))
}

/// Writes what `write` says beside the flag row (which the caller wrote or deleted): its log
/// entry, the revision bump and the outbox record.
fn execute(
    tx: &Transaction<'_>,
    write: FlagWrite,
    now: Timestamp,
) -> Result<Change<Flag>, StoreError> {
    write_entry(tx, &write, now)?;
    let revision = bump(tx, write.flag.app_id, write.origin, now)?;
    let action = write.action();
    Ok(Change::written(write.flag, revision, action))
}

/// The log entry of `write`, if it has one.
fn write_entry(tx: &Transaction<'_>, write: &FlagWrite, now: Timestamp) -> Result<(), StoreError> {
    match &write.log {
        Some(log) => write_log(tx, &write.flag, log, now),
        None => Ok(()),
    }
}

fn write_log(
    tx: &Transaction<'_>,
    flag: &Flag,
    log: &LogWrite,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.prepare_cached(sqlite!(stmt::INSERT_LOG))
        .and_then(|mut s| {
            s.execute(params![
                flag.id.get(),
                flag.app_id.get(),
                log.action.as_str(),
                flag.title.as_str(),
                flag.description.as_str(),
                now.as_millis(),
                log.detail.as_deref(),
                log.actor.as_str(),
                sql::changes_text(log.changes.as_ref()),
            ])
        })
        .map_err(map_err)?;
    Ok(())
}

/// An app's flags by id, in the caller's transaction.
fn app_flags(tx: &Transaction<'_>, app: AppId) -> Result<Vec<Flag>, StoreError> {
    tx.prepare_cached(sqlite!(stmt::FLAGS_OF_APP))
        .and_then(|mut s| s.query_map([app.get()], flag_from_row)?.collect())
        .map_err(map_err)
}

/// Bumps the app's revision and writes the outbox record, in the caller's transaction.
fn bump(
    tx: &Transaction<'_>,
    app: AppId,
    origin: Origin,
    now: Timestamp,
) -> Result<Revision, StoreError> {
    let rev: i64 = tx
        .prepare_cached("UPDATE apps SET revision = revision + 1 WHERE id = ?1 RETURNING revision")
        .and_then(|mut s| s.query_row([app.get()], |r| r.get(0)))
        .map_err(map_err)?;
    tx.prepare_cached(
        "INSERT INTO outbox (app_id, revision, origin, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![app.get(), rev, origin.as_str(), now.as_millis()]))
    .map_err(map_err)?;
    Ok(Revision::new(rev as u64))
}

/// Runs `sql` with the flag's columns ([`flag_values`]) as ?1…?n and `extra` after them,
/// returning the first column of its first row if it has one.
fn exec_flag(
    tx: &Transaction<'_>,
    sql: &str,
    f: &Flag,
    extra: Option<i64>,
) -> rusqlite::Result<Option<i64>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut values = flag_values(f);
    values.extend(extra.map(Value::Int));
    let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
    rows.next()?.map(|r| r.get(0)).transpose()
}

static INSERT_FLAG: LazyLock<String> = LazyLock::new(|| insert_flag('?'));
static UPDATE_FLAG: LazyLock<String> = LazyLock::new(|| update_flag('?'));

fn taken(e: rusqlite::Error, what: Resource, title: &Title) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::AlreadyExists { what, title: title.as_str().to_owned() }
    } else {
        map_err(e)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|tx| tx.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err)).await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.read(|tx| {
            tx.prepare_cached(sqlite!(stmt::LIVE_APPS))
                .and_then(|mut s| s.query_map([], app_from_row)?.collect())
                .map_err(map_err)
        })
        .await
    }

    async fn get_app(&self, id: AppId) -> Result<App, StoreError> {
        self.read(move |tx| live_app(tx, id)).await
    }

    async fn apps_with_flags(&self) -> Result<Vec<(App, Vec<Flag>)>, StoreError> {
        self.read(|tx| {
            let apps = tx
                .prepare_cached(sqlite!(stmt::LIVE_APPS))
                .and_then(|mut s| s.query_map([], app_from_row)?.collect())
                .map_err(map_err)?;
            let flags = tx
                .prepare_cached(sqlite!(stmt::FLAGS_OF_LIVE_APPS))
                .and_then(|mut s| s.query_map([], flag_from_row)?.collect())
                .map_err(map_err)?;
            Ok(crate::sql::apps_with_flags(apps, flags))
        })
        .await
    }

    async fn app_summaries(
        &self,
    ) -> Result<Vec<(App, flagtower_core::model::FlagCounts)>, StoreError> {
        self.read(|tx| {
            tx.prepare_cached(sqlite!(stmt::APP_SUMMARIES))
                .and_then(|mut s| s.query_map([], |r| sql::read_app_summary(r))?.collect())
                .map_err(map_err)
        })
        .await
    }

    async fn create_app(&self, title: &Title, now: Timestamp) -> Result<App, StoreError> {
        let title = title.clone();
        self.write(move |tx| {
            let id = tx
                .prepare_cached(sqlite!(stmt::INSERT_APP))
                .and_then(|mut s| {
                    s.query_row(params![title.as_str(), title.key(), now.as_millis()], |r| r.get(0))
                })
                .map_err(|e| taken(e, Resource::App, &title))?;
            Ok(App { id: AppId::new(id), title, created_at: now, updated_at: now })
        })
        .await
    }

    async fn rename_app(
        &self,
        id: AppId,
        title: &Title,
        now: Timestamp,
    ) -> Result<App, StoreError> {
        let title = title.clone();
        self.write(move |tx| {
            let app = live_app(tx, id)?;
            tx.prepare_cached(sqlite!(stmt::RENAME_APP))
                .and_then(|mut s| {
                    s.execute(params![title.as_str(), title.key(), now.as_millis(), id.get()])
                })
                .map_err(|e| taken(e, Resource::App, &title))?;
            Ok(App { title, updated_at: now, ..app })
        })
        .await
    }

    async fn delete_app(
        &self,
        id: AppId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<App>, StoreError> {
        let by = by.clone();
        self.write(move |tx| {
            let app = live_app(tx, id)?;
            let flags: Vec<Flag> = tx
                .prepare_cached(sqlite!(stmt::FLAGS_OF_APP))
                .and_then(|mut s| s.query_map([id.get()], flag_from_row)?.collect())
                .map_err(map_err)?;
            for flag in &flags {
                write_entry(tx, &FlagWrite::delete(flag, &by), now)?;
            }
            tx.execute(sqlite!(stmt::DELETE_APP_FLAGS), [id.get()]).map_err(map_err)?;
            tx.execute(sqlite!(stmt::SOFT_DELETE_APP), params![id.get(), now.as_millis()])
                .map_err(map_err)?;
            let revision = bump(tx, id, Origin::Manual, now)?;
            Ok(Change::written(app, revision, None))
        })
        .await
    }

    async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, StoreError> {
        self.read(move |tx| {
            live_app(tx, app)?;
            tx.prepare_cached(sqlite!(stmt::FLAGS_OF_APP))
                .and_then(|mut s| s.query_map([app.get()], flag_from_row)?.collect())
                .map_err(map_err)
        })
        .await
    }

    async fn get_flag(&self, id: FlagId) -> Result<Flag, StoreError> {
        self.read(move |tx| flag_by_id(tx, id)).await
    }

    async fn flag_with_logs(
        &self,
        id: FlagId,
        limit: u32,
    ) -> Result<(Flag, Vec<LogEntry>), StoreError> {
        self.read(move |tx| {
            let flag = flag_by_id(tx, id)?;
            let mut logs: Vec<LogEntry> = tx
                .prepare_cached(&format!(
                    "SELECT {LOG_COLUMNS} FROM logs WHERE flag_id = ?1 ORDER BY id DESC LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![id.get(), i64::from(limit)], log_from_row)?.collect()
                })
                .map_err(map_err)?;
            logs.reverse();
            Ok((flag, logs))
        })
        .await
    }

    async fn create_flag_within(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let mut write = FlagWrite::create(app, flag, now, by);
        self.write(move |tx| {
            live_app(tx, app)?;
            let f = &write.flag;
            let id = exec_flag(tx, &INSERT_FLAG, f, None)
                .map_err(|e| taken(e, Resource::Flag, &f.title))?
                .ok_or_else(|| StoreError::Backend(corrupt("INSERT returned no id")))?;
            write.flag.id = FlagId::new(id);
            if let Some(limit) = max_ruleset_bytes {
                ruleset::check_size(&app_flags(tx, app)?, limit)?;
            }
            execute(tx, write, now)
        })
        .await
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
        let command = command.clone();
        let by = by.clone();
        self.write(move |tx| {
            let current = flag_by_id(tx, id)?;
            let Some(write) = FlagWrite::change(&current, &command, origin, now, &by) else {
                return Ok(Change::unchanged(current));
            };
            let next = &write.flag;
            exec_flag(tx, &UPDATE_FLAG, next, Some(id.get()))
                .map_err(|e| taken(e, Resource::Flag, &next.title))?;
            if let Some(limit) = max_ruleset_bytes
                && ruleset::grows(Some(&current), next)
            {
                ruleset::check_size(&app_flags(tx, next.app_id)?, limit)?;
            }
            execute(tx, write, now)
        })
        .await
    }

    async fn delete_flag(
        &self,
        id: FlagId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        let by = by.clone();
        self.write(move |tx| {
            let write = FlagWrite::delete(&flag_by_id(tx, id)?, &by);
            tx.execute(sqlite!(stmt::DELETE_FLAG), [id.get()]).map_err(map_err)?;
            execute(tx, write, now)
        })
        .await
    }

    async fn query_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let (sql, params) = log_query(query, '?');
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
            let params = params.iter().map(|p| match p {
                LogParam::Int(n) => rusqlite::types::Value::Integer(*n),
                LogParam::Text(t) => rusqlite::types::Value::Text((*t).to_owned()),
            });
            stmt.query_map(rusqlite::params_from_iter(params), |r| {
                Ok(LogRecord { entry: log_from_row(r)?, flag_deleted: r.get("flag_deleted")? })
            })
            .and_then(Iterator::collect)
            .map_err(map_err)
        })
        .await
    }

    async fn changed_since(&self, since: Option<ChangeMark>) -> Result<Changed, StoreError> {
        // One writer commits at a time, so `changed` (a counter the triggers of migration 5
        // bump) grows in commit order and `> mark` misses nothing.
        let after = since.map_or(-1, |m| m.get() as i64);
        self.read(move |tx| {
            let mark: i64 = tx
                .prepare_cached("SELECT coalesce(max(changed), 0) FROM apps")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(map_err)?;
            let mut stmt = tx
                .prepare_cached(concat!(
                    "SELECT ",
                    sql::cursor_columns!(),
                    " FROM apps a WHERE a.changed > ?1 ORDER BY a.id"
                ))
                .map_err(map_err)?;
            let apps = stmt
                .query_map([after], |r| {
                    Ok(AppCursor {
                        app: app_from_row(r)?,
                        deleted: r.get("deleted")?,
                        revision: Revision::new(r.get::<_, i64>("revision")? as u64),
                        last_log: r.get::<_, Option<i64>>("last_log")?.map(LogId::new),
                    })
                })
                .and_then(Iterator::collect)
                .map_err(map_err)?;
            Ok(Changed { apps, mark: ChangeMark::new(mark as u64) })
        })
        .await
    }

    async fn sdk_key(&self) -> Result<Option<SdkKey>, StoreError> {
        self.read(|tx| {
            tx.query_row(stmt::SDK_KEY, [], |r| {
                Ok(SdkKey {
                    id: r.get(0)?,
                    created_at: Timestamp::from_millis(r.get(1)?),
                    updated_at: Timestamp::from_millis(r.get(2)?),
                })
            })
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn ensure_sdk_key(&self, candidate: &SdkKey) -> Result<SdkKey, StoreError> {
        let c = candidate.clone();
        self.write(move |tx| {
            tx.execute(
                sqlite!(stmt::ENSURE_SDK_KEY),
                params![c.id, c.created_at.as_millis(), c.updated_at.as_millis()],
            )
            .map_err(map_err)?;
            tx.query_row(stmt::SDK_KEY, [], |r| {
                Ok(SdkKey {
                    id: r.get(0)?,
                    created_at: Timestamp::from_millis(r.get(1)?),
                    updated_at: Timestamp::from_millis(r.get(2)?),
                })
            })
            .map_err(map_err)
        })
        .await
    }

    async fn replace_sdk_key(&self, key: &SdkKey) -> Result<SdkKey, StoreError> {
        let k = key.clone();
        self.write(move |tx| {
            tx.execute(
                sqlite!(stmt::REPLACE_SDK_KEY),
                params![k.id, k.created_at.as_millis(), k.updated_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(k)
        })
        .await
    }

    async fn ruleset(&self, app: AppId) -> Result<Ruleset, StoreError> {
        self.read(move |tx| {
            let (revision, deleted): (i64, bool) = tx
                .prepare_cached(sqlite!(stmt::APP_REVISION))
                .and_then(|mut s| {
                    s.query_row([app.get()], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                })
                .map_err(map_err)?
                .ok_or(StoreError::NotFound(Resource::App))?;
            let flags = if deleted { Vec::new() } else { app_flags(tx, app)? };
            Ok(Ruleset { app_id: app, revision: Revision::new(revision as u64), flags })
        })
        .await
    }

    async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.read(|tx| {
            tx.prepare_cached(
                "SELECT app_id, revision, origin FROM outbox
                 WHERE (app_id, revision) IN (SELECT app_id, max(revision) FROM outbox GROUP BY app_id)
                 ORDER BY app_id",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    let origin: String = r.get(2)?;
                    Ok(Pending {
                        app_id: AppId::new(r.get(0)?),
                        revision: Revision::new(r.get::<_, i64>(1)? as u64),
                        origin: Origin::parse(&origin)
                            .ok_or_else(|| conversion(2, corrupt(format!("origin {origin:?}"))))?,
                    })
                })?
                .collect()
            })
            .map_err(map_err)
        })
        .await
    }

    async fn mark_published(&self, app: AppId, revision: Revision) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.prepare_cached(sqlite!(stmt::MARK_PUBLISHED))
                .and_then(|mut s| s.execute(params![app.get(), revision.get() as i64]))
                .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}
