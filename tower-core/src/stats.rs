//! Counters of what Tower did, for an operator's metrics (the server's `/metrics` reads them):
//! the breaker's checks and moves, webhook deliveries, the store's operation latencies, and the
//! revision of each app this process last published. Plain atomics, so the core needs no
//! metrics library; [`crate::Tower::stats`] reads them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::{AppId, Revision};

/// The upper bounds of [`LatencyHistogram`]'s buckets, in seconds (then +Inf): 0.1 ms (a read
/// of SQLite's) to 10 s.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A kind of store operation, as `tower_store_operation_duration_seconds{op}` names it; its
/// discriminant is its place in `StoreOp::ALL` and `Stats::store_ops` (a test checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    Ping,
    ListApps,
    GetApp,
    CreateApp,
    RenameApp,
    DeleteApp,
    ListFlags,
    AppSummaries,
    AppsWithFlags,
    GetFlag,
    FlagWithLogs,
    CreateFlag,
    ChangeFlag,
    DeleteFlag,
    QueryLogs,
    ChangedSince,
    SdkKey,
    Ruleset,
    Pending,
    MarkPublished,
}

impl StoreOp {
    const ALL: [StoreOp; 20] = [
        Self::Ping,
        Self::ListApps,
        Self::GetApp,
        Self::CreateApp,
        Self::RenameApp,
        Self::DeleteApp,
        Self::ListFlags,
        Self::AppSummaries,
        Self::AppsWithFlags,
        Self::GetFlag,
        Self::FlagWithLogs,
        Self::CreateFlag,
        Self::ChangeFlag,
        Self::DeleteFlag,
        Self::QueryLogs,
        Self::ChangedSince,
        Self::SdkKey,
        Self::Ruleset,
        Self::Pending,
        Self::MarkPublished,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::ListApps => "list_apps",
            Self::GetApp => "get_app",
            Self::CreateApp => "create_app",
            Self::RenameApp => "rename_app",
            Self::DeleteApp => "delete_app",
            Self::ListFlags => "list_flags",
            Self::AppSummaries => "app_summaries",
            Self::AppsWithFlags => "apps_with_flags",
            Self::GetFlag => "get_flag",
            Self::FlagWithLogs => "flag_with_logs",
            Self::CreateFlag => "create_flag",
            Self::ChangeFlag => "change_flag",
            Self::DeleteFlag => "delete_flag",
            Self::QueryLogs => "query_logs",
            Self::ChangedSince => "changed_since",
            Self::SdkKey => "sdk_key",
            Self::Ruleset => "ruleset",
            Self::Pending => "pending",
            Self::MarkPublished => "mark_published",
        }
    }
}

/// A histogram of durations over [`LATENCY_BOUNDS`], in atomics.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    /// One per bound, and one for +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    pub(crate) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Latencies {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        Latencies {
            count: counts.iter().sum(),
            sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            counts,
        }
    }
}

/// A histogram's contents: how many durations fell in each bucket of [`LATENCY_BOUNDS`] (not
/// cumulative; the last is +Inf), their number and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latencies {
    /// One per bound, then +Inf.
    pub counts: Vec<u64>,
    /// How many.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_secs: f64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    breaker_checks: AtomicU64,
    trips: AtomicU64,
    recoveries_started: AtomicU64,
    recovery_steps: AtomicU64,
    closes: AtomicU64,
    webhooks_delivered: AtomicU64,
    webhooks_retried: AtomicU64,
    webhooks_failed: AtomicU64,
    publish_latency: LatencyHistogram,
    store_ops: [LatencyHistogram; StoreOp::ALL.len()],
    published: Mutex<HashMap<AppId, Revision>>,
}

/// What the counters say, since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Flags the breaker checked (one per monitored flag per interval).
    pub breaker_checks: u64,
    /// Circuits the breaker tripped open.
    pub trips: u64,
    /// Recoveries the breaker started.
    pub recoveries_started: u64,
    /// Recovery steps short of closing.
    pub recovery_steps: u64,
    /// Circuits the breaker closed after recovering.
    pub closes: u64,
    /// Webhook messages delivered.
    pub webhooks_delivered: u64,
    /// Webhook attempts that failed and were retried.
    pub webhooks_retried: u64,
    /// Webhook messages given up on (refused, or failing after every attempt).
    pub webhooks_failed: u64,
    /// From a change's commit in this process to its ruleset accepted by the publisher.
    pub publish_latency: Latencies,
    /// How long each kind of store operation took (named as in
    /// `tower_store_operation_duration_seconds{op}`), every kind, in a fixed order.
    pub store_latency: Vec<(&'static str, Latencies)>,
    /// The newest revision of each app this process published, by app id.
    pub published: Vec<(AppId, Revision)>,
}

