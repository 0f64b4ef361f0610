//! OpenFeature's Remote Evaluation Protocol (OFREP), so every OpenFeature SDK can evaluate
//! Tower's flags through its OFREP provider.
//!
//! Served per app under `/api/apps/:appId/ofrep/v1/`, so the app's URL
//! (`http://HOST:PORT/api/apps/1`) is a provider's whole configuration, and at the root
//! `/ofrep/v1/` with the app named by a `Tower-App: <id>` header (or `?app=<id>` for the event
//! stream, which browsers open without headers):
//! - `POST …/evaluate/flags/{key}`: one flag, the key being its title; `context.targetingKey` is
//!   the user. 200 `{key, value, reason, variant, metadata}`; 404 `FLAG_NOT_FOUND`; 400
//!   `PARSE_ERROR`, `TARGETING_KEY_MISSING` (a partial rollout and no user) or `INVALID_CONTEXT`.
//! - `POST …/evaluate/flags`: every flag of the app, with an `ETag` that changes whenever the
//!   answer could (the app's revision, the bucketing, the context); `If-None-Match` with the
//!   current one is a 304. The answer names an event stream (`eventStreams`) where a
//!   `refetchEvaluation` message arrives at each new revision of the app.
//! - `GET …/events`: that stream (server-sent events).
//! - `GET …/configuration`: what this server supports (booleans; polling and the event stream).
//!
//! Errors are in the protocol's shape (`errorCode`, `errorDetails`), not Tower's.

use bytes::Bytes;
use flagtower_core::eval::{EvalError, Evaluation, Index, Rule};
use flagtower_core::{AppId, FeedEvent};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::{Body, Ctx};

/// An OFREP endpoint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// One flag, by its (percent-decoded) key.
    Flag(String),
    /// Every flag.
    Bulk,
    /// The stream of `refetchEvaluation` events.
    Events,
    /// What the server supports.
    Configuration,
}

impl Endpoint {
    /// The one method it answers.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Self::Flag(_) | Self::Bulk => "POST",
            Self::Events | Self::Configuration => "GET",
        }
    }
}

/// Where the app comes from: the path, or the request (header or query).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AppFrom<'a> {
    Path(&'a str),
    Request,
}

/// The OFREP endpoint `path` names, if it is one.
pub(crate) fn find(path: &str) -> Option<(AppFrom<'_>, Endpoint)> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let (app, rest) = match segs.as_slice() {
        ["api", "apps", id, "ofrep", "v1", rest @ ..] => (AppFrom::Path(id), rest),
        ["ofrep", "v1", rest @ ..] => (AppFrom::Request, rest),
        _ => return None,
    };
    let endpoint = match rest {
        ["evaluate", "flags", key] if !key.is_empty() => Endpoint::Flag(percent_decode(key)?),
        ["evaluate", "flags"] | ["evaluate", "flags", ""] => Endpoint::Bulk,
        ["events"] => Endpoint::Events,
        ["configuration"] => Endpoint::Configuration,
        _ => return None,
    };
    Some((app, endpoint))
}

/// `%XX` escapes decoded as UTF-8; `None` when they are not.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// A failed evaluation, in the protocol's shape.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    key: Option<String>,
    code: Option<&'static str>,
    details: String,
}

impl Failure {
    fn new(status: StatusCode, key: Option<&str>, code: &'static str, details: String) -> Self {
        Self { status, key: key.map(str::to_owned), code: Some(code), details }
    }

