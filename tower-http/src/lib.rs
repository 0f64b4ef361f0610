//! # flagtower-http
//!
//! Tower's REST API over hyper 1.x, its live stream (`GET /api/stream`), the dashboard (served
//! at `/`, its files embedded in the binary), and the `tower` binary.
//!
//! [`run`] serves a [`flagtower_core::Tower`] on a listener until a shutdown future resolves,
//! then stops accepting and lets in-flight requests finish. The binary is a thin `main` around it
//! that reads [`Config`] from the environment; tests start the same `run` on port 0.
//!
//! ```no_run
//! # async fn demo(tower: flagtower_core::Tower) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
//! flagtower_http::run(listener, tower, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

mod auth;
mod cache;
mod config;
mod dashboard;
mod error;
mod hosts;
mod metrics;
mod ofrep;
mod openapi;
mod ratelimit;
mod routes;
mod stream;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use flagtower_core::Tower;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use auth::{AdminToken, AdminTokens, MIN_SECRET_LEN, SESSION_COOKIE, SESSION_IDLE};
pub use config::{Config, ConfigError, MetricsConfig, NatsConfig, redact_url};
pub use dashboard::embedded_size as dashboard_size;
pub use error::ApiError;
pub use ratelimit::RateLimit;
pub use routes::MAX_BODY_BYTES;

/// The body of every response: whole for the API and the dashboard, streaming for
/// `/api/stream`.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How long a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The most connections served at once by default: well under the usual limit of 1 024 open
/// files, which the store, NATS and Redis connections share.
pub const MAX_CONNECTIONS: usize = 768;

/// The most live streams open at once by default (each holds a connection).
pub const MAX_STREAMS: usize = 512;

/// What the fuzz targets drive: the server's parsers of untrusted input, without a socket.
/// Each function takes anything and panics only when an invariant breaks. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use futures_util::FutureExt;

    /// A request target (`/path?query`): routing, OFREP routing and every query parser.
    pub fn request_target(target: &str) {
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        if let Some(route) = crate::routes::Route::find(path) {
            let _ = route.allowed();
        }
        if let Some((_, endpoint)) = crate::ofrep::find(path) {
            let _ = format!("{endpoint:?}");
        }
        let _ = crate::routes::query_flag(query, "counts");
        if let Ok((q, _)) = crate::routes::log_query(query) {
            assert!((1..=flagtower_core::ports::MAX_LOG_PAGE).contains(&q.limit));
        }
        if let Ok(w) = crate::routes::time_window(query) {
            assert!(w.bucket_ms() <= w.range_ms() && w.bucket_ms() > 0);
        }
    }

    /// A JSON body of the session and OFREP routes: parsing never panics, and a context that
    /// parses is an object.
    pub fn bodies(data: &[u8]) {
        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
            let _ = crate::routes::session_token(Some(&body));
        }
        if let Ok(context) = crate::ofrep::parse_context(data) {
            assert!(context.is_object());
            let _ = crate::ofrep::targeting_key(&context);
        }
    }

    /// An `Authorization` header and a `Cookie` header (the bytes split at the first newline),
    /// against a server with one admin token and an SDK key: only the token's secret, the key
    /// on an SDK route, or a session the server signed get in.
    pub fn credentials(data: &[u8]) {
        const SECRET: &str = "fuzz-admin-secret-0123456789";
        const KEY: &str = "fuzz-sdk-key";
        let text = String::from_utf8_lossy(data);
        let (auth, cookie) = text.split_once('\n').unwrap_or((&text, ""));
        let tokens = crate::AdminTokens::parse(&format!("ops:{SECRET}")).expect("token");
        let sessions = crate::auth::Sessions::new(tokens, Duration::from_secs(60), None);
        let mut headers = http::HeaderMap::new();
        if let Ok(v) = http::HeaderValue::from_str(auth) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
        if let Ok(v) = http::HeaderValue::from_str(cookie) {
            headers.insert(http::header::COOKIE, v);
        }
        for method in [http::Method::GET, http::Method::POST] {
            for sdk_route in [false, true] {
                let caller = sessions
                    .authenticate(&method, &headers, sdk_route, || async {
                        Ok(Some(KEY.to_owned()))
                    })
                    .now_or_never()
                    .expect("authentication does not wait here");
                let presented = auth
                    .trim()
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, s)| s.trim());
                match caller {
                    Ok(crate::auth::Caller::Admin { session: None, .. }) => {
                        assert_eq!(presented, Some(SECRET))
                    }
                    Ok(crate::auth::Caller::Sdk) => {
                        assert!(sdk_route && presented == Some(KEY))
                    }
                    // A session from random bytes means a forged signature.
                    Ok(crate::auth::Caller::Admin { session: Some(_), .. }) => {
                        panic!("a cookie the server did not sign got in: {cookie:?}")
                    }
                    Ok(crate::auth::Caller::Anonymous) => panic!("authentication is on"),
                    Err(_) => {}
                }
            }
        }
    }
}

