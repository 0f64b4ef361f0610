//! The outbox relay: publishes the newest ruleset of every app with unpublished changes, and
//! marks them published only once the publisher accepted them.
//!
//! One relay task runs per [`crate::Tower`]. It wakes when a change commits, and publishes that
//! app without reading the outbox first; it reads the outbox on a timer (changes committed by
//! other processes, and anything missed) and republishes every live app at start.
//!
//! Every app is its own unit of work: up to [`RelayConfig::max_in_flight`] publications run at
//! once, each taking every app that is due (their leases taken together, see
//! [`Coordination::lease_publications`]), at most one publication per app is in flight (so no
//! older revision of an app is sent after a newer one), and an app that fails is retried on its
//! own backoff while every other app keeps publishing. A ruleset the publisher refuses (larger than NATS's `max_payload`) is
//! not retried in a loop: it waits for the app's next change, or [`RelayConfig::rejected_retry`].
//! What is not published, why, and since when, is [`RelayHealth`], which `/healthz` shows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::model::{AppId, Origin, Revision};
use crate::ports::{BoxError, Coordination, PublishError, Publisher, Store, StoreError};
use crate::ruleset::EncodedRuleset;
use crate::time::{Clock, Timestamp};

/// Tuning of the relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// First retry delay after a failure.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How often the outbox is read without being woken (changes by other processes).
    pub poll_interval: Duration,
    /// How long a ruleset the publisher refused waits before it is tried again unchanged (a
    /// change to the app is tried at once).
    pub rejected_retry: Duration,
    /// How many publications run at the same time (each of up to 32 apps); one starts beside
    /// another only once that one has run for 10 ms.
    pub max_in_flight: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
            rejected_retry: Duration::from_secs(60),
            // Each publication holds up to two store connections (PostgreSQL: the lease's and
            // a query's): two at once leave most of a small pool to the requests.
            max_in_flight: 2,
        }
    }
}

/// Which side of the relay failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the ruleset or marking it published.
    Store,
    /// Handing it to the publisher.
    Publisher,
}

impl Stage {
    /// `store` or `publisher`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Publisher => "publisher",
        }
    }
}

/// One app whose newest ruleset is not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpublished {
    /// The app.
    pub app_id: AppId,
    /// Where it failed.
    pub stage: Stage,
    /// The revision that could not be published, when the relay got as far as reading it.
    pub revision: Option<Revision>,
    /// The error, with its causes.
    pub reason: String,
    /// The first failure of this run of failures.
    pub since: Timestamp,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The publisher refused the ruleset itself (too large): it is retried when the app changes.
    pub rejected: bool,
}

/// What the relay knows of what it could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayHealth {
    /// The relay cannot read the outbox or the list of apps: the error and since when.
    pub store: Option<(String, Timestamp)>,
    /// Apps whose newest ruleset is not published, by app id.
    pub unpublished: Vec<Unpublished>,
}

impl RelayHealth {
    /// Whether some app's ruleset is not published because of the publisher.
    pub fn publisher_degraded(&self) -> bool {
        self.unpublished.iter().any(|u| u.stage == Stage::Publisher)
    }

    /// Whether the relay could not read or write the store.
    pub fn store_degraded(&self) -> bool {
        self.store.is_some() || self.unpublished.iter().any(|u| u.stage == Stage::Store)
    }
}

/// Shared between the relay task and the service: how to wake it and how it is doing.
#[derive(Debug, Default)]
pub(crate) struct RelaySignal {
    pub(crate) wake: Notify,
    /// Apps this process just changed, and who changed them: the relay publishes them without
    /// reading the outbox first (a round trip less between a commit and its publication). New
    /// apps too, although the outbox has nothing for them: their empty ruleset (revision 0) lets
    /// an SDK start on them before their first flag.
    changed: Mutex<Vec<(AppId, Origin)>>,
    /// When this process committed each app's newest unpublished revision, for the commit →
    /// publish latency.
    commits: Mutex<HashMap<AppId, (Revision, Instant)>>,
    /// Kept current one app at a time, so an outage of many apps costs each step O(log n).
    health: Mutex<HealthState>,
    /// Another process committed something (the store told): read the outbox at once.
    elsewhere: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct HealthState {
    store: Option<(String, Timestamp)>,
    unpublished: BTreeMap<AppId, Unpublished>,
}

impl RelaySignal {
    /// This process committed `revision` of `app` now; the relay's next publication of it
    /// measures the wait from the oldest such commit not yet published.
    pub(crate) fn committed(&self, app: AppId, revision: Revision) {
        let mut c = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        c.entry(app).or_insert((revision, Instant::now()));
    }

