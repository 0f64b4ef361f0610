//! # flagtower-core
//!
//! The domain of Tower, a feature-flag service with built-in circuit breakers: apps, flags and
//! their circuit states, validation, the ruleset codec SDKs read, the ports Tower needs from the
//! outside world, and [`Tower`], the service that performs every documented operation.
//!
//! This crate does no I/O of its own. Storage, publishing and metrics are ports ([`Store`],
//! [`Publisher`], [`MetricsStore`], [`Clock`]); `flagtower-adapters` implements them for SQLite,
//! PostgreSQL, NATS JetStream and Redis, and this crate carries the in-memory twins
//! ([`InMemoryMetrics`], [`InProcessPublisher`]) used when nothing else is configured.
//!
//! ## Embedding
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn flagtower_core::Store>) -> Result<(), flagtower_core::Error> {
//! use flagtower_core::{InProcessPublisher, Title, Tower};
//!
//! let publisher = InProcessPublisher::new();
//! let tower = Tower::builder(store).publisher(publisher.clone()).start().await?;
//! let app = tower.create_app(&Title::parse("Checkout").unwrap()).await?;
//! let mut rulesets = publisher.subscribe();
//! # let _ = (app, rulesets.next().await);
//! # Ok(()) }
//! ```
//!
//! ## A change, end to end
//!
//! 1. The caller's input is validated into typed values ([`input`]).
//! 2. The store applies the change in one transaction: the flag, its log entry, the app's new
//!    [`Revision`] and an outbox record ([`Store::change_flag`] running [`FlagCommand::apply`]).
//! 3. The relay task wakes, reads the app's ruleset at its newest revision and hands it to the
//!    [`Publisher`]; only after the publisher accepts it is the outbox record marked published.
#![warn(missing_docs, unreachable_pub)]

pub mod breaker;
pub mod client;
pub mod command;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod destinations;
mod engine;
pub mod eval;
pub mod feed;
pub mod input;
pub mod memory;
pub mod model;
pub mod plan;
pub mod ports;
pub mod redact;
pub mod relay;
pub mod ruleset;
pub mod service;
pub mod stats;
pub mod time;
mod timed;
pub mod versions;
pub mod webhooks;

pub use command::{FlagCommand, FlagPatch, NewFlag};
pub use eval::{Bucketing, EvalError, Evaluation, Index, Reason};
pub use feed::{FeedEvent, FeedSubscription};
pub use input::InputError;
pub use memory::{InMemoryMetrics, InMemoryStore, InProcessPublisher, Subscription};
pub use model::{
    Action, Actor, App, AppId, Changes, CircuitState, Counts, Flag, FlagId, LogEntry, LogId,
    Origin, Percent, Revision, SdkKey, Title,
};
pub use ports::{
    AppCursor, BoxError, Bucket, Change, ChangeMark, Changed, Coordination, LeaderLease,
    LocalCoordination, LogQuery, LogRecord, MetricsError, MetricsStore, Notifier, NotifyError,
    Pending, PublicationLease, PublishError, Publisher, Resource, Store, StoreError,
};
pub use relay::RelayConfig;
pub use ruleset::{EncodedRuleset, Ruleset};
pub use service::{Error, FlagCounts, Health, TimeWindow, Tower, TowerBuilder};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};

/// Displays an error with its whole `source` chain: `outer: inner: root`.
///
/// Logs use it so that the cause of a failure is never lost.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
