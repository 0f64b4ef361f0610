//! The SQLite store: Tower on one machine with nothing installed.
//!
//! - rusqlite with the bundled SQLite; WAL, `synchronous=FULL` (a commit survives power loss),
//!   foreign keys on, a 5 s busy timeout.
//! - The schema is created and upgraded by embedded, versioned migrations when the file is opened
//!   (`PRAGMA user_version` holds the version).
//! - One writer connection and a pool of up to 2 × cores read connections (WAL lets reads run
//!   beside the write). Readers wait for a connection on the async side (a semaphore), then the
//!   query runs on tokio's blocking pool, never on the async runtime's threads.
//! - Group commit: the writes that arrive while the writer commits wait in a queue, and the
//!   next transaction takes all of them (up to [`MAX_GROUP`]), each in a savepoint of its own,
//!   so that one that fails is rolled back alone; one commit (one fsync) for all. A write that
//!   finds the writer idle goes at once. Each write's answer waits for the commit.

mod queries;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flagtower_core::{BoxError, StoreError};
use rusqlite::{Connection, OpenFlags};

/// The migrations, in order; `user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
    include_str!("schema_v5.sql"),
];

/// The most read connections (and concurrent reads): more than a few per core only adds
/// contention.
fn max_readers() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 2).max(4))
}

/// A Tower [`flagtower_core::Store`] on a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    /// Held while the store lives: one store per file.
    _lock: std::fs::File,
    writer: Mutex<Connection>,
    /// The writes waiting for the writer; `None` while it is idle.
    queued: Mutex<Option<Vec<WriteJob>>>,
    /// How many writes committed in a transaction with others.
    grouped: std::sync::atomic::AtomicU64,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection; bounds the connections and the blocking threads reads
    /// occupy.
    read_turns: tokio::sync::Semaphore,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.shared.path).finish()
    }
}

/// Why a SQLite file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// SQLite refused the file or a pragma.
    #[error("cannot open SQLite database {path}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer Tower.
    #[error(
        "SQLite database {path} has schema version {found}, newer than this Tower's {known}; upgrade Tower"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: usize,
    },
    /// Another store holds the file: in this process, or another Tower process.
    #[error(
        "SQLite database {path} is in use by another Tower (a SQLite file serves one process, which runs its relay and breaker; to run several Tower processes, share a PostgreSQL database)"
    )]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The lock file next to the database could not be opened.
    #[error("cannot open the lock file {path}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task was lost.
    #[error("the task opening the database failed")]
    Join(#[source] tokio::task::JoinError),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside a query cannot leave a connection mid-transaction: rusqlite's
    // `Transaction` rolls back on drop. So a poisoned lock still guards a usable connection.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(OpenError::Join)?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, OpenError> {
        let lock = Self::lock_file(&path)?;
        let err = |source| OpenError::Sqlite { path: path.clone(), source };
        let mut writer = Connection::open(&path).map_err(err)?;
        writer.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;",
            )
            .map_err(err)?;
        let version: i64 =
            writer.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if version > MIGRATIONS.len() as i64 {
            return Err(OpenError::TooNew { path, found: version, known: MIGRATIONS.len() });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = writer
                .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
                .map_err(err)?;
            // Another process may have migrated while we waited for the lock.
            let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
            if now > i as i64 {
                continue;
            }
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(err)?;
            tx.commit().map_err(err)?;
            tracing::info!(path = %path.display(), version = i + 1, "SQLite schema migrated");
        }
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                _lock: lock,
                writer: Mutex::new(writer),
                queued: Mutex::new(None),
                grouped: std::sync::atomic::AtomicU64::new(0),
                readers: Mutex::new(Vec::new()),
                read_turns: tokio::sync::Semaphore::new(max_readers()),
            }),
        })
    }

    /// Takes the exclusive lock on `<file>.lock` next to the database, held for as long as the
    /// store lives (the operating system drops it with the process). The lock says the file
    /// has one user: the relay and the breaker of a SQLite store coordinate within their
    /// process only.
    fn lock_file(path: &Path) -> Result<std::fs::File, OpenError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| OpenError::LockFile { path: lock_path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(OpenError::InUse { path: path.to_path_buf() })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                Err(OpenError::LockFile { path: lock_path, source })
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn open_reader(path: &Path) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
        Ok(conn)
    }

    /// Runs `f` on a read connection inside a read transaction (one consistent snapshot).
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let _turn =
            self.shared.read_turns.acquire().await.map_err(|e| StoreError::Backend(Box::new(e)))?;
        blocking(move || {
            let pooled = lock(&shared.readers).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => Self::open_reader(&shared.path)?,
            };
            let out = (|| {
                let tx = conn.transaction().map_err(map_err)?;
                let out = f(&tx)?;
                tx.finish().map_err(map_err)?;
                Ok(out)
            })();
            lock(&shared.readers).push(conn);
            out
        })
        .await
    }

    /// Runs `f` in an immediate write transaction on the writer, in a savepoint of its own:
    /// committed (with the writes queued beside it) when it returns `Ok`, rolled back when it
    /// returns `Err`. The answer comes once the commit is durable.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |tx| {
            let (out, clean) = match tx.map(|tx| in_savepoint(tx, f)) {
                Ok(Ok(out)) => (Ok(out), true),
                Ok(Err(Undone::Yes(e))) => (Err(e), true),
                Ok(Err(Undone::No(e))) => (Err(e), false),
                Err(begin) => (Err(same_kind(begin)), true),
            };
            let answer = Box::new(move |commit: Result<(), &StoreError>| {
                let out = match (out, commit) {
                    (Ok(_), Err(failed)) => Err(same_kind(failed)),
                    (out, _) => out,
                };
                let _ = reply.send(out);
            });
            (answer as Answer, clean)
        });
        {
            let mut queued = lock(&self.shared.queued);
            match queued.as_mut() {
                Some(jobs) => jobs.push(job),
                None => {
                    *queued = Some(vec![job]);
                    let store = Arc::downgrade(&self.shared);
                    tokio::task::spawn_blocking(move || write_queued(store));
                }
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Backend("the write was dropped: the writer stopped".into()))
        })
    }
}

