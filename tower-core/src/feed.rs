//! The live feed: each app's rulesets and each log entry as they commit, for dashboards
//! (`GET /api/stream` serves it as server-sent events).
//!
//! The feed reads the [`Store`], not the publisher, so it sees every change to the store,
//! whichever Tower process made it: a task asks the store which apps changed since its last
//! look ([`Store::changed_since`], whose cost follows the changes, not the apps), compares each
//! one's [`AppCursor`] (the app, its revision and newest log entry, read in one snapshot) with
//! the last it saw, and reads what moved. Only the first subscriber's baseline reads every app.
//! It runs when the store tells of another process's commit (PostgreSQL's LISTEN/NOTIFY), every
//! [`FEED_POLL_INTERVAL`], and, while someone listens, when a change commits in this process.
//! While nobody listens it only follows which apps changed, for [`crate::versions`] (the read
//! caches' check), without reading their rulesets or logs. Within an app, log ids grow in commit order, so a feed
//! never skips an entry; rulesets may coalesce (a reader sees the app's newest revision, as
//! JetStream's last-per-subject readers do).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify, broadcast, watch};

use crate::model::{App, AppId, LogId};
use crate::ports::{AppCursor, ChangeMark, LogQuery, LogRecord, MAX_LOG_PAGE, Store, StoreError};
use crate::ruleset::Ruleset;

/// How often the feed looks for changes made by other processes (by default; and at once when
/// the store tells of them: PostgreSQL's LISTEN/NOTIFY).
pub const FEED_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many events a slow subscriber may fall behind before it is told to resync.
const BACKLOG: usize = 1024;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedEvent {
    /// An app's ruleset at a new revision (a manual change or the breaker's).
    Ruleset(Ruleset),
    /// A new log entry.
    Log(LogRecord),
    /// An app was created, renamed or deleted.
    App {
        /// The app as it is (or was, when deleted).
        app: App,
        /// Whether it was deleted.
        deleted: bool,
    },
    /// The subscriber fell behind and events were dropped: re-read what is shown.
    Resync,
}

/// The feed's shared half: the channel, the wake-up, and what was last seen (`None` while
/// nobody listens).
#[derive(Debug)]
pub(crate) struct Feed {
    tx: broadcast::Sender<Arc<FeedEvent>>,
    pub(crate) wake: Arc<Notify>,
    seen: Mutex<Option<Seen>>,
    /// Moved for every app the feed sees change (and by the service for this process's own).
    pub(crate) versions: crate::versions::Versions,
    /// Woken by the store when another process commits (PostgreSQL's NOTIFY).
    remote: Arc<Notify>,
}

/// What the feed last saw: each app's cursor, and where the store's changes stood.
#[derive(Debug)]
struct Seen {
    apps: HashMap<AppId, AppCursor>,
    mark: ChangeMark,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            wake: Arc::new(Notify::new()),
            seen: Mutex::new(None),
            versions: crate::versions::Versions::default(),
            remote: Arc::new(Notify::new()),
        }
    }
}

/// A subscriber's end of the feed; see [`crate::Tower::subscribe`].
#[derive(Debug)]
pub struct FeedSubscription {
    rx: broadcast::Receiver<Arc<FeedEvent>>,
}