    /// `app` was published at `revision`: how long its oldest unpublished commit here waited,
    /// if it is among those published.
    fn published(&self, app: AppId, revision: Revision) -> Option<Duration> {
        let mut c = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        match c.get(&app) {
            Some((first, at)) if *first <= revision => {
                let waited = at.elapsed();
                c.remove(&app);
                Some(waited)
            }
            _ => None,
        }
    }

    /// This process committed a change of `app` made by `origin`: the relay publishes it next.
    pub(crate) fn changed(&self, app: AppId, origin: Origin) {
        self.changed.lock().unwrap_or_else(|e| e.into_inner()).push((app, origin));
        self.wake.notify_one();
    }

    /// Another process sharing the store committed a change (the store told of it, as
    /// PostgreSQL's `NOTIFY` does): the relay reads the outbox at once rather than at its next
    /// poll, so the change is published even when its own process cannot publish it.
    pub(crate) fn changed_elsewhere(&self) {
        self.elsewhere.store(true, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// What the relay could not publish or read, by app id.
    pub(crate) fn health(&self) -> RelayHealth {
        let h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        RelayHealth {
            store: h.store.clone(),
            unpublished: h.unpublished.values().cloned().collect(),
        }
    }

    fn set_store_problem(&self, problem: Option<(String, Timestamp)>) {
        self.health.lock().unwrap_or_else(|e| e.into_inner()).store = problem;
    }

    fn set_problem(&self, app: AppId, problem: Option<&Unpublished>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(u) => h.unpublished.insert(app, u.clone()),
            None => h.unpublished.remove(&app),
        };
    }
}

pub(crate) struct Relay {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) coordination: Arc<dyn Coordination>,
    pub(crate) publisher: Arc<dyn Publisher>,
    pub(crate) signal: Arc<RelaySignal>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: RelayConfig,
    pub(crate) stats: Arc<crate::stats::Stats>,
}

/// How one attempt to publish one app ended.
enum Outcome {
    Published(Revision),
    /// The app never existed: nothing to publish.
    Gone,
    /// Another process holds the app's publication lease and publishes it.
    LeasedElsewhere,
    Failed {
        stage: Stage,
        revision: Option<Revision>,
        error: BoxError,
        rejected: bool,
    },
}

/// The publication of some apps, taken together: each app, its origin and its outcome.
type Publication =
    std::pin::Pin<Box<dyn std::future::Future<Output = Vec<(AppId, Origin, Outcome)>> + Send>>;

/// The most apps one publication takes (their leases taken together, their rulesets read in
/// one statement where the coordination can).
const MAX_APPS_PER_PUBLICATION: usize = 32;

/// How long a publication runs alone before another may start beside it. Under load the apps
/// that fall due meanwhile wait for it and go together in the next, which costs the store about
/// what one app does (on PostgreSQL 10–13 % more changes/s spread over 100 apps than two
/// publications at once, for about a millisecond more from commit to publish); a publication
/// that takes longer (a slow or unreachable broker) does not hold the others back for longer.
const ALONE_FOR: Duration = Duration::from_millis(10);

/// An app waiting to be tried again.
struct Retry {
    origin: Origin,
    due: Instant,
    /// `None` while it only waits for another process (nothing is wrong).
    problem: Option<Unpublished>,
}

/// The relay's bookkeeping. Every operation on it costs O(1) or O(log n) per app, so a long
/// outage with many apps does not make each step slower.
#[derive(Default)]
struct State {
    /// Whether the app list (start-up republish) has been read.
    listed: bool,
    /// Read the outbox before handing out: woken by a commit, the poll timer, or a failed read.
    rescan: bool,
    next_poll: Option<Instant>,
    /// Apps to publish as soon as a slot is free, without duplicates.
    ready: VecDeque<(AppId, Origin)>,
    queued: HashSet<AppId>,
    /// Apps waiting for their retry, and when each is due.
    retry: HashMap<AppId, Retry>,
    timers: BTreeSet<(Instant, AppId)>,
    in_flight: HashSet<AppId>,
    /// Apps that changed while their publication was in flight: published again after it.
    again: HashSet<AppId>,
    /// The newest revision this relay published of each app, so a second hand-out of the same
    /// revision does not send it twice.
    published: HashMap<AppId, Revision>,
    /// The publications in flight, polled by the relay task itself (no hop to another thread).
    tasks: FuturesUnordered<Publication>,
    /// When the newest publication in flight started.
    started: Option<Instant>,
    /// Consecutive failures to read the outbox.
    store_failures: u32,
    store_problem: Option<(String, Timestamp)>,
}

impl State {
    fn enqueue(&mut self, app: AppId, origin: Origin) {
        if self.in_flight.contains(&app) {
            self.again.insert(app);
        } else if self.queued.insert(app) {
            self.ready.push_back((app, origin));
        }
    }

