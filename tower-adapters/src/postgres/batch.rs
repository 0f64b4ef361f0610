//! Group commit: changes that arrive while the store's transactions of changes run wait, and
//! the next transaction takes all of them, of one app or of many.
//!
//! Each change holds its app's row lock from its read to the end of its commit (its revision
//! grows by one per change, and the commit waits for its WAL flush), so alone, one app's changes
//! commit one at a time however many connections send them, and changes of different apps each
//! pay a transaction's statements, round trips and flush. So at most [`MAX_TRANSACTIONS`]
//! transactions of changes run at once; the changes that arrive meanwhile wait, and a transaction
//! that ends takes the next of them (up to [`MAX_BATCH`]): one lock per app, one read of their
//! flags, the commands applied in their order of arrival, each with its own log entry and its own
//! revision as if made one after the other, each flag written once, one commit, in the same two
//! round trips as a change alone. A change that finds fewer transactions running goes at once,
//! alone: nothing waits for company.
//!
//! An app is in one running transaction at a time: its waiting changes wait for that one to end
//! (they would wait for its lock anyway), while other apps' changes go in the other. A batch
//! waits for every one of its apps' locks, so an app whose row another process holds delays the
//! other apps of its batch (Tower's own transactions hold one for milliseconds). On this
//! project's 2-core machine, two transactions measured best spread over 100 apps (about 900
//! changes/s against 790–910 for one transaction per app, and 640–880 for four), and the database
//! did half the statements per change; one app's changes were batched already.
//!
//! A flag's app is learned from its first change, which goes alone. The transactions run on
//! tasks of their own, so a request that goes away (its client disconnected) cannot cancel the
//! others' changes halfway; its own change, once waiting, is made all the same, as it would be
//! had the client gone away just after sending it. Changes that rename a flag (a taken title
//! would abort the whole transaction) go alone beside the others, and so does every change of a
//! batch whose transaction failed, so that each gets the answer it would have had alone.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flagtower_core::command::FlagCommand;
use flagtower_core::{Actor, AppId, Change, Flag, FlagId, Origin, StoreError, Timestamp};
use tokio::sync::oneshot;

use super::PostgresStore;

/// The most changes one transaction takes.
pub(crate) const MAX_BATCH: usize = 64;

/// The most transactions of changes running at once, per store handle (see the module's
/// documentation for how it was chosen).
pub(crate) const MAX_TRANSACTIONS: usize = 2;

/// How many flags' apps are remembered; past it the map starts over.
const MAX_KNOWN_FLAGS: usize = 100_000;

/// A flag change as [`flagtower_core::Store::change_flag_within`] takes it, owned so that it can
/// wait in a lane.
#[derive(Debug, Clone)]
pub(crate) struct FlagChange {
    pub(crate) id: FlagId,
    pub(crate) command: FlagCommand,
    pub(crate) origin: Origin,
    pub(crate) now: Timestamp,
    pub(crate) by: Actor,
    pub(crate) max_ruleset_bytes: Option<usize>,
}

/// A change waiting for a lane, with its app, and where its answer goes (its request may have gone away).
struct Job {
    app: AppId,
    change: FlagChange,
    reply: oneshot::Sender<Result<Change<Flag>, StoreError>>,
}

#[derive(Default)]
struct Lanes {
    /// The changes waiting, of every app, in their order of arrival.
    waiting: VecDeque<Job>,
    /// The apps of the transactions running: an app is in one at a time.
    busy: HashSet<AppId>,
    /// How many lane tasks run (each runs one transaction at a time).
    running: usize,
    /// Each flag's app, as this handle's changes found it (a flag never moves to another app).
    apps: HashMap<FlagId, AppId>,
}

/// The lanes of one store handle (shared by its clones): each lane is a task that runs one
/// transaction of changes at a time, up to [`MAX_TRANSACTIONS`] lanes at once.
#[derive(Clone, Default)]
pub(crate) struct Batcher {
    lanes: Arc<Mutex<Lanes>>,
    /// How many changes committed in a transaction with others.
    pub(crate) batched: Arc<AtomicU64>,
}

