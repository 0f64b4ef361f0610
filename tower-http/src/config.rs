//! The binary's configuration, from the environment. The library never reads the
//! environment; `main` does, through [`Config::from_env`].

use std::fmt;
use std::net::IpAddr;

/// Everything the `tower` binary is configured with.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOWER_BIND`: the listen address (default 127.0.0.1).
    pub bind: IpAddr,
    /// `PORT`: the HTTP port (default 3001).
    pub port: u16,
    /// `TOWER_STORE_URL`: `sqlite://PATH` (default `sqlite://tower.db`) or `postgres://…`. When it
    /// is unset and `PGHOST` or `PGDATABASE` is set, `postgres://` (the libpq variables fill in
    /// the rest, as in the original Tower's sample configuration).
    pub store_url: String,
    /// NATS JetStream, from `TOWER_NATS_URL`; `None`: the in-process publisher.
    pub nats: Option<NatsConfig>,
    /// RedisTimeSeries, from `TOWER_METRICS_URL`; `None`: in-memory metrics.
    pub metrics: Option<MetricsConfig>,
    /// The circuit breaker (`TOWER_BREAKER`, on unless `off`) and its settings
    /// (`TOWER_BREAKER_INTERVAL_MS`, `TOWER_BREAKER_WINDOW_MS`, `TOWER_BREAKER_MIN_REQUESTS`,
    /// `TOWER_BREAKER_ALPHA`).
    pub breaker: Option<flagtower_core::breaker::BreakerSettings>,
    /// How rollouts assign users (`TOWER_ROLLOUT_HASH`: `tower`, the default, or `tailslide`).
    pub bucketing: flagtower_core::Bucketing,
    /// `TOWER_DASHBOARD_DIR`: serve the dashboard's files from this directory instead of the
    /// binary (for working on the dashboard without rebuilding).
    pub dashboard_dir: Option<std::path::PathBuf>,
    /// `TOWER_MAX_CONNECTIONS` and `TOWER_MAX_STREAMS`: the most connections and live streams
    /// served at once (defaults `flagtower_http::MAX_CONNECTIONS` and `MAX_STREAMS`).
    pub max_connections: usize,
    /// See `max_connections`.
    pub max_streams: usize,
    /// `TOWER_READ_MODEL_BYTES`: the most bytes of answers the read model keeps (default
    /// `flagtower_http::READ_MODEL_BYTES`; 0 turns it off).
    pub read_model_bytes: usize,
    /// `TOWER_ALLOWED_HOSTS`: comma-separated `Host` names answered besides the loopback ones
    /// (on a loopback address), or the only ones answered (on another, when set).
    pub allowed_hosts: Vec<String>,
    /// `TOWER_ADMIN_TOKENS` (comma-separated `name:secret`) or `TOWER_ADMIN_TOKENS_FILE` (a file
    /// of them, one per line): when set, every `/api` route needs one.
    pub admin_tokens: crate::AdminTokens,
    /// `TOWER_SESSION_IDLE_MINUTES`: how long an unused dashboard session lasts (default 480).
    pub session_idle: std::time::Duration,
    /// `TOWER_PUBLIC_URL`: the URL browsers reach Tower at, when a proxy stands in front.
    pub public_url: Option<String>,
    /// `TOWER_WEBHOOK_ALLOW`: comma-separated CIDRs, addresses or host names webhooks may go to
    /// besides public addresses.
    pub webhook_allow: flagtower_core::destinations::Destinations,
    /// `TOWER_RATE_LIMIT`: changes a second each client may make (a burst of ten times that),
    /// or `off` (default 50).
    pub rate_limit: Option<crate::RateLimit>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("store_url", &redact_url(&self.store_url))
            .field("nats", &self.nats)
            .field("metrics", &self.metrics)
            .field("breaker", &self.breaker)
            .field("bucketing", &self.bucketing)
            .field("dashboard_dir", &self.dashboard_dir)
            .field("max_connections", &self.max_connections)
            .field("max_streams", &self.max_streams)
            .field("read_model_bytes", &self.read_model_bytes)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("admin_tokens", &self.admin_tokens)
            .field("session_idle", &self.session_idle)
            .field("public_url", &self.public_url.as_deref().map(redact_url))
            .field("webhook_allow", &self.webhook_allow)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// A variable with a value Tower cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Config {
    /// Reads the configuration through `var` (`|k| std::env::var(k).ok()` in `main`).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let port = match get("PORT") {
            None => 3001,
            Some(v) => v.trim().parse::<u16>().map_err(|_| ConfigError {
                variable: "PORT",
                message: format!("`{v}` is not a port number (0-65535)"),
            })?,
        };
        let bind = match get("TOWER_BIND") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(v) => v.trim().parse().map_err(|_| ConfigError {
                variable: "TOWER_BIND",
                message: format!("`{v}` is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"),
            })?,
        };
        let store_url = get("TOWER_STORE_URL").unwrap_or_else(|| {
            if get("PGHOST").is_some() || get("PGDATABASE").is_some() {
                "postgres://".to_owned()
            } else {
                "sqlite://tower.db".to_owned()
            }
        });
        match store_url.split_once("://") {
            Some(("sqlite", path)) if !path.is_empty() => {}
            Some(("sqlite", _)) => {
                return Err(ConfigError {
                    variable: "TOWER_STORE_URL",
                    message: "sqlite:// needs a file path, e.g. sqlite://tower.db".to_owned(),
                });
            }
            Some(("postgres" | "postgresql", _)) if cfg!(feature = "postgres") => {}
            Some(("postgres" | "postgresql", _)) => {
                return Err(ConfigError {
                    variable: "TOWER_STORE_URL",
                    message: "postgres:// needs the `postgres` cargo feature, which this build does not include".to_owned(),
                });
            }
            _ => {
                return Err(ConfigError {
                    variable: "TOWER_STORE_URL",
                    message: format!(
                        "`{}` is not a store URL: expected sqlite://PATH or postgres://…",
                        redact_url(&store_url)
                    ),
                });
            }
        }
        let metrics = Self::metrics(&get)?;
        let nats = match get("TOWER_NATS_URL")
            .map(|u| ("TOWER_NATS_URL", u))
            .or_else(|| get("NATS_SERVER").map(|u| ("NATS_SERVER", u)))
        {
            None => None,
            Some((variable, url)) => {
                if !cfg!(feature = "nats") {
                    return Err(ConfigError {
                        variable,
                        message: "this build has no `nats` support; unset it to use the in-process publisher".to_owned(),
                    });
                }
                if !(url.starts_with("nats://")
                    || url.starts_with("tls://")
                    || url.starts_with("ws://")
                    || url.starts_with("wss://"))
                {
                    return Err(ConfigError {
                        variable,
                        message: format!(
                            "`{}` is not a NATS URL, e.g. nats://127.0.0.1:4222",
                            redact_url(&url)
                        ),
                    });
                }
                let stream = get("TOWER_NATS_STREAM").unwrap_or_else(|| "flags_ruleset".to_owned());
                if stream
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
                {
                    return Err(ConfigError {
                        variable: "TOWER_NATS_STREAM",
                        message: format!(
                            "`{stream}` is not a valid stream name (no spaces, `.`, `*`, `>`, `/` or `\\`)"
                        ),
                    });
                }
                Some(NatsConfig {
                    url,
                    token: get("TOWER_NATS_TOKEN").or_else(|| get("SDK_KEY")),
                    stream,
                })
            }
        };
        let breaker = Self::breaker(&get)?;
        let dashboard_dir = get("TOWER_DASHBOARD_DIR").map(std::path::PathBuf::from);
        let bucketing = match get("TOWER_ROLLOUT_HASH") {
            None => flagtower_core::Bucketing::default(),
            Some(v) => flagtower_core::Bucketing::parse(v.trim()).ok_or_else(|| ConfigError {
                variable: "TOWER_ROLLOUT_HASH",
                message: format!("`{v}` is not `tower` or `tailslide`"),
            })?,
        };
        let allowed_hosts = match get("TOWER_ALLOWED_HOSTS") {
            None => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(|h| {
                    let plain =
                        h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
                    if plain {
                        Ok(h.to_ascii_lowercase())
                    } else {
                        Err(ConfigError {
                            variable: "TOWER_ALLOWED_HOSTS",
                            message: format!("`{h}` is not a host name (like flags.example.com)"),
                        })
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let limit = |variable: &'static str, default: usize| match get(variable) {
            None => Ok(default),
            Some(v) => v.trim().parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ConfigError { variable, message: format!("`{v}` is not a positive whole number") }
            }),
        };
        let max_connections = limit("TOWER_MAX_CONNECTIONS", crate::MAX_CONNECTIONS)?;
        let max_streams = limit("TOWER_MAX_STREAMS", crate::MAX_STREAMS)?;
        let read_model_bytes = match get("TOWER_READ_MODEL_BYTES") {
            None => crate::READ_MODEL_BYTES,
            Some(v) => v.trim().parse::<usize>().map_err(|_| ConfigError {
                variable: "TOWER_READ_MODEL_BYTES",
                message: format!("`{v}` is not a whole number of bytes"),
            })?,
        };
        let admin_tokens = Self::admin_tokens(&get)?;
        let unauthenticated_allowed =
            match get("TOWER_ALLOW_UNAUTHENTICATED").as_deref().map(str::trim) {
                None | Some("0" | "false") => false,
                Some("1" | "true") => true,
                Some(other) => {
                    return Err(ConfigError {
                        variable: "TOWER_ALLOW_UNAUTHENTICATED",
                        message: format!("`{other}` is not 1 or 0"),
                    });
                }
            };
        if !bind.is_loopback() && !admin_tokens.enabled() && !unauthenticated_allowed {
            return Err(ConfigError {
                variable: "TOWER_BIND",
                message: format!(
                    "{bind} is reachable from other machines, and without admin tokens anyone who reaches it could change every flag: set TOWER_ADMIN_TOKENS (name:secret,…) or TOWER_ADMIN_TOKENS_FILE, or TOWER_ALLOW_UNAUTHENTICATED=1 to serve it open anyway"
                ),
            });
        }
        let session_minutes = limit("TOWER_SESSION_IDLE_MINUTES", 480)?;
        let public_url = match get("TOWER_PUBLIC_URL") {
            None => None,
            Some(v) => {
                let v = v.trim().to_owned();
                match url::Url::parse(&v) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        Some(v)
                    }
                    _ => {
                        return Err(ConfigError {
                            variable: "TOWER_PUBLIC_URL",
                            message: format!(
                                "`{}` is not an http(s) URL like https://flags.example.com",
                                redact_url(&v)
                            ),
                        });
                    }
                }
            }
        };
        let webhook_allow = match get("TOWER_WEBHOOK_ALLOW") {
            None => flagtower_core::destinations::Destinations::public(),
            Some(v) => flagtower_core::destinations::Destinations::parse(&v)
                .map_err(|message| ConfigError { variable: "TOWER_WEBHOOK_ALLOW", message })?,
        };
        let rate_limit = match get("TOWER_RATE_LIMIT").as_deref().map(str::trim) {
            None => Some(crate::RateLimit::DEFAULT),
            Some("off") => None,
            Some(v) => Some(crate::RateLimit::per_second(
                v.parse::<u32>().ok().filter(|n| (1..=1_000_000).contains(n)).ok_or_else(|| {
                    ConfigError {
                        variable: "TOWER_RATE_LIMIT",
                        message: format!(
                            "`{v}` is not `off` or a number of changes a second (1 to 1000000)"
                        ),
                    }
                })?,
            )),
        };
        Ok(Self {
            bind,
            port,
            store_url,
            nats,
            metrics,
            breaker,
            bucketing,
            dashboard_dir,
            max_connections,
            max_streams,
            read_model_bytes,
            allowed_hosts,
            admin_tokens,
            session_idle: std::time::Duration::from_secs(session_minutes as u64 * 60),
            public_url,
            webhook_allow,
            rate_limit,
        })
    }

    fn admin_tokens(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<crate::AdminTokens, ConfigError> {
        let (variable, list) = match (get("TOWER_ADMIN_TOKENS"), get("TOWER_ADMIN_TOKENS_FILE")) {
            (None, None) => return Ok(crate::AdminTokens::none()),
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    variable: "TOWER_ADMIN_TOKENS_FILE",
                    message: "set TOWER_ADMIN_TOKENS or TOWER_ADMIN_TOKENS_FILE, not both"
                        .to_owned(),
                });
            }
            (Some(list), None) => ("TOWER_ADMIN_TOKENS", list),
            (None, Some(path)) => {
                let list = std::fs::read_to_string(path.trim()).map_err(|e| ConfigError {
                    variable: "TOWER_ADMIN_TOKENS_FILE",
                    message: format!("cannot read {}: {e}", path.trim()),
                })?;
                ("TOWER_ADMIN_TOKENS_FILE", list)
            }
        };
        let tokens = crate::AdminTokens::parse(&list)
            .map_err(|message| ConfigError { variable, message })?;
        if tokens.is_empty() {
            return Err(ConfigError { variable, message: "holds no name:secret entry".to_owned() });
        }
        Ok(tokens)
    }

    fn breaker(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<flagtower_core::breaker::BreakerSettings>, ConfigError> {
        match get("TOWER_BREAKER").as_deref().map(str::trim) {
            None | Some("on") => {}
            Some("off") => return Ok(None),
            Some(other) => {
                return Err(ConfigError {
                    variable: "TOWER_BREAKER",
                    message: format!("`{other}` is not `on` or `off`"),
                });
            }
        }
        let number = |variable: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(v) => {
                    v.trim().parse::<u64>().ok().filter(|n| *n >= min).ok_or_else(|| ConfigError {
                        variable,
                        message: format!("`{v}` is not a whole number of at least {min}"),
                    })
                }
            }
        };
        let d = flagtower_core::breaker::BreakerSettings::default();
        let alpha_ppm = match get("TOWER_BREAKER_ALPHA") {
            None => d.alpha_ppm,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|a| (0.000_001..=0.5).contains(a))
                .map(|a| (a * 1e6).round() as u32)
                .ok_or_else(|| ConfigError {
                    variable: "TOWER_BREAKER_ALPHA",
                    message: format!("`{v}` is not a probability from 0.000001 to 0.5"),
                })?,
        };
        Ok(Some(flagtower_core::breaker::BreakerSettings {
            interval_ms: number("TOWER_BREAKER_INTERVAL_MS", d.interval_ms, 10)?,
            window_ms: number("TOWER_BREAKER_WINDOW_MS", d.window_ms, 100)?,
            min_requests: number("TOWER_BREAKER_MIN_REQUESTS", d.min_requests, 1)?,
            alpha_ppm,
        }))
    }

    fn metrics(
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Option<MetricsConfig>, ConfigError> {
        let (variable, raw) = match get("TOWER_METRICS_URL")
            .map(|v| ("TOWER_METRICS_URL", v))
            .or_else(|| get("REDIS_SERVER").map(|v| ("REDIS_SERVER", v)))
        {
            None => return Ok(None),
            Some(found) => found,
        };
        if !cfg!(feature = "redis") {
            return Err(ConfigError {
                variable,
                message: "this build has no `redis` support; unset it to use in-memory metrics"
                    .to_owned(),
            });
        }
        let raw = raw.trim().to_owned();
        let url = if raw.starts_with('{') && variable == "REDIS_SERVER" {
            // The original Tower's form: node-redis options as JSON.
            node_redis_url(&raw).map_err(|message| ConfigError { variable, message })?
        } else if raw.starts_with("redis://") {
            raw
        } else {
            return Err(ConfigError {
                variable,
                message: format!(
                    "`{}` is not a redis:// URL{}",
                    redact_url(&raw),
                    if variable == "REDIS_SERVER" { " or node-redis JSON options" } else { "" }
                ),
            });
        };
        let retention_ms = match get("TOWER_METRICS_RETENTION_MS") {
            None => 3_600_000,
            Some(v) => {
                v.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| ConfigError {
                    variable: "TOWER_METRICS_RETENTION_MS",
                    message: format!("`{v}` is not a positive number of milliseconds"),
                })?
            }
        };
        Ok(Some(MetricsConfig { url, retention_ms }))
    }
}

