//! Following one app's rulesets on NATS JetStream for a [`FlagClient`]: the newest ruleset at
//! start, then every new one, forever.
//!
//! - At start, the last good ruleset from the cache file (when one is given), so the client
//!   answers even if NATS is unreachable; each newer ruleset is written to it (atomically: a
//!   temporary file renamed over it) before the client answers with it.
//! - An ordered JetStream consumer on `apps.<appId>.>` delivering the last message per subject,
//!   then every new one without a gap; the client keeps the newest `Tower-Revision` only, so the
//!   manual and circuit subjects can arrive in any order.
//! - Connection failures are retried forever, with exponential backoff (100 ms to 5 s) and jitter;
//!   the first failure of an outage is logged as a warning, its end as info.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use flagtower_core::client::FlagClient;
use flagtower_core::{AppId, Revision, ruleset};
use futures_util::StreamExt;

use super::NatsOptions;

/// Starts following `client`'s app on the NATS of `options` (its stream and token), keeping the
/// last good ruleset in `cache_file` when given. The task runs until it is aborted.
pub fn follow(
    client: FlagClient,
    options: NatsOptions,
    cache_file: Option<PathBuf>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if let Some(path) = &cache_file {
            match read_cache(path, client.app()).await {
                Ok(Some((revision, flags))) => {
                    client.offer(client.app(), revision, &flags);
                    tracing::info!(app = %client.app(), revision = %revision, file = %path.display(), "flags loaded from the cache file");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot read the flag cache file")
                }
            }
        }
        let mut failures: u32 = 0;
        loop {
            let result = follow_once(&client, &options, cache_file.as_deref(), &mut failures).await;
            if let Err(e) = result {
                if failures == 0 {
                    tracing::warn!(app = %client.app(), target_nats = %options.target(), error = %e, "cannot follow the app's rulesets; retrying");
                }
                failures = failures.saturating_add(1);
            }
            tokio::time::sleep(backoff(failures)).await;
        }
    })
}

async fn follow_once(
    client: &FlagClient,
    options: &NatsOptions,
    cache_file: Option<&Path>,
    failures: &mut u32,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // `reconnected` is set when the connection comes back after a loss, however short.
    let (lost, reconnected) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (l, r) = (Arc::clone(&lost), Arc::clone(&reconnected));
    let nats = options
        .connect_options()
        .name("tower-flag-client")
        .event_callback(move |event| {
            let (l, r) = (Arc::clone(&l), Arc::clone(&r));
            async move {
                match event {
                    async_nats::Event::Disconnected => l.store(true, Ordering::SeqCst),
                    async_nats::Event::Connected if l.swap(false, Ordering::SeqCst) => {
                        r.store(true, Ordering::SeqCst)
                    }
                    _ => {}
                }
            }
        })
        .connect(options.url.as_str())
        .await?;
    let js = jetstream::new(nats);
    let stream = js.get_stream(&options.stream).await?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("apps.{}.>", client.app()),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    if *failures > 0 {
        tracing::info!(app = %client.app(), "following the app's rulesets again");
    }
    *failures = 0;
    // After a reconnection the server may have lost the consumer (a restart) and the ordered
    // consumer would notice only after two missed heartbeats (half a minute): start over at once.
    let mut watch = tokio::time::interval(Duration::from_millis(100));
    loop {
        let m = tokio::select! {
            m = messages.next() => m,
            _ = watch.tick() => {
                if reconnected.swap(false, Ordering::SeqCst) {
                    return Err("NATS reconnected: reading the newest ruleset again".into());
                }
                continue;
            }
        };
        let Some(m) = m else { break };
        // On any error (a missed heartbeat, a consumer the server lost) start over: a new
        // consumer delivers the newest ruleset again, so nothing is missed.
        let m = m?;
        let revision = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Tower-Revision"))
            .and_then(|v| v.as_str().parse().ok())
            .map_or(Revision::new(0), Revision::new);
        match ruleset::decode_flags(&m.payload) {
            // The file first, then the client: whatever the client answers with is in the file.
            Ok(flags) if client.revision().is_none_or(|held| revision > held) => {
                if let Some(path) = cache_file
                    && let Err(e) = write_cache(path, client.app(), revision, &m.payload).await
                {
                    tracing::warn!(file = %path.display(), error = %e, "cannot write the flag cache file");
                }
                client.offer(client.app(), revision, &flags);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(subject = %m.subject, error = %e, "undecodable ruleset skipped")
            }
        }
    }
    Ok(())
}

/// `{"app_id": …, "revision": …, "flags": [the ruleset as published]}`.
async fn write_cache(
    path: &Path,
    app: AppId,
    revision: Revision,
    body: &[u8],
) -> std::io::Result<()> {
    let flags = String::from_utf8_lossy(body);
    let text = format!("{{\"app_id\":{app},\"revision\":{revision},\"flags\":{flags}}}");
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, text).await?;
    tokio::fs::rename(&tmp, path).await
}

async fn read_cache(
    path: &Path,
    app: AppId,
) -> Result<Option<(Revision, Vec<flagtower_core::Flag>)>, Box<dyn std::error::Error + Send + Sync>>
{
    let text = match tokio::fs::read(path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let v: serde_json::Value = serde_json::from_slice(&text)?;
    if v["app_id"].as_i64() != Some(app.get()) {
        return Err(format!("the file holds app {}, not {app}", v["app_id"]).into());
    }
    let revision = Revision::new(v["revision"].as_u64().ok_or("no revision")?);
    let flags = ruleset::decode_flags(v["flags"].to_string().as_bytes())?;
    Ok(Some((revision, flags)))
}

/// 100 ms doubling to 5 s, ±25 % jitter from the clock's sub-second noise.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::from_millis(100);
    }
    let base =
        Duration::from_millis(100).saturating_mul(1 << failures.min(6)).min(Duration::from_secs(5));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    base.mul_f64(0.75 + f64::from(nanos % 1000) / 2000.0)
}
