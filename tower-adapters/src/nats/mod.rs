//! The NATS JetStream publisher: every app's ruleset on `apps.<appId>.update.<origin>`, in the
//! stream SDKs read.
//!
//! - Stream (default `flags_ruleset`): subjects `apps.*.>`, file storage, one message kept per
//!   subject, a de-duplication window of at least two minutes. Tower publishes only on
//!   `apps.<appId>.update.manual` and `apps.<appId>.update.circuit`, but the stream captures the
//!   wider `apps.*.>` because nats-server 2.9 accepts a consumer filter only when it is a subset of
//!   the stream's subjects, and the Tailslide SDKs filter on `apps.<appId>.>` (Python, JS, Ruby)
//!   or `>` (Go): both are valid against `apps.*.>` on 2.9 and later, while `apps.<appId>.>` is
//!   refused by 2.9 on a stream of `apps.*.update.*`.
//! - Created at connect when missing. An existing stream is adopted in place, keeping its
//!   messages: subjects that `apps.*.>` covers (Tower's earlier `apps.*.update.*`, the original
//!   Node Tower's exact `apps.<id>.update.manual` per app) are replaced by it, other subjects are
//!   kept, a short de-duplication window is lengthened, and a per-subject limit left at the
//!   server's default (unlimited, as the original Tower created it) becomes 1. A stream with
//!   memory storage, non-limits retention or an explicit limit above one message per subject is
//!   refused with an error that says what is wrong and how to fix it.
//! - Size: [`Publisher::max_ruleset_bytes`] is the server's `max_payload` (from its INFO) less
//!   [`HEADER_ALLOWANCE`], so the service can refuse a change whose ruleset could not be sent.
//! - Each message: the JSON array, headers `Nats-Msg-Id: <appId>-<revision>` (JetStream drops a
//!   repeat within the window) and `Tower-Revision: <revision>`. `publish` returns only once
//!   JetStream acknowledged it.
//! - Authentication with a token; the token is never logged (`Debug` redacts it).

use std::fmt;
use std::time::Duration;

mod follow;

pub use follow::follow;

use async_nats::jetstream::{self, stream};
use async_trait::async_trait;
use flagtower_core::{EncodedRuleset, PublishError, Publisher};

/// The subjects Tower's stream captures (Tower publishes on `apps.<appId>.update.<origin>`).
pub const SUBJECTS: &str = "apps.*.>";
/// Bytes of `max_payload` kept for a message's headers (`Nats-Msg-Id` and `Tower-Revision` with
/// 20-digit numbers take 107).
pub const HEADER_ALLOWANCE: usize = 128;
/// The shortest de-duplication window Tower accepts.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// How to reach NATS.
#[derive(Clone)]
pub struct NatsOptions {
    url: String,
    token: Option<String>,
    stream: String,
    timeout: Duration,
}

impl fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsOptions")
            .field("url", &redact(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("stream", &self.stream)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What of the server URL may be shown (`flagtower_core::redact::url`).
fn redact(url: &str) -> String {
    flagtower_core::redact::url(url)
}

impl NatsOptions {
    /// The server (`nats://host:4222`), the default stream, no token, a 5 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            stream: "flags_ruleset".to_owned(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Authenticate with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Use another stream.
    pub fn stream(mut self, name: impl Into<String>) -> Self {
        self.stream = name.into();
        self
    }

    /// How long to wait for the connection and for each acknowledgement.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server URL with credentials redacted.
    pub fn target(&self) -> String {
        redact(&self.url)
    }

    /// The client's options: the token, the timeout, and reconnecting forever at least once a
    /// second, so that rulesets flow again within seconds of the server coming back.
    pub(crate) fn connect_options(&self) -> async_nats::ConnectOptions {
        match &self.token {
            Some(t) => async_nats::ConnectOptions::with_token(t.clone()),
            None => async_nats::ConnectOptions::new(),
        }
        .connection_timeout(self.timeout)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(50u64.saturating_mul(1 << attempts.min(5)).min(1000))
        })
    }
}

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server refused the token (or wanted one).
    #[error("NATS at {target} refused the credentials: check TOWER_NATS_TOKEN")]
    Auth {
        /// The server.
        target: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The server could not be reached.
    #[error("cannot connect to NATS at {target}")]
    Connect {
        /// The server.
        target: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The stream exists with settings Tower cannot use.
    #[error("JetStream stream {stream:?} {problem}")]
    Stream {
        /// The stream.
        stream: String,
        /// What is wrong, and what to do.
        problem: String,
    },
    /// JetStream refused to create or update the stream, or is not enabled.
    #[error("cannot set up JetStream stream {stream:?}: {reason}")]
    JetStream {
        /// The stream.
        stream: String,
        /// The server's answer.
        reason: String,
    },
}

/// A [`Publisher`] on NATS JetStream.
#[derive(Clone)]
pub struct NatsPublisher {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    target: String,
}

impl fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsPublisher")
            .field("target", &self.target)
            .field("stream", &self.stream)
            .finish()
    }
}

