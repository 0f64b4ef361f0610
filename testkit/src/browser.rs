//! Headless Chromium driven through chromedriver (WebDriver), for the dashboard's tests.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// How long a wait for something on the page lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// One browser session: its own chromedriver process and a fresh profile.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn binary(var: &str, default: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(default)))
        .filter(|p| p.is_file())
}

/// Where screenshots go: `target/screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (said loudly) when they
    /// are not installed and `TOWER_REQUIRE_SERVICES` is not set. The binaries are
    /// `TOWER_TEST_CHROMIUM` and `TOWER_TEST_CHROMEDRIVER` (default /usr/bin/chromium and
    /// /usr/bin/chromedriver).
    pub async fn start() -> Option<Self> {
        let chromium = binary("TOWER_TEST_CHROMIUM", "/usr/bin/chromium");
        let driver = binary("TOWER_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let msg = "Chromium or chromedriver not found; install Debian's chromium and chromium-driver or run ./scripts/test";
            crate::missing(msg);
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its own process group, which Chromium's processes join: dropping the browser kills
        // the whole group, so a failed test leaves no Chromium behind.
        let driver = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    // No transitions: a screenshot shows where a bar ends, not where it is going.
                    "--force-prefers-reduced-motion",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("start a Chromium session");
        // A page that does not load fails the test in seconds, not after chromedriver's 300 s.
        let timeouts = fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(30)),
            Some(Duration::from_secs(20)),
            Some(Duration::ZERO),
        );
        client.update_timeouts(timeouts).await.expect("set timeouts");
        Some(Self { client, driver, _profile: profile })
    }

    /// Opens `url` (the caller waits for what it expects on the page).
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The element with `data-testid`, waiting for it.
    pub async fn find(&self, testid: &str) -> Element {
        self.find_css(&format!("[data-testid=\"{testid}\"]")).await
    }

    /// The element matching a CSS selector, waiting for it.
    pub async fn find_css(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} within {WAIT:?}: {e}"))
    }

    /// Every element matching a CSS selector now (no wait).
    pub async fn all_css(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.expect("find_all")
    }

    /// Clicks the element with `data-testid`.
    pub async fn click(&self, testid: &str) {
        self.find(testid).await.click().await.unwrap_or_else(|e| panic!("click {testid}: {e}"));
    }

    /// Replaces the value of the input with `data-testid` by `text`, typing as a user would
    /// (select all, then type over it; Backspace for an empty value), so the page sees `input`
    /// events.
    pub async fn fill(&self, testid: &str, text: &str) {
        const SELECT_ALL: &str = "\u{E009}a\u{E000}";
        const BACKSPACE: &str = "\u{E003}";
        let input = self.find(testid).await;
        input.send_keys(SELECT_ALL).await.unwrap_or_else(|e| panic!("select {testid}: {e}"));
        let keys = if text.is_empty() { BACKSPACE } else { text };
        input.send_keys(keys).await.unwrap_or_else(|e| panic!("type into {testid}: {e}"));
    }

    /// Waits until `check` holds for the page's text of the CSS selector (all matches joined
    /// with newlines); returns that text.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut texts = Vec::new();
            for e in self.all_css(css).await {
                if let Ok(t) = e.text().await {
                    texts.push(t);
                }
            }
            let last = texts.join("\n");
            if check(&last) {
                return last;
            }
            assert!(Instant::now() < deadline, "{what}: `{css}` never matched; last text:\n{last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until as many elements match `css` as `n`.
    pub async fn wait_count(&self, css: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.all_css(css).await.len();
            if found == n {
                return;
            }
            assert!(Instant::now() < deadline, "expected {n} of `{css}`, found {found}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the window as `target/screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        // Notifications fade after a few seconds; a screenshot shows the page without them.
        let script = "window.scrollTo(0, 0); document.getElementById('toasts')?.replaceChildren();";
        let _ = self.client.execute(script, vec![]).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// What axe-core (the accessibility engine, `tests/browser/`) finds against WCAG 2 A and AA
    /// on the page as it is: one line per violation, with the elements it concerns. `None`
    /// (said loudly) when axe-core is not installed: `TOWER_TEST_AXE`, default
    /// `tests/browser/node_modules/axe-core/axe.min.js`, which `./scripts/test` installs.
    pub async fn accessibility_violations(&self) -> Option<Vec<String>> {
        let path = std::env::var_os("TOWER_TEST_AXE").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/browser/node_modules/axe-core/axe.min.js")
        });
        let Ok(axe) = std::fs::read_to_string(&path) else {
            crate::missing(&format!(
                "axe-core not found at {}; run ./scripts/test, which installs it (npm ci --prefix tests/browser)",
                path.display()
            ));
            return None;
        };
        // A script the driver runs is not subject to the page's CSP.
        self.client.execute(&axe, vec![]).await.expect("load axe-core");
        let found = self
            .client
            .execute(
                "return axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] }).then((r) => \
                 r.violations.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(', ')}`));",
                vec![],
            )
            .await
            .expect("run axe-core");
        Some(
            found
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        )
    }

    /// Errors the page logged to the browser console (`SEVERE` entries), if the driver keeps
    /// them.
    pub async fn console_errors(&self) -> Vec<String> {
        let logs = self
            .client
            .execute("return (window.__towerErrors || []).slice();", vec![])
            .await
            .unwrap_or_default();
        logs.as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Ends the session and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop ends chromedriver and whatever Chromium left behind.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
