//! The client side of Tower's rulesets: a service that links this crate keeps one app's newest
//! ruleset and evaluates its flags locally, without asking Tower.
//!
//! [`FlagClient`] holds the app's flags compiled ([`crate::eval::Index`]) and is fed rulesets by
//! a follower: `flagtower_adapters::nats::follow` for NATS JetStream, or
//! [`FlagClient::follow_in_process`] for the publisher of an embedded Tower. It keeps the newest
//! revision only (an older ruleset that arrives late is dropped), never blocks a caller on the
//! network, and says whether it has a ruleset yet and how old it is.
//!
//! ```
//! use flagtower_core::client::FlagClient;
//! use flagtower_core::{AppId, Bucketing};
//!
//! let flags = FlagClient::new(AppId::new(1), Bucketing::Tower);
//! // Before the first ruleset arrives every flag is off.
//! assert!(!flags.is_enabled("new-checkout", "user-42"));
//! assert!(!flags.ready());
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::eval::{Bucketing, EvalError, Evaluation, Index};
use crate::model::Counts;
use crate::model::{AppId, Flag, FlagId, Revision};
use crate::ports::{BoxError, MetricsStore};
use crate::time::{Clock, Timestamp};

/// Where a [`FlagClient`] sends the outcomes it recorded ([`FlagClient::report_to`]).
///
/// Every [`MetricsStore`] is one (RedisTimeSeries writes where the Tailslide SDKs write);
/// `flagtower_adapters::events::TowerEvents` sends them to Tower's
/// `POST /api/flags/:id/events` instead, for services that reach Tower and not its metrics
/// store.
///
/// Contract: one attempt per call, bounded in time; [`OutcomeError::Unavailable`] means the
/// counts are kept and sent again with the next ones, [`OutcomeError::Rejected`] that they are
/// dropped (sending them again cannot succeed, e.g. the flag was deleted).
#[async_trait::async_trait]
pub trait OutcomeSink: Send + Sync + std::fmt::Debug {
    /// Sends one flag's counts, observed up to `at`.
    async fn send(
        &self,
        flag: FlagId,
        app: AppId,
        counts: Counts,
        at: Timestamp,
    ) -> Result<(), OutcomeError>;
}

/// What an [`OutcomeSink`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutcomeError {
    /// Worth another attempt later: the counts are kept.
    #[error("the outcome receiver is unavailable")]
    Unavailable(#[source] BoxError),
    /// Refused for good: the counts are dropped.
    #[error("the outcome receiver refused the counts")]
    Rejected(#[source] BoxError),
}

#[async_trait::async_trait]
impl<M: MetricsStore> OutcomeSink for M {
    async fn send(
        &self,
        flag: FlagId,
        app: AppId,
        counts: Counts,
        at: Timestamp,
    ) -> Result<(), OutcomeError> {
        self.record(flag, app, counts, at).await.map_err(|e| OutcomeError::Unavailable(e.into()))
    }
}

/// One app's flags, kept current by a follower and evaluated locally. Cloning is cheap; clones
/// share the state.
#[derive(Debug, Clone)]
pub struct FlagClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    app: AppId,
    bucketing: Bucketing,
    state: RwLock<Option<(Arc<Index>, Instant)>>,
    /// Outcomes recorded and not sent yet, by flag.
    outcomes: Mutex<HashMap<FlagId, Counts>>,
    /// The revision held, for those who wait for a change.
    revision: tokio::sync::watch::Sender<Option<Revision>>,
}

