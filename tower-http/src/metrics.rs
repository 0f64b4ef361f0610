//! `GET /metrics`: what an operator graphs and alerts on, in Prometheus's text format
//! (the `prometheus-client` crate).
//!
//! - `tower_http_requests_total{route, method, status}` and
//!   `tower_http_request_duration_seconds{route}`: every request, by route template
//!   (`/api/flags/:id`), so the label set stays small whatever the ids.
//! - `tower_unpublished_apps` and `tower_unpublished_seconds`: apps whose newest ruleset the
//!   relay could not publish, and how long the oldest of them has been failing (0 when all is
//!   published): the signal that rulesets are not reaching NATS.
//! - `tower_flags{state}`: flags by circuit state (`closed`, `recovering`, `open`), read at
//!   each scrape in one query.
//! - `tower_live_streams`: open live streams (`/api/stream`, OFREP event streams).
//! - `tower_read_model_hits_total`, `tower_read_model_misses_total`, `tower_read_model_bytes`
//!   and `tower_read_model_answers`: the read model's (`cache.rs`) answers and size.
//! - `tower_breaker_checks_total`, `tower_breaker_moves_total{kind}` (`trip`,
//!   `start_recovery`, `step`, `close`) and `tower_webhook_deliveries_total{result}`
//!   (`delivered`, `retried`, `failed`): the core's counters (`Tower::stats`), since start.
//! - `tower_publish_latency_seconds`: from a change's commit in this process to its ruleset
//!   accepted by the publisher (for each publication, the wait of the oldest change it carried).
//! - `tower_store_operation_duration_seconds{op}`: each kind of store operation (`change_flag`,
//!   `flag_with_logs`, `query_logs`, `ruleset`, `mark_published`, …), timed by the core.
//! - `tower_published_revision{app}`: the newest revision of each app this process published
//!   (across processes, the `max` is the app's; an app's revision in the store is ahead of it
//!   while a publication is due).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MoveLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    app: i64,
}

/// The core's histograms and per-app revisions as of the last scrape (`Tower::stats`), encoded
/// at each scrape from that copy, so an app this process never published has no series.
#[derive(Debug, Default)]
struct CoreStats(std::sync::Mutex<flagtower_core::stats::StatsSnapshot>);

fn buckets(l: &flagtower_core::stats::Latencies) -> Vec<(f64, u64)> {
    let bounds = flagtower_core::stats::LATENCY_BOUNDS;
    let count = |i: usize| l.counts.get(i).copied().unwrap_or(0);
    let mut buckets: Vec<(f64, u64)> =
        bounds.iter().enumerate().map(|(i, b)| (*b, count(i))).collect();
    buckets.push((f64::INFINITY, count(bounds.len())));
    buckets
}

