//! The service: every documented operation, as one method each.
//!
//! A change goes: validated input → [`Store`] (the write, its log entry, the app's new revision
//! and an outbox record in one transaction) → the relay is woken → the relay hands the app's
//! ruleset to the [`Publisher`]. The request never waits for the publisher, and a publisher
//! outage never fails or loses a change.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command::{FlagCommand, FlagPatch, NewFlag};
use crate::feed::{Feed, FeedSubscription};
use crate::memory::{InMemoryMetrics, InProcessPublisher};
use crate::model::Counts;
use crate::model::{App, AppId, Flag, FlagId, LogEntry, Origin, SdkKey, Title};
use crate::ports::{
    BoxError, Bucket, Change, LogQuery, LogRecord, MetricsError, MetricsStore, Publisher, Resource,
    Store, StoreError,
};
use crate::relay::{Relay, RelayConfig, RelaySignal};
use crate::time::{Clock, SystemClock};

/// What an operation can fail with; each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The app or flag does not exist.
    #[error("{0} not found")]
    NotFound(Resource),
    /// The title is taken.
    #[error("{} titled {title:?} already exists", what.with_article())]
    Conflict {
        /// App or flag.
        what: Resource,
        /// The title.
        title: String,
    },
    /// A parameter is out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The change would make the app's ruleset larger than the publisher can deliver in one
    /// message; nothing was written.
    #[error(
        "the app's ruleset would be {size} bytes, over the {limit} bytes the publisher can deliver"
    )]
    TooLarge {
        /// The ruleset's size after the change, in bytes.
        size: usize,
        /// The publisher's limit ([`Publisher::max_ruleset_bytes`]), in bytes.
        limit: usize,
    },
    /// A backend is unreachable; retry later.
    #[error("a backend is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else; details are for the log, not the client.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(r) => Self::NotFound(r),
            StoreError::AlreadyExists { what, title } => Self::Conflict { what, title },
            StoreError::TooLarge { size, limit } => Self::TooLarge { size, limit },
            e @ StoreError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            e => Self::Internal(Box::new(e)),
        }
    }
}

impl From<MetricsError> for Error {
    fn from(e: MetricsError) -> Self {
        match e {
            e @ MetricsError::Unavailable(_) => Self::Unavailable(Box::new(e)),
            e => Self::Internal(Box::new(e)),
        }
    }
}

/// The most buckets one timeseries request may ask for.
pub const MAX_BUCKETS: u64 = 10_000;

/// A timeseries request: the last `range_ms` milliseconds in buckets of `bucket_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    range_ms: u64,
    bucket_ms: u64,
}

impl TimeWindow {
    /// The default window: 10 minutes in 1-minute buckets.
    pub const DEFAULT: Self = Self { range_ms: 600_000, bucket_ms: 60_000 };

    /// Validates a window: both positive, at most [`MAX_BUCKETS`] buckets, at most a year.
    pub fn new(range_ms: u64, bucket_ms: u64) -> Result<Self, Error> {
        const YEAR_MS: u64 = 366 * 24 * 3600 * 1000;
        if range_ms == 0 || range_ms > YEAR_MS {
            return Err(Error::Invalid {
                field: "timeRange",
                message: format!("must be from 1 to {YEAR_MS} milliseconds"),
            });
        }
        if bucket_ms > range_ms {
            return Err(Error::Invalid {
                field: "timeBucket",
                message: format!("must be at most timeRange ({range_ms})"),
            });
        }
        if bucket_ms == 0 || range_ms.div_ceil(bucket_ms) > MAX_BUCKETS {
            return Err(Error::Invalid {
                field: "timeBucket",
                message: format!("must be positive and give at most {MAX_BUCKETS} buckets"),
            });
        }
        Ok(Self { range_ms, bucket_ms })
    }

    /// How many buckets the window has: `ceil(range / bucket)`.
    pub fn count(&self) -> u64 {
        self.range_ms.div_ceil(self.bucket_ms)
    }