impl Batcher {
    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        self.lanes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers that `flag` belongs to `app`.
    pub(crate) fn learn(&self, flag: FlagId, app: AppId) {
        let mut lanes = self.lanes();
        if lanes.apps.len() >= MAX_KNOWN_FLAGS && !lanes.apps.contains_key(&flag) {
            lanes.apps.clear();
        }
        lanes.apps.insert(flag, app);
    }

    /// Makes the change in a lane's transaction, or gives it back when it goes alone (the
    /// caller makes it): a rename, or a flag whose app is not known yet.
    pub(crate) async fn change(
        &self,
        store: &PostgresStore,
        change: FlagChange,
    ) -> Result<Result<Change<Flag>, StoreError>, FlagChange> {
        if matches!(&change.command, FlagCommand::Update(patch) if patch.title.is_some()) {
            return Err(change);
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut lanes = self.lanes();
            let Some(&app) = lanes.apps.get(&change.id) else { return Err(change) };
            lanes.waiting.push_back(Job { app, change, reply });
            if lanes.running < MAX_TRANSACTIONS && !lanes.busy.contains(&app) {
                lanes.running += 1;
                tokio::spawn(drain(self.clone(), store.clone()));
            }
        }
        Ok(answer.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable("the store's change was dropped (shutting down)".into()))
        }))
    }

    /// The next changes for a lane: those waiting whose app no other lane's transaction holds
    /// (up to [`MAX_BATCH`], in their order), their apps now this lane's. `None`, and the lane
    /// ended, when there are none.
    fn next(&self, done: &[AppId]) -> Option<Vec<Job>> {
        let mut lanes = self.lanes();
        for app in done {
            lanes.busy.remove(app);
        }
        let Lanes { waiting, busy, .. } = &mut *lanes;
        let mut taken = Vec::new();
        let mut mine = HashSet::new();
        // One pass, the rest kept in their order: a job of an app this lane takes stays behind
        // only once the batch is full, and goes in a transaction after this one ends.
        let mut kept = VecDeque::with_capacity(waiting.len());
        for job in waiting.drain(..) {
            if taken.len() < MAX_BATCH && (mine.contains(&job.app) || busy.insert(job.app)) {
                mine.insert(job.app);
                taken.push(job);
            } else {
                kept.push_back(job);
            }
        }
        *waiting = kept;
        if taken.is_empty() {
            lanes.running -= 1;
            return None;
        }
        Some(taken)
    }
}

/// Ends a lane whose task stops before it is idle (a panic, or the runtime shutting down): its
/// apps are freed, and when changes still wait, another lane takes them (its own changes are
/// answered as dropped).
struct Running {
    batcher: Batcher,
    store: PostgresStore,
    apps: Vec<AppId>,
    ended: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut lanes = self.batcher.lanes();
        for app in &self.apps {
            lanes.busy.remove(app);
        }
        if lanes.waiting.is_empty() {
            lanes.running -= 1;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(self.batcher.clone(), self.store.clone()));
        }
    }
}

/// Runs a lane until no change it can take waits.
async fn drain(batcher: Batcher, store: PostgresStore) {
    let mut running =
        Running { batcher: batcher.clone(), store: store.clone(), apps: Vec::new(), ended: false };
    loop {
        let Some(jobs) = batcher.next(&running.apps) else {
            running.ended = true;
            return;
        };
        running.apps = jobs.iter().map(|j| j.app).collect();
        running.apps.sort_unstable();
        running.apps.dedup();
        let (changes, replies): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|j| (j.change, j.reply)).unzip();
        let results = match changes.as_slice() {
            [one] => vec![store.change_flag_alone(one).await],
            _ => match store.change_flags(&changes).await {
                Ok(results) => {
                    batcher.batched.fetch_add(changes.len() as u64, Ordering::Relaxed);
                    results
                }
                Err(e) => {
                    tracing::debug!(
                        changes = changes.len(),
                        error = %flagtower_core::ErrorChain(&e),
                        "a batch of changes failed; making each alone"
                    );
                    let mut results = Vec::with_capacity(changes.len());
                    for change in &changes {
                        results.push(store.change_flag_alone(change).await);
                    }
                    results
                }
            },
        };
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}