    fn response(self) -> Response<Body> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            key: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error_code: Option<&'a str>,
            error_details: &'a str,
        }
        let body = serde_json::to_vec(&Out {
            key: self.key.as_deref(),
            error_code: self.code,
            error_details: &self.details,
        })
        .unwrap_or_default();
        let mut res = crate::json_response(self.status, body);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(crate::error::RETRY_AFTER_SECS));
        }
        // As `ApiError`'s 413: the rest of the body is not all read, so the connection ends.
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        crate::routes::whole(res)
    }

    /// A failure of the service, for `key` (none for the bulk and other endpoints).
    fn of(e: flagtower_core::Error, key: Option<&str>) -> Self {
        use flagtower_core::Error as E;
        match e {
            E::NotFound(what) => {
                Self::new(StatusCode::NOT_FOUND, key, "FLAG_NOT_FOUND", format!("{what} not found"))
            }
            e @ E::Unavailable(_) => {
                tracing::warn!(error = %flagtower_core::ErrorChain(&e), "OFREP: backend unavailable");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    key: None,
                    code: None,
                    details: "a backend is unavailable; retry shortly".to_owned(),
                }
            }
            e => {
                tracing::error!(error = %flagtower_core::ErrorChain(&e), "OFREP request failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    key: None,
                    code: None,
                    details: "internal server error".to_owned(),
                }
            }
        }
    }
}

/// Handles one OFREP request.
pub(crate) async fn respond(
    ctx: &Ctx,
    req: Request<Incoming>,
    app: AppFrom<'_>,
    endpoint: Endpoint,
) -> Response<Body> {
    let key = match &endpoint {
        Endpoint::Flag(k) => Some(k.clone()),
        _ => None,
    };
    match serve(ctx, req, app, endpoint).await {
        Ok(res) => res,
        Err(mut f) => {
            if f.key.is_none() && f.code.is_some() {
                f.key = key;
            }
            f.response()
        }
    }
}

async fn serve(
    ctx: &Ctx,
    req: Request<Incoming>,
    app: AppFrom<'_>,
    endpoint: Endpoint,
) -> Result<Response<Body>, Failure> {
    let allowed = endpoint.method();
    if req.method().as_str() != allowed {
        let mut res = Failure {
            status: StatusCode::METHOD_NOT_ALLOWED,
            key: None,
            code: None,
            details: format!("method not allowed; this route accepts {allowed}"),
        }
        .response();
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allowed));
        return Ok(res);
    }
    let app = app_id(&req, app)?;
    match endpoint {
        Endpoint::Configuration => {
            // A deleted (or never created) app has nothing to configure.
            ctx.tower.get_app(app).await.map_err(|e| Failure::of(e, None))?;
            Ok(configuration())
        }
        Endpoint::Events => {
            ctx.tower.get_app(app).await.map_err(|e| Failure::of(e, None))?;
            let permit = match crate::stream::admit(&ctx.streams) {
                Some(p) => p,
                None => return Ok(crate::stream::busy()),
            };
            let sub = ctx.tower.subscribe().await.map_err(|e| Failure::of(e, None))?;
            Ok(crate::stream::events(
                permit,
                sub,
                ctx.closing.clone(),
                Bytes::from_static(b"retry: 2000\n\n"),
                move |e| refetch_event(app, e),
            ))
        }
        Endpoint::Flag(key) => {
            let (parts, body) = req.into_parts();
            let context = read_context(&parts, body, ctx).await?;
            let user = targeting_key(&context)?;
            let index = ctx.tower.index(app).await.map_err(|e| Failure::of(e, Some(&key)))?;
            let Some(rule) = index.get(&key) else {
                return Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    Some(&key),
                    "FLAG_NOT_FOUND",
                    format!("app {app} has no flag titled {key:?}"),
                ));
            };
            let evaluation = rule.evaluate(user, ctx.tower.bucketing()).map_err(|e| {
                Failure::new(StatusCode::BAD_REQUEST, Some(&key), code_of(e), e.to_string())
            })?;
            let body = serde_json::to_vec(&Success::new(&key, rule, &index, evaluation))
                .unwrap_or_default();
            Ok(crate::routes::whole(crate::json_response(StatusCode::OK, body)))
        }
        Endpoint::Bulk => {
            let (parts, body) = req.into_parts();
            let context = read_context(&parts, body, ctx).await?;
            let user = targeting_key(&context)?;
            let index = ctx.tower.index(app).await.map_err(|e| Failure::of(e, None))?;
            let bucketing = ctx.tower.bucketing();
            let etag = format!(
                "\"{app}-{}-{}-{:08x}\"",
                index.revision,
                bucketing.as_str(),
                flagtower_core::eval::murmur3_x86_32(context.to_string().as_bytes(), 0)
            );
            let etag_value = HeaderValue::from_str(&etag).ok();
            let matches = parts
                .headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|v| v.trim() == etag || v.trim() == "*");
            let mut res = if matches {
                let mut res = Response::new(Bytes::new());
                *res.status_mut() = StatusCode::NOT_MODIFIED;
                res
            } else {
                let flags: Vec<Value> = index
                    .iter()
                    .map(|(title, rule)| match rule.evaluate(user, bucketing) {
                        Ok(e) => serde_json::to_value(Success::new(title, rule, &index, e))
                            .unwrap_or_default(),
                        Err(e) => serde_json::json!({
                            "key": title, "errorCode": code_of(e), "errorDetails": e.to_string()
                        }),
                    })
                    .collect();
                let stream_url = events_url(&parts, app);
                let body = serde_json::json!({
                    "flags": flags,
                    "eventStreams": [{"type": "sse", "url": stream_url, "inactivityDelaySec": 120}],
                });
                crate::json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap_or_default())
            };
            if let Some(v) = etag_value {
                res.headers_mut().insert(header::ETAG, v);
            }
            // The ETag decides; a cache must ask again each time.
            res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok(crate::routes::whole(res))
        }
    }
}

