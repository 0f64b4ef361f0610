//! Flag health metrics on RedisTimeSeries, in the keys the Tailslide SDKs write.
//!
//! - Keys `<flagId>:success` and `<flagId>:failure`, labels `status`, `flagId`, `appId`.
//! - [`MetricsStore::prepare`] creates both keys of a flag with a retention and a duplicate
//!   policy that sums (or fixes keys an SDK created first with the server's default, BLOCK,
//!   which refuses a second sample in the same millisecond): after it, no SDK count is lost.
//! - Tower's own writes are `TS.ADD … ON_DUPLICATE SUM`, pipelined per report.
//! - Reads are `TS.RANGE … AGGREGATION sum <width>`: bucket edges at multiples of the width.
//! - At connect, the server must have the time-series module (or be Redis ≥ 8).
//! - One multiplexed connection, managed: it reconnects by itself, with bounded timeouts.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use flagtower_core::{AppId, Bucket, Counts, FlagId, MetricsError, MetricsStore, Timestamp};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The default retention of the series Tower creates: one hour.
pub const DEFAULT_RETENTION_MS: u64 = 3_600_000;

/// How to reach Redis.
#[derive(Clone)]
pub struct RedisOptions {
    url: String,
    retention_ms: u64,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("target", &self.target())
            .field("retention_ms", &self.retention_ms)
            .finish()
    }
}

impl RedisOptions {
    /// A `redis://[user:password@]host:port[/db]` URL, with the default retention.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), retention_ms: DEFAULT_RETENTION_MS }
    }

    /// From the original Tower's `REDIS_SERVER`, the JSON options of node-redis (see
    /// [`node_redis_url`]).
    pub fn from_node_redis_json(json: &str) -> Result<Self, String> {
        node_redis_url(json).map(Self::new)
    }

    /// How long samples are kept in the series Tower creates.
    pub fn retention_ms(mut self, ms: u64) -> Self {
        self.retention_ms = ms;
        self
    }

    /// What of the URL may be shown: scheme, host and port (`flagtower_core::redact::url`).
    pub fn target(&self) -> String {
        flagtower_core::redact::url(&self.url)
    }
}

/// The redis:// URL of node-redis's JSON options, the original Tower's `REDIS_SERVER`:
/// `{"socket":{"host":"localhost","port":6379},"username":…,"password":…,"database":…}`.
pub fn node_redis_url(json: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
    let socket = &v["socket"];
    let host = socket["host"].as_str().unwrap_or("localhost");
    let port = match &socket["port"] {
        serde_json::Value::Null => 6379,
        p => p.as_u64().filter(|p| *p <= 65_535).ok_or("socket.port is not a port number")?,
    };
    let auth = match (v["username"].as_str(), v["password"].as_str()) {
        (Some(u), Some(p)) => format!("{u}:{p}@"),
        (None, Some(p)) => format!(":{p}@"),
        _ => String::new(),
    };
    let db = v["database"].as_u64().map(|d| format!("/{d}")).unwrap_or_default();
    Ok(format!("redis://{auth}{host}:{port}{db}"))
}

/// Why the metrics store could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is malformed.
    #[error("invalid Redis URL {target}")]
    Url {
        /// The URL without credentials.
        target: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// The server could not be reached or refused us.
    #[error("cannot connect to Redis at {target}")]
    Connect {
        /// The URL without credentials.
        target: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// The server has no time-series support.
    #[error(
        "the Redis at {target} (version {version}) has no time-series module: run Redis 8 or later, \
         redis-stack-server, or redis-server --loadmodule /path/to/redistimeseries.so"
    )]
    NoTimeSeries {
        /// The URL without credentials.
        target: String,
        /// Its `redis_version`.
        version: String,
    },
}

/// A [`MetricsStore`] on RedisTimeSeries.
#[derive(Clone)]
pub struct RedisMetrics {
    conn: ConnectionManager,
    retention_ms: u64,
    target: String,
}

impl fmt::Debug for RedisMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisMetrics")
            .field("target", &self.target)
            .field("retention_ms", &self.retention_ms)
            .finish()
    }
}

fn key(flag: FlagId, status: &str) -> String {
    format!("{flag}:{status}")
}

fn map(e: redis::RedisError) -> MetricsError {
    if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() || e.is_connection_dropped() {
        MetricsError::Unavailable(Box::new(e))
    } else {
        MetricsError::Backend(Box::new(e))
    }
}

fn contains_name(v: &redis::Value, name: &str) -> bool {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).eq_ignore_ascii_case(name),
        redis::Value::SimpleString(s) => s.eq_ignore_ascii_case(name),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().any(|i| contains_name(i, name))
        }
        redis::Value::Map(pairs) => {
            pairs.iter().any(|(k, v)| contains_name(k, name) || contains_name(v, name))
        }
        _ => false,
    }
}

