//! A [`FlagClient`](flagtower_core::client::FlagClient)'s outcomes sent to Tower's
//! `POST /api/flags/:id/events` (`{"success": n, "failure": m}`), for services that reach Tower
//! over HTTP but not its metrics store. The breaker counts them exactly as it counts what SDKs
//! write to RedisTimeSeries.
//!
//! ```no_run
//! # async fn run(flags: flagtower_core::client::FlagClient) -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use flagtower_adapters::events::TowerEvents;
//! use flagtower_core::SystemClock;
//!
//! let sink = TowerEvents::new("http://tower.internal:3000")?.bearer("the SDK key");
//! let reporter = flags.report_to(Arc::new(sink), Arc::new(SystemClock), Duration::from_secs(1));
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use flagtower_core::client::{OutcomeError, OutcomeSink};
use flagtower_core::input::MAX_EVENT_COUNT;
use flagtower_core::{AppId, Counts, FlagId, Timestamp};

use crate::http_client::{HttpClient, PostError};

/// How long one report may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`TowerEvents::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// The base URL is not `http://…` or `https://…`.
    #[error("Tower's URL must start with http:// or https://")]
    InvalidUrl,
    /// TLS could not be set up.
    #[error("cannot set up TLS")]
    Tls(#[from] rustls::Error),
}

/// An [`OutcomeSink`] that POSTs each flag's counts to a Tower's events route.
#[derive(Clone)]
pub struct TowerEvents {
    http: HttpClient,
    base: String,
    authorization: Option<String>,
}

impl std::fmt::Debug for TowerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The base URL is the caller's, possibly with credentials: only its scheme is shown.
        let scheme = self.base.split_once("://").map_or("", |(s, _)| s);
        f.debug_struct("TowerEvents")
            .field("scheme", &scheme)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.http.timeout)
            .finish()
    }
}

impl TowerEvents {
    /// A sink for the Tower at `base` (`http://HOST:PORT`, or a prefix it is served under),
    /// with the default [`TIMEOUT`].
    pub fn new(base: &str) -> Result<Self, EventsError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EventsError::InvalidUrl);
        }
        let base = base.trim_end_matches('/').to_owned();
        Ok(Self {
            http: HttpClient::new(TIMEOUT, flagtower_core::destinations::Destinations::any())?,
            base,
            authorization: None,
        })
    }

    /// Sends `Authorization: Bearer <token>` with every report (an SDK key or an admin token).
    pub fn bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// Another timeout per report.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout;
        self
    }
}

#[async_trait]
impl OutcomeSink for TowerEvents {
    async fn send(
        &self,
        flag: FlagId,
        _app: AppId,
        counts: Counts,
        _at: Timestamp,
    ) -> Result<(), OutcomeError> {
        if counts.total() == 0 {
            return Ok(());
        }
        // The route takes at most MAX_EVENT_COUNT of each per report: more than a billion
        // outcomes of one flag between two reports is beyond any real traffic, and capped.
        if counts.success > MAX_EVENT_COUNT || counts.failure > MAX_EVENT_COUNT {
            tracing::warn!(flag = %flag, success = counts.success, failure = counts.failure, "outcomes above the route's limit per report; capping them");
        }
        let body = serde_json::json!({
            "success": counts.success.min(MAX_EVENT_COUNT),
            "failure": counts.failure.min(MAX_EVENT_COUNT),
        });
        let url = format!("{}/api/flags/{flag}/events", self.base);
        self.http
            .post_json(&url, body.to_string().into_bytes(), self.authorization.as_deref())
            .await
            .map_err(|e| match e {
                PostError::Unavailable(e) => OutcomeError::Unavailable(e),
                PostError::Rejected(e) => OutcomeError::Rejected(e),
            })
    }
}
