//! A local HTTP server that records what webhooks POST to it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A local HTTP server that records what webhooks POST to it. `/ok…` answers 200; `/flaky…`
/// answers 500 to its first two requests, then 200; `/gone…` answers 404.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    received: Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    hits: Arc<std::sync::Mutex<HashMap<String, u32>>>,
}

impl WebhookReceiver {
    /// Starts one on a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let received: Arc<std::sync::Mutex<Vec<(String, Value)>>> = Arc::default();
        let hits: Arc<std::sync::Mutex<HashMap<String, u32>>> = Arc::default();
        let (r, h) = (Arc::clone(&received), Arc::clone(&hits));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (r, h) = (Arc::clone(&r), Arc::clone(&h));
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (r, h) = (Arc::clone(&r), Arc::clone(&h));
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let n = {
                                let mut hits = h.lock().unwrap();
                                let n = hits.entry(path.clone()).or_default();
                                *n += 1;
                                *n
                            };
                            let status = if path.starts_with("/gone") {
                                404
                            } else if path.starts_with("/flaky") && n <= 2 {
                                500
                            } else {
                                r.lock().unwrap().push((
                                    path,
                                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                                ));
                                200
                            };
                            let mut res = hyper::Response::new(Full::new(Bytes::new()));
                            *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Self { base, received, hits }
    }

    /// What arrived with a 200, in order: (path, JSON body).
    pub fn received(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }

    /// How many requests a path got.
    pub fn hits(&self, path: &str) -> u32 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}
