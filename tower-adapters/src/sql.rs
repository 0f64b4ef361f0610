//! What the SQL stores share: the one list of a flag's columns that their statements, row
//! readers and writers come from, the log's columns read by name, the stored names of circuit
//! states, and the error for a row the domain refuses.
//!
//! Each adapter implements [`Columns`] (read a named column as a primitive) and binds
//! [`Value`]s its own way; everything about which column holds what is here, so a new flag field
//! is one line of [`FLAG_FIELDS`] plus its reading and writing below.

use std::sync::LazyLock;

use flagtower_core::breaker::BreakerClock;
use flagtower_core::model::{
    Action, Actor, App, AppId, Changes, Description, Flag, FlagCounts, FlagId, IntervalMs,
    LogEntry, LogId, Percent, RecoveryProfile, Title, UserList, Webhooks,
};
use flagtower_core::ports::MAX_LOG_PAGE;
use flagtower_core::{CircuitState, LogQuery, Timestamp};

/// How a column is stored: SQLite keeps every kind as INTEGER or TEXT, PostgreSQL as the
/// narrowest type that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An id (`bigint`).
    Id,
    /// Tenths of a percent, 0–1000 (`smallint`).
    Tenths,
    /// Milliseconds of an interval (`integer`).
    Millis,
    /// Text.
    Text,
    /// A boolean.
    Bool,
    /// A point in time (`timestamptz`; milliseconds on SQLite).
    Time,
    /// A point in time or NULL.
    OptTime,
}

/// A column's value, as the adapters bind it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// [`Kind::Id`], [`Kind::Tenths`] or [`Kind::Millis`].
    Int(i64),
    /// [`Kind::Text`].
    Text(String),
    /// [`Kind::Bool`].
    Bool(bool),
    /// [`Kind::Time`].
    Time(Timestamp),
    /// [`Kind::OptTime`].
    OptTime(Option<Timestamp>),
}

/// The columns of a flag besides `id`, in the order of [`flag_values`]: the one list that
/// [`FLAG_COLUMNS`], [`insert_flag`], [`update_flag`] and [`read_flag`] follow.
pub(crate) const FLAG_FIELDS: &[(&str, Kind)] = &[
    ("app_id", Kind::Id),
    ("title", Kind::Text),
    ("title_key", Kind::Text),
    ("description", Kind::Text),
    ("state", Kind::Text),
    ("rollout_tenths", Kind::Tenths),
    ("white_listed_users", Kind::Text),
    ("error_threshold_tenths", Kind::Tenths),
    ("is_recoverable", Kind::Bool),
    ("recovery_tenths", Kind::Tenths),
    ("recovery_delay_ms", Kind::Millis),
    ("initial_recovery_tenths", Kind::Tenths),
    ("recovery_rate_ms", Kind::Millis),
    ("recovery_increment_tenths", Kind::Tenths),
    ("recovery_profile", Kind::Text),
    ("webhooks", Kind::Text),
    ("created_at", Kind::Time),
    ("updated_at", Kind::Time),
    ("breaker_since", Kind::Time),
    ("recovery_due_at", Kind::OptTime),
    ("next_step_due_at", Kind::OptTime),
];

/// A flag's columns as [`FLAG_FIELDS`] lists them.
pub(crate) fn flag_values(f: &Flag) -> Vec<Value> {
    let text = |s: &str| Value::Text(s.to_owned());
    let tenths = |p: Percent| Value::Int(i64::from(p.tenths()));
    let ms = |i: IntervalMs| Value::Int(i64::from(i.get()));
    vec![
        Value::Int(f.app_id.get()),
        text(f.title.as_str()),
        Value::Text(f.title.key()),
        text(f.description.as_str()),
        text(state_name(f.state)),
        tenths(f.rollout_percentage),
        text(f.white_listed_users.as_str()),
        tenths(f.error_threshold_percentage),
        Value::Bool(f.is_recoverable),
        tenths(f.circuit_recovery_percentage),
        ms(f.circuit_recovery_delay),
        tenths(f.circuit_initial_recovery_percentage),
        ms(f.circuit_recovery_rate),
        tenths(f.circuit_recovery_increment_percentage),
        text(f.circuit_recovery_profile.as_str()),
        text(f.webhooks.as_str()),
        Value::Time(f.created_at),
        Value::Time(f.updated_at),
        Value::Time(f.breaker.since),
        Value::OptTime(f.breaker.recovery_due),
        Value::OptTime(f.breaker.next_step_due),
    ]
}

