//! Webhook delivery over HTTP(S): a POST of `{"text": …}` (the Slack incoming-webhook format)
//! with hyper-util's client and rustls (ring, the webpki roots), each attempt bounded by a
//! timeout. Retries are the core's (`flagtower_core::webhooks`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use flagtower_core::{Notifier, NotifyError};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// How long one delivery attempt may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Notifier`] over HTTP and HTTPS.
#[derive(Clone)]
pub struct HttpNotifier {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNotifier").field("timeout", &self.timeout).finish()
    }
}

impl HttpNotifier {
    /// A client with the default [`TIMEOUT`].
    pub fn new() -> Result<Self, rustls::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Self { client, timeout: TIMEOUT })
    }

    /// Another attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn notify(&self, url: &str, text: &str) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(&serde_json::json!({ "text": text }))
            .map_err(|e| NotifyError::Rejected(Box::new(e)))?;
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("tower/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| NotifyError::Rejected(Box::new(e)))?;
        let attempt = async {
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| NotifyError::Unavailable(Box::new(e)))?;
            let status = res.status();
            // Read the answer so the connection can be reused.
            let _ = res.into_body().collect().await;
            match status.as_u16() {
                200..=299 => Ok(()),
                500..=599 | 408 | 429 => {
                    Err(NotifyError::Unavailable(format!("the receiver answered {status}").into()))
                }
                _ => Err(NotifyError::Rejected(format!("the receiver answered {status}").into())),
            }
        };
        tokio::time::timeout(self.timeout, attempt).await.map_err(|_| {
            NotifyError::Unavailable(format!("no answer within {:?}", self.timeout).into())
        })?
    }
}