pub(crate) fn json_response(
    status: http::StatusCode,
    body: impl Into<Bytes>,
) -> http::Response<Bytes> {
    let mut res = http::Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    res
}

/// Timeouts of the server and where the dashboard comes from; [`run`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a client may take to send a request's headers (default
    /// [`HEADER_READ_TIMEOUT`]); a slower client is disconnected.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests (default [`SHUTDOWN_GRACE`]).
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's body (default [`BODY_READ_TIMEOUT`]);
    /// a slower one gets a 408.
    pub body_read_timeout: Duration,
    /// Serve the dashboard's files from this directory, read at each request, instead of the
    /// copies embedded in the binary (`TOWER_DASHBOARD_DIR`; for working on the dashboard).
    pub dashboard_dir: Option<PathBuf>,
    /// The most connections served at once (`TOWER_MAX_CONNECTIONS`, default
    /// [`MAX_CONNECTIONS`]); beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// The most live streams (`/api/stream`, OFREP's event streams) open at once
    /// (`TOWER_MAX_STREAMS`, default [`MAX_STREAMS`]); beyond it a new one gets 503 with
    /// `Retry-After`.
    pub max_streams: usize,
    /// `Host` names answered besides the loopback ones (`TOWER_ALLOWED_HOSTS`). On a loopback
    /// address only loopback names and these are answered; on another address, when not empty,
    /// only these. Others get 421, against DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// The admin tokens (`TOWER_ADMIN_TOKENS`, `TOWER_ADMIN_TOKENS_FILE`); none: every route is
    /// open, and changes are logged as made by `anonymous`.
    pub admin_tokens: AdminTokens,
    /// How long an unused dashboard session lasts (`TOWER_SESSION_IDLE_MINUTES`, default
    /// [`SESSION_IDLE`]).
    pub session_idle: Duration,
    /// The URL browsers reach this server at (`TOWER_PUBLIC_URL`), when a proxy stands in
    /// front: its origin is accepted for changes made with a session cookie, and an `https`
    /// one makes the cookie `Secure`.
    pub public_url: Option<String>,
    /// Where webhook lists may point besides public addresses (`TOWER_WEBHOOK_ALLOW`); a list
    /// with another destination is refused (422) when saved.
    pub webhook_allow: flagtower_core::destinations::Destinations,
    /// How many changes (POST, PATCH, DELETE but the SDK routes) each client address may make
    /// (`TOWER_RATE_LIMIT`, default [`RateLimit::DEFAULT`]); `None`: no limit. Beyond it: 429.
    pub rate_limit: Option<RateLimit>,
    /// How many heavy reads (log pages, a flag with its log entries counted by `?logs=`, apps
    /// with their flag counts) are served at once (default: one per core); more wait their
    /// turn, so a burst of them cannot take every store connection from the other requests.
    pub heavy_reads: usize,
    /// The most bytes of answers the read model keeps (`TOWER_READ_MODEL_BYTES`, default
    /// [`READ_MODEL_BYTES`]); 0 turns it off and every read goes to the store.
    pub read_cache_bytes: usize,
}

/// How many bytes of answers the read model keeps by default (64 MiB: about 37 000 flags as
/// `GET /api/flags/:id` answers them with five log entries each).
pub const READ_MODEL_BYTES: usize = 64 << 20;

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            shutdown_grace: SHUTDOWN_GRACE,
            dashboard_dir: None,
            max_connections: MAX_CONNECTIONS,
            max_streams: MAX_STREAMS,
            allowed_hosts: Vec::new(),
            admin_tokens: AdminTokens::none(),
            session_idle: SESSION_IDLE,
            public_url: None,
            webhook_allow: flagtower_core::destinations::Destinations::public(),
            rate_limit: Some(RateLimit::DEFAULT),
            heavy_reads: std::thread::available_parallelism().map_or(2, usize::from),
            read_cache_bytes: READ_MODEL_BYTES,
        }
    }
}