    fn schedule(&mut self, app: AppId, retry: Retry) {
        self.timers.insert((retry.due, app));
        if let Some(old) = self.retry.insert(app, retry) {
            self.timers.remove(&(old.due, app));
        }
    }

    /// Takes an app's retry off the timers (it is handed out now), keeping its problem for the
    /// health report until it is published.
    fn unschedule(&mut self, app: AppId) {
        if let Some(r) = self.retry.get_mut(&app) {
            self.timers.remove(&(r.due, app));
            r.due = Instant::now();
        }
    }
}

impl Relay {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut st = State { rescan: true, ..State::default() };
        loop {
            let now = Instant::now();
            if st.next_poll.is_none_or(|t| t <= now) {
                st.rescan = true;
            }
            if st.rescan {
                self.rescan(&mut st).await;
            }
            // This process's own commits, as the outbox would show them: an app waiting for its
            // retry stays waiting, unless the publisher refused its ruleset (the new one may fit).
            for (app, origin) in
                std::mem::take(&mut *self.signal.changed.lock().unwrap_or_else(|e| e.into_inner()))
            {
                match st.retry.get(&app) {
                    Some(r) if r.problem.as_ref().is_some_and(|u| u.rejected) => {
                        st.unschedule(app);
                        st.enqueue(app, origin);
                    }
                    Some(_) => {}
                    None => st.enqueue(app, origin),
                }
            }
            // Retries that fell due.
            while let Some(&(due, app)) = st.timers.first() {
                if due > now {
                    break;
                }
                st.timers.remove(&(due, app));
                if let Some(origin) = st.retry.get(&app).map(|r| r.origin) {
                    st.enqueue(app, origin);
                }
            }
            self.hand_out(&mut st);
            let mut wake_at = st.next_poll.unwrap_or(now + self.config.poll_interval);
            if let Some(&(due, _)) = st.timers.first() {
                wake_at = wake_at.min(due);
            }
            // Apps wait for the publication in flight: another may start beside it later.
            if let Some(started) = st.started
                && !st.ready.is_empty()
                && st.tasks.len() < self.config.max_in_flight.max(1)
            {
                wake_at = wake_at.min(started + ALONE_FOR);
            }
            tokio::select! {
                Some(done) = st.tasks.next(), if !st.tasks.is_empty() => {
                    for one in done {
                        self.settle(&mut st, one);
                    }
                }
                // Woken with this process's commits in hand, it publishes them without reading
                // the outbox; only another process's commit makes it read the outbox. (A wake-up
                // with no commit in hand is one whose commits the loop took already: `Notify`
                // keeps one wake-up for a waiter that comes later.)
                _ = self.signal.wake.notified(), if st.store_failures == 0 => {
                    st.rescan =
                        self.signal.elsewhere.swap(false, std::sync::atomic::Ordering::Relaxed);
                }
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = stop.changed() => {
                    self.finish(st).await;
                    return;
                }
            }
        }
    }

