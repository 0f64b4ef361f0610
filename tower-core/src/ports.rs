//! The ports: what Tower needs from the outside world, as small object-safe traits held as
//! `Arc<dyn …>`. Each has its own error enum of categories a caller can act on; every category
//! keeps the backend's error as its `source`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::command::{FlagCommand, NewFlag};
use crate::model::Counts;
use crate::model::{
    Action, Actor, App, AppId, Flag, FlagId, LogEntry, LogId, Origin, Revision, SdkKey, Title,
};
use crate::ruleset::{EncodedRuleset, Ruleset};
use crate::time::Timestamp;

/// A boxed error from a backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The kind of thing a lookup did not find or a write collided with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// An app.
    App,
    /// A flag.
    Flag,
    /// The SDK key.
    SdkKey,
}

impl Resource {
    /// Its name with its indefinite article: "an app", "a flag", "an SDK key".
    pub fn with_article(self) -> &'static str {
        match self {
            Self::App => "an app",
            Self::Flag => "a flag",
            Self::SdkKey => "an SDK key",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::App => "app",
            Self::Flag => "flag",
            Self::SdkKey => "SDK key",
        })
    }
}

/// What a [`Store`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The app or flag does not exist (or was deleted).
    #[error("{0} not found")]
    NotFound(Resource),
    /// A live app (or a flag of the same app) already has this title, compared
    /// case-insensitively.
    #[error("{} titled {title:?} already exists", what.with_article())]
    AlreadyExists {
        /// App or flag.
        what: Resource,
        /// The title that collided.
        title: String,
    },
    /// The backend cannot be reached, or is overloaded; retrying later may succeed.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// The write would grow the app's ruleset past the publisher's limit; nothing was written.
    #[error(
        "the app's ruleset would be {size} bytes, over the {limit} bytes the publisher can deliver"
    )]
    TooLarge {
        /// The ruleset's encoded size after the write.
        size: usize,
        /// The limit it was checked against.
        limit: usize,
    },
    /// Anything else the backend reported.
    #[error("the store failed")]
    Backend(#[source] BoxError),
}

/// The result of a write that may change an app's ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<T> {
    /// The written (or, for a no-op, the current) value.
    pub value: T,
    /// The app's new revision when the ruleset changed (an outbox record was written with it);
    /// `None` when the command changed nothing and nothing was written.
    pub revision: Option<Revision>,
    /// The action of the log entry written for the value, if one was (a flag's change; `None`
    /// for a no-op, a recovery step, and app operations).
    pub action: Option<Action>,
}

impl<T> Change<T> {
    /// Nothing written: `value` as it is.
    pub fn unchanged(value: T) -> Self {
        Self { value, revision: None, action: None }
    }

    /// `value` written at `revision`, logged as `action`.
    pub fn written(value: T, revision: Revision, action: Option<Action>) -> Self {
        Self { value, revision: Some(revision), action }
    }
}

/// The newest unpublished change of one app, from the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The app.
    pub app_id: AppId,
    /// Its newest unpublished revision.
    pub revision: Revision,
    /// Who made that change.
    pub origin: Origin,
}

/// The most entries one [`LogQuery`] returns.
pub const MAX_LOG_PAGE: u32 = 1000;

/// A page of the audit log.
///
/// Entries are newest first, except when `after` is set: then they are oldest first (a reader
/// catching up from where it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogQuery {
    /// Only this app's entries.
    pub app: Option<AppId>,
    /// Only entries of this action.
    pub action: Option<Action>,
    /// Only entries older than this one (the next page).
    pub before: Option<LogId>,
    /// Only entries newer than this one, oldest first.
    pub after: Option<LogId>,
    /// At most this many entries (capped at [`MAX_LOG_PAGE`]).
    pub limit: u32,
}

impl Default for LogQuery {
    fn default() -> Self {
        Self { app: None, action: None, before: None, after: None, limit: MAX_LOG_PAGE }
    }
}

/// A log entry as a page of the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The entry.
    pub entry: LogEntry,
    /// Whether its flag no longer exists.
    pub flag_deleted: bool,
}

/// Where an app stands, read in one snapshot: the app, its revision and its newest log entry.
/// Within one app, log ids grow in commit order (every writer holds the app's lock), so a reader
/// that saw `last_log` has seen every earlier entry of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCursor {
    /// The app (deleted apps included).
    pub app: App,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Its revision.
    pub revision: Revision,
    /// Its newest log entry, if any.
    pub last_log: Option<LogId>,
}

