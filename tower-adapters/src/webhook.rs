//! Webhook delivery over HTTP(S): a POST of `{"text": …}` (the Slack incoming-webhook format)
//! with hyper-util's client and rustls (ring, the webpki roots), each attempt bounded by a
//! timeout. Retries are the core's (`flagtower_core::webhooks`).

use std::time::Duration;

use async_trait::async_trait;
use flagtower_core::destinations::Destinations;
use flagtower_core::{Notifier, NotifyError};

use crate::http_client::{HttpClient, PostError};

/// How long one delivery attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Notifier`] over HTTP and HTTPS.
#[derive(Clone)]
pub struct HttpNotifier {
    http: HttpClient,
}

impl std::fmt::Debug for HttpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNotifier").field("timeout", &self.http.timeout).finish()
    }
}

impl HttpNotifier {
    /// A client with the default [`TIMEOUT`] that delivers to public addresses only.
    pub fn new() -> Result<Self, rustls::Error> {
        Self::with_destinations(Destinations::public())
    }

    /// A client that delivers to public addresses and what `destinations` lists
    /// (`TOWER_WEBHOOK_ALLOW`). Checked at every connection, after resolving the name.
    pub fn with_destinations(destinations: Destinations) -> Result<Self, rustls::Error> {
        Ok(Self { http: HttpClient::new(TIMEOUT, destinations)? })
    }

    /// Another attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout;
        self
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn notify(&self, url: &str, text: &str) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&serde_json::json!({ "text": text }))
            .map_err(|e| NotifyError::Rejected(Box::new(e)))?;
        self.http.post_json(url, body, None).await.map_err(|e| match e {
            PostError::Unavailable(e) => NotifyError::Unavailable(e),
            PostError::Rejected(e) => NotifyError::Rejected(e),
        })
    }
}
