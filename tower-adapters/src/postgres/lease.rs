//! The leases of the processes sharing one database: advisory locks, held on connections of
//! their own, so they end with the connection (and the process).
//!
//! Publication leases are transaction-scoped locks (`pg_try_advisory_xact_lock`), and the
//! leases of several apps are taken together, in one transaction on one connection: one round
//! trip takes the locks and reads the apps' rulesets, and one more, once every app of it has
//! been published, deletes their outbox records and commits, which frees the locks. Under load
//! the relay hands out many apps at once, and each of them alone would cost a connection and
//! three round trips.
//!
//! A change made alone while no publication of this process is in flight takes its app's
//! lease early ([`EarlyLeases`]): the lock and the ruleset's read go out behind its `COMMIT`, in
//! the same round trip, on the same connection, and the relay, woken by that commit, finds the
//! lease taken and the ruleset read, so the ruleset goes to the publisher without a round trip
//! of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use flagtower_core::{AppId, PublicationLease, Revision, Ruleset, Store, StoreError};
use tokio::sync::watch;
use tokio_postgres::Row;

use super::queries::ruleset_from;
use super::{PostgresStore, map_pg};
use crate::sql::FLAG_COLUMNS;

/// The lock of each app of `$1`, in order: granted or not (never waiting).
const LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtextextended('tower-publish:' || u.a::text, 0)) \
     FROM unnest($1::bigint[]) WITH ORDINALITY AS u(a, n) ORDER BY n";

/// The outbox records of the apps of `$1`, each up to its revision in `$2`, in one statement
/// that looks each app up in `outbox_pending` (the fence keeps the planner from turning the
/// lookups into a scan of the whole table, which a long backlog would make slow).
pub(super) const MARKS: &str = "DELETE FROM outbox WHERE id = ANY(ARRAY(SELECT o.id \
     FROM unnest($1::bigint[], $2::bigint[]) AS m(app, rev), \
     LATERAL (SELECT id FROM outbox WHERE app_id = m.app AND revision <= m.rev OFFSET 0) o))";

/// The rulesets of the apps of `$1` in one statement (one snapshot): each row names its app,
/// and an app with no flag (or deleted) has one row of no flag.
pub(super) static RULESETS: LazyLock<String> = LazyLock::new(|| {
    let flag = FLAG_COLUMNS.split(", ").map(|c| format!("f.{c}")).collect::<Vec<_>>();
    format!(
        "SELECT a.id AS ruleset_app, a.revision AS app_revision, {} FROM apps a \
         LEFT JOIN flags f ON f.app_id = a.id AND a.deleted_at IS NULL \
         WHERE a.id = ANY($1) ORDER BY a.id, f.id",
        flag.join(", ")
    )
});

/// How long a lease taken early waits for the relay before it is given up: the relay takes it
/// within a millisecond when it publishes the app at once; when it does not (the app waits for
/// a retry, or the relay is stopping), the lock must not keep other processes from it.
const EARLY_FOR: Duration = Duration::from_millis(100);

/// The publication lease a change alone takes early, for this process's relay (see the
/// module's documentation), and the apps whose leases this process holds.
///
/// At most one early lease exists at a time, and only while no other lease is held or being
/// taken here: under load the relay's leases take many apps together in one transaction, and
/// an early lease per change would cost the database more than the round trip it saves. An
/// app's lease is never taken both ways at once: the relay marks the apps it asks for as held
/// before it sends its locks, and waits for an early lease being taken of one of them.
#[derive(Default)]
pub(crate) struct EarlyLeases {
    /// Set by this process's relay's first lease: without a relay, nothing takes them.
    relay: AtomicBool,
    state: Mutex<EarlyState>,
}

#[derive(Default)]
struct EarlyState {
    /// The apps whose leases this process holds or is taking, with how many of each.
    held: HashMap<i64, usize>,
    /// The early lease (of its app), if any.
    slot: Option<(i64, Slot)>,
    /// Names each early lease, so that its expiry never gives up a later one.
    taken: u64,
}

enum Slot {
    /// Its change's round trip is in flight; the sender ends when it has ended.
    Taking(watch::Receiver<()>),
    /// Held, its ruleset read, for the relay to take.
    Ready { lease: Box<PgLease>, id: u64 },
}

