//! [`InMemoryStore`]: the whole [`Store`] contract in memory, for tests of the core and of
//! services that embed Tower, and for a Tower that needs no file at all.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::command::{FlagCommand, NewFlag};
use crate::model::Title;
use crate::model::{Actor, App, AppId, Flag, FlagId, LogEntry, LogId, Origin, Revision, SdkKey};
use crate::plan::FlagWrite;
use crate::ports::{
    AppCursor, Change, ChangeMark, Changed, LogQuery, LogRecord, MAX_LOG_PAGE, Pending, Resource,
    Store, StoreError,
};
use crate::ruleset::{self, Ruleset};
use crate::time::Timestamp;

/// A [`Store`] that keeps everything in memory, behind one lock: each operation is one atomic
/// step, so it is its own transaction. Everything is lost when it is dropped; one process uses
/// it, so the default [`crate::LocalCoordination`] serves it. It passes the same conformance suite as the SQL stores.
///
/// ```
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use flagtower_core::{InMemoryStore, Title, Tower};
///
/// let tower = Tower::builder(Arc::new(InMemoryStore::new())).start().await?;
/// let app = tower.create_app(&Title::parse("Checkout")?).await?;
/// assert_eq!(tower.list_apps().await?, vec![app]);
/// tower.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct InMemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    apps: BTreeMap<AppId, AppRow>,
    flags: BTreeMap<FlagId, Flag>,
    /// By id, oldest first: ids are 1, 2, … in insertion order.
    logs: Vec<LogEntry>,
    /// Unpublished revisions per app.
    outbox: BTreeMap<AppId, BTreeMap<Revision, Origin>>,
    sdk_key: Option<SdkKey>,
    last_app: i64,
    last_flag: i64,
    /// Counts every change of an app row: `AppRow::changed` is its value at the row's last one.
    changes: u64,
}

