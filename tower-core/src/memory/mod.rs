//! The always-available twins of the production adapters: in-memory metrics and the in-process
//! publisher, used when nothing else is configured, and the in-memory store, for tests and for a
//! Tower that keeps nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::model::Counts;
use crate::model::{AppId, FlagId, Revision};
use crate::ports::{Bucket, MetricsError, MetricsStore, PublishError, Publisher};
use crate::ruleset::EncodedRuleset;
use crate::time::Timestamp;

mod store;
pub use store::InMemoryStore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps half-updated in a way
    // that matters (each update is one insert), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The default retention of in-memory samples: one hour.
pub const DEFAULT_RETENTION_MS: i64 = 60 * 60 * 1000;

/// Success/failure counts kept in memory for a retention period; lost on restart.
#[derive(Debug)]
pub struct InMemoryMetrics {
    retention_ms: i64,
    samples: Mutex<HashMap<FlagId, BTreeMap<i64, Counts>>>,
}

impl Default for InMemoryMetrics {
    fn default() -> Self {
        Self::with_retention(DEFAULT_RETENTION_MS)
    }
}

impl InMemoryMetrics {
    /// A store that forgets samples older than `retention_ms` before the newest recorded one.
    pub fn with_retention(retention_ms: i64) -> Self {
        Self { retention_ms, samples: Mutex::default() }
    }
}

#[async_trait]
impl MetricsStore for InMemoryMetrics {
    async fn prepare(&self, _flag: FlagId, _app: AppId) -> Result<(), MetricsError> {
        Ok(())
    }

    async fn record(
        &self,
        flag: FlagId,
        _app: AppId,
        counts: Counts,
        at: Timestamp,
    ) -> Result<(), MetricsError> {
        let mut all = lock(&self.samples);
        let series = all.entry(flag).or_default();
        let slot = series.entry(at.as_millis()).or_default();
        slot.success = slot.success.saturating_add(counts.success);
        slot.failure = slot.failure.saturating_add(counts.failure);
        let horizon = at.as_millis().saturating_sub(self.retention_ms);
        while series.first_key_value().is_some_and(|(t, _)| *t < horizon) {
            series.pop_first();
        }
        Ok(())
    }

    async fn buckets(
        &self,
        flag: FlagId,
        from: Timestamp,
        to: Timestamp,
        bucket_ms: u64,
    ) -> Result<Vec<Bucket>, MetricsError> {
        let width = i64::try_from(bucket_ms.max(1)).unwrap_or(i64::MAX);
        let all = lock(&self.samples);
        let Some(series) = all.get(&flag) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Bucket> = Vec::new();
        // An empty window (`from` after `to`) has no counts; `range` would panic on it.
        if from > to {
            return Ok(out);
        }
        for (t, c) in series.range(from.as_millis()..=to.as_millis()) {
            let start = t - t.rem_euclid(width);
            match out.last_mut() {
                Some(b) if b.timestamp == start => {
                    b.success += c.success;
                    b.failure += c.failure;
                }
                _ => out.push(Bucket { timestamp: start, success: c.success, failure: c.failure }),
            }
        }
        Ok(out)
    }
}

/// The embedded default publisher: keeps the latest ruleset of each app and hands rulesets to
/// in-process subscribers, who get every app's current ruleset first and then each new one.
///
/// Like JetStream with de-duplication, it never delivers a revision of an app older than (or
/// equal to) one it already delivered.
#[derive(Debug)]
pub struct InProcessPublisher {
    latest: Mutex<BTreeMap<AppId, EncodedRuleset>>,
    tx: broadcast::Sender<EncodedRuleset>,
}

impl Default for InProcessPublisher {
    fn default() -> Self {
        Self { latest: Mutex::default(), tx: broadcast::channel(1024).0 }
    }
}

impl InProcessPublisher {
    /// A publisher with no rulesets yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The latest ruleset of an app.
    pub fn latest(&self, app: AppId) -> Option<EncodedRuleset> {
        lock(&self.latest).get(&app).cloned()
    }

    /// Follows every app: first each app's current ruleset, then each new one, in order.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        // Snapshot and subscribe under the lock `publish` holds while sending: nothing can fall
        // between the two.
        let latest = lock(&self.latest);
        let backlog = latest.values().cloned().collect();
        let rx = self.tx.subscribe();
        drop(latest);
        Subscription { publisher: Arc::clone(self), rx, backlog, seen: HashMap::new() }
    }
}

#[async_trait]
impl Publisher for InProcessPublisher {
    async fn publish(&self, ruleset: &EncodedRuleset) -> Result<(), PublishError> {
        let mut latest = lock(&self.latest);
        if latest.get(&ruleset.app_id).is_some_and(|cur| cur.revision >= ruleset.revision) {
            return Ok(());
        }
        latest.insert(ruleset.app_id, ruleset.clone());
        // No subscriber is not an error: the latest ruleset is kept for the next one.
        let _ = self.tx.send(ruleset.clone());
        Ok(())
    }
}

/// A subscriber of an [`InProcessPublisher`].
#[derive(Debug)]
pub struct Subscription {
    publisher: Arc<InProcessPublisher>,
    rx: broadcast::Receiver<EncodedRuleset>,
    backlog: VecDeque<EncodedRuleset>,
    seen: HashMap<AppId, Revision>,
}