impl NatsPublisher {
    /// Connects, and creates or checks the stream.
    pub async fn connect(options: &NatsOptions) -> Result<Self, ConnectError> {
        let target = options.target();
        let connect = options.connect_options().name("tower").event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
        let client = connect.connect(options.url.as_str()).await.map_err(|source| {
            use async_nats::ConnectErrorKind as K;
            match source.kind() {
                K::AuthorizationViolation | K::Authentication => {
                    ConnectError::Auth { target: target.clone(), source }
                }
                _ => ConnectError::Connect { target: target.clone(), source },
            }
        })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(options.timeout);
        let publisher = Self { client, js, stream: options.stream.clone(), target };
        // A server that just started may still be recovering JetStream: retry what may be
        // transient for a while; a stream Tower cannot use is refused at once.
        let deadline = tokio::time::Instant::now() + options.timeout * 2;
        loop {
            match publisher.ensure_stream().await {
                Ok(()) => break,
                Err(e @ ConnectError::JetStream { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "JetStream not ready yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(target_nats = %publisher.target, stream = %publisher.stream, "NATS JetStream publisher ready");
        Ok(publisher)
    }

    /// The stream Tower needs.
    fn desired(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: vec![SUBJECTS.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_messages_per_subject: 1,
            duplicate_window: MIN_DUPLICATE_WINDOW,
            description: Some("Tower: the latest ruleset of each app".to_owned()),
            ..Default::default()
        }
    }

    async fn ensure_stream(&self) -> Result<(), ConnectError> {
        let fail = |reason: String| ConnectError::JetStream { stream: self.stream.clone(), reason };
        let existing = match self.js.get_stream(&self.stream).await {
            Ok(mut s) => s.info().await.map_err(|e| fail(e.to_string()))?.config.clone(),
            Err(e) => {
                let missing = matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND);
                if !missing {
                    return Err(fail(format!("{e} (is JetStream enabled on the server, `-js`?)")));
                }
                self.js.create_stream(self.desired()).await.map_err(|e| fail(e.to_string()))?;
                tracing::info!(stream = %self.stream, "JetStream stream created");
                return Ok(());
            }
        };
        let refuse =
            |problem: String| ConnectError::Stream { stream: self.stream.clone(), problem };
        let updated = adopt(&existing).map_err(refuse)?;
        if updated != existing {
            self.js.update_stream(updated.clone()).await.map_err(|e| {
                refuse(format!(
                    "cannot be updated to capture {SUBJECTS} (subjects {:?}) with one message per subject and a {MIN_DUPLICATE_WINDOW:?} de-duplication window: {e}",
                    updated.subjects
                ))
            })?;
            tracing::info!(stream = %self.stream, from = ?existing.subjects, to = ?updated.subjects, "JetStream stream updated for Tower");
        }
        Ok(())
    }
}

/// The configuration an existing stream needs for Tower, keeping what it can; an error says why
/// the stream cannot be used and how to fix it.
fn adopt(existing: &stream::Config) -> Result<stream::Config, String> {
    if existing.storage != stream::StorageType::File {
        return Err("uses memory storage; Tower needs file storage so rulesets survive a NATS restart: delete the stream (Tower recreates and refills it) or use TOWER_NATS_STREAM".to_owned());
    }
    if existing.retention != stream::RetentionPolicy::Limits {
        return Err(format!(
            "has retention {:?}; Tower needs limits retention so SDKs can read the latest ruleset at any time",
            existing.retention
        ));
    }
    let mut updated = existing.clone();
    match existing.max_messages_per_subject {
        1 => {}
        // The server's default (unlimited), as the original Tower left it: keep the newest.
        n if n <= 0 => updated.max_messages_per_subject = 1,
        n => {
            return Err(format!(
                "keeps {n} messages per subject; Tower needs exactly 1 (the latest ruleset): fix it with `nats stream edit {} --max-msgs-per-subject 1` or delete the stream",
                existing.name
            ));
        }
    }
    if !existing.subjects.iter().any(|s| subject_covers(s, SUBJECTS)) {
        // NATS refuses overlapping subjects in one stream: what `apps.*.>` covers goes, the
        // messages stay (they are still captured).
        updated.subjects.retain(|s| !subject_covers(SUBJECTS, s));
        updated.subjects.push(SUBJECTS.to_owned());
    }
    if existing.duplicate_window < MIN_DUPLICATE_WINDOW {
        updated.duplicate_window = MIN_DUPLICATE_WINDOW;
    }
    Ok(updated)
}

/// Whether every subject that `inner` matches is matched by `outer` (NATS wildcards: `*` one
/// token, `>` one or more trailing tokens).
fn subject_covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (Some(">"), Some(_)) => return true,
            (Some(_), Some(">")) => return false,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[async_trait]
impl Publisher for NatsPublisher {
    async fn publish(&self, ruleset: &EncodedRuleset) -> Result<(), PublishError> {
        use async_nats::jetstream::context::PublishErrorKind as K;
        if self.client.connection_state() != async_nats::connection::State::Connected {
            // The client would buffer the message and wait out the acknowledgement timeout;
            // saying so at once lets the relay back off and keep its other apps moving.
            return Err(PublishError::Unavailable(
                format!("not connected to NATS at {}", self.target).into(),
            ));
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", ruleset.message_id().as_str());
        headers.insert("Tower-Revision", ruleset.revision.to_string().as_str());
        let classify = |e: async_nats::jetstream::context::PublishError| match e.kind() {
            K::TimedOut | K::BrokenPipe | K::StreamNotFound | K::MaxAckPending => {
                PublishError::Unavailable(Box::new(e))
            }
            K::MaxPayloadExceeded => PublishError::Rejected(Box::new(e)),
            _ => PublishError::Unavailable(Box::new(e)),
        };
        let ack = self
            .js
            .publish_with_headers(ruleset.subject(), headers, ruleset.body.clone())
            .await
            .map_err(classify)?
            .await
            .map_err(classify)?;
        if ack.stream != self.stream {
            return Err(PublishError::Rejected(
                format!(
                    "{} was captured by stream {:?}, not {:?}",
                    ruleset.subject(),
                    ack.stream,
                    self.stream
                )
                .into(),
            ));
        }
        Ok(())
    }

    fn max_ruleset_bytes(&self) -> Option<usize> {
        Some(self.client.max_payload().saturating_sub(HEADER_ALLOWANCE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_cover_what_their_wildcards_match() {
        for (outer, inner) in [
            ("apps.*.>", "apps.5.>"),
            ("apps.*.>", "apps.*.update.*"),
            ("apps.*.>", "apps.5.update.manual"),
            ("apps.>", "apps.*.>"),
            (">", "apps.*.>"),
            ("apps.*.update.*", "apps.7.update.circuit"),
        ] {
            assert!(subject_covers(outer, inner), "{outer} covers {inner}");
        }
        for (outer, inner) in [
            ("apps.*.update.*", "apps.5.>"),
            ("apps.*.>", "apps"),
            ("apps.*.>", "apps.5"),
            ("apps.*.>", ">"),
            ("apps.*.>", "circuit_open"),
            ("apps.5.>", "apps.*.>"),
        ] {
            assert!(!subject_covers(outer, inner), "{outer} does not cover {inner}");
        }
    }

    fn stream(subjects: &[&str], per_subject: i64) -> stream::Config {
        stream::Config {
            name: "flags_ruleset".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            max_messages_per_subject: per_subject,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        }
    }

    #[test]
    fn earlier_streams_are_adopted_with_the_subjects_every_sdk_filter_fits() {
        // Tower's own earlier stream.
        let s = adopt(&stream(&["apps.*.update.*"], 1)).unwrap();
        assert_eq!(s.subjects, ["apps.*.>"]);
        // The original Node Tower's: exact subjects per app, `apps` and the circuit subjects,
        // unlimited messages per subject.
        let node = stream(
            &[
                "apps",
                "circuit_open",
                "apps.1.update.manual",
                "apps.1.update.circuit",
                "apps.2.update.manual",
            ],
            -1,
        );
        let s = adopt(&node).unwrap();
        assert_eq!(s.subjects, ["apps", "circuit_open", "apps.*.>"]);
        assert_eq!(s.max_messages_per_subject, 1);
        // Already right, or wider: unchanged.
        for ok in [stream(&["apps.*.>"], 1), stream(&["apps.>"], 1), stream(&[">"], 1)] {
            assert_eq!(adopt(&ok).unwrap(), ok);
        }
        // Someone chose to keep history: refused with the fix.
        let err = adopt(&stream(&["apps.*.>"], 10)).unwrap_err();
        assert!(err.contains("keeps 10 messages per subject"), "{err}");
    }
}
