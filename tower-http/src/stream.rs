//! `GET /api/stream`: the live feed as server-sent events, for the dashboard.
//!
//! Events: `hello` at each (re)connection (a client re-reads what it shows, since it may have
//! missed changes while away), `ruleset` (`{"app_id", "revision", "ruleset": [flags]}`), `log`
//! (an entry as in `GET /api/logs?limit=…`), `app` (`{"app": {…}, "deleted": bool}`) and
//! `resync` (events were dropped because the client fell behind). A comment every
//! [`KEEPALIVE`] keeps idle connections and proxies open. The stream ends when the server shuts
//! down. Browsers reconnect by themselves, after the `retry` delay sent first.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use flagtower_core::{FeedEvent, FeedSubscription};
use futures_util::stream;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde::Serialize;
use tokio::sync::watch;

use crate::Body;
use crate::wire::LogRow;

/// How often an idle stream sends a comment.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before reconnecting, in milliseconds.
const RETRY_MS: u32 = 2000;

#[derive(Serialize)]
struct AppEvent<'a> {
    app: &'a flagtower_core::App,
    deleted: bool,
}

/// One event in the text/event-stream format; `None` if it could not be encoded.
fn encode(event: &FeedEvent) -> Option<Bytes> {
    let (name, data) = match event {
        FeedEvent::Ruleset(r) => {
            // The ruleset exactly as SDKs receive it, inside the envelope.
            let flags = String::from_utf8(r.encode().to_vec()).ok()?;
            let body = format!(
                "{{\"app_id\":{},\"revision\":{},\"ruleset\":{flags}}}",
                r.app_id, r.revision
            );
            ("ruleset", body)
        }
        FeedEvent::Log(record) => ("log", serde_json::to_string(&LogRow::from(record)).ok()?),
        FeedEvent::App { app, deleted } => {
            ("app", serde_json::to_string(&AppEvent { app, deleted: *deleted }).ok()?)
        }
        FeedEvent::Resync => ("resync", "{}".to_owned()),
        _ => return None,
    };
    // serde_json escapes newlines inside strings, so `data` is one line.
    Some(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
}

struct State<E> {
    /// This stream's place among the open ones, given back when the stream is dropped.
    _permit: tokio::sync::OwnedSemaphorePermit,
    sub: FeedSubscription,
    closing: watch::Receiver<bool>,
    keepalive: tokio::time::Interval,
    hello: Option<Bytes>,
    encode: E,
}

/// The streaming response for one dashboard.
pub(crate) fn response(
    permit: tokio::sync::OwnedSemaphorePermit,
    sub: FeedSubscription,
    closing: watch::Receiver<bool>,
) -> Response<Body> {
    let hello = format!("retry: {RETRY_MS}\nevent: hello\ndata: {{}}\n\n");
    events(permit, sub, closing, Bytes::from(hello), encode)
}

/// A place among the open streams (`ServerOptions::max_streams`), or `None`: answer [`busy`].
pub(crate) fn admit(
    streams: &std::sync::Arc<tokio::sync::Semaphore>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    std::sync::Arc::clone(streams).try_acquire_owned().ok()
}

/// The 503 for a stream beyond the limit.
pub(crate) fn busy() -> Response<Body> {
    tracing::warn!("refused a live stream: the most the server keeps open are open");
    crate::routes::whole(crate::error::ApiError::Busy("too many open live streams").into_response())
}

/// A streaming response of the feed's events as `encode` writes them (skipping those it turns
/// into `None`), after `hello`, with keep-alive comments, ending when the server closes.
pub(crate) fn events(
    permit: tokio::sync::OwnedSemaphorePermit,
    sub: FeedSubscription,
    closing: watch::Receiver<bool>,
    hello: Bytes,
    encode: impl Fn(&FeedEvent) -> Option<Bytes> + Send + 'static,
) -> Response<Body> {
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State { _permit: permit, sub, closing, keepalive, hello: Some(hello), encode };
    let frames = stream::unfold(state, |mut s| async move {
        if let Some(hello) = s.hello.take() {
            s.keepalive.reset();
            return Some((Ok::<_, Infallible>(Frame::data(hello)), s));
        }
        loop {
            if *s.closing.borrow() {
                return None;
            }
            tokio::select! {
                event = s.sub.next() => {
                    let event = event?;
                    if let Some(bytes) = (s.encode)(&event) {
                        return Some((Ok(Frame::data(bytes)), s));
                    }
                }
                _ = s.keepalive.tick() => {
                    return Some((Ok(Frame::data(Bytes::from_static(b": keepalive\n\n"))), s));
                }
                changed = s.closing.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    let mut res = Response::new(StreamBody::new(frames).boxed_unsync());
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells buffering proxies (nginx) to pass events through at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}
