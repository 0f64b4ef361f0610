//! The outbox relay: publishes the newest ruleset of every app with unpublished changes, and
//! marks them published only once the publisher accepted them.
//!
//! One relay task runs per [`crate::Tower`]. It wakes when a change commits (and on a timer, to
//! pick up changes committed by other processes), republishes every live app at start, and
//! retries with capped exponential backoff and jitter while the publisher is unavailable. Being
//! the only publisher of its process, it never sends an older revision after a newer one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::model::Origin;
use crate::ports::{BoxError, Publisher, Store, StoreError};
use crate::ruleset::EncodedRuleset;

/// Tuning of the relay.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// First retry delay after a failure.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How often the outbox is read without being woken (changes by other processes).
    pub poll_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Shared between the relay task and the service: how to wake it and how it is doing.
#[derive(Debug, Default)]
pub(crate) struct RelaySignal {
    pub(crate) wake: Notify,
    pub(crate) degraded: AtomicBool,
}

pub(crate) struct Relay {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) publisher: Arc<dyn Publisher>,
    pub(crate) signal: Arc<RelaySignal>,
    pub(crate) config: RelayConfig,
}

impl Relay {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut startup_done = false;
        let mut failures: u32 = 0;
        loop {
            let result = if startup_done {
                self.drain().await
            } else {
                self.republish_all().await.map(|()| startup_done = true)
            };
            let wait = match result {
                Ok(()) => {
                    failures = 0;
                    self.signal.degraded.store(false, Ordering::Relaxed);
                    self.config.poll_interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.signal.degraded.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %crate::ErrorChain(&*e), attempt = failures, "ruleset relay failed; will retry");
                    backoff(self.config, failures)
                }
            };
            tokio::select! {
                _ = self.signal.wake.notified(), if failures == 0 => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {
                    // Publish what committed before the stop, once, then leave.
                    if startup_done && failures == 0 {
                        let _ = self.drain().await;
                    }
                    return;
                }
            }
        }
    }

    async fn republish_all(&self) -> Result<(), BoxError> {
        for app in self.store.list_apps().await? {
            // An app another process is publishing right now gets its newest ruleset from it.
            self.publish_latest(app.id, Origin::Manual).await?;
        }
        self.drain().await
    }

    async fn drain(&self) -> Result<(), BoxError> {
        // A change may commit while we publish: loop until the outbox is empty, or until every
        // app left is being published by another process (which will finish it).
        loop {
            let pending = self.store.pending().await?;
            let mut published = false;
            for p in pending {
                published |= self.publish_latest(p.app_id, p.origin).await?;
            }
            if !published {
                return Ok(());
            }
        }
    }

    /// Publishes the app's ruleset at its newest revision, holding the app's publication lease;
    /// `false` when another process holds it.
    async fn publish_latest(&self, app: crate::AppId, origin: Origin) -> Result<bool, BoxError> {
        let Some(lease) = self.store.lease_publication(app).await? else {
            return Ok(false);
        };
        let result = self.publish_leased(app, origin).await;
        lease.release().await;
        result.map(|()| true)
    }

    async fn publish_leased(&self, app: crate::AppId, origin: Origin) -> Result<(), BoxError> {
        let ruleset = match self.store.ruleset(app).await {
            Ok(r) => r,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let encoded = EncodedRuleset::new(&ruleset, origin);
        self.publisher.publish(&encoded).await?;
        self.store.mark_published(app, ruleset.revision).await?;
        tracing::debug!(app = %app, revision = %ruleset.revision, subject = %encoded.subject(), "ruleset published");
        Ok(())
    }
}

/// Capped exponential backoff with ±25 % jitter.
fn backoff(config: RelayConfig, failures: u32) -> Duration {
    let exp = config.min_backoff.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    let base = exp.min(config.max_backoff);
    // Jitter from the clock's sub-second noise: good enough to spread retries of many
    // processes, and needs no random number generator.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let jitter = f64::from(nanos % 1000) / 1000.0 * 0.5 - 0.25;
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let c = RelayConfig::default();
        let b1 = backoff(c, 1);
        assert!(b1 >= Duration::from_millis(37) && b1 <= Duration::from_millis(63), "{b1:?}");
        let b3 = backoff(c, 3);
        assert!(b3 >= Duration::from_millis(150) && b3 <= Duration::from_millis(250), "{b3:?}");
        for n in [10, 20, 100, u32::MAX] {
            assert!(backoff(c, n) <= c.max_backoff.mul_f64(1.25));
        }
    }
}