    /// The buckets of the window at `now`, ascending, with `sparse` counts filled in and empty
    /// buckets as zeros. Bucket edges are multiples of the bucket width (so a live chart polled
    /// again sees the same buckets); the last one is the bucket `now` falls in.
    pub fn fill(&self, now: crate::Timestamp, sparse: &[Bucket]) -> Vec<Bucket> {
        let from = self.from(now).as_millis();
        let width = self.bucket_ms as i64;
        let mut out: Vec<Bucket> = (0..self.count() as i64)
            .map(|k| Bucket { timestamp: from + k * width, success: 0, failure: 0 })
            .collect();
        for b in sparse {
            let k = (b.timestamp - from).div_euclid(width);
            if let Some(slot) = usize::try_from(k).ok().and_then(|k| out.get_mut(k)) {
                slot.success += b.success;
                slot.failure += b.failure;
            }
        }
        out
    }

    /// The start of the window's first bucket at `now`.
    pub fn from(&self, now: crate::Timestamp) -> crate::Timestamp {
        let width = self.bucket_ms as i64;
        let last = now.as_millis() - now.as_millis().rem_euclid(width);
        crate::Timestamp::from_millis(last - (self.count() as i64 - 1) * width)
    }

    /// Window length in milliseconds.
    pub fn range_ms(&self) -> u64 {
        self.range_ms
    }

    /// Bucket width in milliseconds.
    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }
}

pub use crate::model::FlagCounts;

/// How the backends are doing, for `/healthz`.
#[derive(Debug)]
pub struct Health {
    /// The store answered a ping.
    pub store: Result<(), StoreError>,
    /// What the relay could not publish or read, and why.
    pub relay: crate::relay::RelayHealth,
}

/// Tower: the service behind the API, embeddable in any tokio program.
///
/// Cloning is cheap; all clones share one relay task. Changes are logged as made by
/// `anonymous` unless made through [`Tower::acting_as`].
#[derive(Debug, Clone)]
pub struct Tower {
    inner: Arc<Inner>,
    actor: crate::model::Actor,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    coordination: Arc<dyn crate::ports::Coordination>,
    metrics: Arc<dyn MetricsStore>,
    clock: Arc<dyn Clock>,
    signal: Arc<RelaySignal>,
    publisher: Arc<dyn Publisher>,
    feed: Arc<Feed>,
    indexes: Arc<Indexes>,
    stats: Arc<crate::stats::Stats>,
    bucketing: crate::eval::Bucketing,
    stop: watch::Sender<bool>,
    relay: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Assembles a [`Tower`] from its adapters.
#[derive(Debug)]
pub struct TowerBuilder {
    store: Arc<dyn Store>,
    coordination: Option<Arc<dyn crate::ports::Coordination>>,
    publisher: Option<Arc<dyn Publisher>>,
    metrics: Option<Arc<dyn MetricsStore>>,
    clock: Option<Arc<dyn Clock>>,
    relay: RelayConfig,
    breaker: Option<crate::breaker::BreakerSettings>,
    notifier: Option<Arc<dyn crate::ports::Notifier>>,
    webhook_backoff: std::time::Duration,
    bucketing: crate::eval::Bucketing,
    feed_poll: std::time::Duration,
}

impl TowerBuilder {
    /// How often the live feed looks for other processes' changes when the store does not tell
    /// of them (default [`crate::feed::FEED_POLL_INTERVAL`]).
    pub fn feed_poll(mut self, interval: std::time::Duration) -> Self {
        self.feed_poll = interval;
        self
    }

    /// How rollouts assign users (default [`crate::eval::Bucketing::Tower`]; `Tailslide` gives
    /// the answers of the Tailslide SDKs).
    pub fn bucketing(mut self, bucketing: crate::eval::Bucketing) -> Self {
        self.bucketing = bucketing;
        self
    }