/// What every request handler shares.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) tower: Tower,
    pub(crate) options: Arc<ServerOptions>,
    /// Turns `true` when the server shuts down (live streams end then).
    pub(crate) closing: tokio::sync::watch::Receiver<bool>,
    /// The `Host` names answered.
    pub(crate) hosts: Arc<hosts::Hosts>,
    /// Places for live streams.
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
    /// Admin tokens and dashboard sessions.
    pub(crate) sessions: Arc<auth::Sessions>,
    /// The per-client limit on changes, when there is one.
    pub(crate) limiter: Option<Arc<ratelimit::Limiter>>,
    /// What `GET /metrics` reports.
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Turns for heavy reads (`ServerOptions::heavy_reads`).
    pub(crate) heavy_reads: Arc<tokio::sync::Semaphore>,
    /// The read routes' answers (`cache.rs`).
    pub(crate) cache: Arc<cache::ReadCache>,
}

/// Failing `accept` calls (out of file descriptors, mostly): backed off from 10 ms to 1 s, and
/// logged at most once a second with how many failed since.
#[derive(Debug, Default)]
struct AcceptFailures {
    streak: u32,
    unlogged: u64,
    logged_at: Option<std::time::Instant>,
}

impl AcceptFailures {
    /// Records a failure; how long to wait before the next `accept`.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.streak = self.streak.saturating_add(1);
        self.unlogged += 1;
        if self.logged_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(error = %e, failures = self.unlogged, "accept failed; backing off");
            self.unlogged = 0;
            self.logged_at = Some(std::time::Instant::now());
        }
        Duration::from_millis(10u64 << (self.streak - 1).min(7)).min(Duration::from_secs(1))
    }

    /// An `accept` succeeded.
    fn recovered(&mut self) {
        if self.streak > 0 {
            tracing::info!(failures = self.streak, "accepting connections again");
            self.streak = 0;
            self.unlogged = 0;
        }
    }
}

/// Serves the REST API, the live stream and the dashboard on `listener` until `shutdown`
/// resolves, then ends live streams and waits (up to [`SHUTDOWN_GRACE`]) for in-flight requests
/// to finish.
pub async fn run(
    listener: TcpListener,
    tower: Tower,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    run_with(listener, tower, shutdown, ServerOptions::default()).await
}

/// [`run`] with other timeouts.
pub async fn run_with(
    listener: TcpListener,
    tower: Tower,
    shutdown: impl Future<Output = ()>,
    options: ServerOptions,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let grace = options.shutdown_grace;
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let hosts = Arc::new(hosts::Hosts::new(listener.local_addr()?.ip(), &options.allowed_hosts));
    let streams = Arc::new(tokio::sync::Semaphore::new(options.max_streams));
    let connections = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let sessions = Arc::new(auth::Sessions::new(
        options.admin_tokens.clone(),
        options.session_idle,
        options.public_url.as_deref(),
    ));
    let limiter = options.rate_limit.map(|l| Arc::new(ratelimit::Limiter::new(l)));
    if let Some(limiter) = &limiter {
        // Idle clients are forgotten once a minute, until the server stops.
        let (limiter, mut closed) = (Arc::downgrade(limiter), closing.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => match limiter.upgrade() {
                        Some(l) => l.forget_idle(),
                        None => return,
                    },
                    _ = closed.changed() => return,
                }
            }
        });
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let heavy_reads = Arc::new(tokio::sync::Semaphore::new(options.heavy_reads.max(1)));
    let cache = Arc::new(cache::ReadCache::new(options.read_cache_bytes));
    let ctx = Ctx {
        cache,
        heavy_reads,
        tower,
        options: Arc::new(options),
        closing,
        hosts,
        streams,
        sessions,
        limiter,
        metrics,
    };
    tokio::pin!(shutdown);
    let mut accept_failures = AcceptFailures::default();
    loop {
        // At most `max_connections` at once: beyond it, new ones wait in the listen backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => {
                        accept_failures.recovered();
                        a
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        let wait = accept_failures.failed(&e);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let ctx = ctx.clone();
                let client = peer.ip();
                let svc = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(routes::handle(ctx, req, client).await) }
                });
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = conn.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let _ = closing_tx.send(true);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?grace, "in-flight requests did not finish in time");
    }
    Ok(())
}

#[cfg(test)]
mod accept_tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_to_a_second() {
        let mut f = AcceptFailures::default();
        let e = std::io::Error::other("too many open files");
        let waits: Vec<_> = (0..10).map(|_| f.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        assert_eq!(f.unlogged, 9, "logged once for the first, the rest counted");
        f.recovered();
        assert_eq!(f.failed(&e), Duration::from_millis(10));
    }
}