/// A row of an adapter, read by column name.
pub(crate) trait Columns {
    /// The adapter's error.
    type Error;
    /// An integer column ([`Kind::Id`], [`Kind::Tenths`], [`Kind::Millis`]).
    fn int(&self, name: &str) -> Result<i64, Self::Error>;
    /// A text column.
    fn text(&self, name: &str) -> Result<String, Self::Error>;
    /// A boolean column.
    fn bool(&self, name: &str) -> Result<bool, Self::Error>;
    /// A time column.
    fn time(&self, name: &str) -> Result<Timestamp, Self::Error>;
    /// A time column that may be NULL.
    fn opt_time(&self, name: &str) -> Result<Option<Timestamp>, Self::Error>;
    /// A text column that may be NULL.
    fn opt_text(&self, name: &str) -> Result<Option<String>, Self::Error>;
    /// The error for a value the domain refuses.
    fn corrupt(what: String) -> Self::Error;
}

/// A flag from a row holding `id` and [`FLAG_FIELDS`].
pub(crate) fn read_flag<R: Columns>(r: &R) -> Result<Flag, R::Error> {
    fn bad<R: Columns>(column: &str, e: impl std::fmt::Display) -> R::Error {
        R::corrupt(format!("{column}: {e}"))
    }
    let pct = |c: &str| -> Result<Percent, R::Error> {
        let v = r.int(c)?;
        u16::try_from(v).ok().and_then(Percent::from_tenths).ok_or_else(|| bad::<R>(c, v))
    };
    let ms = |c: &str| -> Result<IntervalMs, R::Error> {
        let v = r.int(c)?;
        u32::try_from(v).ok().and_then(|v| IntervalMs::new(v).ok()).ok_or_else(|| bad::<R>(c, v))
    };
    let text = |c: &str| r.text(c);
    Ok(Flag {
        id: FlagId::new(r.int("id")?),
        app_id: AppId::new(r.int("app_id")?),
        title: Title::parse(&text("title")?).map_err(|e| bad::<R>("title", e))?,
        description: Description::parse(&text("description")?)
            .map_err(|e| bad::<R>("description", e))?,
        state: parse_state(&text("state")?).map_err(|e| R::corrupt(e.0))?,
        rollout_percentage: pct("rollout_tenths")?,
        white_listed_users: UserList::parse(&text("white_listed_users")?)
            .map_err(|e| bad::<R>("white_listed_users", e))?,
        error_threshold_percentage: pct("error_threshold_tenths")?,
        is_recoverable: r.bool("is_recoverable")?,
        circuit_recovery_percentage: pct("recovery_tenths")?,
        circuit_recovery_delay: ms("recovery_delay_ms")?,
        circuit_initial_recovery_percentage: pct("initial_recovery_tenths")?,
        circuit_recovery_rate: ms("recovery_rate_ms")?,
        circuit_recovery_increment_percentage: pct("recovery_increment_tenths")?,
        circuit_recovery_profile: RecoveryProfile::parse(&text("recovery_profile")?)
            .map_err(|e| bad::<R>("recovery_profile", e))?,
        webhooks: Webhooks::parse(&text("webhooks")?).map_err(|e| bad::<R>("webhooks", e))?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        breaker: BreakerClock {
            since: r.time("breaker_since")?,
            recovery_due: r.opt_time("recovery_due_at")?,
            next_step_due: r.opt_time("next_step_due_at")?,
        },
    })
}

/// `id` and every column of [`FLAG_FIELDS`], comma-separated.
pub(crate) static FLAG_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    std::iter::once("id").chain(FLAG_FIELDS.iter().map(|(c, _)| *c)).collect::<Vec<_>>().join(", ")
});

/// `INSERT` of [`FLAG_FIELDS`] as parameters 1…n, returning the new id; `sigil` is `?` (SQLite)
/// or `$` (PostgreSQL).
pub(crate) fn insert_flag(sigil: char) -> String {
    let names: Vec<&str> = FLAG_FIELDS.iter().map(|(c, _)| *c).collect();
    let params: Vec<String> = (1..=names.len()).map(|i| format!("{sigil}{i}")).collect();
    format!("INSERT INTO flags ({}) VALUES ({}) RETURNING id", names.join(", "), params.join(", "))
}