    /// Sends the breaker's webhooks through `notifier` (default: none are sent).
    pub fn notifier(mut self, notifier: Arc<dyn crate::ports::Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The first retry delay of a webhook delivery (default 500 ms; it doubles per attempt).
    pub fn webhook_backoff(mut self, backoff: std::time::Duration) -> Self {
        self.webhook_backoff = backoff;
        self
    }

    /// Runs the circuit breaker with these settings (default: no breaker).
    pub fn breaker(mut self, settings: crate::breaker::BreakerSettings) -> Self {
        self.breaker = Some(settings);
        self
    }

    /// How this process takes turns with the others that share the store (default: the
    /// store's own, [`Store::coordination`], or [`crate::LocalCoordination`] for a store that
    /// one process uses).
    pub fn coordination(mut self, coordination: Arc<dyn crate::ports::Coordination>) -> Self {
        self.coordination = Some(coordination);
        self
    }

    /// Where rulesets go (default: a fresh [`InProcessPublisher`]).
    pub fn publisher(mut self, publisher: Arc<dyn Publisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// Where success/failure counts live (default: [`InMemoryMetrics`]).
    pub fn metrics(mut self, metrics: Arc<dyn MetricsStore>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Tuning of the outbox relay.
    pub fn relay_config(mut self, config: RelayConfig) -> Self {
        self.relay = config;
        self
    }

    /// Makes sure an SDK key exists and starts the relay (which republishes every app's
    /// ruleset). Must be called within a tokio runtime.
    pub async fn start(mut self) -> Result<Tower, Error> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let stats = Arc::new(crate::stats::Stats::default());
        // Everything below talks to the store through this, so every operation is timed.
        self.store = Arc::new(crate::timed::TimedStore::new(self.store, Arc::clone(&stats)));
        self.store.ensure_sdk_key(&SdkKey::generate(clock.now())).await?;
        let publisher = self.publisher.unwrap_or_else(|| InProcessPublisher::new());
        let signal = Arc::new(RelaySignal::default());
        let coordination = self
            .coordination
            .or_else(|| self.store.coordination())
            .unwrap_or_else(|| Arc::new(crate::ports::LocalCoordination::default()));
        let (stop, stop_rx) = watch::channel(false);
        let relay = Relay {
            store: Arc::clone(&self.store),
            coordination: Arc::clone(&coordination),
            publisher: Arc::clone(&publisher),
            signal: Arc::clone(&signal),
            clock: Arc::clone(&clock),
            config: self.relay,
            stats: Arc::clone(&stats),
        };
        let handle = tokio::spawn(relay.run(stop_rx));
        let metrics = self.metrics.unwrap_or_else(|| Arc::new(InMemoryMetrics::default()));
        let indexes = Arc::new(Indexes::default());
        tokio::spawn(prepare_all_series(Arc::clone(&self.store), Arc::clone(&metrics)));
        let feed = Arc::new(Feed::default());
        // Followed from now on, so that changes made by others sharing the store move the
        // versions that read caches are checked against.
        feed.track(&*self.store).await?;
        tokio::spawn(Arc::clone(&feed).run(
            Arc::clone(&self.store),
            self.feed_poll,
            Arc::downgrade(&signal),
            stop.subscribe(),
        ));
        if let Some(settings) = self.breaker {
            let engine = crate::engine::Engine {
                store: Arc::clone(&self.store),
                coordination: Arc::clone(&coordination),
                metrics: Arc::clone(&metrics),
                clock: Arc::clone(&clock),
                signal: Arc::clone(&signal),
                settings,
                indexes: Arc::clone(&indexes),
                feed: Arc::clone(&feed),
                webhooks: self.notifier.map(|n| {
                    crate::webhooks::WebhookQueue::start(
                        n,
                        self.webhook_backoff,
                        Arc::clone(&stats),
                    )
                }),
                stats: Arc::clone(&stats),
            };
            tokio::spawn(engine.run(stop.subscribe()));
        }
        Ok(Tower {
            inner: Arc::new(Inner {
                store: self.store,
                coordination,
                metrics,
                clock,
                signal,
                publisher,
                feed,
                indexes,
                stats,
                bucketing: self.bucketing,
                stop,
                relay: std::sync::Mutex::new(Some(handle)),
            }),
            actor: crate::model::Actor::anonymous(),
        })
    }
}

impl Tower {
    /// Starts assembling a Tower on `store`.
    pub fn builder(store: Arc<dyn Store>) -> TowerBuilder {
        TowerBuilder {
            store,
            coordination: None,
            publisher: None,
            metrics: None,
            clock: None,
            relay: RelayConfig::default(),
            breaker: None,
            notifier: None,
            webhook_backoff: std::time::Duration::from_millis(500),
            bucketing: crate::eval::Bucketing::Tower,
            feed_poll: crate::feed::FEED_POLL_INTERVAL,
        }
    }

    fn now(&self) -> crate::Timestamp {
        self.inner.clock.now()
    }

    /// This Tower, logging the changes made through it as made by `actor` (the admin token's
    /// name the request came with). Cheap: it shares everything with `self`.
    pub fn acting_as(&self, actor: crate::model::Actor) -> Tower {
        Tower { inner: Arc::clone(&self.inner), actor }
    }

    /// What the breaker and the webhooks did since this Tower started.
    pub fn stats(&self) -> crate::stats::StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// Who the changes made through this handle are logged as made by.
    pub fn actor(&self) -> &crate::model::Actor {
        &self.actor
    }

    fn store(&self) -> &dyn Store {
        &*self.inner.store
    }

    fn committed<T>(&self, app: AppId, change: Change<T>) -> T {
        if let Some(revision) = change.revision {
            self.inner.feed.versions.changed(app);
            self.inner.indexes.forget(app, revision);
            self.inner.signal.committed(app, revision);
            // The service's changes are the operators' (the breaker's go through the engine).
            self.inner.signal.changed(app, Origin::Manual);
            self.inner.feed.wake.notify_one();
        }
        change.value
    }

    /// Live apps, by id.
    pub async fn list_apps(&self) -> Result<Vec<App>, Error> {
        Ok(self.store().list_apps().await?)
    }

    /// One app.
    pub async fn get_app(&self, id: AppId) -> Result<App, Error> {
        Ok(self.store().get_app(id).await?)
    }

    /// Live apps, by id, each with how many of its flags are on and in which circuit state.
    pub async fn app_summaries(&self) -> Result<Vec<(App, FlagCounts)>, Error> {
        Ok(self.store().app_summaries().await?)
    }

    /// Creates an app, and publishes its empty ruleset so that SDKs can start on it at once.
    pub async fn create_app(&self, title: &Title) -> Result<App, Error> {
        let app = self.store().create_app(title, self.now()).await?;
        self.inner.feed.versions.changed(app.id);
        self.inner.signal.changed(app.id, Origin::Manual);
        self.inner.feed.wake.notify_one();
        Ok(app)
    }

    /// Renames an app.
    pub async fn rename_app(&self, id: AppId, title: &Title) -> Result<App, Error> {
        let app = self.store().rename_app(id, title, self.now()).await?;
        self.inner.feed.versions.changed(id);
        self.inner.feed.wake.notify_one();
        Ok(app)
    }

    /// Deletes an app with its flags; its ruleset becomes `[]`.
    pub async fn delete_app(&self, id: AppId) -> Result<App, Error> {
        let change = self.store().delete_app(id, self.now(), &self.actor).await?;
        Ok(self.committed(id, change))
    }

    /// An app's flags, by id.
    pub async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, Error> {
        Ok(self.store().list_flags(app).await?)
    }

    /// The version of what this process knows of `app` (see [`crate::versions`]): it moves
    /// before any change of the app made through this process returns, and when the live feed
    /// reads another process's change (for a store several processes share, at once on
    /// PostgreSQL, else within the feed's poll interval). Take it before reading the store, keep
    /// what was read under it, and serve the copy while it stays the same.
    pub fn app_version(&self, app: AppId) -> crate::versions::Version {
        self.inner.feed.versions.app(app)
    }

    /// [`Tower::app_version`] of all apps at once: it moves with any app's.
    pub fn apps_version(&self) -> crate::versions::Version {
        self.inner.feed.versions.all()
    }

    /// One flag.
    pub async fn get_flag(&self, id: FlagId) -> Result<Flag, Error> {
        Ok(self.store().get_flag(id).await?)
    }

    /// One flag with its log entries, oldest first.
    pub async fn flag_with_logs(
        &self,
        id: FlagId,
        limit: u32,
    ) -> Result<(Flag, Vec<LogEntry>), Error> {
        Ok(self.store().flag_with_logs(id, limit.min(crate::ports::MAX_LOG_PAGE)).await?)
    }

    /// Creates a flag (off unless `is_active` says otherwise), and its metrics series.
    pub async fn create_flag(&self, app: AppId, flag: &NewFlag) -> Result<Flag, Error> {
        let limit = self.inner.publisher.max_ruleset_bytes();
        let change =
            self.store().create_flag_within(app, flag, self.now(), &self.actor, limit).await?;
        let flag = self.committed(app, change);
        // The flag exists either way; an unprepared series is prepared at the next start, and
        // Tower's own writes create it right.
        if let Err(e) = self.inner.metrics.prepare(flag.id, flag.app_id).await {
            tracing::warn!(flag = %flag.id, error = %crate::ErrorChain(&e), "could not prepare the flag's metrics series");
        }
        Ok(flag)
    }

    /// Applies a command to a flag as an operator (published on the `manual` subject). A change
    /// that would grow the app's ruleset past what the publisher can deliver is refused
    /// ([`Error::TooLarge`]) and nothing is written.
    pub async fn change_flag(&self, id: FlagId, command: &FlagCommand) -> Result<Flag, Error> {
        let limit = self.inner.publisher.max_ruleset_bytes();
        let now = self.now();
        let change = self
            .store()
            .change_flag_within(id, command, Origin::Manual, now, &self.actor, limit)
            .await?;
        let app = change.value.app_id;
        Ok(self.committed(app, change))
    }

    /// Edits a flag's settings.
    pub async fn update_flag(&self, id: FlagId, patch: FlagPatch) -> Result<Flag, Error> {
        self.change_flag(id, &FlagCommand::Update(patch)).await
    }

    /// Sets `is_active`, or flips it when `None`.
    pub async fn toggle_flag(&self, id: FlagId, target: Option<bool>) -> Result<Flag, Error> {
        self.change_flag(id, &FlagCommand::Toggle(target)).await
    }

    /// Trips a flag's circuit open (an emergency stop: no automatic recovery).
    pub async fn open_circuit(&self, id: FlagId) -> Result<Flag, Error> {
        self.change_flag(id, &FlagCommand::TripOpen).await
    }

    /// Closes a flag's circuit (on, 100 %).
    pub async fn close_circuit(&self, id: FlagId) -> Result<Flag, Error> {
        self.change_flag(id, &FlagCommand::Close).await
    }

    /// Deletes a flag; returns it as it was.
    pub async fn delete_flag(&self, id: FlagId) -> Result<Flag, Error> {
        let change = self.store().delete_flag(id, self.now(), &self.actor).await?;
        let app = change.value.app_id;
        Ok(self.committed(app, change))
    }

    /// Every log entry, newest first.
    pub async fn logs(&self) -> Result<Vec<LogEntry>, Error> {
        Ok(self.store().list_logs().await?)
    }

    /// A page of the log (see [`LogQuery`]).
    pub async fn query_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, Error> {
        Ok(self.store().query_logs(query).await?)
    }

    /// Subscribes to the live feed: every ruleset change and log entry committed after this
    /// returns, by any process sharing the store, and this process's app changes.
    pub async fn subscribe(&self) -> Result<FeedSubscription, Error> {
        Ok(self.inner.feed.subscribe(self.store()).await?)
    }

    /// An app's log entries, oldest first.
    pub async fn app_logs(&self, app: AppId) -> Result<Vec<LogEntry>, Error> {
        Ok(self.store().app_logs(app).await?)
    }

    /// The current SDK key (one is made at start, so there always is one).
    pub async fn sdk_key(&self) -> Result<SdkKey, Error> {
        match self.store().sdk_key().await? {
            Some(key) => Ok(key),
            None => Ok(self.store().ensure_sdk_key(&SdkKey::generate(self.now())).await?),
        }
    }

    /// Makes a new SDK key, replacing the current one.
    pub async fn rotate_sdk_key(&self) -> Result<SdkKey, Error> {
        Ok(self.store().replace_sdk_key(&SdkKey::generate(self.now())).await?)
    }

    /// Records success/failure counts for a flag at the current time.
    pub async fn record_events(&self, id: FlagId, counts: Counts) -> Result<Counts, Error> {
        let flag = self.store().get_flag(id).await?;
        self.inner.metrics.record(id, flag.app_id, counts, self.now()).await?;
        Ok(counts)
    }

    /// A flag's success/failure counts over the window ending now, empty buckets as zeros.
    pub async fn timeseries(&self, id: FlagId, window: TimeWindow) -> Result<Vec<Bucket>, Error> {
        self.store().get_flag(id).await?;
        let now = self.now();
        let sparse =
            self.inner.metrics.buckets(id, window.from(now), now, window.bucket_ms()).await?;
        Ok(window.fill(now, &sparse))
    }

    /// The app's flags compiled for evaluation ([`crate::eval::Index`]), kept under the app's
    /// version ([`Tower::app_version`]): current with every change made through this process,
    /// and with other processes' as soon as the live feed reads them. Cheap when nothing
    /// changed: two map lookups.
    pub async fn index(&self, app: AppId) -> Result<Arc<crate::eval::Index>, Error> {
        let version = self.app_version(app);
        if let Some(index) = self.inner.indexes.fresh(app, version) {
            return Ok(index);
        }
        // A deleted app has an empty ruleset, but no flags to evaluate: not found.
        self.store().get_app(app).await?;
        let ruleset = self.store().ruleset(app).await?;
        Ok(self.inner.indexes.put(&ruleset, version))
    }

    /// How rollouts assign users in this Tower.
    pub fn bucketing(&self) -> crate::eval::Bucketing {
        self.inner.bucketing
    }

    /// How the backends are doing.
    pub async fn health(&self) -> Health {
        Health { store: self.store().ping().await, relay: self.inner.signal.health() }
    }

    /// Runs one check of every flag with `settings` now (what the breaker engine does every
    /// interval, without its lease or webhooks); the number of flags moved.
    pub async fn check_circuits(
        &self,
        settings: crate::breaker::BreakerSettings,
    ) -> Result<usize, Error> {
        let engine = crate::engine::Engine {
            store: Arc::clone(&self.inner.store),
            coordination: Arc::clone(&self.inner.coordination),
            metrics: Arc::clone(&self.inner.metrics),
            clock: Arc::clone(&self.inner.clock),
            signal: Arc::clone(&self.inner.signal),
            settings,
            indexes: Arc::clone(&self.inner.indexes),
            feed: Arc::clone(&self.inner.feed),
            webhooks: None,
            stats: Arc::clone(&self.inner.stats),
        };
        engine.tick().await.map_err(Error::Internal)
    }

    /// Stops the breaker, and the relay after it has published what is committed (when the
    /// publisher is up).
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let handle = self.inner.relay.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }
}

/// Evaluation indexes by app, each with the app's version it was read at.
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    inner: std::sync::Mutex<IndexMap>,
}

#[derive(Debug, Default)]
struct IndexMap {
    by_app: std::collections::HashMap<AppId, (Arc<crate::eval::Index>, crate::versions::Version)>,
    /// The newest revision this process committed per app: a slower read that returns an older
    /// one must not be kept as fresh.
    floor: std::collections::HashMap<AppId, crate::Revision>,
}

impl Indexes {
    fn lock(&self) -> std::sync::MutexGuard<'_, IndexMap> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(
        &self,
        app: AppId,
        version: crate::versions::Version,
    ) -> Option<Arc<crate::eval::Index>> {
        let map = self.lock();
        let (index, read_at) = map.by_app.get(&app)?;
        (*read_at == version).then(|| Arc::clone(index))
    }

