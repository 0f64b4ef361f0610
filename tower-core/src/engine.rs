//! The breaker engine: every interval, asks [`crate::breaker::decide`] about each flag and
//! commits what it decides, as the circuit (`apps.<id>.update.circuit`).
//!
//! Each move is a [`FlagCommand::Breaker`] carrying the `updated_at` of the flag it was decided
//! on, so a manual change made meanwhile always wins. Deadlines live with the flag, so a
//! restarted engine resumes where it stopped, at most one step per tick.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::breaker::{self, BreakerSettings};
use crate::command::FlagCommand;
use crate::model::Counts;
use crate::model::Origin;
use crate::ports::{BoxError, Coordination, MetricsStore, Store};
use crate::relay::RelaySignal;
use crate::time::Clock;

pub(crate) struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) coordination: Arc<dyn Coordination>,
    pub(crate) metrics: Arc<dyn MetricsStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) signal: Arc<RelaySignal>,
    pub(crate) settings: BreakerSettings,
    pub(crate) indexes: Arc<crate::service::Indexes>,
    pub(crate) feed: Arc<crate::feed::Feed>,
    pub(crate) webhooks: Option<crate::webhooks::WebhookQueue>,
    pub(crate) stats: Arc<crate::stats::Stats>,
}

impl Engine {
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.settings.interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(settings = ?self.settings, "circuit breaker started");
        let mut lease: Option<Box<dyn crate::ports::LeaderLease>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            // One engine at a time across the processes sharing the store.
            match lease.as_mut() {
                Some(held) => {
                    if !held.alive().await {
                        tracing::warn!(
                            "circuit breaker lost its lease; another process may take over"
                        );
                        lease = None;
                        continue;
                    }
                }
                None => match self.coordination.lease_breaker().await {
                    Ok(Some(l)) => {
                        tracing::info!("circuit breaker leading");
                        lease = Some(l);
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %crate::ErrorChain(&e), "circuit breaker cannot take its lease");
                        continue;
                    }
                },
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %crate::ErrorChain(&*e), "circuit breaker check failed; retrying next interval");
            }
        }
    }

    /// One check of every flag; the number of moves committed.
    pub(crate) async fn tick(&self) -> Result<usize, BoxError> {
        let now = self.clock.now();
        let mut moves = 0;
        let mut metrics_down = false;
        for (app, flags) in self.store.apps_with_flags().await? {
            for flag in flags {
                let window = breaker::window(&flag, now, &self.settings);
                if window.is_some() {
                    self.stats.checked();
                }
                let counts = match window {
                    None => None,
                    // Without counts no flag trips, but recovery still moves on.
                    Some(_) if metrics_down => None,
                    // Changed within this millisecond (or at a later one by another process's
                    // clock): nothing counted since.
                    Some((from, to)) if from >= to => Some(Vec::new()),
                    Some((from, to)) => {
                        let width = self.settings.bucket_ms();
                        match self.metrics.buckets(flag.id, from.plus_millis(1), to, width).await {
                            Ok(buckets) => Some(
                                buckets
                                    .iter()
                                    .map(|b| Counts { success: b.success, failure: b.failure })
                                    .collect::<Vec<_>>(),
                            ),
                            Err(e) => {
                                tracing::warn!(error = %crate::ErrorChain(&e), "circuit breaker cannot read counts");
                                metrics_down = true;
                                None
                            }
                        }
                    }
                };
                let Some(transition) =
                    breaker::decide(&flag, counts.as_deref(), now, &self.settings)
                else {
                    continue;
                };
                let command = FlagCommand::Breaker { transition, seen: Box::new(flag.clone()) };
                let by = crate::model::Actor::breaker();
                let change =
                    self.store.change_flag(flag.id, &command, Origin::Circuit, now, &by).await?;
                if let Some(revision) = change.revision {
                    moves += 1;
                    self.stats.moved(match change.action {
                        Some(crate::model::Action::CircuitOpen) => crate::stats::Move::Trip,
                        Some(crate::model::Action::CircuitRecovery) => {
                            crate::stats::Move::StartRecovery
                        }
                        Some(crate::model::Action::CircuitClose) => crate::stats::Move::Close,
                        _ => crate::stats::Move::Step,
                    });
                    self.indexes.forget(flag.app_id, revision);
                    self.feed.versions.changed(flag.app_id);
                    self.signal.changed(flag.app_id, Origin::Circuit);
                    self.feed.wake.notify_one();
                    let why = command.log_detail();
                    if let (Some(queue), Some(action)) = (&self.webhooks, change.action)
                        && let Some(text) = crate::webhooks::message(
                            action,
                            &change.value,
                            app.title.as_str(),
                            why.as_deref(),
                        )
                    {
                        queue.send(&change.value, &text);
                    }
                    tracing::info!(
                        flag = %flag.id,
                        app = %flag.app_id,
                        ?transition,
                        why = why.as_deref().unwrap_or(""),
                        state = change.value.state.circuit_status(),
                        recovery_percentage = %change.value.circuit_recovery_percentage,
                        "circuit breaker moved a flag"
                    );
                }
            }
        }
        Ok(moves)
    }
}