/// `UPDATE` of [`FLAG_FIELDS`] as parameters 1…n of the flag whose id is parameter n + 1.
pub(crate) fn update_flag(sigil: char) -> String {
    let sets: Vec<String> = FLAG_FIELDS
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} = {sigil}{}", i + 1))
        .collect();
    format!("UPDATE flags SET {} WHERE id = {sigil}{}", sets.join(", "), FLAG_FIELDS.len() + 1)
}

/// An app from a row holding [`APP_COLUMNS`].
pub(crate) fn read_app<R: Columns>(r: &R) -> Result<App, R::Error> {
    Ok(App {
        id: AppId::new(r.int("id")?),
        title: Title::parse(&r.text("title")?)
            .map_err(|e| R::corrupt(format!("app title: {e}")))?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
    })
}

/// A log entry from a row holding [`LOG_COLUMNS`], each name after `prefix` (`""`, or the
/// alias a join gives them).
pub(crate) fn read_log<R: Columns>(r: &R, prefix: &str) -> Result<LogEntry, R::Error> {
    let c = |name: &str| format!("{prefix}{name}");
    let action = r.text(&c("action_type"))?;
    Ok(LogEntry {
        id: LogId::new(r.int(&c("id"))?),
        flag_id: FlagId::new(r.int(&c("flag_id"))?),
        app_id: AppId::new(r.int(&c("app_id"))?),
        action: Action::parse(&action).ok_or_else(|| R::corrupt(format!("action {action:?}")))?,
        flag_title: r.text(&c("flag_title"))?,
        flag_description: r.text(&c("flag_description"))?,
        created_at: r.time(&c("created_at"))?,
        detail: r.opt_text(&c("detail"))?,
        actor: r.opt_text(&c("actor"))?.map(|a| Actor::named(&a)),
        changes: match r.opt_text(&c("changes"))? {
            None => None,
            Some(text) => Some(
                serde_json::from_str(&text)
                    .map_err(|e| R::corrupt(format!("log changes {text:?}: {e}")))?,
            ),
        },
    })
}

/// An app and its flag counts from a row of [`stmt::APP_SUMMARIES`].
pub(crate) fn read_app_summary<R: Columns>(r: &R) -> Result<(App, FlagCounts), R::Error> {
    let n = |name: &str| -> Result<usize, R::Error> {
        usize::try_from(r.int(name)?).map_err(|_| R::corrupt(format!("{name} count")))
    };
    let (closed, recovering, open) = (n("closed")?, n("recovering")?, n("open")?);
    let counts =
        FlagCounts { total: n("total")?, active: closed + recovering, closed, recovering, open };
    Ok((read_app(r)?, counts))
}

/// What a log entry's `changes` column holds: the JSON object, or NULL.
pub(crate) fn changes_text(changes: Option<&Changes>) -> Option<String> {
    changes.map(|c| serde_json::Value::Object(c.clone()).to_string())
}

/// The columns of an app ([`read_app`] reads them by name).
pub(crate) const APP_COLUMNS: &str = "id, title, created_at, updated_at";
/// The columns of a log entry ([`read_log`] reads them by name).
pub(crate) const LOG_COLUMNS: &str = "id, flag_id, app_id, action_type, flag_title, \
    flag_description, created_at, detail, actor, changes";

/// The statements both stores run as they are, written with PostgreSQL's `$n` placeholders;
/// SQLite runs them through [`for_sqlite`] (`?n`, the same numbers). What differs between the
/// two (locking, the revision bump, the outbox's newest record per app, advisory locks) stays
/// with each adapter.
pub(crate) mod stmt {
    use std::sync::LazyLock;

    use super::{APP_COLUMNS, FLAG_COLUMNS};