    /// Reads the outbox (and, the first time, every live app) into the ready queue.
    async fn rescan(&self, st: &mut State) {
        let listed = st.listed;
        let read = async {
            let apps = if listed { Vec::new() } else { self.store.list_apps().await? };
            Ok::<_, StoreError>((apps, self.store.pending().await?))
        };
        let mut read = std::pin::pin!(read);
        // Publications in flight hold store connections (their lease, their reads): keep
        // driving them while the outbox is read, or a small pool could wait on itself.
        let result = loop {
            tokio::select! {
                result = &mut read => break result,
                Some(done) = st.tasks.next(), if !st.tasks.is_empty() => {
                    for one in done {
                        self.settle(st, one);
                    }
                }
            }
        };
        match result {
            Ok((apps, pending)) => {
                if st.store_failures > 0 {
                    tracing::info!("ruleset relay reads the store again");
                    self.signal.set_store_problem(None);
                }
                st.store_failures = 0;
                st.store_problem = None;
                st.rescan = false;
                st.next_poll = Some(Instant::now() + self.config.poll_interval);
                for p in pending {
                    match st.retry.get(&p.app_id) {
                        // Waiting for its retry, unless the publisher refused the ruleset and
                        // the app changed since: the new one may fit.
                        Some(r) => {
                            let changed = r.problem.as_ref().is_some_and(|u| {
                                u.rejected && u.revision.is_some_and(|rev| p.revision > rev)
                            });
                            if changed {
                                st.unschedule(p.app_id);
                                st.enqueue(p.app_id, p.origin);
                            }
                        }
                        None => st.enqueue(p.app_id, p.origin),
                    }
                }
                if !st.listed {
                    st.listed = true;
                    for app in apps {
                        if !st.retry.contains_key(&app.id) {
                            st.enqueue(app.id, Origin::Manual);
                        }
                    }
                }
            }
            Err(e) => {
                st.store_failures = st.store_failures.saturating_add(1);
                if st.store_problem.is_none() {
                    st.store_problem = Some((crate::ErrorChain(&e).to_string(), self.clock.now()));
                    self.signal.set_store_problem(st.store_problem.clone());
                }
                tracing::warn!(error = %crate::ErrorChain(&e), attempt = st.store_failures, "ruleset relay cannot read the outbox; will retry");
                // Read again when the backoff ends (not at the next task's end).
                st.rescan = false;
                st.next_poll = Some(Instant::now() + backoff(self.config, st.store_failures));
            }
        }
    }

    /// Starts publications from the ready queue while slots are free, each taking the apps
    /// waiting (up to [`MAX_APPS_PER_PUBLICATION`]): under load, many apps share one. A second
    /// starts only once the one in flight has run for [`ALONE_FOR`].
    fn hand_out(&self, st: &mut State) {
        while st.tasks.len() < self.config.max_in_flight.max(1) && !st.ready.is_empty() {
            if !st.tasks.is_empty() && st.started.is_some_and(|t| t.elapsed() < ALONE_FOR) {
                return;
            }
            st.started = Some(Instant::now());
            let n = st.ready.len().min(MAX_APPS_PER_PUBLICATION);
            let apps: Vec<_> = st
                .ready
                .drain(..n)
                .map(|(app, origin)| {
                    st.queued.remove(&app);
                    // One publication per app at a time, so no older revision follows a newer.
                    st.in_flight.insert(app);
                    (app, origin, st.published.get(&app).copied())
                })
                .collect();
            let (store, publisher) = (Arc::clone(&self.store), Arc::clone(&self.publisher));
            let coordination = Arc::clone(&self.coordination);
            st.tasks.push(Box::pin(async move {
                let which: Vec<_> = apps.iter().map(|(app, origin, _)| (*app, *origin)).collect();
                // A panic while publishing is the failure of the apps being published, not
                // the relay's.
                let outcome = std::panic::AssertUnwindSafe(publish_latest(
                    &*store,
                    &*coordination,
                    &*publisher,
                    apps,
                ))
                .catch_unwind()
                .await;
                match outcome {
                    Ok(done) => done,
                    Err(panic) => {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        which
                            .into_iter()
                            .map(|(app, origin)| {
                                let error: BoxError =
                                    format!("the publication panicked: {what}").into();
                                let failed = Outcome::Failed {
                                    stage: Stage::Publisher,
                                    revision: None,
                                    error,
                                    rejected: false,
                                };
                                (app, origin, failed)
                            })
                            .collect()
                    }
                }
            }));
        }
    }