impl EarlyLeases {
    fn state(&self) -> std::sync::MutexGuard<'_, EarlyState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An early lease of `app` to take in a change's round trip, when this process's relay
    /// runs and holds no lease.
    pub(crate) fn reserve(self: &Arc<Self>, app: AppId) -> Option<Reservation> {
        if !self.relay.load(Ordering::Relaxed) {
            return None;
        }
        let mut st = self.state();
        if !st.held.is_empty() || st.slot.is_some() {
            return None;
        }
        let (done, taking) = watch::channel(());
        st.slot = Some((app.get(), Slot::Taking(taking)));
        Some(Reservation { early: Arc::clone(self), app, _done: done })
    }

    fn hold(st: &mut EarlyState, apps: &[i64]) {
        for app in apps {
            *st.held.entry(*app).or_default() += 1;
        }
    }

    fn unhold(&self, apps: &[i64]) {
        let mut st = self.state();
        for app in apps {
            if let Some(n) = st.held.get_mut(app) {
                *n -= 1;
                if *n == 0 {
                    st.held.remove(app);
                }
            }
        }
    }

    /// For the relay's lease of `apps`: the early lease of each app that has one (waiting for
    /// one being taken), the others marked held.
    async fn take(&self, apps: &[AppId]) -> Vec<Option<Box<PgLease>>> {
        self.relay.store(true, Ordering::Relaxed);
        loop {
            let taking = {
                let mut st = self.state();
                match &st.slot {
                    Some((app, Slot::Taking(taking))) if apps.iter().any(|a| a.get() == *app) => {
                        taking.clone()
                    }
                    _ => {
                        let mut early = Vec::with_capacity(apps.len());
                        let mut others = Vec::with_capacity(apps.len());
                        for app in apps {
                            let ready = matches!(&st.slot, Some((a, Slot::Ready { .. })) if *a == app.get());
                            if ready {
                                match st.slot.take() {
                                    Some((_, Slot::Ready { lease, .. })) => early.push(Some(lease)),
                                    _ => unreachable!("the slot was ready"),
                                }
                            } else {
                                early.push(None);
                                others.push(app.get());
                            }
                        }
                        Self::hold(&mut st, &others);
                        return early;
                    }
                }
            };
            // The change's round trip ends within milliseconds; the sender goes with it.
            let mut taking = taking;
            let _ = taking.changed().await;
        }
    }
}

/// The lock and the read of an early lease, prepared.
pub(crate) type EarlyStatements = (tokio_postgres::Statement, tokio_postgres::Statement);

/// An early lease being taken: filled with the connection once the change's round trip ends,
/// or, dropped unfilled, given up.
pub(crate) struct Reservation {
    early: Arc<EarlyLeases>,
    app: AppId,
    /// Dropped with the reservation, which wakes a relay waiting for it.
    _done: watch::Sender<()>,
}

impl Reservation {
    /// The lock and the read of an early lease, queued on `client` behind the change's
    /// `COMMIT` (prepared beforehand, so that nothing runs out of order). They run in a
    /// transaction of their own that need not wait for its flush, as the relay's leases.
    pub(crate) async fn prepare(
        client: &deadpool_postgres::Client,
    ) -> Result<EarlyStatements, tokio_postgres::Error> {
        Ok((client.prepare_cached(LOCK).await?, client.prepare_cached(&RULESETS).await?))
    }

    /// Sends the early lease's statements (see [`Reservation::prepare`]); its result is for
    /// [`Reservation::keep`].
    pub(crate) async fn send(
        client: &deadpool_postgres::Client,
        app: AppId,
        (lock, read): &EarlyStatements,
    ) -> Early {
        let ids = vec![app.get()];
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
        let (begun, locked, rows) = tokio::join!(
            client.batch_execute("BEGIN; SET LOCAL synchronous_commit TO off"),
            client.query(lock, &params),
            client.query(read, &params)
        );
        let granted = begun.is_ok()
            && locked.is_ok_and(|rows| {
                rows.first().is_some_and(|r| r.try_get::<_, bool>(0).unwrap_or(false))
            });
        Early { granted, rows: rows.ok() }
    }