impl FlagClient {
    /// A client of `app`'s flags, with no ruleset yet.
    pub fn new(app: AppId, bucketing: Bucketing) -> Self {
        let inner = Inner {
            app,
            bucketing,
            state: RwLock::new(None),
            outcomes: Mutex::new(HashMap::new()),
            revision: tokio::sync::watch::Sender::new(None),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The app it follows.
    pub fn app(&self) -> AppId {
        self.inner.app
    }

    /// Takes a ruleset of the app at `revision`; `false` (and nothing changes) when it is not
    /// newer than the one held or is another app's.
    pub fn offer(&self, app: AppId, revision: Revision, flags: &[Flag]) -> bool {
        if app != self.inner.app {
            return false;
        }
        let mut state = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
        if state.as_ref().is_some_and(|(index, _)| index.revision >= revision) {
            return false;
        }
        *state = Some((Arc::new(Index::new(app, revision, flags)), Instant::now()));
        drop(state);
        self.inner.revision.send_replace(Some(revision));
        true
    }

    /// The revision held, and a way to wait for the next (`changed().await`).
    pub fn revisions(&self) -> tokio::sync::watch::Receiver<Option<Revision>> {
        self.inner.revision.subscribe()
    }

    fn index(&self) -> Option<Arc<Index>> {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.as_ref().map(|(index, _)| Arc::clone(index))
    }

    /// Whether the flag titled `title` is on for `user`: `false` for a flag it does not know,
    /// and for every flag before the first ruleset arrives.
    pub fn is_enabled(&self, title: &str, user: &str) -> bool {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .as_ref()
            .and_then(|(index, _)| index.evaluate(title, Some(user), self.inner.bucketing))
            .is_some_and(|e| e.is_ok_and(|e| e.enabled))
    }

    /// The evaluation of `title` for `user` (`None`: no targeting key) with its reason; `None`
    /// when the flag is unknown or no ruleset arrived yet.
    pub fn evaluate(
        &self,
        title: &str,
        user: Option<&str>,
    ) -> Option<Result<Evaluation, EvalError>> {
        self.index()?.evaluate(title, user, self.inner.bucketing)
    }

    /// The index held, to look at several flags of one revision.
    pub fn snapshot(&self) -> Option<Arc<Index>> {
        self.index()
    }

    /// Whether a ruleset arrived.
    pub fn ready(&self) -> bool {
        self.index().is_some()
    }

    /// The revision held.
    pub fn revision(&self) -> Option<Revision> {
        self.index().map(|i| i.revision)
    }

    /// How long ago the ruleset held arrived (its staleness, when the follower is cut off).
    pub fn age(&self) -> Option<std::time::Duration> {
        let state = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        state.as_ref().map(|(_, at)| at.elapsed())
    }

    /// Follows the publisher of an embedded Tower: every ruleset of the app, newest kept, until
    /// the publisher goes away. Spawn it on a tokio runtime.
    pub async fn follow_in_process(self, mut rulesets: crate::Subscription) {
        while let Some(r) = rulesets.next().await {
            if r.app_id == self.inner.app {
                match crate::ruleset::decode_flags(&r.body) {
                    Ok(flags) => {
                        self.offer(r.app_id, r.revision, &flags);
                    }
                    Err(e) => tracing::warn!(app = %r.app_id, error = %e, "undecodable ruleset"),
                }
            }
        }
    }

    /// The bucketing it evaluates with.
    pub fn bucketing(&self) -> Bucketing {
        self.inner.bucketing
    }

    /// Records that a call guarded by the flag titled `title` succeeded, for the circuit
    /// breaker. Never blocks on the network and never fails: outcomes are counted here and sent
    /// in the background by [`FlagClient::report_to`]; a flag it does not know is ignored.
    pub fn record_success(&self, title: &str) {
        self.record(title, Counts { success: 1, failure: 0 });
    }

    /// Records that a call guarded by the flag titled `title` failed (see
    /// [`FlagClient::record_success`]).
    pub fn record_failure(&self, title: &str) {
        self.record(title, Counts { success: 0, failure: 1 });
    }

    fn record(&self, title: &str, counts: Counts) {
        let Some(id) = self.index().and_then(|i| i.get(title).map(|r| r.id)) else { return };
        let mut outcomes = self.inner.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let c = outcomes.entry(id).or_default();
        c.success += counts.success;
        c.failure += counts.failure;
    }

    /// Sends the recorded outcomes to `sink` every `every`, summed per flag: a
    /// [`MetricsStore`] (RedisTimeSeries writes them where the Tailslide SDKs do,
    /// `<flagId>:success|failure` with their labels) or Tower's events route. Counts that cannot
    /// be sent now are kept and sent with the next ones; counts the sink refuses for good are
    /// dropped, with a warning. Spawn it on a tokio runtime; it runs until aborted.
    pub fn report_to(
        &self,
        sink: Arc<dyn OutcomeSink>,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                me.send_outcomes(&*sink, clock.now(), &mut failing).await;
            }
        })
    }

    /// Sends what was recorded, one flag after another; a flag whose counts fail does not stop
    /// the others. `failing` remembers across rounds that a warning was logged already.
    async fn send_outcomes(&self, sink: &dyn OutcomeSink, at: Timestamp, failing: &mut bool) {
        let batch =
            std::mem::take(&mut *self.inner.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        for (flag, counts) in batch {
            match sink.send(flag, self.inner.app, counts, at).await {
                Ok(()) => *failing = false,
                Err(OutcomeError::Rejected(e)) => {
                    tracing::warn!(flag = %flag, success = counts.success, failure = counts.failure, error = %crate::ErrorChain(&*e), "flag outcomes refused; dropping them");
                }
                Err(OutcomeError::Unavailable(e)) => {
                    if !*failing {
                        tracing::warn!(flag = %flag, error = %crate::ErrorChain(&*e), "cannot send flag outcomes; keeping them for the next attempt");
                    }
                    *failing = true;
                    let mut outcomes =
                        self.inner.outcomes.lock().unwrap_or_else(|e| e.into_inner());
                    let c = outcomes.entry(flag).or_default();
                    c.success += counts.success;
                    c.failure += counts.failure;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CircuitState, FlagId, Title};
    use crate::time::Timestamp;

    fn flag(on: bool) -> Flag {
        let mut f = Flag::new(AppId::new(1), Title::parse("f").unwrap(), Timestamp::from_millis(0))
            .with_id(FlagId::new(1));
        f.state = if on { CircuitState::On } else { CircuitState::Off };
        f
    }

    #[test]
    fn keeps_the_newest_revision_only() {
        let c = FlagClient::new(AppId::new(1), Bucketing::Tower);
        assert!(!c.is_enabled("f", "u") && !c.ready() && c.age().is_none());
        assert!(c.offer(AppId::new(1), Revision::new(3), &[flag(true)]));
        assert!(c.is_enabled("f", "u") && c.ready());
        assert!(
            !c.offer(AppId::new(1), Revision::new(2), &[flag(false)]),
            "an older one is dropped"
        );
        assert!(!c.offer(AppId::new(1), Revision::new(3), &[flag(false)]), "so is a repeat");
        assert!(!c.offer(AppId::new(2), Revision::new(9), &[flag(false)]), "and another app's");
        assert!(c.is_enabled("f", "u"));
        assert!(c.offer(AppId::new(1), Revision::new(4), &[flag(false)]));
        assert!(!c.is_enabled("f", "u"));
        assert_eq!(c.revision(), Some(Revision::new(4)));
        assert!(!c.is_enabled("unknown", "u"));
    }

    /// A sink that answers from a script, per flag, and keeps what it accepted.
    #[derive(Debug, Default)]
    struct Scripted {
        refuse: Mutex<HashMap<FlagId, bool>>,
        accepted: Mutex<Vec<(FlagId, Counts)>>,
    }

    #[async_trait::async_trait]
    impl OutcomeSink for Scripted {
        async fn send(
            &self,
            flag: FlagId,
            _app: AppId,
            counts: Counts,
            _at: Timestamp,
        ) -> Result<(), OutcomeError> {
            match self.refuse.lock().unwrap().get(&flag) {
                Some(true) => Err(OutcomeError::Rejected("gone".into())),
                Some(false) => Err(OutcomeError::Unavailable("down".into())),
                None => {
                    self.accepted.lock().unwrap().push((flag, counts));
                    Ok(())
                }
            }
        }
    }

    #[tokio::test]
    async fn outcomes_are_kept_while_unavailable_and_dropped_when_refused() {
        let mut a = flag(true);
        a.title = Title::parse("a").unwrap();
        let mut b = flag(true).with_id(FlagId::new(2));
        b.title = Title::parse("b").unwrap();
        let c = FlagClient::new(AppId::new(1), Bucketing::Tower);
        c.offer(AppId::new(1), Revision::new(1), &[a, b]);
        let sink = Scripted::default();
        sink.refuse.lock().unwrap().extend([(FlagId::new(1), false), (FlagId::new(2), true)]);
        c.record_success("a");
        c.record_failure("a");
        c.record_failure("b");
        c.record_failure("unknown");
        let mut failing = false;
        c.send_outcomes(&sink, Timestamp::from_millis(0), &mut failing).await;
        assert!(failing && sink.accepted.lock().unwrap().is_empty());
        // `a` is back up; its kept counts go with the new ones; `b`'s were dropped.
        sink.refuse.lock().unwrap().clear();
        c.record_success("a");
        c.send_outcomes(&sink, Timestamp::from_millis(1), &mut failing).await;
        assert!(!failing);
        assert_eq!(
            *sink.accepted.lock().unwrap(),
            vec![(FlagId::new(1), Counts { success: 2, failure: 1 })]
        );
        c.send_outcomes(&sink, Timestamp::from_millis(2), &mut failing).await;
        assert_eq!(sink.accepted.lock().unwrap().len(), 1, "nothing left to send");
    }
}