#[derive(Debug)]
struct AppRow {
    app: App,
    deleted: bool,
    revision: Revision,
    changed: u64,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl State {
    fn live_app(&self, id: AppId) -> Result<&App, StoreError> {
        match self.apps.get(&id) {
            Some(row) if !row.deleted => Ok(&row.app),
            _ => Err(StoreError::NotFound(Resource::App)),
        }
    }

    fn flag(&self, id: FlagId) -> Result<&Flag, StoreError> {
        self.flags.get(&id).ok_or(StoreError::NotFound(Resource::Flag))
    }

    fn app_flags(&self, app: AppId) -> impl Iterator<Item = &Flag> {
        self.flags.values().filter(move |f| f.app_id == app)
    }

    /// Refuses `title` for a live app other than `except`.
    fn app_title_free(&self, title: &Title, except: Option<AppId>) -> Result<(), StoreError> {
        let key = title.key();
        let taken = self
            .apps
            .values()
            .any(|r| !r.deleted && Some(r.app.id) != except && r.app.title.key() == key);
        if taken {
            return Err(StoreError::AlreadyExists {
                what: Resource::App,
                title: title.as_str().to_owned(),
            });
        }
        Ok(())
    }

    /// Refuses `flag`'s title when another flag of its app has it.
    fn flag_title_free(&self, flag: &Flag) -> Result<(), StoreError> {
        let key = flag.title.key();
        if self.app_flags(flag.app_id).any(|f| f.id != flag.id && f.title.key() == key) {
            return Err(StoreError::AlreadyExists {
                what: Resource::Flag,
                title: flag.title.as_str().to_owned(),
            });
        }
        Ok(())
    }

    /// Writes what `write` says: the flag (or its removal), its log entry, the revision bump
    /// and the outbox record.
    fn execute(&mut self, write: FlagWrite, remove: bool, now: Timestamp) -> Change<Flag> {
        if let Some(entry) = write.log_entry(LogId::new(self.logs.len() as i64 + 1), now) {
            self.logs.push(entry);
        }
        if remove {
            self.flags.remove(&write.flag.id);
        } else {
            self.flags.insert(write.flag.id, write.flag.clone());
        }
        let revision = self.bump(write.flag.app_id, write.origin);
        let action = write.action();
        Change::written(write.flag, revision, action)
    }

    /// Bumps the app's revision and records it in the outbox.
    fn bump(&mut self, app: AppId, origin: Origin) -> Revision {
        let row = self.apps.get_mut(&app).expect("the caller checked the app");
        self.changes += 1;
        row.changed = self.changes;
        row.revision = row.revision.next();
        let revision = row.revision;
        self.outbox.entry(app).or_default().insert(revision, origin);
        revision
    }
}

#[async_trait]
impl Store for InMemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let s = lock(&self.state);
        Ok(s.apps.values().filter(|r| !r.deleted).map(|r| r.app.clone()).collect())
    }

    async fn get_app(&self, id: AppId) -> Result<App, StoreError> {
        lock(&self.state).live_app(id).cloned()
    }

    async fn create_app(&self, title: &Title, now: Timestamp) -> Result<App, StoreError> {
        let mut s = lock(&self.state);
        s.app_title_free(title, None)?;
        s.last_app += 1;
        let app = App {
            id: AppId::new(s.last_app),
            title: title.clone(),
            created_at: now,
            updated_at: now,
        };
        s.changes += 1;
        let changed = s.changes;
        s.apps.insert(
            app.id,
            AppRow { app: app.clone(), deleted: false, revision: Revision::new(0), changed },
        );
        Ok(app)
    }

    async fn rename_app(
        &self,
        id: AppId,
        title: &Title,
        now: Timestamp,
    ) -> Result<App, StoreError> {
        let mut s = lock(&self.state);
        s.live_app(id)?;
        s.app_title_free(title, Some(id))?;
        s.changes += 1;
        let changed = s.changes;
        let row = s.apps.get_mut(&id).expect("checked above");
        row.changed = changed;
        row.app.title = title.clone();
        row.app.updated_at = now;
        Ok(row.app.clone())
    }

    async fn delete_app(
        &self,
        id: AppId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<App>, StoreError> {
        let mut s = lock(&self.state);
        let app = s.live_app(id)?.clone();
        let flags: Vec<Flag> = s.app_flags(id).cloned().collect();
        for flag in &flags {
            let write = FlagWrite::delete(flag, by);
            if let Some(entry) = write.log_entry(LogId::new(s.logs.len() as i64 + 1), now) {
                s.logs.push(entry);
            }
            s.flags.remove(&flag.id);
        }
        s.apps.get_mut(&id).expect("checked above").deleted = true;
        let revision = s.bump(id, Origin::Manual);
        Ok(Change::written(app, revision, None))
    }

    async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, StoreError> {
        let s = lock(&self.state);
        s.live_app(app)?;
        Ok(s.app_flags(app).cloned().collect())
    }

    async fn get_flag(&self, id: FlagId) -> Result<Flag, StoreError> {
        lock(&self.state).flag(id).cloned()
    }

    async fn flag_with_logs(
        &self,
        id: FlagId,
        limit: u32,
    ) -> Result<(Flag, Vec<LogEntry>), StoreError> {
        let s = lock(&self.state);
        let flag = s.flag(id)?.clone();
        let mut logs: Vec<LogEntry> =
            s.logs.iter().rev().filter(|l| l.flag_id == id).take(limit as usize).cloned().collect();
        logs.reverse();
        Ok((flag, logs))
    }

    async fn create_flag_within(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let mut s = lock(&self.state);
        s.live_app(app)?;
        let mut write = FlagWrite::create(app, flag, now, by);
        write.flag.id = FlagId::new(s.last_flag + 1);
        s.flag_title_free(&write.flag)?;
        if let Some(limit) = max_ruleset_bytes {
            let mut flags: Vec<Flag> = s.app_flags(app).cloned().collect();
            flags.push(write.flag.clone());
            ruleset::check_size(&flags, limit)?;
        }
        s.last_flag += 1;
        Ok(s.execute(write, false, now))
    }

    async fn change_flag_within(
        &self,
        id: FlagId,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let mut s = lock(&self.state);
        let current = s.flag(id)?.clone();
        let Some(write) = FlagWrite::change(&current, command, origin, now, by) else {
            return Ok(Change::unchanged(current));
        };
        s.flag_title_free(&write.flag)?;
        if let Some(limit) = max_ruleset_bytes
            && ruleset::grows(Some(&current), &write.flag)
        {
            let flags: Vec<Flag> = s
                .app_flags(write.flag.app_id)
                .map(|f| if f.id == id { write.flag.clone() } else { f.clone() })
                .collect();
            ruleset::check_size(&flags, limit)?;
        }
        Ok(s.execute(write, false, now))
    }

    async fn delete_flag(
        &self,
        id: FlagId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        let mut s = lock(&self.state);
        let write = FlagWrite::delete(s.flag(id)?, by);
        Ok(s.execute(write, true, now))
    }

    async fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        let s = lock(&self.state);
        let matches = |l: &&LogEntry| {
            q.app.is_none_or(|a| l.app_id == a)
                && q.action.is_none_or(|a| l.action == a)
                && q.before.is_none_or(|b| l.id < b)
                && q.after.is_none_or(|a| l.id > a)
        };
        let record = |l: &LogEntry| LogRecord {
            entry: l.clone(),
            flag_deleted: !s.flags.contains_key(&l.flag_id),
        };
        let limit = q.limit.min(MAX_LOG_PAGE) as usize;
        // Newest first, or oldest first after a cursor, as the SQL stores order them.
        Ok(if q.after.is_some() {
            s.logs.iter().filter(matches).take(limit).map(record).collect()
        } else {
            s.logs.iter().rev().filter(matches).take(limit).map(record).collect()
        })
    }

    async fn changed_since(&self, since: Option<ChangeMark>) -> Result<Changed, StoreError> {
        // A scan of the apps: this twin keeps everything in memory.
        let s = lock(&self.state);
        let after = since.map_or(0, ChangeMark::get);
        let apps = s
            .apps
            .values()
            .filter(|r| since.is_none() || r.changed > after)
            .map(|r| AppCursor {
                app: r.app.clone(),
                deleted: r.deleted,
                revision: r.revision,
                last_log: s.logs.iter().rev().find(|l| l.app_id == r.app.id).map(|l| l.id),
            })
            .collect();
        Ok(Changed { apps, mark: ChangeMark::new(s.changes) })
    }

    async fn sdk_key(&self) -> Result<Option<SdkKey>, StoreError> {
        Ok(lock(&self.state).sdk_key.clone())
    }

    async fn ensure_sdk_key(&self, candidate: &SdkKey) -> Result<SdkKey, StoreError> {
        Ok(lock(&self.state).sdk_key.get_or_insert_with(|| candidate.clone()).clone())
    }

    async fn replace_sdk_key(&self, key: &SdkKey) -> Result<SdkKey, StoreError> {
        lock(&self.state).sdk_key = Some(key.clone());
        Ok(key.clone())
    }

    async fn ruleset(&self, app: AppId) -> Result<Ruleset, StoreError> {
        let s = lock(&self.state);
        let row = s.apps.get(&app).ok_or(StoreError::NotFound(Resource::App))?;
        let flags = if row.deleted { Vec::new() } else { s.app_flags(app).cloned().collect() };
        Ok(Ruleset { app_id: app, revision: row.revision, flags })
    }

    async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        let s = lock(&self.state);
        Ok(s.outbox
            .iter()
            .filter_map(|(&app_id, revisions)| {
                let (&revision, &origin) = revisions.last_key_value()?;
                Some(Pending { app_id, revision, origin })
            })
            .collect())
    }

    async fn mark_published(&self, app: AppId, revision: Revision) -> Result<(), StoreError> {
        let mut s = lock(&self.state);
        if let Some(revisions) = s.outbox.get_mut(&app) {
            revisions.retain(|r, _| *r > revision);
            if revisions.is_empty() {
                s.outbox.remove(&app);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::InMemoryStore;

    /// The provided log reads page through `query_logs`: across several pages, nothing is
    /// missed or repeated and the order holds.
    #[tokio::test]
    async fn whole_logs_span_pages() {
        use crate::command::{FlagCommand, FlagPatch, NewFlag};
        use crate::model::{Origin, Title};
        use crate::ports::{MAX_LOG_PAGE, Store};
        use crate::time::Timestamp;
        let s = InMemoryStore::new();
        let t = Timestamp::from_millis(0);
        let a = s.create_app(&Title::parse("a").unwrap(), t).await.unwrap();
        let other = s.create_app(&Title::parse("b").unwrap(), t).await.unwrap();
        let new =
            |n: &str| NewFlag { title: Title::parse(n).unwrap(), settings: FlagPatch::default() };
        let f = s
            .create_flag(a.id, &new("f"), t, &crate::model::Actor::anonymous())
            .await
            .unwrap()
            .value;
        s.create_flag(other.id, &new("g"), t, &crate::model::Actor::anonymous()).await.unwrap();
        let n = 2 * MAX_LOG_PAGE as usize + 7;
        for _ in 1..n {
            s.change_flag(
                f.id,
                &FlagCommand::Toggle(None),
                Origin::Manual,
                t,
                &crate::model::Actor::anonymous(),
            )
            .await
            .unwrap();
        }
        let of_a = s.app_logs(a.id).await.unwrap();
        assert_eq!(of_a.len(), n);
        assert!(
            of_a.windows(2).all(|w| w[0].id < w[1].id) && of_a.iter().all(|l| l.app_id == a.id)
        );
        let all = s.list_logs().await.unwrap();
        assert_eq!(all.len(), n + 1);
        assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    }

    #[tokio::test]
    async fn conformance() {
        crate::conformance::run(|| async { Arc::new(InMemoryStore::new()) as _ }).await;
    }

    #[tokio::test]
    async fn the_feed_reads_exactly_what_changed() {
        crate::conformance::exact_changes(Arc::new(InMemoryStore::new())).await;
    }
}