/// The most writes one transaction takes.
const MAX_GROUP: usize = 64;

/// A queued write: runs in the group's transaction (or learns why there is none), and gives
/// back what answers it once the commit's outcome is known.
/// `false` beside it when what the write wrote could not be undone after it failed.
type WriteJob =
    Box<dyn FnOnce(Result<&rusqlite::Transaction<'_>, &StoreError>) -> (Answer, bool) + Send>;

/// Answers a queued write, given the outcome of its group's commit.
type Answer = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// A store error of the same kind as `e`, for each write of a group that `e` failed.
fn same_kind(e: &StoreError) -> StoreError {
    let why = flagtower_core::ErrorChain(e).to_string();
    match e {
        StoreError::Unavailable(_) => StoreError::Unavailable(why.into()),
        _ => StoreError::Backend(why.into()),
    }
}

/// Why a write in a savepoint failed, and whether what it wrote was undone (when not, the
/// whole group's transaction must be rolled back).
enum Undone {
    Yes(StoreError),
    No(StoreError),
}

/// Runs `f` inside a savepoint of `tx`: kept on `Ok`, rolled back on `Err`.
fn in_savepoint<T>(
    tx: &rusqlite::Transaction<'_>,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, Undone> {
    const UNDO: &str = "ROLLBACK TO tower_write; RELEASE tower_write";
    tx.execute_batch("SAVEPOINT tower_write").map_err(|e| Undone::No(map_err(e)))?;
    match f(tx) {
        Ok(out) => match tx.execute_batch("RELEASE tower_write") {
            Ok(()) => Ok(out),
            // Not kept: the write must not commit when its caller is told it failed.
            Err(e) => match tx.execute_batch(UNDO) {
                Ok(()) => Err(Undone::Yes(map_err(e))),
                Err(_) => Err(Undone::No(map_err(e))),
            },
        },
        Err(e) => match tx.execute_batch(UNDO) {
            Ok(()) => Err(Undone::Yes(e)),
            Err(_) => Err(Undone::No(e)),
        },
    }
}

/// Frees the writer's queue when its thread ends before it is idle (a write panicked): the
/// writes waiting are answered as dropped, and the next write starts anew.
struct Writing<'a> {
    shared: &'a Shared,
    idle: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.idle {
            *lock(&self.shared.queued) = None;
        }
    }
}