/// Where a store's history of changes stood when [`Store::changed_since`] answered: pass it to
/// the next call to read only what changed after. Opaque; meaningful only to the store that made
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangeMark(u64);

impl ChangeMark {
    /// The mark a store encodes as `value` (a counter of changes, or a transaction id).
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// What the store encoded.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// The answer of [`Store::changed_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// The cursors of the apps that changed, by app id.
    pub apps: Vec<AppCursor>,
    /// What to pass next time.
    pub mark: ChangeMark,
}

/// Durable storage of apps, flags, logs, the SDK key, rulesets and the outbox.
///
/// Contract, checked by [`crate::conformance`]:
/// - every method that names an app or flag MUST return [`StoreError::NotFound`] when it does not
///   exist or was deleted (except [`Store::ruleset`], see there);
/// - a write of a flag, its log entry, the bump of its app's revision and the outbox record
///   commit in one transaction, or not at all;
/// - titles are unique case-insensitively by [`Title::key`]: apps among live apps, flags within
///   their app; a collision MUST return [`StoreError::AlreadyExists`];
/// - ids are never reused; log entries are never changed or deleted;
/// - [`StoreError::Unavailable`] means the backend could not be reached and nothing was written.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Checks that the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Live apps, by id.
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    /// One live app.
    async fn get_app(&self, id: AppId) -> Result<App, StoreError>;
    /// Creates an app (revision 0, no ruleset change).
    async fn create_app(&self, title: &Title, now: Timestamp) -> Result<App, StoreError>;
    /// Renames an app.
    async fn rename_app(&self, id: AppId, title: &Title, now: Timestamp)
    -> Result<App, StoreError>;
    /// Deletes an app and its flags (a `delete` log entry each); its ruleset becomes `[]` at a
    /// new revision with an outbox record.
    async fn delete_app(
        &self,
        id: AppId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<App>, StoreError>;

    /// The flags of a live app, by id.
    async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, StoreError>;
    /// Every live app, by id, with how many of its flags are in each state.
    ///
    /// Provided: [`Store::list_apps`], then [`Store::list_flags`] per app (an app deleted in
    /// between is left out); a store that can answers it in one query.
    async fn app_summaries(&self) -> Result<Vec<(App, crate::model::FlagCounts)>, StoreError> {
        let mut out = Vec::new();
        for app in self.list_apps().await? {
            match self.list_flags(app.id).await {
                Ok(flags) => out.push((app, crate::model::FlagCounts::of(&flags))),
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
    /// Every live app, by id, with its flags, by id: what the circuit breaker checks each
    /// interval.
    ///
    /// Provided: [`Store::list_apps`], then [`Store::list_flags`] per app (an app deleted in
    /// between is left out); a store that can answers it in one snapshot, in a number of
    /// queries that does not grow with the number of apps.
    async fn apps_with_flags(&self) -> Result<Vec<(App, Vec<Flag>)>, StoreError> {
        let mut out = Vec::new();
        for app in self.list_apps().await? {
            match self.list_flags(app.id).await {
                Ok(flags) => out.push((app, flags)),
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
    /// One flag.
    async fn get_flag(&self, id: FlagId) -> Result<Flag, StoreError>;
    /// One flag and its newest `limit` log entries, oldest first, read together.
    async fn flag_with_logs(
        &self,
        id: FlagId,
        limit: u32,
    ) -> Result<(Flag, Vec<LogEntry>), StoreError>;
    /// Creates a flag in a live app with a `create` log entry made `by` an actor.
    async fn create_flag(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        self.create_flag_within(app, flag, now, by, None).await
    }
    /// [`Store::create_flag`], which MUST return [`StoreError::TooLarge`] and write nothing when
    /// `max_ruleset_bytes` is set and the app's ruleset would encode to more bytes than that
    /// ([`crate::ruleset::check_size`]).
    async fn create_flag_within(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError>;
    /// Reads the flag, applies `command` ([`FlagCommand::apply`]) and writes the result with its
    /// log entry (made `by` an actor, with what it changed), all in one transaction; nothing is
    /// written when the command changes nothing.
    async fn change_flag(
        &self,
        id: FlagId,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        self.change_flag_within(id, command, origin, now, by, None).await
    }
    /// [`Store::change_flag`], which MUST return [`StoreError::TooLarge`] and write nothing when
    /// `max_ruleset_bytes` is set, the change grows the flag's encoded form
    /// ([`crate::ruleset::grows`]) and the app's ruleset would encode to more bytes than that. A
    /// change that does not grow it always goes through, so an app already over the limit can be
    /// shrunk back under it.
    async fn change_flag_within(
        &self,
        id: FlagId,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError>;
    /// Deletes a flag with a `delete` log entry; returns the flag as it was.
    async fn delete_flag(
        &self,
        id: FlagId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError>;

    /// Every log entry, newest first.
    ///
    /// Provided: [`Store::query_logs`] page after page.
    async fn list_logs(&self) -> Result<Vec<LogEntry>, StoreError> {
        let mut all = Vec::new();
        let mut before = None;
        loop {
            let query = LogQuery { before, limit: MAX_LOG_PAGE, ..LogQuery::default() };
            let page = self.query_logs(&query).await?;
            let full = page.len() == MAX_LOG_PAGE as usize;
            before = page.last().map(|r| r.entry.id);
            all.extend(page.into_iter().map(|r| r.entry));
            if !full {
                return Ok(all);
            }
        }
    }
    /// The log entries of a live app, oldest first.
    ///
    /// Provided: [`Store::get_app`], then [`Store::query_logs`] page after page.
    async fn app_logs(&self, app: AppId) -> Result<Vec<LogEntry>, StoreError> {
        self.get_app(app).await?;
        let mut all = Vec::new();
        let mut after = Some(LogId::new(0));
        loop {
            let query =
                LogQuery { app: Some(app), after, limit: MAX_LOG_PAGE, ..LogQuery::default() };
            let page = self.query_logs(&query).await?;
            let full = page.len() == MAX_LOG_PAGE as usize;
            after = page.last().map(|r| r.entry.id).or(after);
            all.extend(page.into_iter().map(|r| r.entry));
            if !full {
                return Ok(all);
            }
        }
    }
    /// A page of the log (deleted apps' and flags' entries included).
    async fn query_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError>;
    /// The cursors of the apps that changed (created, renamed, deleted, or a new revision or log
    /// entry) since `since`, by app id; with `None`, every app's, deleted apps included. The
    /// answer MAY repeat an app that did not change, MUST NOT miss one whose change committed
    /// after the answer that gave `since`, and costs what changed, not how many apps there are.
    /// The live feed calls it on every wake-up.
    async fn changed_since(&self, since: Option<ChangeMark>) -> Result<Changed, StoreError>;
    /// Starts telling `wake` (with `notify_one`) whenever a change commits, in any process
    /// sharing the store, until `stop` turns `true` or its sender is gone; returns whether it
    /// will. The live feed then reads changes at once instead of at its next poll (it polls
    /// either way, so a notification lost in a reconnect costs only that delay).
    ///
    /// Provided: `false` (a store only one process writes needs none: that process wakes its
    /// feed itself).
    fn notify_changes(
        &self,
        wake: std::sync::Weak<tokio::sync::Notify>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let _ = (wake, stop);
        false
    }

    /// The current SDK key, if one was ever made.
    async fn sdk_key(&self) -> Result<Option<SdkKey>, StoreError>;
    /// Stores `candidate` when there is no key yet; returns the current key either way.
    async fn ensure_sdk_key(&self, candidate: &SdkKey) -> Result<SdkKey, StoreError>;
    /// Replaces the current key.
    async fn replace_sdk_key(&self, key: &SdkKey) -> Result<SdkKey, StoreError>;

    /// An app's flags and revision, read in one transaction. A deleted app has an empty ruleset
    /// at its last revision; an app that never existed is [`StoreError::NotFound`].
    async fn ruleset(&self, app: AppId) -> Result<Ruleset, StoreError>;
    /// For each app with unpublished outbox records, the newest one.
    async fn pending(&self) -> Result<Vec<Pending>, StoreError>;
    /// Marks every outbox record of `app` up to `revision` as published.
    async fn mark_published(&self, app: AppId, revision: Revision) -> Result<(), StoreError>;

    /// How the processes sharing this store take turns ([`Coordination`]). A store that
    /// several processes can share MUST return its own; `None` (the default) means one process
    /// uses the store, and [`LocalCoordination`] is enough.
    fn coordination(&self) -> Option<Arc<dyn Coordination>> {
        None
    }
}

/// Who publishes an app's rulesets and who runs the circuit breaker, among every process that
/// shares a store.
///
/// Contract, checked by [`crate::conformance::coordination`]:
/// - a publication lease of an app MUST be refused (`None`) while another handle, in this or
///   another process, holds one of the same app; leases of other apps are independent;
/// - the breaker lease MUST be refused while another handle holds it;
/// - a lease is given back by [`PublicationLease::release`], by being dropped, and when its
///   process dies.
#[async_trait]
pub trait Coordination: Send + Sync + fmt::Debug {
    /// Tries to take the exclusive right to publish `app`'s rulesets; `None` when another
    /// holds it. The relay holds it from reading the ruleset until the publisher accepted it,
    /// so no process can publish an older revision after a newer one.
    async fn lease_publication(
        &self,
        app: AppId,
    ) -> Result<Option<Box<dyn PublicationLease>>, StoreError>;

    /// Tries to take the publication leases of several apps at once: one answer per app, in
    /// the order of `apps`, `None` for each that another holds. Each lease is released on its
    /// own, under the same contract as [`Coordination::lease_publication`]'s, except that leases
    /// taken together may all stay held until the last of them is released, and releasing one
    /// may wait for that (release them concurrently, as the relay does). A store that can
    /// take them together (PostgreSQL: in one transaction, whose commit ends them all once the
    /// last is released) overrides it; by default each is taken in turn.
    async fn lease_publications(
        &self,
        apps: &[AppId],
    ) -> Result<Vec<Option<Box<dyn PublicationLease>>>, StoreError> {
        let mut leases = Vec::with_capacity(apps.len());
        for &app in apps {
            leases.push(self.lease_publication(app).await?);
        }
        Ok(leases)
    }

    /// Tries to become the one that runs the circuit breaker; `None` while another holds it.
    /// The lease is held until dropped.
    async fn lease_breaker(&self) -> Result<Option<Box<dyn LeaderLease>>, StoreError>;
}

/// The right to run the circuit breaker (see [`Coordination::lease_breaker`]); freed when
/// dropped.
#[async_trait]
pub trait LeaderLease: Send + Sync {
    /// Whether it is still held (a lost database connection loses it).
    async fn alive(&mut self) -> bool;
}

/// The exclusive right to publish one app's rulesets (see [`Coordination::lease_publication`]).
/// Dropping it without [`PublicationLease::release`] must still give the right back.
#[async_trait]
pub trait PublicationLease: Send {
    /// The app's ruleset, when the lease read it as it was granted (once the right was held):
    /// the relay then publishes it instead of reading it from the store. `None` by default.
    fn take_ruleset(&mut self) -> Option<Result<crate::Ruleset, StoreError>> {
        None
    }
    /// Gives the right back.
    async fn release(self: Box<Self>);
    /// Marks the app's outbox records up to `revision` published
    /// ([`Store::mark_published`]), then gives the right back. A lease that holds a transaction
    /// of the store can do both in one round trip (PostgreSQL does); by default the mark goes
    /// through the store.
    async fn release_published(
        self: Box<Self>,
        store: &dyn Store,
        app: AppId,
        revision: Revision,
    ) -> Result<(), StoreError> {
        let marked = store.mark_published(app, revision).await;
        self.release().await;
        marked
    }
}

/// [`Coordination`] within one process: leases are exclusive among the handles of one
/// `LocalCoordination` (clones share them), which is all a store one process uses needs.
#[derive(Debug, Clone, Default)]
pub struct LocalCoordination {
    held: Arc<std::sync::Mutex<LocalHeld>>,
}

#[derive(Debug, Default)]
struct LocalHeld {
    apps: std::collections::HashSet<AppId>,
    breaker: bool,
}

impl LocalCoordination {
    fn held(&self) -> std::sync::MutexGuard<'_, LocalHeld> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A lease of a [`LocalCoordination`]: gives its app (or the breaker, `None`) back when dropped.
struct LocalLease {
    owner: LocalCoordination,
    app: Option<AppId>,
}

impl Drop for LocalLease {
    fn drop(&mut self) {
        let mut held = self.owner.held();
        match self.app {
            Some(app) => {
                held.apps.remove(&app);
            }
            None => held.breaker = false,
        }
    }
}

#[async_trait]
impl PublicationLease for LocalLease {
    async fn release(self: Box<Self>) {}
}

#[async_trait]
impl LeaderLease for LocalLease {
    async fn alive(&mut self) -> bool {
        true
    }
}

#[async_trait]
impl Coordination for LocalCoordination {
    async fn lease_publication(
        &self,
        app: AppId,
    ) -> Result<Option<Box<dyn PublicationLease>>, StoreError> {
        if !self.held().apps.insert(app) {
            return Ok(None);
        }
        Ok(Some(Box::new(LocalLease { owner: self.clone(), app: Some(app) })))
    }

    async fn lease_breaker(&self) -> Result<Option<Box<dyn LeaderLease>>, StoreError> {
        if std::mem::replace(&mut self.held().breaker, true) {
            return Ok(None);
        }
        Ok(Some(Box::new(LocalLease { owner: self.clone(), app: None })))
    }
}

/// What a [`Publisher`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The broker cannot be reached or did not acknowledge in time; retry later.
    #[error("the publisher is unavailable")]
    Unavailable(#[source] BoxError),
    /// The broker refused the message (permissions, limits); retrying the same way will fail.
    #[error("the publisher refused the ruleset")]
    Rejected(#[source] BoxError),
    /// Anything else.
    #[error("the publisher failed")]
    Backend(#[source] BoxError),
}

/// Hands an app's ruleset to the SDKs.
///
/// Contract: `Ok` means the ruleset is durably accepted (for JetStream: acknowledged); a
/// publisher MUST NOT deliver a revision of an app older than one it already delivered.
#[async_trait]
pub trait Publisher: Send + Sync + fmt::Debug {
    /// Publishes one app's ruleset.
    async fn publish(&self, ruleset: &EncodedRuleset) -> Result<(), PublishError>;

    /// The largest ruleset body, in bytes, this publisher can deliver, when it knows one (NATS:
    /// the server's `max_payload` less room for headers). The service refuses a change that
    /// would grow an app's ruleset past it; `None` means no limit.
    fn max_ruleset_bytes(&self) -> Option<usize> {
        None
    }
}

/// What a [`MetricsStore`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The backend cannot be reached; retry later.
    #[error("the metrics store is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else.
    #[error("the metrics store failed")]
    Backend(#[source] BoxError),
}

/// Success and failure counts of one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Start of the bucket, milliseconds since the epoch (a number on the wire).
    pub timestamp: i64,
    /// Successes in the bucket.
    pub success: u64,
    /// Failures in the bucket.
    pub failure: u64,
}

/// Per-flag success/failure counts over time.
///
/// Contract, checked by [`crate::conformance::metrics`]: `buckets` returns the sums of the
/// samples in `[from, to]` grouped into buckets whose starts are multiples of `bucket_ms`,
/// ascending; buckets without samples MAY be left out. Counts recorded at the same millisecond,
/// by Tower or by SDKs, add up.
#[async_trait]
pub trait MetricsStore: Send + Sync + fmt::Debug {
    /// Makes the flag's series ready for writers (SDKs write to them directly); idempotent.
    async fn prepare(&self, flag: FlagId, app: AppId) -> Result<(), MetricsError>;

    /// Records counts for a flag at `at`.
    async fn record(
        &self,
        flag: FlagId,
        app: AppId,
        counts: Counts,
        at: Timestamp,
    ) -> Result<(), MetricsError>;

    /// Sums per bucket over `[from, to]`.
    async fn buckets(
        &self,
        flag: FlagId,
        from: Timestamp,
        to: Timestamp,
        bucket_ms: u64,
    ) -> Result<Vec<Bucket>, MetricsError>;
}

/// What a [`Notifier`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver could not be reached, timed out, or answered 5xx: worth retrying.
    #[error("the webhook receiver is unavailable")]
    Unavailable(#[source] BoxError),
    /// The receiver refused the message (4xx) or the URL is unusable: retrying will not help.
    #[error("the webhook receiver refused the message")]
    Rejected(#[source] BoxError),
}

/// Sends one webhook message (the Slack incoming-webhook format, `{"text": …}`) to one URL.
///
/// Contract: one attempt, bounded in time; the caller retries [`NotifyError::Unavailable`].
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// POSTs `{"text": text}` to `url`.
    async fn notify(&self, url: &str, text: &str) -> Result<(), NotifyError>;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Coordination, LocalCoordination};

    #[tokio::test]
    async fn local_coordination_conforms() {
        crate::conformance::coordination::run(|| async {
            let c = LocalCoordination::default();
            (Arc::new(c.clone()) as Arc<dyn Coordination>, Arc::new(c) as Arc<dyn Coordination>)
        })
        .await;
    }
}