    /// A live app by id ($1).
    pub(crate) static LIVE_APP: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1 AND deleted_at IS NULL")
    });
    /// Every live app, by id.
    pub(crate) static LIVE_APPS: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {APP_COLUMNS} FROM apps WHERE deleted_at IS NULL ORDER BY id")
    });
    /// Every live app, by id, with how many of its flags are in each state (`total`,
    /// `closed`, `recovering`, `open`): one query, whatever the number of apps.
    pub(crate) const APP_SUMMARIES: &str = "SELECT a.id, a.title, a.created_at, a.updated_at, \
        COUNT(f.id) AS total, \
        COUNT(CASE WHEN f.state = 'on' THEN 1 END) AS closed, \
        COUNT(CASE WHEN f.state = 'recovering' THEN 1 END) AS recovering, \
        COUNT(CASE WHEN f.state = 'off' THEN 1 END) AS open \
        FROM apps a LEFT JOIN flags f ON f.app_id = a.id WHERE a.deleted_at IS NULL \
        GROUP BY a.id, a.title, a.created_at, a.updated_at ORDER BY a.id";
    /// A flag by id ($1).
    pub(crate) static FLAG_BY_ID: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {} FROM flags WHERE id = $1", FLAG_COLUMNS.as_str()));
    /// The flags of every live app, by app and id: with [`LIVE_APPS`] in the same snapshot,
    /// what [`super::apps_with_flags`] groups.
    pub(crate) static FLAGS_OF_LIVE_APPS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {} FROM flags WHERE app_id IN (SELECT id FROM apps WHERE deleted_at IS NULL) \
             ORDER BY app_id, id",
            FLAG_COLUMNS.as_str()
        )
    });
    /// An app's flags ($1), by id.
    pub(crate) static FLAGS_OF_APP: LazyLock<String> = LazyLock::new(|| {
        format!("SELECT {} FROM flags WHERE app_id = $1 ORDER BY id", FLAG_COLUMNS.as_str())
    });
    /// A log entry: flag, app, action, title, description, time, detail, actor, changes
    /// ($1…$9).
    pub(crate) const INSERT_LOG: &str = "INSERT INTO logs (flag_id, app_id, action_type, \
        flag_title, flag_description, created_at, detail, actor, changes) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    /// A new app: title, title key, time ($1…$3); returns its id.
    pub(crate) const INSERT_APP: &str = "INSERT INTO apps (title, title_key, created_at, \
        updated_at) VALUES ($1, $2, $3, $3) RETURNING id";
    /// An app's new title: title, title key, time, app ($1…$4).
    pub(crate) const RENAME_APP: &str =
        "UPDATE apps SET title = $1, title_key = $2, updated_at = $3 WHERE id = $4";
    /// Every flag of an app ($1).
    pub(crate) const DELETE_APP_FLAGS: &str = "DELETE FROM flags WHERE app_id = $1";
    /// An app ($1) deleted at a time ($2): its id, revision and logs stay.
    pub(crate) const SOFT_DELETE_APP: &str = "UPDATE apps SET deleted_at = $2 WHERE id = $1";
    /// A flag ($1).
    pub(crate) const DELETE_FLAG: &str = "DELETE FROM flags WHERE id = $1";
    /// The SDK key, if there is one.
    pub(crate) const SDK_KEY: &str = "SELECT id, created_at, updated_at FROM sdk_key";
    /// The SDK key when there is none yet: id, created, updated ($1…$3).
    pub(crate) const ENSURE_SDK_KEY: &str = "INSERT INTO sdk_key (singleton, id, created_at, \
        updated_at) VALUES (1, $1, $2, $3) ON CONFLICT (singleton) DO NOTHING";
    /// A new SDK key in place of the old: id, created, updated ($1…$3).
    pub(crate) const REPLACE_SDK_KEY: &str = "INSERT INTO sdk_key (singleton, id, created_at, \
        updated_at) VALUES (1, $1, $2, $3) ON CONFLICT (singleton) DO UPDATE SET id = excluded.id, \
        created_at = excluded.created_at, updated_at = excluded.updated_at";
    /// An app's ($1) revision and whether it is deleted (SQLite's; PostgreSQL reads a ruleset
    /// in one statement).
    #[cfg(feature = "sqlite")]
    pub(crate) const APP_REVISION: &str =
        "SELECT revision, deleted_at IS NOT NULL AS deleted FROM apps WHERE id = $1";
    /// An app's ($1) outbox records up to a revision ($2) (SQLite's; PostgreSQL's mark skips
    /// the fsync with a statement of its own).
    #[cfg(feature = "sqlite")]
    pub(crate) const MARK_PUBLISHED: &str =
        "DELETE FROM outbox WHERE app_id = $1 AND revision <= $2";
}

/// A statement written for PostgreSQL (`$n`) with SQLite's placeholders (`?n`).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn for_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// The stored name of a circuit state (the `state` column).
pub(crate) fn state_name(s: CircuitState) -> &'static str {
    match s {
        CircuitState::Off => "off",
        CircuitState::On => "on",
        CircuitState::Recovering => "recovering",
    }
}

