//! A restart on the same SQLite file keeps everything, and republishes every app's ruleset.

use flagtower_tests::{Server, TestStore, for_each_store};
use serde_json::{Value, json};

async fn everything(c: &flagtower_tests::Client) -> Value {
    let apps = c.get("/api/apps").await.payload().clone();
    let mut per_app = Vec::new();
    for app in apps.as_array().unwrap() {
        let id = app["id"].as_i64().unwrap();
        let flags = c.get(&format!("/api/apps/{id}/flags")).await.payload().clone();
        let mut full = Vec::new();
        for f in flags.as_array().unwrap() {
            full.push(c.get(&format!("/api/flags/{}", f["id"])).await.payload().clone());
        }
        per_app.push(json!({"app": app, "flags": full, "logs": c.get(&format!("/api/logs/{id}")).await.payload().clone()}));
    }
    json!({"apps": per_app, "logs": c.get("/api/logs").await.payload().clone(), "key": c.get("/api/keys").await.payload().clone()})
}

for_each_store!(a_restart_keeps_everything);

async fn a_restart_keeps_everything(store: TestStore) {
    let server = Server::start(&store).await;
    let c = server.client();
    let a = c.create("/api/apps", &json!({"title": "Checkout"})).await;
    let b = c.create("/api/apps", &json!({"title": "Search"})).await;
    let f = c
        .post(
            &format!("/api/apps/{a}/flags"),
            &json!({"title": "new-cart", "rollout_percentage": 12.5, "is_recoverable": true}),
        )
        .await
        .payload()["id"]
        .as_i64()
        .unwrap();
    c.post(&format!("/api/apps/{b}/flags"), &json!({"title": "fuzzy"})).await;
    c.patch_empty(&format!("/api/flags/{f}/toggle")).await;
    c.post_empty(&format!("/api/flags/circuit/{f}/open")).await;
    let gone = c.create(&format!("/api/apps/{a}/flags"), &json!({"title": "gone"})).await;
    c.delete(&format!("/api/flags/{gone}")).await;
    c.post_empty("/api/keys").await;
    let before = everything(&c).await;
    server.stop().await;

    let server = Server::start(&store).await;
    let c = server.client();
    assert_eq!(everything(&c).await, before);
    // New ids continue after the old ones: the deleted flag's id is not reused.
    let next = c.create(&format!("/api/apps/{a}/flags"), &json!({"title": "next"})).await;
    assert!(next > gone);
    // At start the relay republished every app's current ruleset.
    for app in [a, b] {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(r) = server.publisher().latest(flagtower_core::AppId::new(app)) {
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                if body == *c.get(&format!("/api/apps/{app}/flags")).await.payload() {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "app {app} was not republished");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    server.stop().await;
}
