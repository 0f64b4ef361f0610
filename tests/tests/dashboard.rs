//! The dashboard in a real browser: headless Chromium through chromedriver, against the real
//! server on a free port. Two browser sessions: one acts, the other watches its pages update
//! live. A screenshot of each screen goes to `target/screenshots/`.

use flagtower_tests::browser::Browser;
use flagtower_tests::{Client, Server, TestStore};
use serde_json::json;

/// Asks the page where it is.
async fn path(b: &Browser) -> String {
    b.client.current_url().await.expect("current url").path().to_owned()
}

/// Clicks `confirm-yes` in the confirmation dialog after checking its text.
async fn confirm(b: &Browser, says: &str) {
    b.wait_text("[data-testid=\"confirm-dialog\"]", "confirm dialog", |t| t.contains(says)).await;
    b.click("confirm-yes").await;
}

async fn attr(b: &Browser, css: &str, name: &str) -> Option<String> {
    b.find_css(css).await.attr(name).await.expect("attribute")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_apps_flags_circuits_and_logs_and_see_each_other_live() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let api: Client = server.client();
    let Some(a) = Browser::start().await else { return };
    let Some(b) = Browser::start().await else { return };
    let base = server.base.clone();

    // --- Apps: create, with the API's validation in the form first.
    a.open(&format!("{base}/")).await;
    b.open(&format!("{base}/")).await;
    a.wait_text("[data-testid=\"live-status\"]", "live", |t| t.contains("Live")).await;
    b.wait_text("[data-testid=\"live-status\"]", "live", |t| t.contains("Live")).await;
    a.click("new-app").await;
    a.fill("app-title", "   ").await;
    a.click("app-submit").await;
    a.wait_text("[data-testid=\"form-error\"]", "empty title refused", |t| !t.is_empty()).await;
    assert!(api.get("/api/apps").await.payload().as_array().unwrap().is_empty(), "nothing sent");
    a.fill("app-title", "Checkout").await;
    a.click("app-submit").await;
    a.wait_text("[data-testid=\"app-row\"]", "app listed", |t| t.contains("Checkout")).await;
    let apps = api.get("/api/apps").await;
    let app = apps.payload()[0]["id"].as_i64().expect("created through the API");
    // The watcher's list shows it without a reload.
    b.wait_text("[data-testid=\"app-row\"]", "app appears live", |t| t.contains("Checkout")).await;
    b.wait_text("[data-testid=\"app-counts\"]", "counts", |t| t.contains("0/0")).await;

    // A duplicate title gets the API's message.
    a.click("new-app").await;
    a.fill("app-title", "checkout").await;
    a.click("app-submit").await;
    a.wait_text("[data-testid=\"form-error\"]", "duplicate refused", |t| {
        t.contains("already exists")
    })
    .await;
    a.client.goto(&format!("{base}/")).await.unwrap();

    // --- App flags: create one with a whitelist and a webhook.
    a.click("app-link").await;
    a.find("new-flag").await;
    assert_eq!(path(&a).await, format!("/apps/{app}"));
    a.click("new-flag").await;
    a.fill("flag-title", "new-checkout").await;
    a.fill("flag-rollout", "101").await;
    a.click("flag-submit").await;
    a.wait_text("[data-testid=\"field-error\"]", "rollout refused", |t| {
        t.contains("must be a number from 0 to 100")
    })
    .await;
    a.fill("flag-rollout", "25").await;
    a.fill("flag-whitelist", "alice,bob").await;
    a.fill("flag-webhooks", "https://hooks.example.invalid/tower").await;
    a.click("flag-submit").await;
    a.wait_text("[data-testid=\"flag-row\"]", "flag listed", |t| t.contains("new-checkout")).await;
    let flags = api.get(&format!("/api/apps/{app}/flags")).await;
    let flag = flags.payload()[0].clone();
    let id = flag["id"].as_i64().unwrap();
    assert_eq!(flag["rollout_percentage"], 25);
    assert_eq!(flag["white_listed_users"], "alice,bob");
    assert_eq!(flag["webhooks"], "https://hooks.example.invalid/tower");
    assert_eq!(flag["is_active"], false);
    b.wait_text("[data-testid=\"app-counts\"]", "counts follow", |t| t.contains("0/1")).await;
    a.screenshot("app-flags").await;
    b.screenshot("apps").await;

    // The watcher opens the flag by its address (a deep link).
    b.open(&format!("{base}/flags/{id}")).await;
    b.wait_text("[data-testid=\"flag-title-heading\"]", "flag page", |t| {
        t.contains("new-checkout")
    })
    .await;
    b.wait_text("[data-testid=\"flag-state\"]", "off", |t| t == "Off").await;

    // --- Toggle in place on the list; the watcher's flag page follows.
    let toggle = "[data-testid=\"flag-row\"] [data-testid=\"flag-toggle\"]";
    assert_eq!(attr(&a, toggle, "aria-checked").await.as_deref(), Some("false"));
    a.find_css(toggle).await.click().await.unwrap();
    a.wait_text(toggle, "switch on", |t| t.contains("On")).await;
    assert_eq!(attr(&a, toggle, "aria-checked").await.as_deref(), Some("true"));
    b.wait_text("[data-testid=\"flag-state\"]", "on, live", |t| t == "On").await;
    assert_eq!(api.get(&format!("/api/flags/{id}")).await.payload()["is_active"], true);

    // --- Flag page: edit.
    a.click("flag-link").await;
    a.wait_text("[data-testid=\"flag-title-heading\"]", "flag page", |t| {
        t.contains("new-checkout")
    })
    .await;
    a.click("edit-flag").await;
    a.fill("flag-rollout", "50").await;
    a.fill("flag-description", "The new checkout flow").await;
    a.click("flag-submit").await;
    let rollout = "[data-testid=\"flag-settings\"] [data-field=\"rollout_percentage\"]";
    a.wait_text(rollout, "rollout saved", |t| t.contains("50")).await;
    b.wait_text(rollout, "rollout, live", |t| t.contains("50")).await;
    let saved = api.get(&format!("/api/flags/{id}")).await;
    assert_eq!(saved.payload()["rollout_percentage"], 50);
    assert_eq!(saved.payload()["description"], "The new checkout flow");
    assert_eq!(saved.payload()["white_listed_users"], "alice,bob", "untouched fields kept");

    // The log timeline, newest first, on both pages.
    for page in [&a, &b] {
        page.wait_count("[data-testid=\"flag-logs\"] [data-testid=\"log-entry\"]", 3).await;
        let first =
            attr(page, "[data-testid=\"flag-logs\"] [data-testid=\"log-entry\"]", "data-action");
        assert_eq!(first.await.as_deref(), Some("update"));
    }

    // --- Trip and close the circuit.
    a.click("trip-circuit").await;
    a.wait_text("[data-testid=\"flag-circuit\"]", "open", |t| t.contains("Open")).await;
    b.wait_text("[data-testid=\"flag-circuit\"]", "open, live", |t| t.contains("Open")).await;
    b.wait_text("[data-testid=\"flag-state\"]", "off, live", |t| t == "Off").await;
    // Circuit health: counts reported for the flag show in the charts.
    for (success, failure) in [(180, 20), (95, 5)] {
        let r = api
            .post(
                &format!("/api/flags/{id}/events"),
                &json!({"success": success, "failure": failure}),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    a.click("window-30s").await;
    a.wait_text("main", "counts charted", |t| {
        t.contains("275 successful") && t.contains("25 failed")
    })
    .await;
    a.screenshot("flag").await;
    a.click("close-circuit").await;
    a.wait_text("[data-testid=\"flag-circuit\"]", "closed", |t| t.contains("Closed")).await;
    b.wait_text("[data-testid=\"flag-circuit\"]", "closed, live", |t| t.contains("Closed")).await;
    let logs = api.get(&format!("/api/flags/{id}")).await;
    let actions: Vec<_> = logs.payload()["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action_type"].clone())
        .collect();
    assert_eq!(
        actions,
        [
            json!("create"),
            json!("flag_on"),
            json!("update"),
            json!("circuit_open"),
            json!("circuit_close")
        ]
    );
    b.wait_count("[data-testid=\"flag-logs\"] [data-testid=\"log-entry\"]", 5).await;

    // --- Logs: everything, then filtered.
    a.click("nav-logs").await;
    a.wait_count("[data-testid=\"log-row\"]", 5).await;
    a.screenshot("logs").await;
    let filter = a.find("log-filter").await;
    filter.select_by_value("circuit_open").await.unwrap();
    a.wait_count("[data-testid=\"log-row\"]", 1).await;
    assert!(path(&a).await.starts_with("/logs"));
    let url = a.client.current_url().await.unwrap();
    assert!(
        url.query().unwrap_or("").contains("action=circuit_open"),
        "the filter is in the address: {url}"
    );
    a.click("log-flag-link").await;
    a.wait_text("[data-testid=\"flag-title-heading\"]", "log links to flag", |t| {
        t.contains("new-checkout")
    })
    .await;

    // --- SDK key: copy is offered; regenerating asks first.
    a.click("nav-sdk-key").await;
    let old = api.get("/api/keys").await.payload()["id"].as_str().unwrap().to_owned();
    a.wait_text("[data-testid=\"sdk-key-value\"]", "key shown", |t| t == old).await;
    a.find("copy-key").await;
    a.screenshot("sdk-key").await;
    a.click("regenerate-key").await;
    confirm(&a, "").await;
    let new = loop {
        let k = api.get("/api/keys").await.payload()["id"].as_str().unwrap().to_owned();
        if k != old {
            break k;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    a.wait_text("[data-testid=\"sdk-key-value\"]", "new key shown", |t| t == new).await;

    // --- Delete the flag (confirmed); the watcher's page says it is gone; the log keeps it.
    a.open(&format!("{base}/flags/{id}")).await;
    a.click("delete-flag").await;
    confirm(&a, "new-checkout").await;
    b.wait_text("main", "watcher sees the deletion", |t| {
        t.to_lowercase().contains("deleted") || t.to_lowercase().contains("not found")
    })
    .await;
    assert_eq!(api.get(&format!("/api/flags/{id}")).await.status, 404);
    a.open(&format!("{base}/logs")).await;
    a.wait_text("[data-testid=\"log-row\"]", "deleted flag marked", |t| t.contains("deleted"))
        .await;
    a.find("log-flag-deleted").await;

    // --- Delete the app (confirmed, warning that its flags go with it).
    b.open(&format!("{base}/")).await;
    b.wait_text("[data-testid=\"app-row\"]", "app listed", |t| t.contains("Checkout")).await;
    a.open(&format!("{base}/")).await;
    a.click("delete-app").await;
    confirm(&a, "flags").await;
    a.wait_count("[data-testid=\"app-row\"]", 0).await;
    b.wait_count("[data-testid=\"app-row\"]", 0).await;
    assert!(api.get("/api/apps").await.payload().as_array().unwrap().is_empty());

    // --- Unknown pages.
    a.open(&format!("{base}/no/such/page")).await;
    a.find("not-found").await;
    a.screenshot("not-found").await;
    a.open(&format!("{base}/flags/999999")).await;
    a.find("not-found").await;

    for browser in [&a, &b] {
        let errors = browser.console_errors().await;
        assert!(errors.is_empty(), "errors in the page: {errors:?}");
    }
    a.close().await;
    b.close().await;
    server.stop().await;
}

/// Browsers give a server six connections over HTTP/1.1; a stream per tab would starve the
/// seventh. The dashboard's tabs share one stream, and when the tab holding it closes another
/// takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tabs_share_one_live_stream() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let api = server.client();
    let Some(b) = Browser::start().await else { return };
    let base = server.base.clone();
    let first = b.client.window().await.unwrap();
    b.open(&format!("{base}/")).await;
    b.wait_text("[data-testid=\"live-status\"]", "live", |t| t.contains("Live")).await;
    let mut tabs = vec![first];
    for _ in 0..8 {
        let tab = b.client.new_window(true).await.unwrap().handle;
        b.client.switch_to_window(tab.clone()).await.unwrap();
        b.open(&format!("{base}/")).await;
        b.wait_text("[data-testid=\"live-status\"]", "live in every tab", |t| t.contains("Live"))
            .await;
        tabs.push(tab);
    }
    // The ninth tab works and follows changes.
    b.find("new-app").await;
    api.create("/api/apps", &json!({"title": "Seen by the ninth tab"})).await;
    b.wait_text("[data-testid=\"app-row\"]", "change reaches the last tab", |t| {
        t.contains("ninth")
    })
    .await;

    // Close the tab holding the stream (the first); the others still follow changes.
    b.client.switch_to_window(tabs[0].clone()).await.unwrap();
    b.client.close_window().await.unwrap();
    b.client.switch_to_window(tabs[8].clone()).await.unwrap();
    b.wait_text("[data-testid=\"live-status\"]", "live after the leader left", |t| {
        t.contains("Live")
    })
    .await;
    api.create("/api/apps", &json!({"title": "After the first tab closed"})).await;
    b.wait_text("[data-testid=\"app-row\"]", "change after failover", |t| {
        t.contains("After the first")
    })
    .await;
    b.client.switch_to_window(tabs[3].clone()).await.unwrap();
    b.wait_text("[data-testid=\"app-row\"]", "in another tab too", |t| {
        t.contains("After the first")
    })
    .await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
    b.close().await;
    server.stop().await;
}

/// Renaming and searching apps, searching flags, paging through the log and using the switch
/// from the keyboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_rename_log_pages_and_keyboard() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let api = server.client();
    let Some(b) = Browser::start().await else { return };
    let base = server.base.clone();
    let shop = api.create("/api/apps", &json!({"title": "Shop"})).await;
    api.create("/api/apps", &json!({"title": "Billing"})).await;
    let mut flags = Vec::new();
    for title in ["search-results", "search-suggest", "checkout-v2"] {
        flags.push(api.create(&format!("/api/apps/{shop}/flags"), &json!({"title": title})).await);
    }
    // 3 creations + 117 toggles = 120 log entries.
    for i in 0..117 {
        let r = api.patch_empty(&format!("/api/flags/{}/toggle", flags[i % 3])).await;
        assert_eq!(r.status, 200);
    }

    // Apps: sorted by title, searchable, renamed in place.
    b.open(&format!("{base}/")).await;
    b.wait_count("[data-testid=\"app-row\"]", 2).await;
    let titles = b.wait_text("[data-testid=\"app-link\"]", "sorted", |t| !t.is_empty()).await;
    assert_eq!(titles, "Billing\nShop");
    b.fill("app-search", "sho").await;
    b.wait_count("[data-testid=\"app-row\"]", 1).await;
    b.fill("app-search", "").await;
    b.wait_count("[data-testid=\"app-row\"]", 2).await;
    b.find_css(&format!(
        "[data-testid=\"app-row\"][data-app-id=\"{shop}\"] [data-testid=\"rename-app\"]"
    ))
    .await
    .click()
    .await
    .unwrap();
    b.fill("app-title", "Storefront").await;
    b.click("app-submit").await;
    b.wait_text("[data-testid=\"app-link\"]", "renamed and re-sorted", |t| {
        t == "Billing\nStorefront"
    })
    .await;
    assert_eq!(api.get(&format!("/api/apps/{shop}")).await.payload()["title"], "Storefront");

    // Flags: searchable; the switch works from the keyboard.
    b.open(&format!("{base}/apps/{shop}")).await;
    b.wait_count("[data-testid=\"flag-row\"]", 3).await;
    b.fill("flag-search", "search").await;
    b.wait_count("[data-testid=\"flag-row\"]", 2).await;
    let toggle = b.find_css("[data-testid=\"flag-row\"] [data-testid=\"flag-toggle\"]").await;
    let before = toggle.attr("aria-checked").await.unwrap();
    toggle.send_keys(" ").await.unwrap();
    let flipped = if before.as_deref() == Some("true") { "false" } else { "true" };
    let deadline = std::time::Instant::now() + flagtower_tests::browser::WAIT;
    while toggle.attr("aria-checked").await.unwrap().as_deref() != Some(flipped) {
        assert!(std::time::Instant::now() < deadline, "Space did not toggle the switch");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let active = b.client.active_element().await.unwrap();
    assert_eq!(
        active.attr("data-testid").await.unwrap().as_deref(),
        Some("flag-toggle"),
        "focus stays on the switch"
    );

    // Logs: 121 entries in pages of 50, newest first, there and back.
    b.open(&format!("{base}/logs")).await;
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    b.click("logs-older").await;
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    b.click("logs-older").await;
    b.wait_count("[data-testid=\"log-row\"]", 21).await;
    assert_eq!(attr(&b, "[data-testid=\"logs-older\"]", "disabled").await.as_deref(), Some("true"));
    let rows = b.all_css("[data-testid=\"log-row\"]").await;
    let oldest = rows.last().unwrap().attr("data-action").await.unwrap();
    assert_eq!(oldest.as_deref(), Some("create"), "the oldest entry comes last");
    b.client.refresh().await.unwrap();
    b.wait_count("[data-testid=\"log-row\"]", 21).await;
    b.click("logs-newer").await;
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    b.click("logs-newer").await;
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    assert_eq!(attr(&b, "[data-testid=\"logs-newer\"]", "disabled").await.as_deref(), Some("true"));
    // A page reached by a link (no pages behind it): Newer is the 50 entries just after it.
    b.open(&format!("{base}/logs?before=22")).await;
    b.wait_count("[data-testid=\"log-row\"]", 21).await;
    b.click("logs-newer").await;
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("before=72"), "entries 71 to 22");
    b.find("log-filter").await.select_by_value("create").await.unwrap();
    b.wait_count("[data-testid=\"log-row\"]", 3).await;
    // A new entry appears at the top of the first page as it happens.
    b.find("log-filter").await.select_by_value("").await.unwrap();
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    api.patch_empty(&format!("/api/flags/{}/toggle", flags[2])).await;
    // (the 117th toggle turned checkout-v2 on; this one turns it off)
    b.find_css("[data-testid=\"log-row\"]:first-child[data-action=\"flag_off\"]").await;
    b.wait_count("[data-testid=\"log-row\"]", 50).await;
    let top = b.find_css("[data-testid=\"log-row\"]").await.text().await.unwrap();
    assert!(top.contains("checkout-v2"), "the new entry is on top: {top}");

    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
    b.close().await;
    server.stop().await;
}

/// The breaker trips a flag and ramps it back in; the open flag page follows each step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flag_page_follows_the_breaker_live() {
    let store = TestStore::sqlite().await;
    let settings = flagtower_core::breaker::BreakerSettings {
        interval_ms: 100,
        window_ms: 5_000,
        min_requests: 10,
        ..Default::default()
    };
    let builder = flagtower_core::Tower::builder(store.open().await).breaker(settings);
    let server = Server::start_built(builder).await;
    let api = server.client();
    let Some(b) = Browser::start().await else { return };
    let app = api.create("/api/apps", &json!({"title": "Payments"})).await;
    let flag = api
        .create(
            &format!("/api/apps/{app}/flags"),
            &json!({"title": "card-vault", "is_active": true, "error_threshold_percentage": 20,
                    "is_recoverable": true, "circuit_recovery_delay": 1500, "circuit_recovery_rate": 1000,
                    "circuit_initial_recovery_percentage": 10, "circuit_recovery_increment_percentage": 30}),
        )
        .await;
    b.open(&format!("{}/flags/{flag}", server.base)).await;
    b.wait_text("[data-testid=\"flag-circuit\"]", "closed", |t| t.contains("Closed")).await;
    b.wait_text("[data-testid=\"live-status\"]", "live", |t| t.contains("Live")).await;

    // An SDK reports mostly failures: the breaker trips the flag open...
    let r =
        api.post(&format!("/api/flags/{flag}/events"), &json!({"success": 5, "failure": 45})).await;
    assert_eq!(r.status, 202);
    b.wait_text("[data-testid=\"flag-circuit\"]", "tripped by the breaker", |t| t.contains("Open"))
        .await;
    b.wait_text("[data-testid=\"flag-state\"]", "off", |t| t == "Off").await;
    // The timeline says why, in numbers.
    b.wait_text("[data-testid=\"log-detail\"]", "the trip's evidence", |t| {
        t == "50 requests, 45 failures: failure rate above 20 % with 99 % confidence"
    })
    .await;
    // The counts that tripped it show at once, not at the chart's next bucket.
    b.wait_text("main", "failures charted", |t| {
        t.contains("45 failed") && t.contains("90.0% errors")
    })
    .await;
    // ...then ramps it back in: the recovery bar climbs, and the circuit closes.
    b.wait_text("[data-testid=\"flag-circuit\"]", "recovering", |t| t.contains("Recovering")).await;
    let bar = "[data-testid=\"recovery-bar\"]";
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let now: u32 =
            attr(&b, bar, "aria-valuenow").await.unwrap_or_default().parse().unwrap_or(0);
        if seen.last() != Some(&now) {
            seen.push(now);
            if seen.len() == 2 {
                b.screenshot("flag-recovering").await;
            }
        }
        let circuit = b.find("flag-circuit").await.text().await.unwrap();
        if circuit.contains("Closed") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "recovery never closed; bar values {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "the bar only climbs: {seen:?}");
    assert!(seen.len() >= 2, "recovery steps shown: {seen:?}");
    b.wait_text("[data-testid=\"flag-logs\"]", "breaker's entries in the timeline", |t| {
        t.contains("Circuit Tripped Open") && t.contains("Circuit Closed")
    })
    .await;
    b.close().await;
    server.stop().await;
}