    /// Keeps the index of `ruleset`, read at the app's `version`, reusing the one held when
    /// the revision is the same.
    fn put(
        &self,
        ruleset: &crate::Ruleset,
        version: crate::versions::Version,
    ) -> Arc<crate::eval::Index> {
        let mut map = self.lock();
        if let Some((index, read_at)) = map.by_app.get_mut(&ruleset.app_id)
            && index.revision == ruleset.revision
        {
            *read_at = version;
            return Arc::clone(index);
        }
        let index = Arc::new(crate::eval::Index::of(ruleset));
        if map.floor.get(&ruleset.app_id).is_none_or(|floor| ruleset.revision >= *floor) {
            map.by_app.insert(ruleset.app_id, (Arc::clone(&index), version));
        }
        index
    }

    /// Drops an app's index: this process committed `revision` of its flags.
    pub(crate) fn forget(&self, app: AppId, revision: crate::Revision) {
        let mut map = self.lock();
        map.by_app.remove(&app);
        let floor = map.floor.entry(app).or_insert(revision);
        *floor = (*floor).max(revision);
    }
}

/// Prepares the metrics series of every existing flag (SDKs may write to them before Tower ever
/// does).
async fn prepare_all_series(store: Arc<dyn Store>, metrics: Arc<dyn MetricsStore>) {
    let result: Result<usize, BoxError> = async {
        let mut n = 0;
        for (_, flags) in store.apps_with_flags().await? {
            for flag in flags {
                metrics.prepare(flag.id, flag.app_id).await?;
                n += 1;
            }
        }
        Ok(n)
    }
    .await;
    match result {
        Ok(n) => tracing::debug!(flags = n, "metrics series prepared"),
        Err(e) => {
            tracing::warn!(error = %crate::ErrorChain(&*e), "could not prepare every flag's metrics series")
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.relay.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn windows_are_validated() {
        assert!(TimeWindow::new(0, 1).is_err());
        assert!(TimeWindow::new(10, 0).is_err());
        assert!(TimeWindow::new(100_001, 10).is_err());
        assert!(TimeWindow::new(100_000, 10).is_ok());
        assert!(TimeWindow::new(10_000, 10_000).is_ok());
        assert!(TimeWindow::new(10_000, 10_001).is_err(), "a bucket larger than the window");
        assert!(TimeWindow::new(10_000, u64::MAX).is_err());
    }

    #[test]
    fn fill_gives_zeroed_ascending_aligned_buckets_ending_with_now() {
        let w = TimeWindow::new(10_000, 3_000).unwrap();
        let now = Timestamp::from_millis(100_000);
        let from = w.from(now).as_millis();
        assert_eq!(from, 90_000, "edges are multiples of the width; the last bucket holds now");
        let sparse = [Bucket { timestamp: from + 3_000, success: 2, failure: 1 }];
        let b = w.fill(now, &sparse);
        assert_eq!(
            b.iter().map(|b| b.timestamp).collect::<Vec<_>>(),
            [90_000, 93_000, 96_000, 99_000]
        );
        assert_eq!((b[1].success, b[1].failure), (2, 1));
        assert_eq!(b[0].success + b[2].success + b[3].success, 0);
        // A poll a little later sees the same edges.
        assert_eq!(w.from(Timestamp::from_millis(101_999)).as_millis(), 90_000);
        assert_eq!(w.from(Timestamp::from_millis(102_000)).as_millis(), 93_000);
    }
}