    /// The change committed, and `client` is in the early lease's transaction: the lease for
    /// the relay if its lock was granted; otherwise its transaction ends and the connection
    /// goes back to the pool.
    pub(crate) fn keep(self, client: deadpool_postgres::Client, early: Early) {
        if !early.granted {
            tokio::spawn(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(deadpool_postgres::Object::take(client));
                }
            });
            self.clear();
            return;
        }
        let app = self.app;
        let (done, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            held: Mutex::new(Held { client: Some(client), open: 1, marks: Vec::new() }),
            done,
            holds: Some((Arc::clone(&self.early), vec![app.get()])),
        });
        let ruleset = early.rows.map(|rows| ruleset_from(rows, app));
        let lease = Box::new(PgLease { shared, app, ruleset, ended: false });
        let id = {
            let mut st = self.early.state();
            st.taken += 1;
            let id = st.taken;
            EarlyLeases::hold(&mut st, &[app.get()]);
            st.slot = Some((app.get(), Slot::Ready { lease, id }));
            id
        };
        let early = Arc::clone(&self.early);
        tokio::spawn(async move {
            tokio::time::sleep(EARLY_FOR).await;
            // While it is given up, its slot says it is being taken: the relay, should it ask
            // for the app meanwhile, waits for its transaction's end rather than being refused
            // by its lock.
            let (releasing, taking) = watch::channel(());
            let unused = {
                let mut st = early.state();
                match &st.slot {
                    Some((app, Slot::Ready { id: taken, .. })) if *taken == id => {
                        let app = *app;
                        st.slot.replace((app, Slot::Taking(taking)))
                    }
                    _ => None,
                }
            };
            if let Some((app, Slot::Ready { lease, .. })) = unused {
                lease.release().await;
                let mut st = early.state();
                if matches!(st.slot, Some((a, Slot::Taking(_))) if a == app) {
                    st.slot = None;
                }
            }
            drop(releasing);
        });
    }

    /// Gives the slot up unless it holds a lease already.
    fn clear(&self) {
        let mut st = self.early.state();
        if matches!(st.slot, Some((app, Slot::Taking(_))) if app == self.app.get()) {
            st.slot = None;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.clear();
    }
}

/// What an early lease's statements gave: whether its lock was granted, and the ruleset's rows.
pub(crate) struct Early {
    granted: bool,
    rows: Option<Vec<Row>>,
}

/// The breaker's leadership: a session-level advisory lock on a connection taken out of the
/// pool for good; closing it (drop, or the process dying) frees the lock.
struct PgLeader {
    client: deadpool_postgres::ClientWrapper,
}

#[async_trait]
impl flagtower_core::LeaderLease for PgLeader {
    async fn alive(&mut self) -> bool {
        !self.client.is_closed() && self.client.simple_query("SELECT 1").await.is_ok()
    }
}

/// The [`flagtower_core::Coordination`] of the processes sharing one database.
#[derive(Debug)]
pub(crate) struct PostgresCoordination {
    store: PostgresStore,
}

impl PostgresCoordination {
    pub(crate) fn new(store: PostgresStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl flagtower_core::Coordination for PostgresCoordination {
    async fn lease_publication(
        &self,
        app: AppId,
    ) -> Result<Option<Box<dyn PublicationLease>>, StoreError> {
        Ok(self.lease_publications(&[app]).await?.pop().flatten())
    }

    async fn lease_publications(
        &self,
        apps: &[AppId],
    ) -> Result<Vec<Option<Box<dyn PublicationLease>>>, StoreError> {
        let mut early = self.store.early.take(apps).await;
        if early.iter().all(Option::is_some) {
            return Ok(early
                .into_iter()
                .map(|l| l.map(|l| l as Box<dyn PublicationLease>))
                .collect());
        }
        let others: Vec<AppId> =
            apps.iter().zip(&early).filter(|(_, e)| e.is_none()).map(|(a, _)| *a).collect();
        let ids: Vec<i64> = others.iter().map(|a| a.get()).collect();
        // Held from here (see `EarlyLeases`): each until its lease ends, or at once if refused.
        let holds = Unhold { early: &self.store.early, apps: Some(ids.clone()) };
        let mut leases = self.lease_apart(&others, &ids, holds).await?.into_iter();
        Ok(early
            .iter_mut()
            .map(|e| match e.take() {
                Some(lease) => Some(lease as Box<dyn PublicationLease>),
                None => leases.next().flatten().map(|l| l as Box<dyn PublicationLease>),
            })
            .collect())
    }

    async fn lease_breaker(
        &self,
    ) -> Result<Option<Box<dyn flagtower_core::LeaderLease>>, StoreError> {
        let client = deadpool_postgres::Object::take(self.store.client().await?);
        let led: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtextextended('tower-breaker', 0))", &[])
            .await
            .map_err(map_pg)?
            .try_get(0)
            .map_err(map_pg)?;
        Ok(led.then(|| Box::new(PgLeader { client }) as Box<dyn flagtower_core::LeaderLease>))
    }
}

/// Un-holds the apps it names when dropped (the leases were refused, or failed).
struct Unhold<'a> {
    early: &'a Arc<EarlyLeases>,
    apps: Option<Vec<i64>>,
}