/// The circuit state a `state` column names.
pub(crate) fn parse_state(s: &str) -> Result<CircuitState, Corrupt> {
    match s {
        "off" => Ok(CircuitState::Off),
        "on" => Ok(CircuitState::On),
        "recovering" => Ok(CircuitState::Recovering),
        other => Err(Corrupt(format!("state {other:?}"))),
    }
}

/// A value read from the database that the domain refuses: the data was edited by hand.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row in the database: {0}")]
pub(crate) struct Corrupt(pub(crate) String);

/// An app's cursor (`APP_COLUMNS`, whether it is deleted, its revision and its newest log
/// entry) from `apps a`, for `Store::changed_since`; a macro, for `concat!`.
macro_rules! cursor_columns {
    () => {
        "a.id, a.title, a.created_at, a.updated_at, a.deleted_at IS NOT NULL AS deleted, \
         a.revision, (SELECT max(l.id) FROM logs l WHERE l.app_id = a.id) AS last_log"
    };
}
pub(crate) use cursor_columns;

/// A parameter of [`log_query`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogParam {
    Int(i64),
    Text(&'static str),
}

/// The statement and parameters of a [`LogQuery`]: `LOG_COLUMNS` and `flag_deleted`. The
/// latter is a scalar subquery, one primary-key probe per entry of the page: PostgreSQL turns
/// `NOT EXISTS` here into a hash of every flag, built for each page (48 ms with 100 000 flags).
/// Placeholders are `?n` (SQLite) or `$n` (PostgreSQL); only the clauses the query uses are
/// written, so each shape is its own cached statement and can use the primary key's order.
pub(crate) fn log_query(q: &LogQuery, sigil: char) -> (String, Vec<LogParam>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let mut add = |clause: &str, p: LogParam| {
        params.push(p);
        clauses.push(format!("{clause} {sigil}{}", params.len()));
    };
    if let Some(app) = q.app {
        add("app_id =", LogParam::Int(app.get()));
    }
    if let Some(action) = q.action {
        add("action_type =", LogParam::Text(action.as_str()));
    }
    if let Some(before) = q.before {
        add("id <", LogParam::Int(before.get()));
    }
    if let Some(after) = q.after {
        add("id >", LogParam::Int(after.get()));
    }
    let filter =
        if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
    let order = if q.after.is_some() { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {LOG_COLUMNS}, (SELECT 1 FROM flags f WHERE f.id = logs.flag_id) IS NULL \
         AS flag_deleted FROM logs {filter} ORDER BY id {order} LIMIT {}",
        q.limit.min(MAX_LOG_PAGE)
    );
    (sql, params)
}

/// Each app of `apps` (live apps, by id) with its flags, from `flags` ordered by app and id, as
/// [`stmt::LIVE_APPS`] and [`stmt::FLAGS_OF_LIVE_APPS`] read them in one snapshot.
pub(crate) fn apps_with_flags(apps: Vec<App>, flags: Vec<Flag>) -> Vec<(App, Vec<Flag>)> {
    let mut flags = flags.into_iter().peekable();
    apps.into_iter()
        .map(|app| {
            let mut of = Vec::new();
            while let Some(flag) = flags.next_if(|f| f.app_id == app.id) {
                of.push(flag);
            }
            (app, of)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use flagtower_core::{Action, AppId, LogId, LogQuery};

    use super::{for_sqlite, log_query};

    #[test]
    fn statements_get_sqlite_placeholders() {
        assert_eq!(
            for_sqlite("UPDATE apps SET deleted_at = $2 WHERE id = $1 AND x = '$'"),
            "UPDATE apps SET deleted_at = ?2 WHERE id = ?1 AND x = '$'"
        );
    }

    #[test]
    fn log_queries_write_only_the_clauses_they_use() {
        let (sql, params) = log_query(&LogQuery { limit: 10, ..LogQuery::default() }, '?');
        assert!(sql.ends_with("FROM logs  ORDER BY id DESC LIMIT 10"), "{sql}");
        assert!(params.is_empty());
        let q = LogQuery {
            app: Some(AppId::new(3)),
            action: Some(Action::FlagOn),
            after: Some(LogId::new(7)),
            limit: 9999,
            ..LogQuery::default()
        };
        let (sql, params) = log_query(&q, '$');
        assert!(
            sql.ends_with(
                "WHERE app_id = $1 AND action_type = $2 AND id > $3 ORDER BY id ASC LIMIT 1000"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 3);
    }
}
