//! The relay keeps every app moving when one of them cannot be published: a publisher that
//! refuses one app (as a broker would refuse a subject it does not allow) holds back nobody,
//! reports the app in `/healthz`, and retries it on its own backoff until it goes through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flagtower_core::{AppId, EncodedRuleset, InProcessPublisher, PublishError, Publisher};
use flagtower_tests::{Server, TestStore};
use serde_json::json;

/// The in-process publisher, except that one app's rulesets fail as unavailable while `broken`.
#[derive(Debug)]
struct FailingFor {
    app: AppId,
    broken: AtomicBool,
    inner: Arc<InProcessPublisher>,
}

#[async_trait]
impl Publisher for FailingFor {
    async fn publish(&self, ruleset: &EncodedRuleset) -> Result<(), PublishError> {
        if ruleset.app_id == self.app && self.broken.load(Ordering::SeqCst) {
            return Err(PublishError::Unavailable("this app's subject is unreachable".into()));
        }
        self.inner.publish(ruleset).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_app_is_retried_on_its_own_while_the_others_publish() {
    let store = TestStore::sqlite().await;
    let inner = InProcessPublisher::new();
    // App 2 (created second) is the one that fails.
    let publisher = Arc::new(FailingFor {
        app: AppId::new(2),
        broken: AtomicBool::new(true),
        inner: inner.clone(),
    });
    let server = Server::start_with(store.open().await, publisher.clone()).await;
    let c = server.client();
    let mut flags = Vec::new();
    for title in ["first", "failing", "third"] {
        let app = c.create("/api/apps", &json!({"title": title})).await;
        flags
            .push((app, c.create(&format!("/api/apps/{app}/flags"), &json!({"title": "f"})).await));
    }
    assert_eq!(flags[1].0, 2);
    let mut sub = inner.subscribe();
    // Changes to the healthy apps keep arriving while app 2 fails on every attempt.
    for round in 0..5 {
        for &(app, flag) in [&flags[0], &flags[2]] {
            c.patch_empty(&format!("/api/flags/{flag}/toggle")).await;
            c.patch_empty(&format!("/api/flags/{}/toggle", flags[1].1)).await;
            let start = Instant::now();
            loop {
                let r = tokio::time::timeout(Duration::from_secs(1), sub.next())
                    .await
                    .unwrap_or_else(|_| {
                        panic!("round {round}: app {app}'s change did not arrive within 1 s")
                    })
                    .unwrap();
                assert_ne!(r.app_id.get(), 2, "the failing app was never published");
                if r.app_id.get() == app && r.revision.get() == 2 + round {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(1));
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let h = c.get("/healthz").await;
    assert_eq!(
        (h.json["store"].clone(), h.json["publisher"].clone()),
        (json!("ok"), json!("degraded"))
    );
    let u = &h.json["unpublished"][0];
    assert_eq!(
        (u["app_id"].clone(), u["stage"].clone(), u["rejected"].clone()),
        (json!(2), json!("publisher"), json!(false)),
        "{}",
        h.json
    );
    assert!(u["reason"].as_str().unwrap().contains("unreachable"), "{u}");
    let attempts = u["attempts"].as_u64().unwrap();
    // Retried, but backed off rather than hammered: 50 ms doubling to 2 s gives a handful of
    // attempts in a second and a bit.
    assert!((3..=12).contains(&attempts), "attempts: {attempts}");
    assert_eq!(h.json["unpublished_count"], 1);

    // Once it can be published, its newest ruleset goes out and the report clears.
    publisher.broken.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = tokio::time::timeout_at(deadline.into(), sub.next())
            .await
            .expect("app 2 published")
            .unwrap();
        if r.app_id.get() == 2 {
            assert_eq!(r.revision.get(), 11, "its newest revision: creation and 10 toggles");
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.get("/healthz").await.json["publisher"] != "ok" {
        assert!(Instant::now() < deadline, "still degraded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}
