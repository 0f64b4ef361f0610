//! Routing and handlers of the REST API (the original Tower's routes and shapes).

use std::str::FromStr;

use bytes::Bytes;
use flagtower_core::ports::MAX_LOG_PAGE;
use flagtower_core::{Action, AppId, FlagId, LogQuery, TimeWindow, Tower, input};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::auth::Caller;
use crate::{Body, Ctx};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::wire::{AppLog, AppWithCounts, Envelope, FlagLog, FlagWithLogs, GlobalLog, LogRow};

/// The largest request body, in bytes (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

type Reply = Result<Response<Bytes>, ApiError>;

/// A matched route, with its path parameters still raw (parsed by the handler, so a bad id is
/// a 400 and not a 404).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Route<'a> {
    Apps,
    App(&'a str),
    AppFlags(&'a str),
    Flag(&'a str),
    FlagToggle(&'a str),
    FlagEvents(&'a str),
    FlagTimeseries(&'a str),
    CircuitOpen(&'a str),
    CircuitClose(&'a str),
    Logs,
    AppLogs(&'a str),
    Keys,
    Health,
    Stream,
    Session,
    Metrics,
    OpenApi,
}

impl<'a> Route<'a> {
    /// Whether a request reads much more than one row's worth: a page of the log, a flag with
    /// more log entries than its default, or the apps with their flag counts. These take turns
    /// (`ServerOptions::heavy_reads`).
    pub(crate) fn is_heavy(self, method: &Method, query: Option<&str>) -> bool {
        let asks = |key: &str| query_pairs(query).any(|(k, _)| k == key);
        *method == Method::GET
            && match self {
                Self::Logs | Self::AppLogs(_) => true,
                Self::Flag(_) => asks("logs"),
                Self::Apps => asks("counts"),
                _ => false,
            }
    }

    pub(crate) fn find(path: &'a str) -> Option<Self> {
        let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
        let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        Some(match segs.as_slice() {
            ["healthz"] => Self::Health,
            ["metrics"] => Self::Metrics,
            ["api", "apps"] => Self::Apps,
            ["api", "apps", id] => Self::App(id),
            ["api", "apps", id, "flags"] => Self::AppFlags(id),
            ["api", "flags", "circuit", id, "open"] => Self::CircuitOpen(id),
            ["api", "flags", "circuit", id, "close"] => Self::CircuitClose(id),
            ["api", "flags", id] => Self::Flag(id),
            ["api", "flags", id, "toggle"] => Self::FlagToggle(id),
            ["api", "flags", id, "events"] => Self::FlagEvents(id),
            ["api", "flags", id, "timeseries"] => Self::FlagTimeseries(id),
            ["api", "logs"] => Self::Logs,
            ["api", "logs", id] => Self::AppLogs(id),
            ["api", "keys"] => Self::Keys,
            ["api", "stream"] => Self::Stream,
            ["api", "session"] => Self::Session,
            ["api", "openapi.json"] => Self::OpenApi,
            _ => return None,
        })
    }

    /// The route's template, as metrics label it (ids left out, so the labels stay few).
    pub(crate) fn template(&self) -> &'static str {
        match self {
            Self::Apps => "/api/apps",
            Self::App(_) => "/api/apps/:id",
            Self::AppFlags(_) => "/api/apps/:id/flags",
            Self::Flag(_) => "/api/flags/:id",
            Self::FlagToggle(_) => "/api/flags/:id/toggle",
            Self::FlagEvents(_) => "/api/flags/:id/events",
            Self::FlagTimeseries(_) => "/api/flags/:id/timeseries",
            Self::CircuitOpen(_) => "/api/flags/circuit/:id/open",
            Self::CircuitClose(_) => "/api/flags/circuit/:id/close",
            Self::Logs => "/api/logs",
            Self::AppLogs(_) => "/api/logs/:id",
            Self::Keys => "/api/keys",
            Self::Health => "/healthz",
            Self::Stream => "/api/stream",
            Self::Session => "/api/session",
            Self::Metrics => "/metrics",
            Self::OpenApi => "/api/openapi.json",
        }
    }

    pub(crate) fn allowed(&self) -> &'static [&'static str] {
        match self {
            Self::Apps | Self::AppFlags(_) | Self::Keys => &["GET", "POST"],
            Self::App(_) | Self::Flag(_) => &["GET", "PATCH", "DELETE"],
            Self::Session => &["GET", "POST", "DELETE"],
            Self::FlagToggle(_) => &["PATCH"],
            Self::FlagEvents(_) | Self::CircuitOpen(_) | Self::CircuitClose(_) => &["POST"],
            Self::FlagTimeseries(_)
            | Self::Metrics
            | Self::Logs
            | Self::AppLogs(_)
            | Self::Health
            | Self::Stream
            | Self::OpenApi => &["GET"],
        }
    }
}

/// Handles one request; never fails (errors become JSON error responses).
pub(crate) async fn handle(
    ctx: Ctx,
    req: Request<Incoming>,
    client: std::net::IpAddr,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // Matched once: for the handler and for the metrics' label.
    let found = Route::find(&path);
    let template = template_of(&path, found.as_ref());
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let routed = if ctx.hosts.admits(host) {
        route(&ctx, req, client, found).await
    } else {
        tracing::debug!(host = ?host, "refused: a Host this server does not answer");
        Err(ApiError::MisdirectedRequest)
    };
    let mut res = match routed {
        Ok(res) => res,
        Err(e) => whole(e.into_response()),
    };
    // API answers (errors included) are live data: never from a cache, the back button's
    // included. The dashboard's files and the stream set their own.
    res.headers_mut()
        .entry(http::header::CACHE_CONTROL)
        .or_insert(http::HeaderValue::from_static("no-store"));
    // Nothing Tower sends is to be read as another type than the one it says.
    res.headers_mut()
        .entry(http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(http::HeaderValue::from_static("nosniff"));
    let took = started.elapsed();
    tracing::debug!(
        method = %method,
        path = %path,
        status = res.status().as_u16(),
        micros = took.as_micros() as u64,
        "request"
    );
    ctx.metrics.request(template, &method, res.status().as_u16(), took);
    res
}

/// What metrics call the route of `path`.
fn template_of(path: &str, found: Option<&Route<'_>>) -> &'static str {
    if let Some(route) = found {
        return route.template();
    }
    if let Some((from, endpoint)) = crate::ofrep::find(path) {
        let app = matches!(from, crate::ofrep::AppFrom::Path(_));
        return match (app, endpoint) {
            (true, crate::ofrep::Endpoint::Flag(_)) => "/api/apps/:id/ofrep/v1/evaluate/flags/:key",
            (true, crate::ofrep::Endpoint::Bulk) => "/api/apps/:id/ofrep/v1/evaluate/flags",
            (true, crate::ofrep::Endpoint::Events) => "/api/apps/:id/ofrep/v1/events",
            (true, crate::ofrep::Endpoint::Configuration) => "/api/apps/:id/ofrep/v1/configuration",
            (false, crate::ofrep::Endpoint::Flag(_)) => "/ofrep/v1/evaluate/flags/:key",
            (false, crate::ofrep::Endpoint::Bulk) => "/ofrep/v1/evaluate/flags",
            (false, crate::ofrep::Endpoint::Events) => "/ofrep/v1/events",
            (false, crate::ofrep::Endpoint::Configuration) => "/ofrep/v1/configuration",
        };
    }
    if crate::dashboard::serves(path) { "dashboard" } else { "unknown" }
}

pub(crate) fn whole(res: Response<Bytes>) -> Response<Body> {
    res.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync())
}

/// The dashboard's files and the health check are open (the sign-in screen is one of those
/// files); the session route signs in and out; everything else needs a caller
/// ([`crate::auth`]), and a session that is due gets renewed on the way out.
async fn route(
    ctx: &Ctx,
    req: Request<Incoming>,
    client: std::net::IpAddr,
    found: Option<Route<'_>>,
) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path();
    if crate::dashboard::serves(path) {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(ApiError::MethodNotAllowed(&["GET", "HEAD"]));
        }
        let etag = req.headers().get(http::header::IF_NONE_MATCH);
        let gzip = crate::dashboard::accepts_gzip(req.headers().get(http::header::ACCEPT_ENCODING));
        let dir = ctx.options.dashboard_dir.as_deref();
        return crate::dashboard::respond(path, etag, gzip, dir)
            .map(whole)
            .ok_or_else(|| ApiError::NotFound(format!("no file {path}")));
    }
    match found {
        Some(Route::Health) => return dispatch(&ctx.tower, req, &ctx.options).await.map(whole),
        Some(Route::Session) => {
            if req.method() == Method::POST
                && let Some(limiter) = &ctx.limiter
            {
                limiter.check(client).map_err(ApiError::TooManyRequests)?;
            }
            return session(ctx, req).await.map(whole);
        }
        _ => {}
    }
    let ofrep = (path.starts_with("/ofrep/") || path.contains("/ofrep/v1"))
        .then(|| path.to_owned())
        .filter(|p| crate::ofrep::find(p).is_some());
    let sdk_route = ofrep.is_some() || matches!(found, Some(Route::FlagEvents(_)));
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    if changes
        && !sdk_route
        && let Some(limiter) = &ctx.limiter
    {
        limiter.check(client).map_err(ApiError::TooManyRequests)?;
    }
    let caller = ctx
        .sessions
        .authenticate(req.method(), req.headers(), sdk_route, || async {
            Ok(Some(ctx.tower.sdk_key().await?.id))
        })
        .await?;
    let renewal = ctx.sessions.renewal(&caller, req.headers());
    let mut res = if matches!(found, Some(Route::Metrics)) && req.method() == Method::GET {
        let open =
            ctx.options.max_streams - ctx.streams.available_permits().min(ctx.options.max_streams);
        let text = ctx.metrics.scrape(&ctx.tower, open, &ctx.cache).await?;
        let mut res = Response::new(Bytes::from(text));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        whole(res)
    } else if matches!(found, Some(Route::Stream)) && req.method() == Method::GET {
        match crate::stream::admit(&ctx.streams) {
            Some(permit) => {
                let sub = ctx.tower.subscribe().await?;
                crate::stream::response(permit, sub, ctx.closing.clone())
            }
            None => crate::stream::busy(),
        }
    } else if let Some((app, endpoint)) = ofrep.as_deref().and_then(crate::ofrep::find) {
        crate::ofrep::respond(ctx, req, app, endpoint).await
    } else {
        let _turn = match found {
            Some(route) if route.is_heavy(req.method(), req.uri().query()) => {
                Some(ctx.heavy_reads.acquire().await.map_err(|e| ApiError::Internal(e.into()))?)
            }
            _ => None,
        };
        let tower = caller.tower(&ctx.tower);
        let target = req.uri().path_and_query().map_or(path, |p| p.as_str());
        match ctx.cache.lookup(&ctx.tower, found, req.method(), target) {
            Some(Ok(body)) => whole(crate::json_response(StatusCode::OK, body)),
            Some(Err(pending)) => {
                let res = dispatch(&tower, req, &ctx.options).await?;
                if res.status() == StatusCode::OK {
                    ctx.cache.keep(&ctx.tower, pending, res.body());
                }
                whole(res)
            }
            None => dispatch(&tower, req, &ctx.options).await.map(whole)?,
        }
    };
    if let Some(cookie) = renewal.and_then(|c| http::HeaderValue::try_from(c).ok()) {
        res.headers_mut().append(http::header::SET_COOKIE, cookie);
    }
    Ok(res)
}

/// `GET /api/session`: who the caller is; `POST` `{"token": "…"}`: signs in with an admin token
/// (a session cookie); `DELETE`: signs out.
async fn session(ctx: &Ctx, req: Request<Incoming>) -> Reply {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Who<'a> {
        name: &'a str,
        authentication: bool,
        idle_seconds: u64,
    }
    let sessions = &ctx.sessions;
    let who = |name: &str| {
        payload(
            StatusCode::OK,
            &Who {
                name,
                authentication: sessions.tokens.enabled(),
                idle_seconds: sessions.idle().as_secs(),
            },
        )
    };
    let (parts, body) = req.into_parts();
    let allowed = Route::Session.allowed();
    if !allowed.contains(&parts.method.as_str()) {
        return Err(ApiError::MethodNotAllowed(allowed));
    }
    let body = read_json(&parts, body, ctx.options.body_read_timeout).await?;
    let no_sdk_key = || async { Ok(None) };
    match parts.method {
        Method::GET => {
            let caller =
                sessions.authenticate(&parts.method, &parts.headers, false, no_sdk_key).await?;
            who(caller.actor())
        }
        Method::POST => {
            if !sessions.tokens.enabled() {
                return Err(ApiError::BadRequest(
                    "this server has no admin tokens (TOWER_ADMIN_TOKENS): there is nothing to sign in to"
                        .to_owned(),
                ));
            }
            let secret = session_token(body.as_ref())?;
            let signed = sessions
                .sign_in(secret, &parts.headers)
                .map_err(|e| ApiError::Internal(Box::new(std::io::Error::other(e.to_string()))))?;
            let Some((cookie, name)) = signed else {
                tracing::info!("sign-in refused: not an admin token");
                return Err(ApiError::Unauthorized("that is not an admin token"));
            };
            tracing::info!(name = %name, "signed in");
            let mut res = who(&name)?;
            let cookie =
                http::HeaderValue::try_from(cookie).map_err(|e| ApiError::Internal(Box::new(e)))?;
            res.headers_mut().append(http::header::SET_COOKIE, cookie);
            Ok(res)
        }
        _ => {
            let caller =
                match sessions.authenticate(&parts.method, &parts.headers, false, no_sdk_key).await
                {
                    Ok(caller) => Some(caller),
                    // Signing out of a session that already ended is no error.
                    Err(ApiError::Unauthorized(_)) => None,
                    Err(e) => return Err(e),
                };
            let cleared =
                sessions.sign_out(caller.as_ref().unwrap_or(&Caller::Anonymous), &parts.headers);
            let mut res = payload(StatusCode::OK, &serde_json::json!({ "signedOut": true }))?;
            let cookie = http::HeaderValue::try_from(cleared)
                .map_err(|e| ApiError::Internal(Box::new(e)))?;
            res.headers_mut().append(http::header::SET_COOKIE, cookie);
            Ok(res)
        }
    }
}

/// The admin token of a `POST /api/session` body.
pub(crate) fn session_token(body: Option<&Value>) -> Result<&str, ApiError> {
    match body.and_then(|b| b.get("token")) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(ApiError::Validation {
            field: Some("token".to_owned()),
            message: "an admin token is required".to_owned(),
        }),
    }
}

fn id<T: FromStr<Err = flagtower_core::model::InvalidValue>>(raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|e: flagtower_core::model::InvalidValue| ApiError::BadRequest(e.0))
}

async fn dispatch(tower: &Tower, req: Request<Incoming>, options: &crate::ServerOptions) -> Reply {
    let (parts, body) = req.into_parts();
    let route = Route::find(parts.uri.path())
        .ok_or_else(|| ApiError::NotFound(format!("no route for {}", parts.uri.path())))?;
    let m = &parts.method;
    if !route.allowed().contains(&m.as_str()) {
        return Err(ApiError::MethodNotAllowed(route.allowed()));
    }
    // Read (and bound) the body before anything else, so a refused body never half-applies.
    let body = read_json(&parts, body, options.body_read_timeout).await?;
    let need = |b: Option<Value>| {
        b.ok_or_else(|| ApiError::BadRequest("a JSON request body is required".to_owned()))
    };

    match route {
        Route::Health => {
            let health = tower.health().await;
            let body = crate::wire::Health::new(&health);
            if let Err(e) = &health.store {
                tracing::warn!(error = %flagtower_core::ErrorChain(e), "health check failed");
                let mut res = ok(StatusCode::SERVICE_UNAVAILABLE, &body)?;
                res.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
                );
                return Ok(res);
            }
            ok(StatusCode::OK, &body)
        }
        // Behind the admin tokens like every `/api` route (see `openapi.rs`).
        Route::OpenApi => Ok(crate::openapi::response()),
        // Never reached: `route` answers GET, and other methods are refused above.
        Route::Stream => Err(ApiError::MethodNotAllowed(&["GET"])),
        // Answered by `session` and `route`.
        Route::Session | Route::Metrics => Err(ApiError::MethodNotAllowed(&["GET"])),
        Route::Apps if m == Method::GET => {
            if query_flag(parts.uri.query(), "counts")? {
                let apps = tower.app_summaries().await?;
                let apps: Vec<_> = apps
                    .iter()
                    .map(|(app, flag_counts)| AppWithCounts { app, flag_counts: *flag_counts })
                    .collect();
                payload(StatusCode::OK, &apps)
            } else {
                payload(StatusCode::OK, &tower.list_apps().await?)
            }
        }
        Route::Apps => {
            let title = input::parse_app(&need(body)?)?;
            payload(StatusCode::CREATED, &tower.create_app(&title).await?)
        }
        Route::App(raw) => {
            let app: AppId = id(raw)?;
            match *m {
                Method::GET => payload(StatusCode::OK, &tower.get_app(app).await?),
                Method::PATCH => {
                    let title = input::parse_app(&need(body)?)?;
                    payload(StatusCode::OK, &tower.rename_app(app, &title).await?)
                }
                _ => payload(StatusCode::OK, &tower.delete_app(app).await?),
            }
        }
        Route::AppFlags(raw) => {
            let app: AppId = id(raw)?;
            if m == Method::GET {
                payload(StatusCode::OK, &tower.list_flags(app).await?)
            } else {
                let new = input::parse_new_flag(&need(body)?)?;
                check_webhooks(new.settings.webhooks.as_ref(), &options.webhook_allow).await?;
                payload(StatusCode::CREATED, &tower.create_flag(app, &new).await?)
            }
        }
        Route::Flag(raw) => {
            let flag: FlagId = id(raw)?;
            match *m {
                Method::GET => {
                    let limit = flag_logs(parts.uri.query())?;
                    let (flag, logs) = tower.flag_with_logs(flag, limit).await?;
                    let logs = logs.iter().map(FlagLog::from).collect();
                    payload(StatusCode::OK, &FlagWithLogs { flag: &flag, logs })
                }
                Method::PATCH => {
                    let patch = input::parse_flag_patch(&need(body)?)?;
                    check_webhooks(patch.webhooks.as_ref(), &options.webhook_allow).await?;
                    payload(StatusCode::OK, &tower.update_flag(flag, patch).await?)
                }
                _ => payload(StatusCode::OK, &tower.delete_flag(flag).await?.id),
            }
        }
        Route::FlagToggle(raw) => {
            let flag: FlagId = id(raw)?;
            let target = input::parse_toggle(body.as_ref())?;
            payload(StatusCode::OK, &tower.toggle_flag(flag, target).await?)
        }
        Route::CircuitOpen(raw) => {
            let flag: FlagId = id(raw)?;
            payload(StatusCode::OK, &tower.open_circuit(flag).await?.id)
        }
        Route::CircuitClose(raw) => {
            let flag: FlagId = id(raw)?;
            payload(StatusCode::OK, &tower.close_circuit(flag).await?.id)
        }
        Route::FlagEvents(raw) => {
            let flag: FlagId = id(raw)?;
            let counts = input::parse_events(&need(body)?)?;
            let counts = tower.record_events(flag, counts).await?;
            payload(StatusCode::ACCEPTED, &crate::wire::Events::from(counts))
        }
        Route::FlagTimeseries(raw) => {
            let flag: FlagId = id(raw)?;
            let window = time_window(parts.uri.query())?;
            payload(StatusCode::OK, &tower.timeseries(flag, window).await?)
        }
        Route::Logs => {
            let (query, paged) = log_query(parts.uri.query())?;
            let page = log_page(tower, &query).await?;
            let mut res = if paged {
                payload(StatusCode::OK, &page.iter().map(LogRow::from).collect::<Vec<_>>())?
            } else {
                // Without parameters, the original Tower's shape (the newest page of it).
                let entries = page.iter().map(|r| GlobalLog::from(&r.entry)).collect::<Vec<_>>();
                payload(StatusCode::OK, &entries)?
            };
            next_link(&mut res, "/api/logs", &query, &page);
            Ok(res)
        }
        Route::AppLogs(raw) => {
            let app: AppId = id(raw)?;
            tower.get_app(app).await?;
            let (mut query, _) = log_query(parts.uri.query())?;
            query.app = Some(app);
            let page = log_page(tower, &query).await?;
            let entries = page.iter().map(|r| AppLog::from(&r.entry)).collect::<Vec<_>>();
            let mut res = payload(StatusCode::OK, &entries)?;
            query.app = None;
            next_link(&mut res, &format!("/api/logs/{app}"), &query, &page);
            Ok(res)
        }
        Route::Keys if m == Method::GET => payload(StatusCode::OK, &tower.sdk_key().await?),
        Route::Keys => payload(StatusCode::CREATED, &tower.rotate_sdk_key().await?),
    }
}

/// How long saving a webhook list waits for a name to resolve before accepting it unchecked
/// (the webhook client checks it again at every connection either way).
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Refuses (422, naming `webhooks`) a webhook list with a destination Tower may not POST to:
/// an address that is not public, or a name resolving to one, unless `TOWER_WEBHOOK_ALLOW`
/// lists it. A name that does not resolve now is accepted; it is checked when it is used.
async fn check_webhooks(
    webhooks: Option<&flagtower_core::model::Webhooks>,
    allow: &flagtower_core::destinations::Destinations,
) -> Result<(), ApiError> {
    let refuse = |url: &str, why: String| ApiError::Validation {
        field: Some("webhooks".to_owned()),
        message: format!("{}: {why}", flagtower_core::redact::url(url)),
    };
    for raw in webhooks.into_iter().flat_map(|w| w.urls()) {
        let Ok(url) = url::Url::parse(raw) else { continue };
        let port = url.port_or_known_default().unwrap_or(443);
        let checked = match url.host() {
            Some(url::Host::Ipv4(ip)) => allow.check(ip.into()),
            Some(url::Host::Ipv6(ip)) => allow.check(ip.into()),
            Some(url::Host::Domain(name)) if !allow.host_listed(name) => {
                let found =
                    tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
                        .await;
                match found {
                    Ok(Ok(addrs)) => addrs
                        .map(|a| allow.check(a.ip()))
                        .find(Result::is_err)
                        .unwrap_or(Ok(()))
                        .map_err(|e| flagtower_core::destinations::Refused {
                            what: format!("{name} (resolving to {})", e.what),
                            kind: e.kind,
                        }),
                    // Not resolvable now: the connection-time check decides later.
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
        checked.map_err(|e| refuse(raw, e.to_string()))?;
    }
    Ok(())
}

/// The `key=value` pairs of a query string (values are not percent-decoded: every value Tower
/// reads is a number or a plain word).
fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Whether a boolean query parameter is set (`key`, `key=true` or `key=1`).
pub(crate) fn query_flag(query: Option<&str>, key: &str) -> Result<bool, ApiError> {
    let mut set = false;
    for (k, v) in query_pairs(query).filter(|(k, _)| *k == key) {
        set = match v {
            "" | "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                return Err(ApiError::BadRequest(format!("{k}: `{v}` is not true or false")));
            }
        };
    }
    Ok(set)
}

/// A page of the log, newest first (an `after` query reads oldest first from its cursor; the
/// page is shown newest first either way).
async fn log_page(
    tower: &Tower,
    query: &LogQuery,
) -> Result<Vec<flagtower_core::LogRecord>, ApiError> {
    let mut page = tower.query_logs(query).await?;
    if query.after.is_some() {
        page.reverse();
    }
    Ok(page)
}

/// `Link: <path?before=…>; rel="next"` when older entries may follow the page: it was full, or
/// it was read `after` a cursor (the cursor's entry itself is older).
fn next_link(
    res: &mut Response<Bytes>,
    path: &str,
    query: &LogQuery,
    page: &[flagtower_core::LogRecord],
) {
    let Some(oldest) = page.last() else { return };
    if page.len() < query.limit as usize && query.after.is_none() {
        return;
    }
    let mut next = format!("{path}?before={}&limit={}", oldest.entry.id.get(), query.limit);
    if let Some(action) = query.action {
        next.push_str(&format!("&action={}", action.as_str()));
    }
    if let Some(app) = query.app {
        next.push_str(&format!("&app={app}"));
    }
    if let Ok(v) = http::HeaderValue::try_from(format!("<{next}>; rel=\"next\"")) {
        res.headers_mut().insert(http::header::LINK, v);
    }
}

/// `?logs=N` of `GET /api/flags/:id`: how many of the newest log entries come with the flag
/// (default [`FLAG_LOGS`], at most [`MAX_LOG_PAGE`]).
fn flag_logs(query: Option<&str>) -> Result<u32, ApiError> {
    let mut n = FLAG_LOGS;
    for (k, v) in query_pairs(query).filter(|(k, _)| *k == "logs") {
        n = v.parse().ok().filter(|n| (1..=MAX_LOG_PAGE).contains(n)).ok_or_else(|| {
            ApiError::BadRequest(format!("{k}: `{v}` is not a number from 1 to {MAX_LOG_PAGE}"))
        })?;
    }
    Ok(n)
}

/// How many log entries `GET /api/flags/:id` returns by default: the newest 100.
pub(crate) const FLAG_LOGS: u32 = 100;

/// A page of the log from `limit`, `before`, `after`, `action` and `app`, and whether any was
/// given (without any, the route answers in the original Tower's shape).
pub(crate) fn log_query(query: Option<&str>) -> Result<(LogQuery, bool), ApiError> {
    let mut q = LogQuery { limit: DEFAULT_LOG_PAGE, ..LogQuery::default() };
    let mut paged = false;
    for (k, v) in query_pairs(query) {
        let bad = |what: &str| ApiError::BadRequest(format!("{k}: `{v}` {what}"));
        match k {
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LOG_PAGE).contains(n))
                    .ok_or_else(|| bad(&format!("is not a number from 1 to {MAX_LOG_PAGE}")))?;
            }
            "before" => q.before = Some(v.parse().map_err(|_| bad("is not a log id"))?),
            "after" => q.after = Some(v.parse().map_err(|_| bad("is not a log id"))?),
            "app" => q.app = Some(v.parse().map_err(|_| bad("is not an app id"))?),
            "action" => {
                q.action = Some(Action::parse(v).ok_or_else(|| {
                    bad("is not an action type (create, update, delete, flag_on, flag_off, circuit_open, circuit_recovery, circuit_close)")
                })?);
            }
            _ => continue,
        }
        paged = true;
    }
    Ok((q, paged))
}