impl Subscription {
    /// The next ruleset; `None` once the publisher is gone.
    ///
    /// A subscriber that falls more than 1 024 rulesets behind skips to each app's latest one,
    /// as a JetStream consumer reading the last message per subject would.
    pub async fn next(&mut self) -> Option<EncodedRuleset> {
        loop {
            let next = match self.backlog.pop_front() {
                Some(r) => r,
                None => match self.rx.recv().await {
                    Ok(r) => r,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.rx = self.rx.resubscribe();
                        self.backlog = lock(&self.publisher.latest).values().cloned().collect();
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if self.seen.get(&next.app_id).is_some_and(|seen| *seen >= next.revision) {
                continue;
            }
            self.seen.insert(next.app_id, next.revision);
            return Some(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Origin;
    use bytes::Bytes;

    fn rs(app: i64, rev: u64) -> EncodedRuleset {
        EncodedRuleset {
            app_id: AppId::new(app),
            revision: Revision::new(rev),
            origin: Origin::Manual,
            body: Bytes::from(format!("[{rev}]")),
        }
    }

    /// A window that ends before it starts (a flag changed within the breaker's millisecond)
    /// has no counts, and asking for it is no panic.
    #[tokio::test]
    async fn an_empty_window_has_no_buckets() {
        let m = InMemoryMetrics::default();
        let (flag, app) = (crate::FlagId::new(1), AppId::new(1));
        let c = crate::model::Counts { success: 3, failure: 1 };
        m.record(flag, app, c, Timestamp::from_millis(1_000)).await.unwrap();
        let at = |ms| Timestamp::from_millis(ms);
        assert!(m.buckets(flag, at(1_001), at(1_000), 100).await.unwrap().is_empty());
        assert_eq!(m.buckets(flag, at(1_000), at(1_000), 100).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn subscribers_get_the_current_ruleset_first_then_new_ones() {
        let p = InProcessPublisher::new();
        p.publish(&rs(1, 1)).await.unwrap();
        p.publish(&rs(1, 2)).await.unwrap();
        p.publish(&rs(2, 5)).await.unwrap();
        let mut sub = p.subscribe();
        assert_eq!(sub.next().await.unwrap(), rs(1, 2));
        assert_eq!(sub.next().await.unwrap(), rs(2, 5));
        p.publish(&rs(1, 3)).await.unwrap();
        assert_eq!(sub.next().await.unwrap(), rs(1, 3));
    }

    #[tokio::test]
    async fn older_revisions_are_never_delivered() {
        let p = InProcessPublisher::new();
        let mut sub = p.subscribe();
        p.publish(&rs(1, 3)).await.unwrap();
        p.publish(&rs(1, 2)).await.unwrap();
        p.publish(&rs(1, 3)).await.unwrap();
        p.publish(&rs(1, 4)).await.unwrap();
        assert_eq!(sub.next().await.unwrap().revision, Revision::new(3));
        assert_eq!(sub.next().await.unwrap().revision, Revision::new(4));
        assert_eq!(p.latest(AppId::new(1)).unwrap().revision, Revision::new(4));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_to_the_latest() {
        let p = InProcessPublisher::new();
        let mut sub = p.subscribe();
        for rev in 1..=3000 {
            p.publish(&rs(1, rev)).await.unwrap();
        }
        let mut last = 0;
        while let Ok(Some(r)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await
        {
            assert!(r.revision.get() > last, "revisions only grow");
            last = r.revision.get();
        }
        assert_eq!(last, 3000);
    }

    #[tokio::test]
    async fn metrics_sum_into_buckets_aligned_to_the_width() {
        let m = InMemoryMetrics::default();
        let f = FlagId::new(1);
        let c = |s, f| Counts { success: s, failure: f };
        for (t, counts) in [(1_000, c(1, 0)), (1_500, c(2, 1)), (2_100, c(0, 4)), (9_000, c(7, 7))]
        {
            m.record(f, AppId::new(1), counts, Timestamp::from_millis(t)).await.unwrap();
        }
        let b = m
            .buckets(f, Timestamp::from_millis(900), Timestamp::from_millis(3_000), 1_000)
            .await
            .unwrap();
        assert_eq!(
            b,
            vec![
                Bucket { timestamp: 1_000, success: 3, failure: 1 },
                Bucket { timestamp: 2_000, success: 0, failure: 4 },
            ]
        );
    }

    #[tokio::test]
    async fn metrics_forget_samples_past_retention() {
        let m = InMemoryMetrics::with_retention(1_000);
        let f = FlagId::new(1);
        let one = Counts { success: 1, failure: 0 };
        m.record(f, AppId::new(1), one, Timestamp::from_millis(0)).await.unwrap();
        m.record(f, AppId::new(1), one, Timestamp::from_millis(5_000)).await.unwrap();
        let b = m.buckets(f, Timestamp::from_millis(0), Timestamp::from_millis(6_000), 6_000).await;
        assert_eq!(b.unwrap()[0].success, 1);
    }
}

#[cfg(test)]
mod conformance_tests {
    #[tokio::test]
    async fn in_memory_metrics_conform() {
        crate::conformance::metrics::run(|| async {
            std::sync::Arc::new(super::InMemoryMetrics::default())
                as std::sync::Arc<dyn crate::MetricsStore>
        })
        .await;
    }
}