impl FeedSubscription {
    /// The next event; [`FeedEvent::Resync`] after falling behind; `None` once Tower stopped.
    pub async fn next(&mut self) -> Option<Arc<FeedEvent>> {
        match self.rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Arc::new(FeedEvent::Resync)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Feed {
    /// Subscribes; every change that commits after this returns is delivered.
    pub(crate) async fn subscribe(
        &self,
        store: &dyn Store,
    ) -> Result<FeedSubscription, StoreError> {
        let rx = self.tx.subscribe();
        let mut guard = self.seen.lock().await;
        match &mut *guard {
            None => *guard = Some(baseline(store).await?),
            // What committed before this returns is not the subscriber's: the feed saw this
            // process's own commits only as versions while nobody listened, so it catches up
            // without sending them.
            Some(seen) => self.catch_up(seen, store).await?,
        }
        Ok(FeedSubscription { rx })
    }

    /// Moves `seen` (and the versions of the apps that changed) to what the store holds now,
    /// reading and sending nothing else.
    async fn catch_up(&self, seen: &mut Seen, store: &dyn Store) -> Result<(), StoreError> {
        let changed = store.changed_since(Some(seen.mark)).await?;
        for now in changed.apps {
            if seen.apps.get(&now.app.id) != Some(&now) {
                self.versions.changed(now.app.id);
                seen.apps.insert(now.app.id, now);
            }
        }
        seen.mark = changed.mark;
        Ok(())
    }

    /// Reads the baseline, from which the feed follows the store whether or not anyone
    /// listens (so that other processes' changes move `versions`); a change committed after
    /// this returns is seen.
    pub(crate) async fn track(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut seen = self.seen.lock().await;
        if seen.is_none() {
            *seen = Some(baseline(store).await?);
        }
        Ok(())
    }

    fn send(&self, event: FeedEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// Reads what changed since the last look and sends it.
    pub(crate) async fn poll(&self, store: &dyn Store) -> Result<(), StoreError> {
        let mut guard = self.seen.lock().await;
        let seen = match &mut *guard {
            Some(seen) => seen,
            None => guard.insert(baseline(store).await?),
        };
        if self.tx.receiver_count() == 0 {
            // Followed for the versions only: nobody needs the rulesets or the log entries.
            return self.catch_up(seen, store).await;
        }
        let changed = store.changed_since(Some(seen.mark)).await?;
        for now in changed.apps {
            let id = now.app.id;
            let before = seen.apps.get(&id);
            if before == Some(&now) {
                continue;
            }
            self.versions.changed(id);
            match before {
                // Created since the last look (maybe by another process).
                None if !now.deleted => {
                    self.send(FeedEvent::App { app: now.app.clone(), deleted: false });
                }
                Some(b) if now.deleted && !b.deleted => {
                    self.send(FeedEvent::App { app: now.app.clone(), deleted: true });
                }
                Some(b) if b.app != now.app && !now.deleted => {
                    self.send(FeedEvent::App { app: now.app.clone(), deleted: false });
                }
                _ => {}
            }
            let mut next = now.clone();
            if before.map(|b| b.revision) != Some(now.revision) && now.revision.get() > 0 {
                let ruleset = store.ruleset(id).await?;
                next.revision = next.revision.max(ruleset.revision);
                self.send(FeedEvent::Ruleset(ruleset));
            }
            let mut after = before.and_then(|b| b.last_log);
            if after != now.last_log {
                loop {
                    // Ids are positive: `after: 0` reads an app's entries from its first.
                    let query = LogQuery {
                        app: Some(id),
                        after: after.or(Some(LogId::new(0))),
                        limit: MAX_LOG_PAGE,
                        ..LogQuery::default()
                    };
                    let page = store.query_logs(&query).await?;
                    let full = page.len() == MAX_LOG_PAGE as usize;
                    for record in page {
                        after = Some(record.entry.id);
                        self.send(FeedEvent::Log(record));
                    }
                    if !full {
                        break;
                    }
                }
                next.last_log = next.last_log.max(after);
            }
            seen.apps.insert(id, next);
        }
        // Only now: had a read above failed, the next poll asks again from the old mark.
        seen.mark = changed.mark;
        Ok(())
    }

    /// Polls on every wake-up (this process's commits, and other processes' where the store
    /// tells of them) and every `interval` until `stop`.
    pub(crate) async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        interval: Duration,
        relay: std::sync::Weak<crate::relay::RelaySignal>,
        mut stop: watch::Receiver<bool>,
    ) {
        if store.notify_changes(Arc::downgrade(&self.remote), stop.clone()) {
            tracing::debug!("live feed: the store tells of other processes' changes");
        }
        let mut failures: u32 = 0;
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.reset();
        loop {
            tokio::select! {
                // This process's own commit: their versions moved already, so only a listener
                // needs the feed to read them.
                () = self.wake.notified() => {
                    if self.tx.receiver_count() == 0 {
                        continue;
                    }
                }
                // Another process's change: the relay reads the outbox too, in case that
                // process does not publish it (its publisher down, or it crashed after the
                // commit), rather than at its next poll.
                () = self.remote.notified() => {
                    if let Some(relay) = relay.upgrade() {
                        relay.changed_elsewhere();
                    }
                }
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            match self.poll(&*store).await {
                Ok(()) if failures > 0 => {
                    tracing::info!(failures, "live feed reads changes again");
                    failures = 0;
                }
                Ok(()) => {}
                Err(e) => {
                    failures = failures.saturating_add(1);
                    // Once when it starts, then once a minute while it lasts: an outage of the
                    // store is also reported by every request that needs it.
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(error = %crate::ErrorChain(&e), failures, "live feed could not read changes; will retry");
                    }
                }
            }
        }
    }
}

async fn baseline(store: &dyn Store) -> Result<Seen, StoreError> {
    let all = store.changed_since(None).await?;
    Ok(Seen { apps: all.apps.into_iter().map(|c| (c.app.id, c)).collect(), mark: all.mark })
}