/// The page size of the log routes without a `limit`.
const DEFAULT_LOG_PAGE: u32 = 500;

/// `timeRange` and `timeBucket` from the query string (defaults 600000 and 60000).
pub(crate) fn time_window(query: Option<&str>) -> Result<TimeWindow, ApiError> {
    let (mut range, mut bucket) = (None, None);
    for (k, v) in query_pairs(query) {
        let slot = match k {
            "timeRange" => &mut range,
            "timeBucket" => &mut bucket,
            _ => continue,
        };
        let n = v.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!("{k}: `{v}` is not a whole number of milliseconds"))
        })?;
        *slot = Some(n);
    }
    let d = TimeWindow::DEFAULT;
    Ok(TimeWindow::new(range.unwrap_or(d.range_ms()), bucket.unwrap_or(d.bucket_ms()))?)
}

/// Reads the body within [`MAX_BODY_BYTES`] and `timeout`; `None` when empty. A non-empty body must be
/// `application/json` and valid JSON.
async fn read_json(
    parts: &http::request::Parts,
    body: Incoming,
    timeout: std::time::Duration,
) -> Result<Option<Value>, ApiError> {
    let Some(bytes) = read_body(parts, body, timeout).await? else { return Ok(None) };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))
}

/// How much of an oversized body is read and dropped after the 413 is sent, and for how long at
/// most: a client still sending when the server closes gets a reset instead of the answer, so
/// the server keeps reading (within reason) while the 413 goes out, then closes.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops the rest of a body, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]; spawned beside
/// the answer, which the connection sends meanwhile.
async fn drain(mut body: Incoming) {
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

/// A request's JSON body, bounded in size and time: `None` when it is empty.
pub(crate) async fn read_body(
    parts: &http::request::Parts,
    body: Incoming,
    timeout: std::time::Duration,
) -> Result<Option<Bytes>, ApiError> {
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = body;
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        tokio::spawn(drain(body));
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let mut buf = bytes::BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                ApiError::BadRequest("the request body could not be read".to_owned())
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_BODY_BYTES {
                    return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => return Err(ApiError::RequestTimeout(timeout)),
        Ok(Err(e @ ApiError::PayloadTooLarge(_))) => {
            tokio::spawn(drain(body));
            return Err(e);
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    let bytes = buf.freeze();
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .is_some_and(|ct| {
            ct.eq_ignore_ascii_case("application/json")
                || ct.to_ascii_lowercase().ends_with("+json")
        });
    // A request that changes something must say it is JSON, even with no body: an HTML form on
    // another site can POST here (text/plain, form-urlencoded, multipart) but cannot send
    // application/json without the browser asking this server first, which it never allows.
    let changes_state = !matches!(parts.method, Method::GET | Method::HEAD);
    if (changes_state || !bytes.iter().all(u8::is_ascii_whitespace)) && !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(Some(bytes))
}

fn payload<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    ok(status, &Envelope { payload: value })
}

fn ok<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(crate::json_response(status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heavy_reads_are_the_ones_whose_answer_grows() {
        let heavy = |path: &str, method: Method| {
            let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
            Route::find(path).unwrap().is_heavy(&method, query)
        };
        assert!(heavy("/api/logs", Method::GET));
        assert!(heavy("/api/logs?limit=10", Method::GET));
        assert!(heavy("/api/logs/3", Method::GET));
        assert!(heavy("/api/flags/3?logs=1000", Method::GET));
        assert!(heavy("/api/apps?counts=true", Method::GET));
        assert!(!heavy("/api/flags/3", Method::GET), "the hot read: the default 100 entries");
        assert!(!heavy("/api/flags/3?logs=1000", Method::PATCH));
        assert!(!heavy("/api/apps", Method::GET));
        assert!(!heavy("/api/apps/3/flags", Method::GET));
        assert!(!heavy("/api/flags/3/timeseries", Method::GET));
    }

    #[test]
    fn routes_match_the_documented_paths() {
        assert!(matches!(Route::find("/api/apps"), Some(Route::Apps)));
        assert!(matches!(Route::find("/api/apps/"), Some(Route::Apps)));
        assert!(matches!(Route::find("/api/apps/7/flags"), Some(Route::AppFlags("7"))));
        assert!(matches!(Route::find("/api/flags/circuit/3/open"), Some(Route::CircuitOpen("3"))));
        assert!(matches!(Route::find("/api/flags/3/timeseries"), Some(Route::FlagTimeseries("3"))));
        assert!(matches!(Route::find("/api/logs/2"), Some(Route::AppLogs("2"))));
        assert!(Route::find("/api").is_none());
        assert!(Route::find("/api/apps/1/2").is_none());
        assert!(Route::find("api/apps").is_none());
        assert!(Route::find("/").is_none());
    }

    #[test]
    fn time_windows_come_from_the_query() {
        assert_eq!(time_window(None).unwrap(), TimeWindow::DEFAULT);
        assert_eq!(
            time_window(Some("timeRange=30000&timeBucket=3000&x=1")).unwrap(),
            TimeWindow::new(30_000, 3_000).unwrap()
        );
        assert!(time_window(Some("timeRange=-1")).is_err());
        assert!(time_window(Some("timeRange=abc")).is_err());
        assert!(time_window(Some("timeRange=0")).is_err());
        assert!(time_window(Some("timeBucket=1")).is_err(), "600000 buckets is too many");
    }
}