/// The writer's thread: runs the queued writes, a group per transaction, until none wait.
///
/// It holds the store only while it runs a group, not while it answers: a caller that drops the
/// store once answered closes it (and frees its file) without waiting for this thread.
fn write_queued(store: std::sync::Weak<Shared>) {
    loop {
        let Some(shared) = store.upgrade() else { return };
        let mut writing = Writing { shared: &shared, idle: false };
        let jobs: Vec<WriteJob> = {
            let mut queued = lock(&shared.queued);
            let Some(jobs) = queued.as_mut() else {
                writing.idle = true;
                return;
            };
            if jobs.is_empty() {
                *queued = None;
                writing.idle = true;
                return;
            }
            let n = jobs.len().min(MAX_GROUP);
            jobs.drain(..n).collect()
        };
        let mut conn = lock(&shared.writer);
        let (answers, committed): (Vec<_>, _) =
            match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
                Ok(tx) => {
                    let (answers, clean): (Vec<_>, Vec<_>) =
                        jobs.into_iter().map(|job| job(Ok(&tx))).unzip();
                    let committed = if clean.iter().all(|c| *c) {
                        tx.commit().map_err(map_err)
                    } else {
                        // Dropped: rolled back, every write of the group with it.
                        Err(StoreError::Backend(
                            "a failed write could not be undone; its group was rolled back".into(),
                        ))
                    };
                    (answers, committed)
                }
                Err(e) => {
                    let e = map_err(e);
                    (jobs.into_iter().map(|job| job(Err(&e)).0).collect(), Err(e))
                }
            };
        drop(conn);
        if answers.len() > 1 && committed.is_ok() {
            shared.grouped.fetch_add(answers.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        // The group is done; the queue stays busy, for this thread's next turn.
        writing.idle = true;
        drop(writing);
        drop(shared);
        for answer in answers {
            answer(committed.as_ref().map(|_| ()));
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(Box::new(e)))?
}

/// Maps SQLite's result codes to the store's error categories.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::CannotOpen
            | C::SystemIoFailure
            | C::DiskFull
            | C::OutOfMemory
            | C::ReadOnly,
        ) => StoreError::Unavailable(Box::new(e)),
        _ => StoreError::Backend(Box::new(e)),
    }
}

/// Whether `e` is a UNIQUE constraint violation (SQLITE_CONSTRAINT_UNIQUE).
pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

