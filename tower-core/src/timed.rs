//! [`TimedStore`]: the store every [`crate::Tower`] talks to, timing each operation of the one
//! it was built on into [`crate::stats`] (the server's `/metrics` exports them as
//! `tower_store_operation_duration_seconds{op}`). Two clock reads per operation.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::command::{FlagCommand, NewFlag};
use crate::model::{
    Actor, App, AppId, Flag, FlagCounts, FlagId, LogEntry, Origin, Revision, SdkKey, Title,
};
use crate::ports::{
    Change, ChangeMark, Changed, Coordination, LogQuery, LogRecord, Pending, Store, StoreError,
};
use crate::ruleset::Ruleset;
use crate::stats::{Stats, StoreOp};
use crate::time::Timestamp;

/// A [`Store`] that times every operation of `inner`.
#[derive(Debug)]
pub(crate) struct TimedStore {
    inner: Arc<dyn Store>,
    stats: Arc<Stats>,
}

impl TimedStore {
    pub(crate) fn new(inner: Arc<dyn Store>, stats: Arc<Stats>) -> Self {
        Self { inner, stats }
    }

    async fn time<T>(&self, op: StoreOp, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.stats.store_op(op, start.elapsed());
        out
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.time(StoreOp::Ping, self.inner.ping()).await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        self.time(StoreOp::ListApps, self.inner.list_apps()).await
    }

    async fn get_app(&self, id: AppId) -> Result<App, StoreError> {
        self.time(StoreOp::GetApp, self.inner.get_app(id)).await
    }

    async fn create_app(&self, title: &Title, now: Timestamp) -> Result<App, StoreError> {
        self.time(StoreOp::CreateApp, self.inner.create_app(title, now)).await
    }

    async fn rename_app(
        &self,
        id: AppId,
        title: &Title,
        now: Timestamp,
    ) -> Result<App, StoreError> {
        self.time(StoreOp::RenameApp, self.inner.rename_app(id, title, now)).await
    }

    async fn delete_app(
        &self,
        id: AppId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<App>, StoreError> {
        self.time(StoreOp::DeleteApp, self.inner.delete_app(id, now, by)).await
    }

    async fn list_flags(&self, app: AppId) -> Result<Vec<Flag>, StoreError> {
        self.time(StoreOp::ListFlags, self.inner.list_flags(app)).await
    }

    async fn app_summaries(&self) -> Result<Vec<(App, FlagCounts)>, StoreError> {
        self.time(StoreOp::AppSummaries, self.inner.app_summaries()).await
    }

    async fn apps_with_flags(&self) -> Result<Vec<(App, Vec<Flag>)>, StoreError> {
        self.time(StoreOp::AppsWithFlags, self.inner.apps_with_flags()).await
    }

    async fn get_flag(&self, id: FlagId) -> Result<Flag, StoreError> {
        self.time(StoreOp::GetFlag, self.inner.get_flag(id)).await
    }

    async fn flag_with_logs(
        &self,
        id: FlagId,
        limit: u32,
    ) -> Result<(Flag, Vec<LogEntry>), StoreError> {
        self.time(StoreOp::FlagWithLogs, self.inner.flag_with_logs(id, limit)).await
    }

    async fn create_flag(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        self.time(StoreOp::CreateFlag, self.inner.create_flag(app, flag, now, by)).await
    }

    async fn create_flag_within(
        &self,
        app: AppId,
        flag: &NewFlag,
        now: Timestamp,
        by: &Actor,
        max_ruleset_bytes: Option<usize>,
    ) -> Result<Change<Flag>, StoreError> {
        let f = self.inner.create_flag_within(app, flag, now, by, max_ruleset_bytes);
        self.time(StoreOp::CreateFlag, f).await
    }

    async fn change_flag(
        &self,
        id: FlagId,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        let f = self.inner.change_flag(id, command, origin, now, by);
        self.time(StoreOp::ChangeFlag, f).await
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
        let f = self.inner.change_flag_within(id, command, origin, now, by, max_ruleset_bytes);
        self.time(StoreOp::ChangeFlag, f).await
    }

    async fn delete_flag(
        &self,
        id: FlagId,
        now: Timestamp,
        by: &Actor,
    ) -> Result<Change<Flag>, StoreError> {
        self.time(StoreOp::DeleteFlag, self.inner.delete_flag(id, now, by)).await
    }

    async fn list_logs(&self) -> Result<Vec<LogEntry>, StoreError> {
        self.time(StoreOp::QueryLogs, self.inner.list_logs()).await
    }

    async fn app_logs(&self, app: AppId) -> Result<Vec<LogEntry>, StoreError> {
        self.time(StoreOp::QueryLogs, self.inner.app_logs(app)).await
    }

    async fn query_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>, StoreError> {
        self.time(StoreOp::QueryLogs, self.inner.query_logs(query)).await
    }

    async fn changed_since(&self, since: Option<ChangeMark>) -> Result<Changed, StoreError> {
        self.time(StoreOp::ChangedSince, self.inner.changed_since(since)).await
    }

    fn notify_changes(
        &self,
        wake: std::sync::Weak<tokio::sync::Notify>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        self.inner.notify_changes(wake, stop)
    }

    async fn sdk_key(&self) -> Result<Option<SdkKey>, StoreError> {
        self.time(StoreOp::SdkKey, self.inner.sdk_key()).await
    }

    async fn ensure_sdk_key(&self, candidate: &SdkKey) -> Result<SdkKey, StoreError> {
        self.time(StoreOp::SdkKey, self.inner.ensure_sdk_key(candidate)).await
    }

    async fn replace_sdk_key(&self, key: &SdkKey) -> Result<SdkKey, StoreError> {
        self.time(StoreOp::SdkKey, self.inner.replace_sdk_key(key)).await
    }

    async fn ruleset(&self, app: AppId) -> Result<Ruleset, StoreError> {
        self.time(StoreOp::Ruleset, self.inner.ruleset(app)).await
    }

    async fn pending(&self) -> Result<Vec<Pending>, StoreError> {
        self.time(StoreOp::Pending, self.inner.pending()).await
    }

    async fn mark_published(&self, app: AppId, revision: Revision) -> Result<(), StoreError> {
        self.time(StoreOp::MarkPublished, self.inner.mark_published(app, revision)).await
    }

    fn coordination(&self) -> Option<Arc<dyn Coordination>> {
        self.inner.coordination()
    }
}