impl RedisMetrics {
    /// Connects and checks that the server has time-series support.
    pub async fn connect(options: &RedisOptions) -> Result<Self, ConnectError> {
        let target = options.target();
        let client = redis::Client::open(options.url.as_str())
            .map_err(|source| ConnectError::Url { target: target.clone(), source })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|source| ConnectError::Connect { target: target.clone(), source })?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|source| ConnectError::Connect { target: target.clone(), source })?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
        let modules: redis::Value =
            redis::cmd("MODULE")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .map_err(|source| ConnectError::Connect { target: target.clone(), source })?;
        if major < 8 && !contains_name(&modules, "timeseries") {
            return Err(ConnectError::NoTimeSeries { target, version });
        }
        tracing::info!(target_redis = %target, version = %version, "RedisTimeSeries metrics store ready");
        Ok(Self { conn, retention_ms: options.retention_ms, target })
    }

    fn labels<'a>(
        &self,
        cmd: &'a mut redis::Cmd,
        flag: FlagId,
        app: AppId,
        status: &str,
    ) -> &'a mut redis::Cmd {
        cmd.arg("LABELS")
            .arg("status")
            .arg(status)
            .arg("flagId")
            .arg(flag.get())
            .arg("appId")
            .arg(app.get())
    }

    /// Sums per bucket of one key; a key that does not exist reads as empty.
    async fn range(
        &self,
        key: String,
        from: Timestamp,
        to: Timestamp,
        width: u64,
    ) -> Result<Vec<(i64, u64)>, MetricsError> {
        let mut conn = self.conn.clone();
        let result: Result<Vec<(i64, f64)>, redis::RedisError> = redis::cmd("TS.RANGE")
            .arg(&key)
            .arg(from.as_millis())
            .arg(to.as_millis())
            .arg("AGGREGATION")
            .arg("sum")
            .arg(width)
            .query_async(&mut conn)
            .await;
        match result {
            Ok(points) => {
                Ok(points.into_iter().map(|(t, v)| (t, v.max(0.0).round() as u64)).collect())
            }
            Err(e) if e.to_string().contains("does not exist") => Ok(Vec::new()),
            Err(e) => Err(map(e)),
        }
    }
}

#[async_trait]
impl MetricsStore for RedisMetrics {
    async fn prepare(&self, flag: FlagId, app: AppId) -> Result<(), MetricsError> {
        let mut conn = self.conn.clone();
        for status in ["success", "failure"] {
            let mut create = redis::cmd("TS.CREATE");
            create
                .arg(key(flag, status))
                .arg("RETENTION")
                .arg(self.retention_ms)
                .arg("DUPLICATE_POLICY")
                .arg("SUM");
            self.labels(&mut create, flag, app, status);
            match create.query_async::<()>(&mut conn).await {
                Ok(()) => {}
                // An SDK (or an earlier Tower) created it: make it sum and keep our retention.
                Err(e) if e.to_string().contains("already exists") => {
                    let mut alter = redis::cmd("TS.ALTER");
                    alter
                        .arg(key(flag, status))
                        .arg("RETENTION")
                        .arg(self.retention_ms)
                        .arg("DUPLICATE_POLICY")
                        .arg("SUM");
                    self.labels(&mut alter, flag, app, status);
                    alter.query_async::<()>(&mut conn).await.map_err(map)?;
                }
                Err(e) => return Err(map(e)),
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        flag: FlagId,
        app: AppId,
        counts: Counts,
        at: Timestamp,
    ) -> Result<(), MetricsError> {
        let mut pipe = redis::pipe();
        for (status, n) in [("success", counts.success), ("failure", counts.failure)] {
            if n == 0 {
                continue;
            }
            let cmd = pipe
                .cmd("TS.ADD")
                .arg(key(flag, status))
                .arg(at.as_millis())
                .arg(n)
                .arg("RETENTION")
                .arg(self.retention_ms)
                .arg("ON_DUPLICATE")
                .arg("SUM")
                .arg("LABELS")
                .arg("status")
                .arg(status)
                .arg("flagId")
                .arg(flag.get())
                .arg("appId")
                .arg(app.get());
            cmd.ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(map)
    }

    async fn buckets(
        &self,
        flag: FlagId,
        from: Timestamp,
        to: Timestamp,
        bucket_ms: u64,
    ) -> Result<Vec<Bucket>, MetricsError> {
        let width = bucket_ms.max(1);
        let (success, failure) = tokio::try_join!(
            self.range(key(flag, "success"), from, to, width),
            self.range(key(flag, "failure"), from, to, width),
        )?;
        let mut merged: std::collections::BTreeMap<i64, Bucket> = std::collections::BTreeMap::new();
        for (t, n) in success {
            merged.entry(t).or_insert(Bucket { timestamp: t, success: 0, failure: 0 }).success += n;
        }
        for (t, n) in failure {
            merged.entry(t).or_insert(Bucket { timestamp: t, success: 0, failure: 0 }).failure += n;
        }
        Ok(merged.into_values().collect())
    }
}

#[cfg(test)]
mod tests;
