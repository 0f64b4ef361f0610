//! An HTTP load generator for Tower: N keep-alive connections, each sending requests back to back
//! for a fixed time; prints throughput and latency percentiles.
//!
//! ```text
//! cargo run --release -p flagtower-benches --bin loadgen -- [--url URL | --store sqlite|postgres
//!     [--nats] [--redis] [--heavy-reads K]]
//!     [--scenario get-flag|toggle|toggle-spread|events|ofrep|ofrep-bulk]
//!     [--connections N] [--heavy H] [--seconds S] [--warmup S]
//! ```
//!
//! `--heavy H` adds H connections reading pages of 1 000 log entries (`GET /api/logs?limit=1000`,
//! after 2 000 toggles of setup) beside the scenario's, and reports them on a line of their own;
//! `--heavy-reads K` serves K of those at once (the server's `heavy_reads`, default one per core).
//!
//! Without `--url` it starts Tower in this process, on its own two-thread runtime beside the load
//! generator's one-thread runtime (both share the machine's cores, as wrk beside a server would),
//! on a temporary SQLite file (`--store sqlite`, the default) or on a fresh database of the
//! PostgreSQL named by `TOWER_TEST_POSTGRES_URL` (`--store postgres`; default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards; with `--nats` it publishes
//! every ruleset to a private nats-server (JetStream, file storage) instead of in-process; with
//! `--redis` it keeps metrics on a private RedisTimeSeries (`TOWER_TEST_REDIS_SERVER`, see
//! `scripts/redis-timeseries`). With `--url` it drives a running Tower.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

struct Args {
    url: Option<String>,
    store: String,
    nats: bool,
    redis: bool,
    scenario: String,
    connections: usize,
    seconds: u64,
    warmup: u64,
    heavy: usize,
    heavy_reads: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        url: None,
        store: "sqlite".into(),
        nats: false,
        redis: false,
        scenario: "get-flag".into(),
        connections: 32,
        seconds: 10,
        warmup: 2,
        heavy: 0,
        heavy_reads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = Some(v()),
            "--store" => a.store = v(),
            "--nats" => a.nats = true,
            "--redis" => a.redis = true,
            "--scenario" => a.scenario = v(),
            "--connections" => a.connections = v().parse().expect("--connections N"),
            "--seconds" => a.seconds = v().parse().expect("--seconds S"),
            "--warmup" => a.warmup = v().parse().expect("--warmup S"),
            "--heavy" => a.heavy = v().parse().expect("--heavy H"),
            "--heavy-reads" => a.heavy_reads = Some(v().parse().expect("--heavy-reads K")),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let a = args();
    let mut bench_store = None;
    let mut nats_server = None;
    let mut redis_server = None;
    let server_rt;
    let url = match &a.url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            server_rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            let bench = server_rt.block_on(flagtower_benches::open_store(&a.store));
            let (store, what) = (Arc::clone(&bench.store), bench.description.clone());
            bench_store = Some(bench);
            nats_server = a.nats.then(flagtower_benches::nats_server::NatsServer::start);
            let addr = server_rt.block_on(async {
                let mut builder = flagtower_core::Tower::builder(store);
                if a.redis {
                    let server = flagtower_testkit::RedisServer::start()
                        .await
                        .expect("a RedisTimeSeries server (TOWER_TEST_REDIS_SERVER)");
                    let options = flagtower_adapters::redis::RedisOptions::new(server.url());
                    let metrics = flagtower_adapters::redis::RedisMetrics::connect(&options)
                        .await
                        .expect("Redis");
                    builder = builder.metrics(Arc::new(metrics));
                    redis_server = Some(server);
                }
                if let Some(n) = &nats_server {
                    let options = flagtower_adapters::nats::NatsOptions::new(&n.url);
                    let publisher = flagtower_adapters::nats::NatsPublisher::connect(&options)
                        .await
                        .expect("NATS");
                    builder = builder.publisher(Arc::new(publisher));
                }
                let tower = builder.start().await.expect("start");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                // No per-client limit: the bench is one client making changes as fast as it can.
                let mut options =
                    flagtower_http::ServerOptions { rate_limit: None, ..Default::default() };
                if let Some(k) = a.heavy_reads {
                    options.heavy_reads = k;
                }
                tokio::spawn(flagtower_http::run_with(
                    listener,
                    tower,
                    std::future::pending(),
                    options,
                ));
                addr
            });
            eprintln!(
                "started Tower in-process at http://{addr} on {what}{}",
                if a.nats { ", publishing to NATS JetStream" } else { "" }
            );
            format!("http://{addr}")
        }
    };
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    rt.block_on(drive(&a, &url));
    drop(bench_store);
    drop(nats_server);
    drop(redis_server);
}

