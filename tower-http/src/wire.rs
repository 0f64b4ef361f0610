//! JSON shapes of the REST API that are not the domain types' own: the three shapes of a log
//! entry (the original Tower used a different one per route) and the flag with its logs.

use flagtower_core::{Flag, FlagId, LogEntry, LogId, Timestamp};
use serde::Serialize;

/// `{"payload": …}`, the envelope of every success body.
#[derive(Serialize)]
pub(crate) struct Envelope<T> {
    pub(crate) payload: T,
}

/// A log entry inside `GET /api/flags/:id`.
#[derive(Serialize)]
pub(crate) struct FlagLog<'a> {
    log_id: LogId,
    flag_id: FlagId,
    log_description: &'static str,
    action_type: &'static str,
    /// Why, beyond the action (the breaker's evidence for a trip); left out when there is none,
    /// so entries keep the original Tower's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// Who made the change (`null` for entries from before Tower recorded it).
    actor: Option<&'a str>,
    /// What an edit changed, `{field: [old, new]}`; `null` for creation, deletion and entries
    /// from before Tower recorded it.
    changes: Option<&'a flagtower_core::Changes>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a LogEntry> for FlagLog<'a> {
    fn from(l: &'a LogEntry) -> Self {
        Self {
            log_id: l.id,
            flag_id: l.flag_id,
            log_description: l.action.description(),
            action_type: l.action.as_str(),
            detail: l.detail.as_deref(),
            actor: l.actor.as_ref().map(flagtower_core::Actor::as_str),
            changes: l.changes.as_ref(),
            created_at: l.created_at,
            updated_at: l.created_at,
        }
    }
}

/// A flag with its logs: the payload of `GET /api/flags/:id`.
#[derive(Serialize)]
pub(crate) struct FlagWithLogs<'a> {
    #[serde(flatten)]
    pub(crate) flag: &'a Flag,
    pub(crate) logs: Vec<FlagLog<'a>>,
}

/// An entry of `GET /api/logs`.
#[derive(Serialize)]
pub(crate) struct GlobalLog<'a> {
    log_id: LogId,
    flag_id: FlagId,
    flag_title: &'a str,
    log_description: &'static str,
    action_type: &'static str,
    /// Why, beyond the action (the breaker's evidence for a trip); left out when there is none,
    /// so entries keep the original Tower's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// Who made the change (`null` for entries from before Tower recorded it).
    actor: Option<&'a str>,
    /// What an edit changed, `{field: [old, new]}`; `null` for creation, deletion and entries
    /// from before Tower recorded it.
    changes: Option<&'a flagtower_core::Changes>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a LogEntry> for GlobalLog<'a> {
    fn from(l: &'a LogEntry) -> Self {
        Self {
            log_id: l.id,
            flag_id: l.flag_id,
            flag_title: &l.flag_title,
            log_description: l.action.description(),
            action_type: l.action.as_str(),
            detail: l.detail.as_deref(),
            actor: l.actor.as_ref().map(flagtower_core::Actor::as_str),
            changes: l.changes.as_ref(),
            created_at: l.created_at,
            updated_at: l.created_at,
        }
    }
}

/// An entry of `GET /api/logs/:appId`.
#[derive(Serialize)]
pub(crate) struct AppLog<'a> {
    id: LogId,
    flag_id: FlagId,
    app_id: flagtower_core::AppId,
    description: &'static str,
    action_type: &'static str,
    flag_title: &'a str,
    flag_description: &'a str,
    /// Why, beyond the action (the breaker's evidence for a trip); left out when there is none,
    /// so entries keep the original Tower's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// Who made the change (`null` for entries from before Tower recorded it).
    actor: Option<&'a str>,
    /// What an edit changed, `{field: [old, new]}`; `null` for creation, deletion and entries
    /// from before Tower recorded it.
    changes: Option<&'a flagtower_core::Changes>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a LogEntry> for AppLog<'a> {
    fn from(l: &'a LogEntry) -> Self {
        Self {
            id: l.id,
            flag_id: l.flag_id,
            app_id: l.app_id,
            description: l.action.description(),
            action_type: l.action.as_str(),
            flag_title: &l.flag_title,
            flag_description: &l.flag_description,
            detail: l.detail.as_deref(),
            actor: l.actor.as_ref().map(flagtower_core::Actor::as_str),
            changes: l.changes.as_ref(),
            created_at: l.created_at,
            updated_at: l.created_at,
        }
    }
}