pub(crate) fn corrupt(msg: impl Into<String>) -> BoxError {
    Box::new(crate::sql::Corrupt(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Writes made at once commit in groups, and each is answered as it would have been alone:
    /// of 60 app creations under 12 titles, 12 succeed and 48 find their title taken, with
    /// nothing of theirs written; 64 toggles of one flag all count, at contiguous revisions.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_at_once_commit_together_and_each_is_answered_alone() {
        use flagtower_core::{Actor, FlagCommand, NewFlag, Origin, Store, Timestamp, Title};
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let t = Timestamp::from_millis(1_700_000_000_000);
        let creations: Vec<_> = (0..60)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store.create_app(&Title::parse(&format!("app {}", i % 12)).unwrap(), t).await
                })
            })
            .collect();
        let (mut made, mut taken) = (0, 0);
        for c in creations {
            match c.await.unwrap() {
                Ok(_) => made += 1,
                Err(StoreError::AlreadyExists { .. }) => taken += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((made, taken), (12, 48));
        assert_eq!(store.list_apps().await.unwrap().len(), 12);

        let app = store.list_apps().await.unwrap()[0].id;
        let by = Actor::anonymous();
        let nf = NewFlag { title: Title::parse("f").unwrap(), settings: Default::default() };
        let flag = store.create_flag(app, &nf, t, &by).await.unwrap();
        let before = flag.revision.unwrap().get();
        let toggles: Vec<_> = (0..64)
            .map(|i| {
                let (store, by, id) = (Arc::clone(&store), by.clone(), flag.value.id);
                tokio::spawn(async move {
                    let now = t.plus_millis(i);
                    store
                        .change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, now, &by)
                        .await
                })
            })
            .collect();
        let mut revisions = Vec::new();
        for toggle in toggles {
            revisions.push(toggle.await.unwrap().unwrap().revision.unwrap().get());
        }
        revisions.sort_unstable();
        assert_eq!(revisions, (before + 1..=before + 64).collect::<Vec<_>>());
        let (now, logs) = store.flag_with_logs(flag.value.id, 1000).await.unwrap();
        assert_eq!(logs.len(), 65);
        assert!(!now.state.is_active(), "64 flips from off");
        assert!(
            store.shared.grouped.load(std::sync::atomic::Ordering::Relaxed) > 0,
            "some writes waited for the writer and committed with others"
        );
    }

    #[tokio::test]
    async fn one_store_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tower.db");
        let first = SqliteStore::open(&path).await.unwrap();
        let second = SqliteStore::open(&path).await.unwrap_err();
        assert!(matches!(second, OpenError::InUse { .. }), "{second:?}");
        assert!(second.to_string().contains("PostgreSQL"), "{second}");
        // Another process is refused too: the lock is the operating system's.
        let status = std::process::Command::new("flock")
            .args(["--nonblock", "--exclusive"])
            .arg(dir.path().join("tower.db.lock"))
            .arg("true")
            .status();
        if let Ok(status) = status {
            assert!(!status.success(), "flock(1) took the lock while the store holds it");
        }
        drop(first);
        SqliteStore::open(&path).await.expect("free once the first store is gone");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        flagtower_core::conformance::run(|| {
            let (dir, n) = (Arc::clone(&dir), Arc::clone(&n));
            async move {
                let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let store = SqliteStore::open(dir.path().join(format!("c{i}.db"))).await.unwrap();
                Arc::new(store) as Arc<dyn flagtower_core::Store>
            }
        })
        .await;
    }

    #[tokio::test]
    async fn the_feed_reads_exactly_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
        flagtower_core::conformance::exact_changes(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_schema_version() {
        use flagtower_core::{Store, Timestamp, Title};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path).await.unwrap();
        let app =
            s.create_app(&Title::parse("kept").unwrap(), Timestamp::from_millis(1)).await.unwrap();
        drop(s);
        let s = SqliteStore::open(&path).await.unwrap();
        assert_eq!(s.get_app(app.id).await.unwrap(), app);
        let conn = Connection::open(&path).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    /// A file from before version 4 with a logged change: upgraded in place, its entry reads
    /// back with no actor and no changes, and new entries record both.
    #[tokio::test]
    async fn entries_from_before_the_audit_columns_read_back_as_unrecorded() {
        use flagtower_core::{Actor, FlagCommand, NewFlag, Origin, Store, Timestamp, Title};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path).await.unwrap();
        let t = Timestamp::from_millis(1);
        let app = s.create_app(&Title::parse("old").unwrap(), t).await.unwrap();
        let nf = NewFlag { title: Title::parse("f").unwrap(), settings: Default::default() };
        let flag = s.create_flag(app.id, &nf, t, &Actor::anonymous()).await.unwrap().value;
        drop(s);
        // Back to version 3, as a Tower from before wrote it.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER apps_count_insert; DROP TRIGGER apps_count_update; \
             DROP INDEX apps_changed; ALTER TABLE apps DROP COLUMN changed; \
             ALTER TABLE logs DROP COLUMN actor; ALTER TABLE logs DROP COLUMN changes; \
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let s = SqliteStore::open(&path).await.unwrap();
        let by = Actor::named("ops");
        s.change_flag(flag.id, &FlagCommand::Toggle(None), Origin::Manual, t, &by).await.unwrap();
        let logs = s.list_logs().await.unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!((logs[1].actor.as_ref(), logs[1].changes.as_ref()), (None, None));
        assert_eq!(logs[0].actor, Some(by));
        assert!(logs[0].changes.as_ref().is_some_and(|c| c.contains_key("is_active")));
    }

    #[tokio::test]
    async fn the_writer_is_durable_and_enforces_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("t.db")).await.unwrap();
        let conn = lock(&s.shared.writer);
        let get = |pragma: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).unwrap()
        };
        assert_eq!(get("synchronous"), 2, "FULL: every commit is fsynced");
        assert_eq!(get("foreign_keys"), 1);
        assert_eq!(get("busy_timeout"), 5000);
        let err = conn
            .execute("INSERT INTO logs (flag_id, app_id, action_type, flag_title, flag_description, created_at) VALUES (1, 999, 'create', 't', '', 0)", [])
            .unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation));
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(matches!(err, OpenError::TooNew { found: 99, .. }), "{err}");
    }

    #[tokio::test]
    async fn an_unopenable_path_is_a_clear_error() {
        let err = SqliteStore::open("/nonexistent-dir/sub/t.db").await.unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/sub/t.db"), "{err}");
    }

    #[tokio::test]
    async fn a_corrupt_row_is_a_backend_error_not_a_panic() {
        use flagtower_core::{FlagId, NewFlag, Store, Timestamp, Title};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path).await.unwrap();
        let app =
            s.create_app(&Title::parse("a").unwrap(), Timestamp::from_millis(1)).await.unwrap();
        let nf = NewFlag { title: Title::parse("f").unwrap(), settings: Default::default() };
        let f = s
            .create_flag(
                app.id,
                &nf,
                Timestamp::from_millis(1),
                &flagtower_core::Actor::anonymous(),
            )
            .await
            .unwrap()
            .value;
        Connection::open(&path).unwrap().execute("UPDATE flags SET title = '   '", []).unwrap();
        assert!(matches!(s.get_flag(FlagId::new(f.id.get())).await, Err(StoreError::Backend(_))));
    }
}