fn code_of(e: EvalError) -> &'static str {
    match e {
        EvalError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
    }
}

/// The app of a request: from the path, or the `Tower-App` header, or `?app=` (event streams).
fn app_id(req: &Request<Incoming>, from: AppFrom<'_>) -> Result<AppId, Failure> {
    let raw = match from {
        AppFrom::Path(id) => Some(id.to_owned()),
        AppFrom::Request => {
            req.headers().get("tower-app").and_then(|v| v.to_str().ok()).map(str::to_owned).or_else(
                || {
                    req.uri().query().and_then(|q| {
                        q.split('&').find_map(|kv| kv.strip_prefix("app=")).map(str::to_owned)
                    })
                },
            )
        }
    };
    let Some(raw) = raw else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            None,
            "GENERAL",
            "name the app: use /api/apps/<id>/ofrep/v1/… or a Tower-App: <id> header".to_owned(),
        ));
    };
    raw.trim().parse().map_err(|e: flagtower_core::model::InvalidValue| {
        Failure::new(StatusCode::BAD_REQUEST, None, "GENERAL", format!("app id: {}", e.0))
    })
}

/// The request's `context` (an empty one when the body is empty).
async fn read_context(
    parts: &http::request::Parts,
    body: Incoming,
    ctx: &Ctx,
) -> Result<Value, Failure> {
    let bytes = crate::routes::read_body(parts, body, ctx.options.body_read_timeout)
        .await
        .map_err(|e| {
            let status = e.status();
            let details = match &e {
                ApiError::PayloadTooLarge(n) => format!("request body exceeds {n} bytes"),
                ApiError::UnsupportedMediaType => "request body must be application/json".into(),
                _ => "the request body could not be read".to_owned(),
            };
            Failure { status, key: None, code: Some("PARSE_ERROR"), details }
        })?;
    match bytes {
        None => Ok(Value::Object(Default::default())),
        Some(bytes) => parse_context(&bytes),
    }
}