/// The server goes away and comes back: the dashboard says so, reconnects by itself, and shows
/// what changed while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reconnects_and_catches_up() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let api = server.client();
    let Some(b) = Browser::start().await else { return };
    let app = api.create("/api/apps", &json!({"title": "A"})).await;
    let flag = api.create(&format!("/api/apps/{app}/flags"), &json!({"title": "away"})).await;
    b.open(&format!("{}/flags/{flag}", server.base)).await;
    b.wait_text("[data-testid=\"flag-state\"]", "off", |t| t == "Off").await;
    b.wait_text("[data-testid=\"live-status\"]", "live", |t| t.contains("Live")).await;

    let addr = server.addr;
    server.stop().await;
    b.wait_text("[data-testid=\"live-status\"]", "says it lost the stream", |t| {
        t.contains("Reconnecting")
    })
    .await;
    // A change while the dashboard cannot hear about it...
    let tower = flagtower_core::Tower::builder(store.open().await).start().await.unwrap();
    tower.toggle_flag(flagtower_core::FlagId::new(flag), Some(true)).await.unwrap();
    // ...shows once the server is back on the same address.
    let server = Server::serve(tower, addr).await;
    b.wait_text("[data-testid=\"live-status\"]", "live again", |t| t.contains("Live")).await;
    b.wait_text("[data-testid=\"flag-state\"]", "caught up", |t| t == "On").await;
    b.close().await;
    server.stop().await;
}

