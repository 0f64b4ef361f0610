//! # flagtower-testkit
//!
//! What Tower's tests and benches share, so no production module carries test infrastructure:
//!
//! | module | what |
//! |---|---|
//! | [`services`] | [`services_required`] and [`missing`]: a test whose service is absent says so loudly, and fails under `TOWER_REQUIRE_SERVICES=1` |
//! | [`postgres`] | [`TestDatabase`]: a fresh database per test on a real server, dropped afterwards |
//! | [`redis`] | [`RedisServer`]: private `redis-server` processes (with RedisTimeSeries, or plain); [`sdk_ts_add`], a write as the Tailslide SDKs make it |
//! | [`nats`] | [`NatsServer`] on the oldest or newest supported release ([`NatsVersion`]) |
//! | [`browser`] | headless Chromium through chromedriver |
//! | [`proxy`] | [`TcpProxy`]: an outage a test can cut and restore |
//! | [`webhook`] | [`WebhookReceiver`]: records what webhooks POST |
//! | [`http`] | [`Client`] (a real HTTP/1.1 client), [`Reply`], [`EventStream`] (server-sent events) |
//! | [`process`] | [`TowerProcess`] (the `tower` binary as users run it), [`Driver`] (a real SDK in a child process), [`program_from`] |
//!
//! It depends on no Tower crate, so each of them can use it in its own tests.
#![warn(missing_docs, unreachable_pub)]

pub mod browser;
pub mod http;
pub mod nats;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod services;
pub mod webhook;

pub use http::{Client, Event, EventStream, Reply};
pub use nats::{NatsServer, NatsVersion};
pub use postgres::TestDatabase;
pub use process::{Driver, TowerProcess};
pub use proxy::{TcpProxy, url_with_addr};
pub use redis::{RedisServer, sdk_ts_add};
pub use services::{missing, program_from, services_required};
pub use webhook::WebhookReceiver;
