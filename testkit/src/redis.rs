//! Test support: private `redis-server` processes on free ports, that a test can kill and
//! restart.
//!
//! A server with time-series support comes from `TOWER_TEST_REDIS_SERVER`: a `redis-server` (or a
//! wrapper script around one) that loads the module by itself; `./scripts/test` prepares one.
//! When it is unset, [`RedisServer::start`] says so ([`crate::missing`]) and returns `None`. [`RedisServer::start_plain`]
//! starts a server without the module (Debian's `redis-server`), to check that Tower refuses it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming a time-series capable `redis-server`.
pub const SERVER_VAR: &str = "TOWER_TEST_REDIS_SERVER";

/// A private Redis.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    binary: String,
}

use crate::missing as skip;

impl RedisServer {
    /// A server with time-series support, or `None` (see the module docs).
    pub async fn start() -> Option<Self> {
        match std::env::var(SERVER_VAR).ok().filter(|v| !v.is_empty()) {
            Some(binary) => Some(Self::spawn_new(binary).await),
            None => {
                skip(&format!(
                    "{SERVER_VAR} is not set (no RedisTimeSeries server); run ./scripts/test, which prepares one"
                ));
                None
            }
        }
    }

    /// A server without the time-series module.
    pub async fn start_plain() -> Option<Self> {
        let binary = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file());
        match binary {
            Some(b) => Some(Self::spawn_new(b.to_owned()).await),
            None => {
                skip("no plain redis-server (Debian's redis-server package)");
                None
            }
        }
    }

    async fn spawn_new(binary: String) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self { child: None, port, binary };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start on port {}",
                self.binary,
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: it keeps nothing on disk).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A plain client connection.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One event written the way the Tailslide SDKs write it: `TS.ADD <flagId>:<status> <at> 1
/// LABELS status … flagId … appId …`, `at` being `*` (the server's clock) or milliseconds.
pub async fn sdk_ts_add(
    conn: &mut redis::aio::MultiplexedConnection,
    flag: i64,
    app: i64,
    status: &str,
    at: &str,
) {
    redis::cmd("TS.ADD")
        .arg(format!("{flag}:{status}"))
        .arg(at)
        .arg(1)
        .arg("LABELS")
        .arg("status")
        .arg(status)
        .arg("flagId")
        .arg(flag)
        .arg("appId")
        .arg(app)
        .query_async::<i64>(conn)
        .await
        .unwrap_or_else(|e| panic!("the SDK write to {flag}:{status} was refused: {e}"));
}