    /// Records how one publication ended.
    fn settle(&self, st: &mut State, (app, origin, outcome): (AppId, Origin, Outcome)) {
        st.in_flight.remove(&app);
        let again = st.again.remove(&app);
        match outcome {
            Outcome::Published(revision) => {
                if let Some(waited) = self.signal.published(app, revision) {
                    self.stats.published_after(waited);
                }
                self.stats.published(app, revision);
                let p = st.published.entry(app).or_insert(revision);
                *p = (*p).max(revision);
                if let Some(Retry { problem: Some(u), due, .. }) = st.retry.remove(&app) {
                    st.timers.remove(&(due, app));
                    self.signal.set_problem(app, None);
                    tracing::info!(app = %app, revision = %revision, failed_since = %u.since, attempts = u.attempts, "ruleset published again");
                } else {
                    tracing::debug!(app = %app, revision = %revision, "ruleset published");
                }
                if again {
                    st.enqueue(app, origin);
                }
            }
            // Nothing to do now; looked at again at the next poll rather than at once.
            Outcome::Gone | Outcome::LeasedElsewhere => {
                let problem = st.retry.get(&app).and_then(|r| r.problem.clone());
                let due = Instant::now() + self.config.poll_interval;
                st.schedule(app, Retry { origin, due, problem });
            }
            Outcome::Failed { stage, revision, error, rejected } => {
                let reason = crate::ErrorChain(&*error).to_string();
                let previous = st.retry.get(&app).and_then(|r| r.problem.clone());
                let attempts = previous.as_ref().map_or(0, |u| u.attempts).saturating_add(1);
                let first = previous.as_ref().is_none_or(|u| u.rejected != rejected);
                let since = match &previous {
                    Some(u) if !first => u.since,
                    _ => self.clock.now(),
                };
                if rejected {
                    // Said once per refused revision: retrying an unchanged ruleset is quiet.
                    if first || previous.as_ref().is_some_and(|u| u.revision != revision) {
                        tracing::error!(app = %app, revision = ?revision.map(|r| r.get()), error = %reason, "the publisher refused the app's ruleset; it is published again once a change makes it fit");
                    }
                } else if first {
                    tracing::warn!(app = %app, stage = stage.as_str(), error = %reason, "cannot publish the app's ruleset; retrying it with backoff while other apps go on");
                } else {
                    tracing::debug!(app = %app, stage = stage.as_str(), attempt = attempts, error = %reason, "ruleset publication failed again");
                }
                let wait = if rejected {
                    self.config.rejected_retry
                } else {
                    backoff(self.config, attempts)
                };
                let problem =
                    Unpublished { app_id: app, stage, revision, reason, since, attempts, rejected };
                self.signal.set_problem(app, Some(&problem));
                let retry = Retry { origin, due: Instant::now() + wait, problem: Some(problem) };
                st.schedule(app, retry);
                // A change committed meanwhile of a refused ruleset may fit: try it now.
                if again && rejected {
                    st.unschedule(app);
                    st.enqueue(app, origin);
                }
            }
        }
    }

    /// At shutdown: lets publications in flight end, then publishes what committed before the
    /// stop once, skipping apps that are failing.
    async fn finish(&self, mut st: State) {
        while let Some(done) = st.tasks.next().await {
            for one in done {
                self.settle(&mut st, one);
            }
        }
        let Ok(pending) = self.store.pending().await else { return };
        let apps: Vec<_> = pending
            .into_iter()
            .filter(|p| st.retry.get(&p.app_id).is_none_or(|r| r.problem.is_none()))
            .map(|p| (p.app_id, p.origin, st.published.get(&p.app_id).copied()))
            .collect();
        for some in apps.chunks(MAX_APPS_PER_PUBLICATION) {
            let _ =
                publish_latest(&*self.store, &*self.coordination, &*self.publisher, some.to_vec())
                    .await;
        }
    }
}