async fn drive(a: &Args, url: &str) {
    let authority = url.strip_prefix("http://").expect("http:// URL").to_owned();
    // Setup through the API: an app with a flag that has a few log entries.
    let mut setup = Conn::open(&authority).await;
    let title = format!("bench-{}", std::process::id());
    let app = setup.call("POST", "/api/apps", Some(serde_json::json!({"title": title}))).await;
    let app = app["payload"]["id"].as_i64().expect("app id");
    let flag = setup
        .call(
            "POST",
            &format!("/api/apps/{app}/flags"),
            Some(serde_json::json!({"title": "bench-flag", "rollout_percentage": 50, "is_active": true})),
        )
        .await;
    let flag = flag["payload"]["id"].as_i64().expect("flag id");
    let toggles = if a.heavy > 0 { 2000 } else { 4 };
    for _ in 0..toggles {
        setup.call("PATCH", &format!("/api/flags/{flag}/toggle"), None).await;
    }
    if a.scenario == "ofrep-bulk" {
        // 100 flags in all, for the bulk evaluation.
        for i in 1..100 {
            let body = serde_json::json!({"title": format!("flag-{i}"), "rollout_percentage": i, "is_active": true});
            setup.call("POST", &format!("/api/apps/{app}/flags"), Some(body)).await;
        }
    }
    // `toggle-spread`: 100 apps of one flag each; every connection toggles them in turn,
    // starting at its own, so changes of different apps commit side by side.
    let mut spread = Vec::new();
    if a.scenario == "toggle-spread" {
        spread.push(format!("/api/flags/{flag}/toggle"));
        for i in 1..100 {
            let title = format!("spread-{}-{i}", std::process::id());
            let app =
                setup.call("POST", "/api/apps", Some(serde_json::json!({"title": title}))).await;
            let app = app["payload"]["id"].as_i64().expect("app id");
            let body = serde_json::json!({"title": "f", "is_active": true});
            let f = setup.call("POST", &format!("/api/apps/{app}/flags"), Some(body)).await;
            spread.push(format!("/api/flags/{}/toggle", f["payload"]["id"].as_i64().expect("id")));
        }
    }
    let (method, path) = match a.scenario.as_str() {
        "get-flag" => ("GET", format!("/api/flags/{flag}")),
        "toggle" => ("PATCH", format!("/api/flags/{flag}/toggle")),
        "toggle-spread" => ("PATCH", "/api/flags/*/toggle (100 apps)".to_owned()),
        "events" => ("POST", format!("/api/flags/{flag}/events")),
        "ofrep" => ("POST", format!("/api/apps/{app}/ofrep/v1/evaluate/flags/bench-flag")),
        "ofrep-bulk" => ("POST", format!("/api/apps/{app}/ofrep/v1/evaluate/flags")),
        other => panic!(
            "unknown scenario {other}: get-flag, toggle, toggle-spread, events, ofrep or ofrep-bulk"
        ),
    };
    let ofrep = a.scenario.starts_with("ofrep");
    eprintln!(
        "{method} {path}: {} connections, {} s warm-up, {} s measured",
        a.connections, a.warmup, a.seconds
    );

    let start = Instant::now();
    let measure_from = start + Duration::from_secs(a.warmup);
    let end = measure_from + Duration::from_secs(a.seconds);
    let heavy = (0..a.heavy)
        .map(|_| {
            let authority = authority.clone();
            tokio::spawn(connection(
                authority,
                "GET",
                vec!["/api/logs?limit=1000".into()],
                false,
                measure_from,
                end,
            ))
        })
        .collect::<Vec<_>>();
    let tasks = (0..a.connections)
        .map(|i| {
            let authority = authority.clone();
            let paths = if spread.is_empty() {
                vec![path.clone()]
            } else {
                let n = spread.len();
                (0..n).map(|k| spread[(i * 13 + k) % n].clone()).collect()
            };
            tokio::spawn(connection(authority, method, paths, ofrep, measure_from, end))
        })
        .collect::<Vec<_>>();
    report(&a.scenario, a.connections, a.seconds, tasks).await;
    if a.heavy > 0 {
        report("heavy-logs-page", a.heavy, a.seconds, heavy).await;
    }
}

/// One connection's requests until `end`: the latencies (µs) of those sent after
/// `measure_from`, and how many of them failed.
async fn connection(
    authority: String,
    method: &'static str,
    paths: Vec<String>,
    ofrep: bool,
    measure_from: Instant,
    end: Instant,
) -> (Vec<u32>, u64) {
    let mut conn = Conn::open(&authority).await;
    let mut lat = Vec::with_capacity(200_000);
    let mut errors = 0u64;
    let mut sent = 0usize;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let body = (method == "POST").then(|| {
            if ofrep {
                serde_json::json!({"context": {"targetingKey": format!("user-{}", lat.len() % 1000)}})
            } else {
                serde_json::json!({"success": 1})
            }
        });
        let path = &paths[sent % paths.len()];
        sent += 1;
        let ok = (200..300).contains(&conn.status(method, path, body).await);
        if t0 >= measure_from {
            lat.push(t0.elapsed().as_micros() as u32);
            errors += u64::from(!ok);
        }
    }
    (lat, errors)
}

async fn report(
    scenario: &str,
    connections: usize,
    seconds: u64,
    tasks: Vec<tokio::task::JoinHandle<(Vec<u32>, u64)>>,
) {
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("connection task");
        all.extend(lat);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    println!(
        "scenario={scenario} connections={connections} requests={} errors={errors} rps={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        all.len(),
        all.len() as f64 / seconds as f64,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0),
    );
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    authority: String,
    tx: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(authority: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let (tx, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Self { authority: authority.to_owned(), tx }
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(path).header("host", &self.authority);
        // Every change is declared JSON, body or not, as the API requires.
        if method != "GET" {
            b = b.header("content-type", "application/json");
        }
        let body = match body {
            Some(v) => Full::new(Bytes::from(v.to_string())),
            None => Full::new(Bytes::new()),
        };
        b.body(body).expect("request")
    }

    async fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Value {
        let req = self.request(method, path, body);
        let res = self.tx.send_request(req).await.expect("response");
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("JSON")
    }

    async fn status(&mut self, method: &str, path: &str, body: Option<Value>) -> u16 {
        let req = self.request(method, path, body);
        match self.tx.send_request(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                // Read the whole body so the connection can be reused.
                let _ = res.into_body().collect().await;
                status
            }
            Err(_) => 0,
        }
    }
}