impl Drop for Unhold<'_> {
    fn drop(&mut self) {
        if let Some(apps) = self.apps.take() {
            self.early.unhold(&apps);
        }
    }
}

impl PostgresCoordination {
    /// The leases of `apps` (ids `ids`) in one transaction of their own.
    async fn lease_apart(
        &self,
        apps: &[AppId],
        ids: &[i64],
        mut holds: Unhold<'_>,
    ) -> Result<Vec<Option<Box<PgLease>>>, StoreError> {
        let ids = ids.to_vec();
        let client = self.store.client().await?;
        let taken = async {
            let lock = client.prepare_cached(LOCK).await?;
            let read = client.prepare_cached(&RULESETS).await?;
            // One round trip: the locks and the rulesets are queued behind the BEGIN, and the
            // rulesets are read once the locks are held (a statement of their own, with its own
            // snapshot), so they are what the relay would read next. The transaction's one
            // write is the marks of `release_published`: it need not wait for its flush (a mark
            // lost in a crash only makes the relay publish that revision again, which
            // JetStream de-duplicates by message id).
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
            let (begun, locks, rows) = tokio::join!(
                client.batch_execute("BEGIN; SET LOCAL synchronous_commit TO off"),
                client.query(&lock, &params),
                client.query(&read, &params)
            );
            begun?;
            let granted =
                locks?.iter().map(|r| r.try_get::<_, bool>(0)).collect::<Result<Vec<_>, _>>()?;
            if !granted.contains(&true) {
                client.batch_execute("COMMIT").await?;
            }
            Ok::<_, tokio_postgres::Error>((granted, rows))
        }
        .await;
        let (granted, rows) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                // The connection may still be inside the transaction: close it rather than hand
                // it back to the pool (`RecyclingMethod::Fast` would not notice).
                drop(deadpool_postgres::Object::take(client));
                return Err(map_pg(e));
            }
        };
        let open = granted.iter().filter(|g| **g).count();
        if open == 0 {
            return Ok(granted.iter().map(|_| None).collect());
        }
        // The granted apps stay held until their transaction ends; the others are free now.
        let granted_ids: Vec<i64> =
            ids.iter().zip(&granted).filter(|(_, g)| **g).map(|(id, _)| *id).collect();
        let refused: Vec<i64> =
            ids.iter().zip(&granted).filter(|(_, g)| !**g).map(|(id, _)| *id).collect();
        holds.apps = Some(refused);
        drop(holds);
        // Each app's rows; a failed read leaves the relay to read the rulesets itself.
        let mut rows_of: Option<HashMap<i64, Vec<Row>>> = rows.ok().map(|rows| {
            let mut of: HashMap<i64, Vec<Row>> = HashMap::new();
            for row in rows {
                if let Ok(app) = row.try_get::<_, i64>("ruleset_app") {
                    of.entry(app).or_default().push(row);
                }
            }
            of
        });
        let (done, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            held: Mutex::new(Held { client: Some(client), open, marks: Vec::new() }),
            done,
            holds: Some((Arc::clone(&self.store.early), granted_ids)),
        });
        let leases = apps
            .iter()
            .zip(granted)
            .map(|(&app, granted)| {
                granted.then(|| {
                    let ruleset = rows_of
                        .as_mut()
                        .map(|of| ruleset_from(of.remove(&app.get()).unwrap_or_default(), app));
                    Box::new(PgLease { shared: Arc::clone(&shared), app, ruleset, ended: false })
                })
            })
            .collect();
        Ok(leases)
    }
}

/// The transaction that holds the locks of leases taken together, until the last of them ends.
struct Shared {
    held: Mutex<Held>,
    /// How the transaction ended (`Some` once it has), for the leases that ended before the last.
    done: watch::Sender<Option<Result<(), String>>>,
    /// The apps it holds for [`EarlyLeases`], un-held when the transaction ends.
    holds: Option<(Arc<EarlyLeases>, Vec<i64>)>,
}

struct Held {
    client: Option<deadpool_postgres::Client>,
    /// The leases not ended yet.
    open: usize,
    /// The outbox marks of the leases ended so far: app and revision.
    marks: Vec<(i64, i64)>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Its transaction has ended: its apps are no longer held.
    fn unhold(&self) {
        if let Some((early, apps)) = &self.holds {
            early.unhold(apps);
        }
    }

