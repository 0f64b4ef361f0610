//! The HTTP(S) client the webhook notifier and the events sink share: hyper-util's pooled client
//! with rustls (ring, the webpki roots), one POST of a JSON body per call, bounded in time, and
//! the answer's status sorted into "try again later" and "refused for good".

use std::time::Duration;

use bytes::Bytes;
use flagtower_core::ports::BoxError;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// The most of an answer's body that is read (and then dropped): enough to keep the connection
/// reusable for an ordinary answer, and a receiver that sends gigabytes costs nothing.
const MAX_ANSWER_BYTES: usize = 4 * 1024;

/// Why a POST failed.
#[derive(Debug)]
pub(crate) enum PostError {
    /// Unreachable, timed out, or answered 5xx, 408 or 429: worth retrying.
    Unavailable(BoxError),
    /// Answered another 4xx, or the request could not be built: retrying will not help.
    Rejected(BoxError),
}

/// A pooled HTTP(S) client whose every request is bounded by a timeout.
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub(crate) timeout: Duration,
}

impl HttpClient {
    /// A client for `http://` and `https://` URLs.
    pub(crate) fn new(timeout: Duration) -> Result<Self, rustls::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Self { client, timeout })
    }

    /// POSTs `body` as JSON to `url`, with `authorization` as the header of that name when
    /// given; a 2xx answer is success.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        authorization: Option<&str>,
    ) -> Result<(), PostError> {
        let mut req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("tower/", env!("CARGO_PKG_VERSION")));
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        let req =
            req.body(Full::new(Bytes::from(body))).map_err(|e| PostError::Rejected(Box::new(e)))?;
        let attempt = async {
            let res =
                self.client.request(req).await.map_err(|e| PostError::Unavailable(Box::new(e)))?;
            let status = res.status();
            // Read (a bounded part of) the answer so the connection can be reused.
            let _ = Limited::new(res.into_body(), MAX_ANSWER_BYTES).collect().await;
            match status.as_u16() {
                200..=299 => Ok(()),
                500..=599 | 408 | 429 => {
                    Err(PostError::Unavailable(format!("the receiver answered {status}").into()))
                }
                _ => Err(PostError::Rejected(format!("the receiver answered {status}").into())),
            }
        };
        tokio::time::timeout(self.timeout, attempt).await.map_err(|_| {
            PostError::Unavailable(format!("no answer within {:?}", self.timeout).into())
        })?
    }
}