impl prometheus_client::collector::Collector for CoreStats {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::NoLabelSet;
        use prometheus_client::metrics::MetricType;
        let stats = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let unit = prometheus_client::registry::Unit::Seconds;
        let l = &stats.publish_latency;
        encoder
            .encode_descriptor(
                "publish_latency",
                "From a change's commit in this process to its ruleset accepted by the publisher",
                Some(&unit),
                MetricType::Histogram,
            )?
            .encode_histogram::<NoLabelSet>(l.sum_secs, l.count, &buckets(l), None)?;
        let mut ops = encoder.encode_descriptor(
            "store_operation_duration",
            "How long each kind of store operation took",
            Some(&unit),
            MetricType::Histogram,
        )?;
        for (op, l) in &stats.store_latency {
            ops.encode_family(&OpLabels { op })?.encode_histogram::<NoLabelSet>(
                l.sum_secs,
                l.count,
                &buckets(l),
                None,
            )?;
        }
        let mut published = encoder.encode_descriptor(
            "published_revision",
            "The newest revision of each app's ruleset this process published",
            None,
            MetricType::Gauge,
        )?;
        for (app, revision) in &stats.published {
            let labels = AppLabels { app: app.get() };
            published.encode_family(&labels)?.encode_gauge(&(revision.get() as i64))?;
        }
        Ok(())
    }
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    unpublished_apps: Gauge,
    unpublished_seconds: Gauge<f64, AtomicU64>,
    flags: Family<StateLabels, Gauge>,
    live_streams: Gauge,
    read_model_hits: Counter,
    read_model_misses: Counter,
    read_model_bytes: Gauge,
    read_model_answers: Gauge,
    checks: Counter,
    moves: Family<MoveLabels, Counter>,
    webhooks: Family<ResultLabels, Counter>,
    core: std::sync::Arc<CoreStats>,
    /// One scrape at a time: the core's counters are copied in as increments.
    scraping: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("tower");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        // 0.25 ms to 2 s: reads are sub-millisecond, durable writes a few milliseconds.
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
            ])
        });
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request handling time by route (the stream's: until its headers)",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let unpublished_apps = Gauge::default();
        registry.register(
            "unpublished_apps",
            "Apps whose newest ruleset the relay could not publish",
            unpublished_apps.clone(),
        );
        let unpublished_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "unpublished",
            "How long the oldest unpublished app has been failing to publish (0: all published)",
            prometheus_client::registry::Unit::Seconds,
            unpublished_seconds.clone(),
        );
        let flags = Family::<StateLabels, Gauge>::default();
        registry.register("flags", "Flags by circuit state", flags.clone());
        let live_streams = Gauge::default();
        registry.register("live_streams", "Open live streams", live_streams.clone());
        let read_model_hits = Counter::default();
        registry.register(
            "read_model_hits",
            "Reads answered from the read model",
            read_model_hits.clone(),
        );
        let read_model_misses = Counter::default();
        registry.register(
            "read_model_misses",
            "Reads of the read model's routes that went to the store",
            read_model_misses.clone(),
        );
        let read_model_bytes = Gauge::default();
        registry.register_with_unit(
            "read_model",
            "Bytes of answers the read model holds",
            prometheus_client::registry::Unit::Bytes,
            read_model_bytes.clone(),
        );
        let read_model_answers = Gauge::default();
        registry.register(
            "read_model_answers",
            "Answers the read model holds",
            read_model_answers.clone(),
        );
        let checks = Counter::default();
        registry.register("breaker_checks", "Flags the circuit breaker checked", checks.clone());
        let moves = Family::<MoveLabels, Counter>::default();
        registry.register("breaker_moves", "The circuit breaker's moves, by kind", moves.clone());
        let webhooks = Family::<ResultLabels, Counter>::default();
        registry.register("webhook_deliveries", "Webhook attempts, by result", webhooks.clone());
        let core = std::sync::Arc::new(CoreStats::default());
        registry.register_collector(Box::new(std::sync::Arc::clone(&core)));
        Self {
            registry,
            requests,
            durations,
            unpublished_apps,
            unpublished_seconds,
            flags,
            live_streams,
            read_model_hits,
            read_model_misses,
            read_model_bytes,
            read_model_answers,
            checks,
            moves,
            webhooks,
            core,
            scraping: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts a request.
    pub(crate) fn request(
        &self,
        route: &'static str,
        method: &http::Method,
        status: u16,
        took: Duration,
    ) {
        let method = match *method {
            http::Method::GET => "GET",
            http::Method::HEAD => "HEAD",
            http::Method::POST => "POST",
            http::Method::PATCH => "PATCH",
            http::Method::PUT => "PUT",
            http::Method::DELETE => "DELETE",
            http::Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        self.requests.get_or_create(&RequestLabels { route, method, status }).inc();
        self.durations.get_or_create(&RouteLabels { route }).observe(took.as_secs_f64());
    }

    /// The text to answer a scrape with, after reading what is current.
    pub(crate) async fn scrape(
        &self,
        tower: &flagtower_core::Tower,
        live_streams: usize,
        cache: &crate::cache::ReadCache,
    ) -> Result<String, crate::ApiError> {
        let _one = self.scraping.lock().await;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let catch_up = |counter: &Counter, now: u64| {
            counter.inc_by(now.saturating_sub(counter.get()));
        };
        catch_up(&self.read_model_hits, load(&cache.hits));
        catch_up(&self.read_model_misses, load(&cache.misses));
        self.read_model_bytes.set(cache.bytes() as i64);
        self.read_model_answers.set(cache.len() as i64);
        let stats = tower.stats();
        catch_up(&self.checks, stats.breaker_checks);
        for (kind, n) in [
            ("trip", stats.trips),
            ("start_recovery", stats.recoveries_started),
            ("step", stats.recovery_steps),
            ("close", stats.closes),
        ] {
            catch_up(&self.moves.get_or_create(&MoveLabels { kind }), n);
        }
        for (result, n) in [
            ("delivered", stats.webhooks_delivered),
            ("retried", stats.webhooks_retried),
            ("failed", stats.webhooks_failed),
        ] {
            catch_up(&self.webhooks.get_or_create(&ResultLabels { result }), n);
        }
        *self.core.0.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        let health = tower.health().await;
        let unpublished = &health.relay.unpublished;
        self.unpublished_apps.set(unpublished.len() as i64);
        let now = flagtower_core::time::Clock::now(&flagtower_core::time::SystemClock);
        let oldest = unpublished.iter().map(|u| u.since).min();
        let age = oldest
            .map_or(0.0, |since| (now.as_millis() - since.as_millis()).max(0) as f64 / 1000.0);
        self.unpublished_seconds.set(age);
        let mut counts = flagtower_core::model::FlagCounts::default();
        for (_, c) in tower.app_summaries().await? {
            counts.closed += c.closed;
            counts.recovering += c.recovering;
            counts.open += c.open;
        }
        for (state, n) in
            [("closed", counts.closed), ("recovering", counts.recovering), ("open", counts.open)]
        {
            self.flags.get_or_create(&StateLabels { state }).set(n as i64);
        }
        self.live_streams.set(live_streams as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| crate::ApiError::Internal(Box::new(e)))?;
        Ok(out)
    }
}