/// The payload of `POST /api/flags/:id/events`: the counts recorded.
#[derive(Serialize)]
pub(crate) struct Events {
    success: u64,
    failure: u64,
}

impl From<flagtower_core::Counts> for Events {
    fn from(c: flagtower_core::Counts) -> Self {
        Self { success: c.success, failure: c.failure }
    }
}

/// The most unpublished apps `GET /healthz` lists (`unpublished_count` has them all).
pub(crate) const HEALTH_LIST: usize = 100;

/// The body of `GET /healthz`: 200 when the store answers, whatever the publisher's state (a
/// publisher outage delays rulesets, it loses nothing). `store` is `ok`, `degraded` (the relay
/// cannot read or write it) or `unavailable` (it does not answer: 503); `publisher` is `ok` or
/// `degraded`; `unpublished` lists the apps whose newest ruleset is not published, why, and since
/// when.
#[derive(Serialize)]
pub(crate) struct Health<'a> {
    status: &'static str,
    store: &'static str,
    publisher: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_error: Option<Problem<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    unpublished: Vec<Unpublished<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    unpublished_count: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Problem<'a> {
    reason: &'a str,
    since: Timestamp,
}

#[derive(Serialize)]
struct Unpublished<'a> {
    app_id: flagtower_core::AppId,
    stage: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    reason: &'a str,
    rejected: bool,
    since: Timestamp,
    attempts: u32,
}

impl<'a> Health<'a> {
    pub(crate) fn new(h: &'a flagtower_core::Health) -> Self {
        let relay = &h.relay;
        let store = match (&h.store, relay.store_degraded()) {
            (Err(_), _) => "unavailable",
            (Ok(()), true) => "degraded",
            (Ok(()), false) => "ok",
        };
        Self {
            status: if h.store.is_ok() { "ok" } else { "unavailable" },
            store,
            publisher: if relay.publisher_degraded() { "degraded" } else { "ok" },
            store_error: relay
                .store
                .as_ref()
                .map(|(reason, since)| Problem { reason, since: *since }),
            unpublished: relay
                .unpublished
                .iter()
                .take(HEALTH_LIST)
                .map(|u| Unpublished {
                    app_id: u.app_id,
                    stage: u.stage.as_str(),
                    revision: u.revision.map(|r| r.get()),
                    reason: &u.reason,
                    rejected: u.rejected,
                    since: u.since,
                    attempts: u.attempts,
                })
                .collect(),
            unpublished_count: relay.unpublished.len(),
        }
    }
}

/// An entry of a page of `GET /api/logs?…` and of the live stream: the global shape with the
/// app and whether the flag still exists.
#[derive(Serialize)]
pub(crate) struct LogRow<'a> {
    log_id: LogId,
    flag_id: FlagId,
    app_id: flagtower_core::AppId,
    flag_title: &'a str,
    log_description: &'static str,
    action_type: &'static str,
    /// Why, beyond the action (the breaker's evidence for a trip); left out when there is none,
    /// so entries keep the original Tower's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    /// Who made the change (`null` for entries from before Tower recorded it).
    actor: Option<&'a str>,
    /// What an edit changed, `{field: [old, new]}`; `null` for creation, deletion and entries
    /// from before Tower recorded it.
    changes: Option<&'a flagtower_core::Changes>,
    flag_deleted: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a flagtower_core::LogRecord> for LogRow<'a> {
    fn from(r: &'a flagtower_core::LogRecord) -> Self {
        let l = &r.entry;
        Self {
            log_id: l.id,
            flag_id: l.flag_id,
            app_id: l.app_id,
            flag_title: &l.flag_title,
            log_description: l.action.description(),
            action_type: l.action.as_str(),
            detail: l.detail.as_deref(),
            actor: l.actor.as_ref().map(flagtower_core::Actor::as_str),
            changes: l.changes.as_ref(),
            flag_deleted: r.flag_deleted,
            created_at: l.created_at,
            updated_at: l.created_at,
        }
    }
}

/// An app of `GET /api/apps?counts=true`.
#[derive(Serialize)]
pub(crate) struct AppWithCounts<'a> {
    #[serde(flatten)]
    pub(crate) app: &'a flagtower_core::App,
    pub(crate) flag_counts: flagtower_core::FlagCounts,
}