/// One of the breaker's moves, by what it logged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Move {
    Trip,
    StartRecovery,
    Step,
    Close,
}

/// How a webhook attempt ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Delivery {
    Delivered,
    Retried,
    Failed,
}

impl Stats {
    pub(crate) fn checked(&self) {
        self.breaker_checks.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn moved(&self, m: Move) {
        let c = match m {
            Move::Trip => &self.trips,
            Move::StartRecovery => &self.recoveries_started,
            Move::Step => &self.recovery_steps,
            Move::Close => &self.closes,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn webhook(&self, d: Delivery) {
        let c = match d {
            Delivery::Delivered => &self.webhooks_delivered,
            Delivery::Retried => &self.webhooks_retried,
            Delivery::Failed => &self.webhooks_failed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn published_after(&self, d: Duration) {
        self.publish_latency.observe(d);
    }

    pub(crate) fn store_op(&self, op: StoreOp, d: Duration) {
        self.store_ops[op as usize].observe(d);
    }

    /// This process published `app` at `revision` (an older revision than one already
    /// recorded changes nothing).
    pub(crate) fn published(&self, app: AppId, revision: Revision) {
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let r = p.entry(app).or_insert(revision);
        *r = (*r).max(revision);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            breaker_checks: get(&self.breaker_checks),
            trips: get(&self.trips),
            recoveries_started: get(&self.recoveries_started),
            recovery_steps: get(&self.recovery_steps),
            closes: get(&self.closes),
            webhooks_delivered: get(&self.webhooks_delivered),
            webhooks_retried: get(&self.webhooks_retried),
            webhooks_failed: get(&self.webhooks_failed),
            publish_latency: self.publish_latency.snapshot(),
            store_latency: StoreOp::ALL
                .iter()
                .zip(&self.store_ops)
                .map(|(op, h)| (op.name(), h.snapshot()))
                .collect(),
            published: {
                let p = self.published.lock().unwrap_or_else(|e| e.into_inner());
                let mut all: Vec<_> = p.iter().map(|(a, r)| (*a, *r)).collect();
                all.sort_unstable();
                all
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_in_their_buckets() {
        let h = LatencyHistogram::default();
        for ms in [0, 1, 3, 40, 20_000] {
            h.observe(Duration::from_millis(ms));
        }
        let l = h.snapshot();
        assert_eq!(l.count, 5);
        assert_eq!(l.counts.len(), LATENCY_BOUNDS.len() + 1);
        let at = |i: usize| l.counts[i];
        assert_eq!((at(0), at(3), at(5), at(8), at(16)), (1, 1, 1, 1, 1));
        assert!((l.sum_secs - 20.044).abs() < 1e-9, "{}", l.sum_secs);
    }

    #[test]
    fn store_operations_and_publications_are_recorded() {
        let s = Stats::default();
        s.store_op(StoreOp::ChangeFlag, Duration::from_micros(300));
        s.store_op(StoreOp::ChangeFlag, Duration::from_millis(2));
        s.published(AppId::new(2), Revision::new(5));
        s.published(AppId::new(2), Revision::new(4));
        s.published(AppId::new(1), Revision::new(1));
        for (i, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} is in its place in ALL");
        }
        let snap = s.snapshot();
        assert_eq!(snap.store_latency.len(), StoreOp::ALL.len());
        let (name, change) = &snap.store_latency[StoreOp::ChangeFlag as usize];
        assert_eq!(
            (*name, change.count, change.counts[2], change.counts[4]),
            ("change_flag", 2, 1, 1)
        );
        assert!(
            snap.store_latency
                .iter()
                .filter(|(n, _)| *n != "change_flag")
                .all(|(_, l)| l.count == 0)
        );
        assert_eq!(
            snap.published,
            [(AppId::new(1), Revision::new(1)), (AppId::new(2), Revision::new(5))]
        );
    }
}