#[cfg(feature = "redis")]
fn node_redis_url(json: &str) -> Result<String, String> {
    flagtower_adapters::redis::node_redis_url(json)
}

#[cfg(not(feature = "redis"))]
fn node_redis_url(_: &str) -> Result<String, String> {
    Err("this build has no `redis` support".to_owned())
}

/// Where success/failure counts live, when not in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `TOWER_METRICS_URL` (or `REDIS_SERVER`), as a redis:// URL.
    pub url: String,
    /// `TOWER_METRICS_RETENTION_MS` (default one hour).
    pub retention_ms: u64,
}

impl fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("url", &redact_url(&self.url))
            .field("retention_ms", &self.retention_ms)
            .finish()
    }
}

/// Where rulesets are published, when not in-process.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// `TOWER_NATS_URL` (or `NATS_SERVER`).
    pub url: String,
    /// `TOWER_NATS_TOKEN` (or `SDK_KEY`, as in the original Tower's sample configuration).
    pub token: Option<String>,
    /// `TOWER_NATS_STREAM` (default `flags_ruleset`).
    pub stream: String,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("stream", &self.stream)
            .finish()
    }
}

/// What of a URL may be logged: scheme, host and port (`flagtower_core::redact::url`).
pub fn redact_url(url: &str) -> String {
    flagtower_core::redact::url(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_env(|k| env.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(
            (c.port, c.bind.to_string(), c.store_url.as_str()),
            (3001, "127.0.0.1".into(), "sqlite://tower.db")
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(cfg(&[("PORT", "http")]).unwrap_err().variable, "PORT");
        assert_eq!(cfg(&[("PORT", "70000")]).unwrap_err().variable, "PORT");
        assert_eq!(cfg(&[("TOWER_BIND", "localhost:1")]).unwrap_err().variable, "TOWER_BIND");
        assert_eq!(
            cfg(&[("TOWER_STORE_URL", "mysql://x")]).unwrap_err().variable,
            "TOWER_STORE_URL"
        );
        let e = cfg(&[("TOWER_STORE_URL", "foo://u:hunter2@h/db")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(cfg(&[("NATS_SERVER", "http://x")]).unwrap_err().variable, "NATS_SERVER");
        assert_eq!(
            cfg(&[("TOWER_NATS_URL", "nats://x"), ("TOWER_NATS_STREAM", "a.b")])
                .unwrap_err()
                .variable,
            "TOWER_NATS_STREAM"
        );
    }

    #[test]
    fn postgres_comes_from_the_url_or_the_libpq_variables() {
        let c = cfg(&[("TOWER_STORE_URL", "postgres://u:hunter2@h/db")]).unwrap();
        assert_eq!(c.store_url, "postgres://u:hunter2@h/db");
        let c = cfg(&[("PGHOST", "localhost"), ("PGDATABASE", "tower")]).unwrap();
        assert_eq!(c.store_url, "postgres://");
        let c = cfg(&[("PGHOST", "localhost"), ("TOWER_STORE_URL", "sqlite://x.db")]).unwrap();
        assert_eq!(c.store_url, "sqlite://x.db", "an explicit URL wins");
    }

    #[test]
    fn nats_comes_from_its_variables_or_the_seeds() {
        assert_eq!(cfg(&[]).unwrap().nats, None);
        let c = cfg(&[("NATS_SERVER", "nats://127.0.0.1:4222"), ("SDK_KEY", "myToken")]).unwrap();
        let n = c.nats.unwrap();
        assert_eq!(
            (n.url.as_str(), n.token.as_deref(), n.stream.as_str()),
            ("nats://127.0.0.1:4222", Some("myToken"), "flags_ruleset")
        );
        let c = cfg(&[
            ("TOWER_NATS_URL", "nats://a:4222"),
            ("NATS_SERVER", "nats://b:4222"),
            ("TOWER_NATS_TOKEN", "t"),
            ("SDK_KEY", "s"),
            ("TOWER_NATS_STREAM", "rules"),
        ])
        .unwrap();
        let n = c.nats.unwrap();
        assert_eq!(
            (n.url.as_str(), n.token.as_deref(), n.stream.as_str()),
            ("nats://a:4222", Some("t"), "rules")
        );
    }

    #[test]
    fn metrics_come_from_a_url_or_the_seeds_json() {
        assert_eq!(cfg(&[]).unwrap().metrics, None);
        let m = cfg(&[("REDIS_SERVER", r#"{"socket":{"host":"localhost"}}"#)])
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!((m.url.as_str(), m.retention_ms), ("redis://localhost:6379", 3_600_000));
        let m = cfg(&[
            ("TOWER_METRICS_URL", "redis://r:6380/1"),
            ("TOWER_METRICS_RETENTION_MS", "60000"),
        ])
        .unwrap()
        .metrics
        .unwrap();
        assert_eq!((m.url.as_str(), m.retention_ms), ("redis://r:6380/1", 60_000));
        let m = cfg(&[("REDIS_SERVER", r#"{"socket":{"host":"h","port":6390},"password":"pw"}"#)])
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(m.url, "redis://:pw@h:6390");
        assert_eq!(
            cfg(&[("TOWER_METRICS_URL", "http://x")]).unwrap_err().variable,
            "TOWER_METRICS_URL"
        );
        assert_eq!(cfg(&[("REDIS_SERVER", "{nope")]).unwrap_err().variable, "REDIS_SERVER");
        let e = cfg(&[("TOWER_METRICS_URL", "redis://x"), ("TOWER_METRICS_RETENTION_MS", "0")])
            .unwrap_err();
        assert_eq!(e.variable, "TOWER_METRICS_RETENTION_MS");
    }

    #[test]
    fn the_breaker_is_on_unless_turned_off() {
        let b = cfg(&[]).unwrap().breaker.unwrap();
        assert_eq!(
            (b.interval_ms, b.window_ms, b.min_requests, b.alpha_ppm),
            (1_000, 60_000, 10, 10_000)
        );
        assert_eq!(cfg(&[("TOWER_BREAKER", "off")]).unwrap().breaker, None);
        let b = cfg(&[("TOWER_BREAKER_INTERVAL_MS", "250"), ("TOWER_BREAKER_MIN_REQUESTS", "3")])
            .unwrap()
            .breaker
            .unwrap();
        assert_eq!((b.interval_ms, b.min_requests), (250, 3));
        assert_eq!(cfg(&[("TOWER_BREAKER", "maybe")]).unwrap_err().variable, "TOWER_BREAKER");
        assert_eq!(
            cfg(&[("TOWER_BREAKER_INTERVAL_MS", "0")]).unwrap_err().variable,
            "TOWER_BREAKER_INTERVAL_MS"
        );
        assert_eq!(
            cfg(&[("TOWER_BREAKER_MIN_REQUESTS", "x")]).unwrap_err().variable,
            "TOWER_BREAKER_MIN_REQUESTS"
        );
        assert_eq!(cfg(&[]).unwrap().bucketing, flagtower_core::Bucketing::Tower);
        let c = cfg(&[("TOWER_ROLLOUT_HASH", "tailslide")]).unwrap();
        assert_eq!(c.bucketing, flagtower_core::Bucketing::Tailslide);
        assert_eq!(
            cfg(&[("TOWER_ROLLOUT_HASH", "md5")]).unwrap_err().variable,
            "TOWER_ROLLOUT_HASH"
        );
        let b = cfg(&[("TOWER_BREAKER_ALPHA", "0.001")]).unwrap().breaker.unwrap();
        assert_eq!(b.alpha_ppm, 1_000);
        for bad in ["0", "0.7", "-0.01", "often"] {
            let e = cfg(&[("TOWER_BREAKER_ALPHA", bad)]).unwrap_err();
            assert_eq!(e.variable, "TOWER_BREAKER_ALPHA", "{bad}");
        }
    }

    #[test]
    fn limits_are_positive_numbers() {
        let c = cfg(&[("TOWER_MAX_CONNECTIONS", "100"), ("TOWER_MAX_STREAMS", " 20 ")]).unwrap();
        assert_eq!((c.max_connections, c.max_streams), (100, 20));
        assert_eq!(cfg(&[]).unwrap().max_streams, crate::MAX_STREAMS);
        assert_eq!(cfg(&[]).unwrap().read_model_bytes, crate::READ_MODEL_BYTES);
        assert_eq!(cfg(&[("TOWER_READ_MODEL_BYTES", "0")]).unwrap().read_model_bytes, 0);
        assert_eq!(
            cfg(&[("TOWER_READ_MODEL_BYTES", "lots")]).unwrap_err().variable,
            "TOWER_READ_MODEL_BYTES"
        );
        for bad in ["0", "-1", "many"] {
            assert_eq!(
                cfg(&[("TOWER_MAX_STREAMS", bad)]).unwrap_err().variable,
                "TOWER_MAX_STREAMS"
            );
        }
    }

    #[test]
    fn admin_tokens_come_from_the_variable_or_a_file() {
        assert!(!cfg(&[]).unwrap().admin_tokens.enabled());
        let c = cfg(&[("TOWER_ADMIN_TOKENS", "ops:0123456789abcdef,ci:fedcba9876543210")]).unwrap();
        assert_eq!(c.admin_tokens.len(), 2);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "# who\nops:0123456789abcdef\n\n").unwrap();
        let path = file.path().to_str().unwrap();
        assert_eq!(cfg(&[("TOWER_ADMIN_TOKENS_FILE", path)]).unwrap().admin_tokens.len(), 1);
        for (k, v) in [
            ("TOWER_ADMIN_TOKENS", "ops:short"),
            ("TOWER_ADMIN_TOKENS", ","),
            ("TOWER_ADMIN_TOKENS_FILE", "/nonexistent/tokens"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert_eq!(e.variable, k);
        }
        let e =
            cfg(&[("TOWER_ADMIN_TOKENS", "a:0123456789abcdef"), ("TOWER_ADMIN_TOKENS_FILE", path)])
                .unwrap_err();
        assert_eq!(e.variable, "TOWER_ADMIN_TOKENS_FILE");
        assert_eq!(
            cfg(&[("TOWER_SESSION_IDLE_MINUTES", "30")]).unwrap().session_idle.as_secs(),
            1800
        );
        assert_eq!(cfg(&[("TOWER_PUBLIC_URL", "flags")]).unwrap_err().variable, "TOWER_PUBLIC_URL");
        assert_eq!(cfg(&[]).unwrap().rate_limit, Some(crate::RateLimit::DEFAULT));
        assert_eq!(cfg(&[("TOWER_RATE_LIMIT", "off")]).unwrap().rate_limit, None);
        assert_eq!(
            cfg(&[("TOWER_RATE_LIMIT", "7")]).unwrap().rate_limit,
            Some(crate::RateLimit::per_second(7))
        );
        assert_eq!(cfg(&[("TOWER_RATE_LIMIT", "0")]).unwrap_err().variable, "TOWER_RATE_LIMIT");
        let c = cfg(&[("TOWER_WEBHOOK_ALLOW", "10.0.0.0/8, hooks.internal")]).unwrap();
        assert!(c.webhook_allow.host_listed("hooks.internal"));
        assert_eq!(
            cfg(&[("TOWER_WEBHOOK_ALLOW", "10.0.0.0/99")]).unwrap_err().variable,
            "TOWER_WEBHOOK_ALLOW"
        );
    }

    #[test]
    fn other_machines_are_served_only_with_tokens_or_when_told() {
        let e = cfg(&[("TOWER_BIND", "0.0.0.0")]).unwrap_err();
        assert_eq!(e.variable, "TOWER_BIND");
        let m = e.to_string();
        assert!(
            m.contains("TOWER_ADMIN_TOKENS") && m.contains("TOWER_ALLOW_UNAUTHENTICATED=1"),
            "{m}"
        );
        assert!(cfg(&[("TOWER_BIND", "0.0.0.0"), ("TOWER_ALLOW_UNAUTHENTICATED", "1")]).is_ok());
        assert!(cfg(&[("TOWER_BIND", "::"), ("TOWER_ADMIN_TOKENS", "a:0123456789abcdef")]).is_ok());
        assert!(cfg(&[("TOWER_BIND", "::1")]).is_ok(), "loopback needs no token");
    }

    #[test]
    fn allowed_hosts_are_names() {
        let c =
            cfg(&[("TOWER_ALLOWED_HOSTS", " Flags.Example.com, tower.internal:8080 ,")]).unwrap();
        assert_eq!(c.allowed_hosts, ["flags.example.com", "tower.internal:8080"]);
        assert!(cfg(&[]).unwrap().allowed_hosts.is_empty());
        let e = cfg(&[("TOWER_ALLOWED_HOSTS", "https://flags.example.com/")]).unwrap_err();
        assert_eq!(e.variable, "TOWER_ALLOWED_HOSTS");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = Config {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 1,
            store_url: "postgres://tower:hunter2@db:5432/tower".into(),
            nats: Some(NatsConfig {
                url: "nats://u:pw@h:4222".into(),
                token: Some("s3cret".into()),
                stream: "x".into(),
            }),
            metrics: Some(MetricsConfig { url: "redis://:r3dispw@h:6379".into(), retention_ms: 1 }),
            breaker: None,
            bucketing: flagtower_core::Bucketing::Tower,
            dashboard_dir: None,
            max_connections: 1,
            max_streams: 1,
            read_model_bytes: 1,
            allowed_hosts: Vec::new(),
            admin_tokens: crate::AdminTokens::parse("ops:a-long-admin-secret-42").unwrap(),
            session_idle: std::time::Duration::from_secs(60),
            public_url: Some("https://u:urlpw@flags.example.com/".into()),
            webhook_allow: flagtower_core::destinations::Destinations::public(),
            rate_limit: None,
        };
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && d.contains("postgres://***@db:5432"), "{d}");
        assert!(!d.contains("s3cret") && !d.contains("pw@") && !d.contains("r3dispw"), "{d}");
        assert!(!d.contains("a-long-admin-secret") && d.contains("\"ops\""), "{d}");
        assert!(!d.contains("urlpw"), "{d}");
        assert_eq!(redact_url("redis://:tok@h:6379"), "redis://***@h:6379");
        assert_eq!(redact_url("nats://token@h"), "nats://***@h");
        assert_eq!(redact_url("postgres://db/tower?password=hunter2"), "postgres://db");
        assert_eq!(redact_url("sqlite://tower.db"), "sqlite://tower.db");
    }
}