/// Publishes each app's ruleset at its newest revision, holding the app's publication lease
/// (taken together), the apps at the same time: each app with its origin and the newest revision
/// this relay published of it.
async fn publish_latest(
    store: &dyn Store,
    coordination: &dyn Coordination,
    publisher: &dyn Publisher,
    apps: Vec<(AppId, Origin, Option<Revision>)>,
) -> Vec<(AppId, Origin, Outcome)> {
    let ids: Vec<AppId> = apps.iter().map(|(app, _, _)| *app).collect();
    let leases = match coordination.lease_publications(&ids).await {
        Ok(leases) if leases.len() == apps.len() => leases,
        Ok(leases) => {
            let e = format!("{} publication leases for {} apps", leases.len(), apps.len());
            return failed_all(apps, Stage::Store, &StoreError::Backend(e.into()));
        }
        Err(e) => return failed_all(apps, Stage::Store, &e),
    };
    let each = apps.into_iter().zip(leases).map(|((app, origin, published), lease)| async move {
        let outcome = match lease {
            Some(lease) => publish_leased(store, publisher, lease, app, origin, published).await,
            None => Outcome::LeasedElsewhere,
        };
        (app, origin, outcome)
    });
    futures_util::future::join_all(each).await
}

/// Every app of `apps` failed alike.
fn failed_all(
    apps: Vec<(AppId, Origin, Option<Revision>)>,
    stage: Stage,
    e: &StoreError,
) -> Vec<(AppId, Origin, Outcome)> {
    let reason = crate::ErrorChain(e).to_string();
    apps.into_iter()
        .map(|(app, origin, _)| {
            let error: BoxError = reason.clone().into();
            (app, origin, Outcome::Failed { stage, revision: None, error, rejected: false })
        })
        .collect()
}

/// Publishes the app's ruleset at its newest revision, holding its publication lease.
async fn publish_leased(
    store: &dyn Store,
    publisher: &dyn Publisher,
    mut lease: Box<dyn crate::ports::PublicationLease>,
    app: AppId,
    origin: Origin,
    published: Option<Revision>,
) -> Outcome {
    let store_failed = |e: StoreError, revision| Outcome::Failed {
        stage: Stage::Store,
        revision,
        error: e.into(),
        rejected: false,
    };
    let read = lease.take_ruleset();
    let ruleset = match read {
        Some(read) => read,
        None => store.ruleset(app).await,
    };
    let ruleset = match ruleset {
        Ok(r) => r,
        Err(e) => {
            lease.release().await;
            return match e {
                StoreError::NotFound(_) => Outcome::Gone,
                e => store_failed(e, None),
            };
        }
    };
    // Unless this relay already sent this revision (the app was handed out again because a
    // record of it was seen while it was being published), and then only its outbox records
    // are left.
    if published.is_none_or(|p| ruleset.revision > p) {
        let encoded = EncodedRuleset::new(&ruleset, origin);
        if let Err(e) = publisher.publish(&encoded).await {
            lease.release().await;
            let rejected = matches!(e, PublishError::Rejected(_));
            return Outcome::Failed {
                stage: Stage::Publisher,
                revision: Some(ruleset.revision),
                error: Box::new(e),
                rejected,
            };
        }
    }
    match lease.release_published(store, app, ruleset.revision).await {
        Ok(()) => Outcome::Published(ruleset.revision),
        Err(e) => store_failed(e, Some(ruleset.revision)),
    }
}

/// Capped exponential backoff with ±25 % jitter.
fn backoff(config: RelayConfig, failures: u32) -> Duration {
    let exp = config.min_backoff.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let base = exp.min(config.max_backoff);
    // Jitter from a randomly keyed hasher (std seeds its keys from the operating system): it
    // spreads the retries of many processes without reading the wall clock.
    let nanos =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), failures);
    let jitter = (nanos % 1000) as f64 / 1000.0 * 0.5 - 0.25;
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RelayConfig::default();
        let b1 = backoff(c, 1);
        assert!(b1 >= Duration::from_millis(37) && b1 <= Duration::from_millis(63), "{b1:?}");
        let b3 = backoff(c, 3);
        assert!(b3 >= Duration::from_millis(150) && b3 <= Duration::from_millis(250), "{b3:?}");
        for n in [10, 20, 100, u32::MAX] {
            assert!(backoff(c, n) <= c.max_backoff.mul_f64(1.25));
        }
    }
}
