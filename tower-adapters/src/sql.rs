//! What the SQL stores share: the column lists their row readers depend on, the stored names of
//! circuit states, and the error for a row the domain refuses.

use flagtower_core::CircuitState;
use flagtower_core::LogQuery;
use flagtower_core::ports::MAX_LOG_PAGE;

/// The columns of an app, in the order `app_from_row` reads them.
pub(crate) const APP_COLUMNS: &str = "id, title, created_at, updated_at";
/// The columns of a flag, in the order `flag_from_row` reads them.
pub(crate) const FLAG_COLUMNS: &str = "id, app_id, title, description, state, rollout_tenths, \
    white_listed_users, error_threshold_tenths, is_recoverable, recovery_tenths, \
    recovery_delay_ms, initial_recovery_tenths, recovery_rate_ms, recovery_increment_tenths, \
    recovery_profile, webhooks, created_at, updated_at, breaker_since, recovery_due_at, \
    next_step_due_at";
/// The columns of a log entry, in the order `log_from_row` reads them.
pub(crate) const LOG_COLUMNS: &str =
    "id, flag_id, app_id, action_type, flag_title, flag_description, created_at, detail";

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

/// Every app (`APP_COLUMNS`), whether it is deleted, its revision and its newest log entry, in
/// one statement (so one snapshot).
pub(crate) const CURSORS_SQL: &str = "SELECT a.id, a.title, a.created_at, a.updated_at, \
    a.deleted_at IS NOT NULL, a.revision, (SELECT max(l.id) FROM logs l WHERE l.app_id = a.id) \
    FROM apps a ORDER BY a.id";

/// A parameter of [`log_query`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogParam {
    Int(i64),
    Text(&'static str),
}

/// The statement and parameters of a [`LogQuery`]: `LOG_COLUMNS` then `flag_deleted`.
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
        "SELECT {LOG_COLUMNS}, NOT EXISTS (SELECT 1 FROM flags f WHERE f.id = logs.flag_id) \
         FROM logs {filter} ORDER BY id {order} LIMIT {}",
        q.limit.min(MAX_LOG_PAGE)
    );
    (sql, params)
}

#[cfg(test)]
mod tests {
    use flagtower_core::{Action, AppId, LogId, LogQuery};

    use super::log_query;

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
                "WHERE app_id = $1 AND action_type = $2 AND id > $3 ORDER BY id ASC LIMIT 500"
            ),
            "{sql}"
        );
        assert_eq!(params.len(), 3);
    }
}
