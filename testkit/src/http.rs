//! A real HTTP/1.1 client (hyper-util's) and a reader of server-sent events.

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A response, with its body parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub json: Value,
    /// The raw body.
    pub raw: Bytes,
}

impl Reply {
    /// `json["payload"]`, asserting the envelope is there.
    pub fn payload(&self) -> &Value {
        self.json.get("payload").unwrap_or_else(|| panic!("no payload in {}", self.json))
    }

    /// Asserts the status and that the body is the documented error shape; returns the error
    /// object.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", String::from_utf8_lossy(&self.raw));
        let err = &self.json["error"];
        assert!(err["code"].is_string(), "error code in {}", self.json);
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error message in {}",
            self.json
        );
        assert_eq!(
            self.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        err
    }
}

/// A real HTTP/1.1 client (hyper-util's) bound to one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    /// Sent with every request (a bearer token).
    defaults: Vec<(String, String)>,
}

impl Client {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
            defaults: Vec::new(),
        }
    }

    /// This client, sending `Authorization: Bearer <token>` with every request.
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.defaults.retain(|(k, _)| k != "authorization");
        self.defaults.push(("authorization".to_owned(), format!("Bearer {token}")));
        self
    }

    /// Sends a request with an arbitrary body and content type.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Reply {
        let headers: Vec<(&str, &str)> =
            content_type.map(|ct| ("content-type", ct)).into_iter().collect();
        self.request(method, path, &headers, body.into()).await
    }

    /// Sends a JSON body with extra headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.request(method, path, &all, Bytes::from(body.to_string())).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (k, v) in &self.defaults {
            if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                req = req.header(k, v);
            }
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body)).expect("request");
        let res = self.inner.request(req).await.expect("HTTP request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let raw = res.into_body().collect().await.expect("response body").to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply { status, headers, json, raw }
    }

    /// Opens `GET path` as a server-sent-events stream.
    pub async fn events(&self, path: &str) -> EventStream {
        let mut req = Request::builder()
            .uri(format!("{}{path}", self.base))
            .header("accept", "text/event-stream");
        for (k, v) in &self.defaults {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::new())).expect("request");
        let res = self.inner.request(req).await.expect("HTTP request");
        assert_eq!(res.status(), 200, "event stream status");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        EventStream { body: res.into_body(), buffer: String::new() }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, Some("application/json"), Bytes::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some("application/json"), body.to_string()).await
    }

    /// `POST path` with no body (declared JSON, as the API wants every change to be).
    pub async fn post_empty(&self, path: &str) -> Reply {
        self.send(Method::POST, path, Some("application/json"), Bytes::new()).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some("application/json"), body.to_string()).await
    }

    /// `PATCH path` with no body (declared JSON, as the API wants every change to be).
    pub async fn patch_empty(&self, path: &str) -> Reply {
        self.send(Method::PATCH, path, Some("application/json"), Bytes::new()).await
    }

    /// The successes and failures `GET /api/flags/:id/timeseries` counts over the last minute.
    pub async fn counts(&self, flag: i64) -> (u64, u64) {
        let r = self
            .get(&format!("/api/flags/{flag}/timeseries?timeRange=60000&timeBucket=1000"))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        r.payload().as_array().expect("buckets").iter().fold((0, 0), |(s, f), b| {
            (s + b["success"].as_u64().unwrap_or(0), f + b["failure"].as_u64().unwrap_or(0))
        })
    }

    /// `POST path` that must answer 201; the new resource's id.
    pub async fn create(&self, path: &str, body: &Value) -> i64 {
        let r = self.post(path, body).await;
        assert_eq!(r.status, 201, "POST {path}: {}", r.json);
        r.payload()["id"].as_i64().expect("an id")
    }
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The `event:` name.
    pub name: String,
    /// The `data:` lines, parsed as JSON.
    pub data: Value,
}

/// A server-sent-events response being read.
pub struct EventStream {
    body: hyper::body::Incoming,
    buffer: String,
}

impl EventStream {
    /// The next event (comments and `retry:` skipped), or `None` when the stream ends; panics
    /// after `wait` without one.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("event data is JSON");
                    return Some(Event { name, data });
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within {wait:?}"));
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.expect("stream body").into_data() {
                        self.buffer.push_str(std::str::from_utf8(&data).expect("UTF-8 events"));
                    }
                }
            }
        }
    }

    /// The next event, within 10 seconds.
    pub async fn next(&mut self) -> Option<Event> {
        self.next_within(std::time::Duration::from_secs(10)).await
    }

    /// Skips events until one named `name` comes; returns it.
    pub async fn until(&mut self, name: &str) -> Event {
        loop {
            let e = self.next().await.unwrap_or_else(|| panic!("stream ended before `{name}`"));
            if e.name == name {
                return e;
            }
        }
    }
}
