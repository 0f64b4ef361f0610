//! The leases of the processes sharing one database: advisory locks, held on connections of
//! their own, so they end with the connection (and the process).
//!
//! Publication leases are transaction-scoped locks (`pg_try_advisory_xact_lock`), and the
//! leases of several apps are taken together, in one transaction on one connection: one round
//! trip takes the locks and reads the apps' rulesets, and one more, once every app of it has
//! been published, deletes their outbox records and commits, which frees the locks. Under load
//! the relay hands out many apps at once, and each of them alone would cost a connection and
//! three round trips.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

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
        let client = self.store.client().await?;
        let ids: Vec<i64> = apps.iter().map(|a| a.get()).collect();
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
                        as Box<dyn PublicationLease>
                })
            })
            .collect();
        Ok(leases)
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

/// The transaction that holds the locks of leases taken together, until the last of them ends.
struct Shared {
    held: Mutex<Held>,
    /// How the transaction ended (`Some` once it has), for the leases that ended before the last.
    done: watch::Sender<Option<Result<(), String>>>,
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
            self.shared
                .done
                .send_replace(Some(Err("a publication lease was dropped unreleased".into())));
        }
    }
}
