//! `tower`: the Tower server. Configuration comes from the environment; see README.md.

use std::process::ExitCode;

use flagtower_core::{ErrorChain, Tower};
use flagtower_http::Config;

const HELP: &str = r#"tower: feature flags with built-in circuit breakers

USAGE: tower [--help | --version]

Configuration (environment):
  PORT              HTTP port                               (default 3001)
  TOWER_BIND        listen address                          (default 127.0.0.1)
  TOWER_STORE_URL   sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=…
                    (default sqlite://tower.db; with PGHOST or PGDATABASE set, PostgreSQL
                    from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE)
  TOWER_NATS_URL    nats://HOST:4222 to publish rulesets to NATS JetStream (NATS_SERVER too);
                    unset: the in-process publisher
  TOWER_NATS_TOKEN  NATS token (SDK_KEY too)
  TOWER_NATS_STREAM JetStream stream                        (default flags_ruleset)
  TOWER_METRICS_URL redis://HOST:6379 for flag metrics on RedisTimeSeries (REDIS_SERVER too, also
                    as the original's JSON {"socket":{"host":…,"port":…}}); unset: in memory
  TOWER_METRICS_RETENTION_MS  retention of the series Tower creates (default 3600000)
  TOWER_BREAKER     on or off: the circuit breaker                 (default on)
  TOWER_BREAKER_INTERVAL_MS   how often flags are checked          (default 1000)
  TOWER_BREAKER_WINDOW_MS     how far back counts are read         (default 60000)
  TOWER_BREAKER_MIN_REQUESTS  fewest requests a trip can rest on   (default 10)
  TOWER_BREAKER_ALPHA         how sure a trip must be: 1 - alpha   (default 0.01)
  TOWER_ROLLOUT_HASH  tower or tailslide: how rollouts assign users (default tower)
  TOWER_ADMIN_TOKENS  name:secret,… admin tokens; when set every /api route needs one
                    (Authorization: Bearer SECRET, or the dashboard's sign-in)
  TOWER_ADMIN_TOKENS_FILE  a file of name:secret lines, instead of TOWER_ADMIN_TOKENS
  TOWER_ALLOW_UNAUTHENTICATED  1: serve a non-loopback TOWER_BIND without admin tokens
  TOWER_SESSION_IDLE_MINUTES  how long an unused dashboard session lasts (default 480)
  TOWER_PUBLIC_URL  the URL browsers use, when a proxy stands in front (https: Secure cookies)
  TOWER_WEBHOOK_ALLOW  CIDRs, addresses or host names webhooks may go to besides public
                    addresses (e.g. 10.0.0.0/8,hooks.internal)
  TOWER_RATE_LIMIT  changes a second per client address (burst ten times that), or off
                    (default 50)
  TOWER_ALLOWED_HOSTS  Host names answered besides the loopback ones (comma-separated)
  TOWER_MAX_CONNECTIONS  connections served at once                (default 768)
  TOWER_MAX_STREAMS  live streams open at once                    (default 512)
  TOWER_DASHBOARD_DIR  serve the dashboard's files from this directory (for editing them)
  TOWER_LOG_FORMAT  text or json: one JSON object per log line  (default text)
  TOWER_LOG         log filter, e.g. info or flagtower_http=debug (default info; RUST_LOG too)
"#;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--help" | "-h") => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("--version" | "-V") => {
            println!("tower {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("tower: unknown argument `{other}`\n\n{HELP}");
            return ExitCode::from(2);
        }
        None => {}
    }
    init_logging();
    let config = match Config::from_env(|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tower: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tower: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %ErrorChain(&*e), "tower stopped");
            eprintln!("tower: {}", ErrorChain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), flagtower_core::BoxError> {
    tracing::info!(config = ?config, "starting");
    let store =
        flagtower_adapters::open_store_with_env(&config.store_url, |k| std::env::var(k).ok())
            .await?;
    let mut builder = Tower::builder(store).bucketing(config.bucketing);
    if let Some(nats) = &config.nats {
        builder = builder.publisher(std::sync::Arc::new(connect_nats(nats).await?));
    }
    if let Some(metrics) = &config.metrics {
        builder = builder.metrics(connect_metrics(metrics).await?);
    }
    if let Some(settings) = config.breaker {
        builder = builder.breaker(settings);
        #[cfg(feature = "webhook")]
        {
            builder = builder.notifier(std::sync::Arc::new(
                flagtower_adapters::webhook::HttpNotifier::with_destinations(
                    config.webhook_allow.clone(),
                )?,
            ));
        }
    }
    let tower = builder.start().await?;
    let addr = std::net::SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let options = flagtower_http::ServerOptions {
        dashboard_dir: config.dashboard_dir.clone(),
        allowed_hosts: config.allowed_hosts.clone(),
        max_connections: config.max_connections,
        max_streams: config.max_streams,
        read_cache_bytes: config.read_model_bytes,
        admin_tokens: config.admin_tokens.clone(),
        session_idle: config.session_idle,
        public_url: config.public_url.clone(),
        webhook_allow: config.webhook_allow.clone(),
        rate_limit: config.rate_limit,
        ..Default::default()
    };
    flagtower_http::run_with(listener, tower.clone(), shutdown_signal(), options).await?;
    tower.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(feature = "nats")]
async fn connect_nats(
    nats: &flagtower_http::NatsConfig,
) -> Result<flagtower_adapters::nats::NatsPublisher, flagtower_core::BoxError> {
    let mut options = flagtower_adapters::nats::NatsOptions::new(&nats.url).stream(&nats.stream);
    if let Some(token) = &nats.token {
        options = options.token(token);
    }
    Ok(flagtower_adapters::nats::NatsPublisher::connect(&options).await?)
}

#[cfg(not(feature = "nats"))]
async fn connect_nats(
    _: &flagtower_http::NatsConfig,
) -> Result<flagtower_core::InProcessPublisher, flagtower_core::BoxError> {
    Err("this build has no NATS support".into())
}

#[cfg(feature = "redis")]
async fn connect_metrics(
    m: &flagtower_http::MetricsConfig,
) -> Result<std::sync::Arc<dyn flagtower_core::MetricsStore>, flagtower_core::BoxError> {
    let options = flagtower_adapters::redis::RedisOptions::new(&m.url).retention_ms(m.retention_ms);
    Ok(std::sync::Arc::new(flagtower_adapters::redis::RedisMetrics::connect(&options).await?))
}

#[cfg(not(feature = "redis"))]
async fn connect_metrics(
    _: &flagtower_http::MetricsConfig,
) -> Result<std::sync::Arc<dyn flagtower_core::MetricsStore>, flagtower_core::BoxError> {
    Err("this build has no Redis support".into())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("TOWER_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let filter: Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("tower: ignoring invalid TOWER_LOG `{spec}`: {e}");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let format = std::env::var("TOWER_LOG_FORMAT").unwrap_or_default();
    let json = match format.trim() {
        "" | "text" => false,
        "json" => true,
        other => {
            eprintln!("tower: ignoring invalid TOWER_LOG_FORMAT `{other}` (text or json)");
            false
        }
    };
    let layer = if json {
        // One JSON object per line: time, level, target, message and fields.
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    tracing_subscriber::registry().with(layer.with_filter(filter)).init();
}
