//! Counters of what Tower's background work did, for an operator's metrics (the server's
//! `/metrics` reads them): the breaker's checks and moves, and webhook deliveries. Plain
//! atomics, so the core needs no metrics library; [`crate::Tower::stats`] reads them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The upper bounds of [`LatencyHistogram`]'s buckets, in seconds (then +Inf).
pub const LATENCY_BOUNDS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

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
        assert_eq!((l.counts[0], l.counts[2], l.counts[5], l.counts[13]), (2, 1, 1, 1));
        assert!((l.sum_secs - 20.044).abs() < 1e-9, "{}", l.sum_secs);
    }
}
