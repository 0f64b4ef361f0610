//! Counters of what Tower's background work did, for an operator's metrics (the server's
//! `/metrics` reads them): the breaker's checks and moves, and webhook deliveries. Plain
//! atomics, so the core needs no metrics library; [`crate::Tower::stats`] reads them.

use std::sync::atomic::{AtomicU64, Ordering};

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
}

/// What the counters say, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
        }
    }
}