/// The `context` of an evaluation request's body (an empty one when the body has none).
pub(crate) fn parse_context(bytes: &[u8]) -> Result<Value, Failure> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        Failure::new(StatusCode::BAD_REQUEST, None, "PARSE_ERROR", format!("malformed JSON: {e}"))
    })?;
    let Value::Object(mut body) = body else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            None,
            "PARSE_ERROR",
            "the body must be a JSON object {\"context\": {…}}".to_owned(),
        ));
    };
    match body.remove("context") {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(c @ Value::Object(_)) => Ok(c),
        Some(_) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            None,
            "INVALID_CONTEXT",
            "context must be an object".to_owned(),
        )),
    }
}

/// `context.targetingKey`: the user.
pub(crate) fn targeting_key(context: &Value) -> Result<Option<&str>, Failure> {
    match context.get("targetingKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            None,
            "INVALID_CONTEXT",
            "targetingKey must be a string".to_owned(),
        )),
    }
}

/// The absolute URL of the app's event stream, as the client reached this server.
fn events_url(parts: &http::request::Parts, app: AppId) -> String {
    let h = &parts.headers;
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let proto = header("x-forwarded-proto").unwrap_or("http");
    let host = header("x-forwarded-host").or_else(|| header("host")).unwrap_or("localhost");
    format!("{proto}://{host}/api/apps/{app}/ofrep/v1/events")
}

/// One successful evaluation.
#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    value: bool,
    reason: &'static str,
    variant: &'static str,
    metadata: Metadata,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    flag_id: i64,
    app_id: i64,
    revision: u64,
    circuit_status: &'static str,
}

impl<'a> Success<'a> {
    fn new(key: &'a str, rule: &Rule, index: &Index, e: Evaluation) -> Self {
        Self {
            key,
            value: e.enabled,
            reason: e.reason.as_str(),
            variant: if e.enabled { "on" } else { "off" },
            metadata: Metadata {
                flag_id: rule.id.get(),
                app_id: index.app_id.get(),
                revision: index.revision.get(),
                circuit_status: rule.state.circuit_status(),
            },
        }
    }
}

/// `GET …/configuration`.
fn configuration() -> Response<Body> {
    let body = serde_json::json!({
        "name": "Tower",
        "capabilities": {
            "cacheInvalidation": {"polling": {"enabled": true, "minPollingIntervalMs": 1000}},
            "flagEvaluation": {"supportedTypes": ["boolean"]},
        }
    });
    crate::routes::whole(crate::json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    ))
}

/// The `refetchEvaluation` message for a change of `app`'s flags (or a resync).
fn refetch_event(app: AppId, event: &FeedEvent) -> Option<Bytes> {
    let revision = match event {
        FeedEvent::Ruleset(r) if r.app_id == app => Some(r.revision.get()),
        FeedEvent::Resync => None,
        _ => return None,
    };
    let data = match revision {
        Some(rev) => format!("{{\"type\":\"refetchEvaluation\",\"lastModified\":{rev}}}"),
        None => "{\"type\":\"refetchEvaluation\"}".to_owned(),
    };
    Some(Bytes::from(format!("data: {data}\n\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_endpoints() {
        assert_eq!(
            find("/api/apps/3/ofrep/v1/evaluate/flags/new%20cart"),
            Some((AppFrom::Path("3"), Endpoint::Flag("new cart".to_owned())))
        );
        assert_eq!(
            find("/api/apps/3/ofrep/v1/evaluate/flags"),
            Some((AppFrom::Path("3"), Endpoint::Bulk))
        );
        assert_eq!(
            find("/ofrep/v1/evaluate/flags/x"),
            Some((AppFrom::Request, Endpoint::Flag("x".into())))
        );
        assert_eq!(find("/ofrep/v1/events"), Some((AppFrom::Request, Endpoint::Events)));
        assert_eq!(
            find("/ofrep/v1/configuration"),
            Some((AppFrom::Request, Endpoint::Configuration))
        );
        assert_eq!(find("/api/apps/3/flags"), None);
        assert_eq!(find("/ofrep/v1/evaluate/flags/%ZZ"), None, "a bad escape is no route");
        assert_eq!(percent_decode("caf%C3%A9"), Some("café".to_owned()));
    }
}
