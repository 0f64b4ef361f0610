//! The HTTP(S) client the webhook notifier and the events sink share: hyper-util's pooled client
//! with rustls (ring, the webpki roots), one POST of a JSON body per call, bounded in time, and
//! the answer's status sorted into "try again later" and "refused for good". Every connection
//! goes only where its [`Destinations`] allow: names are resolved by [`GuardedResolver`], which
//! drops the addresses they may not reach, and address literals are checked before the request.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use flagtower_core::destinations::Destinations;
use hyper_util::client::legacy::connect::dns::Name;

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
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    destinations: Arc<Destinations>,
    pub(crate) timeout: Duration,
}

/// Resolves names with the system resolver and keeps only the addresses `destinations`
/// allows, at every connection: a name that resolved to a public address when its webhook was
/// saved and resolves to 127.0.0.1 now is refused now.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    destinations: Arc<Destinations>,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let destinations = Arc::clone(&self.destinations);
        Box::pin(async move {
            let host = name.as_str();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            if destinations.host_listed(host) {
                return Ok(found.into_iter());
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match destinations.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            match refused {
                Some(e) if allowed.is_empty() => {
                    let e = flagtower_core::destinations::Refused {
                        what: format!("{host} (resolving to {})", e.what),
                        kind: e.kind,
                    };
                    Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))
                }
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// The destination a request for `uri` is refused for, if it names an address it may not
/// reach (names are checked by the resolver as they are resolved).
fn refused_literal(
    destinations: &Destinations,
    uri: &hyper::Uri,
) -> Option<flagtower_core::destinations::Refused> {
    let host = uri.host()?;
    let ip: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    destinations.check(ip).err()
}

/// The refusal [`GuardedResolver`] gave, if that is why a request failed.
fn refused_by_resolver(
    e: &(dyn std::error::Error + 'static),
) -> Option<flagtower_core::destinations::Refused> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && let Some(refused) =
                io.get_ref().and_then(|r| r.downcast_ref::<flagtower_core::destinations::Refused>())
        {
            return Some(refused.clone());
        }
        cause = c.source();
    }
    None
}

impl HttpClient {
    /// A client for `http://` and `https://` URLs that connects only where `destinations`
    /// allows.
    pub(crate) fn new(
        timeout: Duration,
        destinations: Destinations,
    ) -> Result<Self, rustls::Error> {
        let destinations = Arc::new(destinations);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            destinations: Arc::clone(&destinations),
        });
        http.enforce_http(false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
        Ok(Self { client, destinations, timeout })
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
        if let Some(refused) = refused_literal(&self.destinations, req.uri()) {
            return Err(PostError::Rejected(Box::new(refused)));
        }
        let attempt = async {
            let res =
                self.client.request(req).await.map_err(|e| match refused_by_resolver(&e) {
                    // Where it may not go it will never go: no retries.
                    Some(refused) => PostError::Rejected(Box::new(refused)),
                    None => PostError::Unavailable(Box::new(e)),
                })?;
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