/// What a phone-sized window shows of the current screen: whether the page scrolls sideways,
/// the narrowest flag or log title cell, and the first pair of cells of one row (or headers)
/// whose boxes overlap.
async fn phone_layout(b: &Browser) -> serde_json::Value {
    let script = r#"
        const doc = document.documentElement;
        const boxes = (els) => [...els].filter((e) => e.offsetParent !== null).map((e) => e.getBoundingClientRect());
        const overlap = (a, b) => a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1;
        let overlapping = null;
        for (const group of [...document.querySelectorAll('thead tr, tbody tr')]) {
          const r = boxes(group.children);
          for (let i = 0; i < r.length && !overlapping; i++)
            for (let j = i + 1; j < r.length && !overlapping; j++)
              if (overlap(r[i], r[j])) overlapping = group.children[i].textContent + ' / ' + group.children[j].textContent;
        }
        const cells = [...document.querySelectorAll('[data-testid="flag-link"], [data-testid="log-flag-link"]')].map((a) => a.closest('td'));
        const titles = boxes(cells.filter(Boolean));
        // What sticks out on the right, deepest first, to say what to fix.
        const out = [...document.querySelectorAll('body *')]
          .filter((e) => e.getBoundingClientRect().right > doc.clientWidth + 0.5)
          .filter((e, _, all) => !all.some((o) => o !== e && e.contains(o)))
          .slice(0, 3)
          .map((e) => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')} (${e.textContent.trim().slice(0, 30)})`);
        return {
          scroll: doc.scrollWidth, width: window.innerWidth, out,
          narrowest: titles.length ? Math.min(...titles.map((r) => r.width)) : null,
          overlapping,
        };
    "#;
    b.client.execute(script, vec![]).await.expect("measure the layout")
}

#[track_caller]
fn assert_fits(screen: &str, m: &serde_json::Value) {
    assert!(
        m["scroll"].as_f64() <= m["width"].as_f64(),
        "{screen}: the page scrolls sideways on a phone: {m}"
    );
    assert!(m["overlapping"].is_null(), "{screen}: cells overlap on a phone: {m}");
    if let Some(w) = m["narrowest"].as_f64() {
        assert!(w >= 100.0, "{screen}: a title gets {w} px on a phone: {m}");
    }
}

/// Every screen at a desktop size and on a phone (375 × 740, and 360 wide): it fits without
/// scrolling sideways, the flag table and the log table reflow with their titles readable and
/// no cells on top of each other, axe-core finds no WCAG 2 A or AA violation (desktop and 375),
/// and an operator on call can turn the flag off from the phone. Screenshots:
/// `target/screenshots/phone-*.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_on_a_phone() {
    let store = TestStore::sqlite().await;
    let server = Server::start(&store).await;
    let api = server.client();
    let Some(b) = Browser::start().await else { return };
    let base = server.base.clone();
    let app = api.create("/api/apps", &json!({"title": "Checkout and payments"})).await;
    let mut flags = Vec::new();
    for (i, title) in
        ["new-checkout-flow-with-saved-cards", "dark-mode", "search-v2"].iter().enumerate()
    {
        let body = json!({
            "title": title,
            "description": "Gradual rollout of the new checkout flow for returning customers",
            "is_active": i != 1,
            "rollout_percentage": 12.5 * (i + 1) as f64,
            "error_threshold_percentage": 5,
        });
        flags.push(api.create(&format!("/api/apps/{app}/flags"), &body).await);
    }
    let tripped = api.post_empty(&format!("/api/flags/circuit/{}/open", flags[2])).await;
    assert_eq!(tripped.status, 200);
    for width in [1280, 375, 360] {
        b.client
            .set_window_size(width, if width > 1000 { 900 } else { 740 })
            .await
            .expect("window size");
        let screens = [
            ("apps", format!("{base}/"), "app-row"),
            ("app-flags", format!("{base}/apps/{app}"), "flag-row"),
            ("flag", format!("{base}/flags/{}", flags[0]), "flag-settings"),
            ("logs", format!("{base}/logs"), "log-row"),
            ("sdk-key", format!("{base}/sdk-key"), "sdk-key-value"),
        ];
        for (screen, url, testid) in &screens {
            b.open(url).await;
            b.find(testid).await;
            let m = phone_layout(&b).await;
            assert_fits(&format!("{screen} at {width} px"), &m);
            if width == 375 {
                b.screenshot(&format!("phone-{screen}")).await;
            }
            if width != 360 {
                let Some(violations) = b.accessibility_violations().await else { return };
                assert!(
                    violations.is_empty(),
                    "{screen} at {width} px: WCAG 2 A/AA violations:\n{}",
                    violations.join("\n")
                );
            }
        }
    }
    // On call: the failing flag goes off from the phone.
    b.open(&format!("{base}/apps/{app}")).await;
    let row =
        b.find_css(&format!("[data-testid=\"flag-row\"][data-flag-id=\"{}\"]", flags[0])).await;
    let toggle = row
        .find(fantoccini::Locator::Css("[data-testid=\"flag-toggle\"]"))
        .await
        .expect("the row's toggle");
    toggle.click().await.expect("tap the toggle");
    let deadline = std::time::Instant::now() + flagtower_tests::browser::WAIT;
    while api.get(&format!("/api/flags/{}", flags[0])).await.payload()["is_active"] == true {
        assert!(std::time::Instant::now() < deadline, "the toggle did not turn the flag off");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    b.close().await;
    server.stop().await;
}

/// On a Tower with admin tokens the dashboard asks for one, refuses a wrong one with the
/// server's message, shows who is signed in, works with its session (changes included: they
/// come from its own pages), keeps the session across a reload without letting the page read
/// the cookie, and signs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_sign_in_and_out_of_the_dashboard() {
    const SECRET: &str = "alice-admin-secret-0123456789";
    let store = TestStore::sqlite().await;
    let options = flagtower_http::ServerOptions {
        admin_tokens: flagtower_http::AdminTokens::parse(&format!("alice:{SECRET}")).unwrap(),
        ..Default::default()
    };
    let server = Server::start_with_options(&store, options).await;
    let api = server.client().with_bearer(SECRET);
    let app = api.create("/api/apps", &json!({"title": "shop"})).await;
    let flag = api.create(&format!("/api/apps/{app}/flags"), &json!({"title": "checkout"})).await;
    let Some(b) = Browser::start().await else { return };
    let base = server.base.clone();

    b.open(&format!("{base}/apps/{app}")).await;
    b.find("sign-in-screen").await;
    let nav = attr(&b, "body", "data-session").await;
    assert_eq!(nav.as_deref(), Some("signed-out"));
    if let Some(violations) = b.accessibility_violations().await {
        assert!(
            violations.is_empty(),
            "sign-in: WCAG 2 A/AA violations:\n{}",
            violations.join("\n")
        );
    }
    b.screenshot("sign-in").await;
    b.fill("token-input", "not-the-secret").await;
    b.click("sign-in").await;
    b.wait_text("[data-testid=\"sign-in-error\"]", "the refusal", |t| {
        t.contains("not an admin token")
    })
    .await;
    b.fill("token-input", SECRET).await;
    b.click("sign-in").await;
    // Straight to the page asked for, signed in, live.
    b.find_css(&format!("[data-testid=\"flag-row\"][data-flag-id=\"{flag}\"]")).await;
    b.wait_text("[data-testid=\"signed-in-as\"]", "the signed-in name", |t| t == "alice").await;
    b.wait_text("[data-testid=\"live-status\"]", "live status", |t| t == "Live").await;
    let cookies = b.client.execute("return document.cookie;", vec![]).await.unwrap();
    assert!(!cookies.as_str().unwrap_or("").contains("tower_session"), "HttpOnly: {cookies}");

    // A change through the session: the flag goes on.
    b.find_css(&format!(
        "[data-testid=\"flag-row\"][data-flag-id=\"{flag}\"] [data-testid=\"flag-toggle\"]"
    ))
    .await
    .click()
    .await
    .expect("toggle");
    let deadline = std::time::Instant::now() + flagtower_tests::browser::WAIT;
    while api.get(&format!("/api/flags/{flag}")).await.payload()["is_active"] != true {
        assert!(std::time::Instant::now() < deadline, "the toggle did not turn the flag on");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A reload keeps the session; the log says who made each change and what an edit changed.
    let r = api.patch(&format!("/api/flags/{flag}"), &json!({"rollout_percentage": 50})).await;
    assert_eq!(r.status, 200);
    b.open(&format!("{base}/logs")).await;
    b.find("log-row").await;
    b.wait_text("[data-testid=\"signed-in-as\"]", "still signed in", |t| t == "alice").await;
    b.wait_text("[data-testid=\"log-by\"]", "who", |t| {
        t.lines().filter(|l| l.contains("alice")).count() == 3
    })
    .await;
    b.wait_text("[data-testid=\"log-changes\"]", "what", |t| t.contains("rollout 100 % → 50 %"))
        .await;
    b.open(&format!("{base}/flags/{flag}")).await;
    b.wait_text("[data-testid=\"flag-logs\"]", "the timeline", |t| {
        t.contains("rollout 100 % → 50 %") && t.contains("by alice")
    })
    .await;

    // On a phone the top bar holds the name and Sign out too, without scrolling sideways.
    for width in [375, 360] {
        b.client.set_window_size(width, 740).await.expect("window size");
        b.open(&format!("{base}/apps/{app}")).await;
        b.find("flag-row").await;
        b.wait_text("[data-testid=\"signed-in-as\"]", "the name", |t| t == "alice").await;
        assert_fits(&format!("signed in at {width} px"), &phone_layout(&b).await);
        if width == 375 {
            b.screenshot("phone-signed-in").await;
            if let Some(violations) = b.accessibility_violations().await {
                assert!(violations.is_empty(), "signed in: {}", violations.join("\n"));
            }
        }
    }
    b.client.set_window_size(1280, 900).await.expect("window size");

    b.click("sign-out").await;
    b.find("sign-in-screen").await;
    b.open(&format!("{base}/")).await;
    b.find("sign-in-screen").await;
    assert!(b.console_errors().await.is_empty(), "{:?}", b.console_errors().await);
    b.close().await;
    server.stop().await;
}