    /// Ends one lease (with its mark): the last one deletes every mark's outbox records and
    /// commits, which frees every lock; the others wait for that commit, so that the relay
    /// never hands an app out again while its lock is still held.
    async fn end(&self, mark: Option<(AppId, Revision)>) -> Result<(), StoreError> {
        let last = {
            let mut held = self.held();
            if let Some((app, revision)) = mark {
                held.marks.push((app.get(), revision.get() as i64));
            }
            held.open -= 1;
            (held.open == 0).then(|| (held.client.take(), std::mem::take(&mut held.marks)))
        };
        let Some((client, marks)) = last else {
            let mut done = self.done.subscribe();
            let ended = done.wait_for(Option::is_some).await.map(|d| d.clone());
            return match ended {
                Ok(Some(Ok(()))) => Ok(()),
                Ok(Some(Err(e))) => Err(StoreError::Unavailable(e.into())),
                _ => Err(StoreError::Unavailable("the publication leases were dropped".into())),
            };
        };
        // Un-held as the transaction ends rather than once it has: the relay publishes these
        // apps no more, and a change alone that comes meanwhile may take its lease early (its
        // lock waits behind its own commit, by when this one has most likely committed; if not,
        // it is refused, and the relay takes the lease as usual).
        self.unhold();
        let result = match client {
            Some(client) => {
                let ended = async {
                    // Prepared (or found in the connection's cache) before anything is sent,
                    // so that the `COMMIT` queued behind it cannot run first.
                    let marked = client.prepare_cached(MARKS).await?;
                    let apps: Vec<i64> = marks.iter().map(|(app, _)| *app).collect();
                    let revisions: Vec<i64> = marks.iter().map(|(_, rev)| *rev).collect();
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                        [&apps, &revisions];
                    let (deleted, committed) = tokio::join!(
                        client.execute(&marked, &params),
                        client.batch_execute("COMMIT")
                    );
                    // A failed delete aborted the transaction, which that `COMMIT` rolled back.
                    deleted?;
                    committed
                }
                .await;
                if ended.is_err() {
                    // The transaction may still be open: never hand it back to the pool;
                    // closing the connection frees the locks.
                    drop(deadpool_postgres::Object::take(client));
                }
                ended.map_err(map_pg)
            }
            None => Err(StoreError::Unavailable("the publication leases were dropped".into())),
        };
        let told =
            result.as_ref().map(|_| ()).map_err(|e| flagtower_core::ErrorChain(e).to_string());
        self.done.send_replace(Some(told));
        result
    }
}

/// A held publication lock (see `lease_publications`).
struct PgLease {
    shared: Arc<Shared>,
    app: AppId,
    /// The app's ruleset, read in the lease's round trip.
    ruleset: Option<Result<Ruleset, StoreError>>,
    ended: bool,
}

#[async_trait]
impl PublicationLease for PgLease {
    fn take_ruleset(&mut self) -> Option<Result<Ruleset, StoreError>> {
        self.ruleset.take()
    }

    async fn release(mut self: Box<Self>) {
        self.ended = true;
        if let Err(e) = self.shared.end(None).await {
            tracing::warn!(error = %flagtower_core::ErrorChain(&e), "releasing the publication lock failed; its connection is closed");
        }
    }

    /// The mark and the release in the lease's transaction: its outbox records are deleted
    /// with those of the apps leased with it, by the `COMMIT` that frees their locks.
    async fn release_published(
        mut self: Box<Self>,
        store: &dyn Store,
        app: AppId,
        revision: Revision,
    ) -> Result<(), StoreError> {
        self.ended = true;
        if app != self.app {
            let marked = store.mark_published(app, revision).await;
            self.shared.end(None).await?;
            return marked;
        }
        self.shared.end(Some((app, revision))).await
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Not released (the relay was cancelled): never hand a connection that is inside a
        // transaction back to the pool; closing it frees the locks (the last lease to go does).
        let mut held = self.shared.held();
        held.open -= 1;
        if held.open == 0 {
            if let Some(client) = held.client.take() {
                drop(deadpool_postgres::Object::take(client));
            }
            drop(held);
            self.shared.unhold();
            self.shared
                .done
                .send_replace(Some(Err("a publication lease was dropped unreleased".into())));
        }
    }
}
