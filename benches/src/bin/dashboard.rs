//! Dashboard load: how soon each screen is usable in headless Chromium, what it downloads, and
//! whether its layout moves.
//!
//! ```text
//! cargo run --release -p flagtower-benches --bin dashboard -- [--apps N] [--flags N] [--runs N]
//! ```
//!
//! Starts Tower in this process on a temporary SQLite file with `--apps` apps of `--flags` flags
//! (each toggled four times, so the log has five entries per flag), and a Chromium session
//! through chromedriver (`TOWER_TEST_CHROMIUM`, `TOWER_TEST_CHROMEDRIVER`). For each screen it
//! loads the page `--runs` times (the first in a fresh profile: nothing cached) and reads, from
//! the page's own Performance API: `ready`, the time from navigation start to the dashboard's
//! `tower:ready` mark (set when the screen has rendered its data), `dcl` (DOMContentLoaded), the
//! bytes transferred, and the cumulative layout shift (CLS) of the load.

use std::sync::Arc;
use std::time::Duration;

use flagtower_core::{FlagCommand, NewFlag, Title, Tower};
use flagtower_tests::browser::Browser;
use serde_json::Value;

const MEASURE: &str = r#"
const done = arguments[arguments.length - 1];
let cls = 0;
new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) cls += e.value; })
  .observe({ type: 'layout-shift', buffered: true });
const wait = () => {
  const ready = performance.getEntriesByName('tower:ready')[0];
  if (!ready) return setTimeout(wait, 5);
  setTimeout(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource');
    const bytes = [nav, ...resources].reduce((n, e) => n + (e.transferSize || 0), 0);
    const body = [nav, ...resources].reduce((n, e) => n + (e.decodedBodySize || 0), 0);
    done({ ready: ready.startTime, dcl: nav.domContentLoadedEventEnd, bytes, body, cls,
           requests: resources.length + 1 });
  }, 300);
};
wait();
"#;

fn main() {
    let (mut apps, mut flags, mut runs) = (50usize, 20usize, 10usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name} N"))
        };
        match a.as_str() {
            "--apps" => apps = num("--apps"),
            "--flags" => flags = num("--flags"),
            "--runs" => runs = num("--runs"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let bench = flagtower_benches::open_store("sqlite").await;
        let tower = Tower::builder(Arc::clone(&bench.store)).start().await.unwrap();
        let mut first_flag = None;
        for a in 0..apps {
            let app = tower.create_app(&Title::parse(&format!("Service {a:03}")).unwrap()).await.unwrap();
            for f in 0..flags {
                let new = NewFlag { title: Title::parse(&format!("feature-{f:03}")).unwrap(), settings: Default::default() };
                let flag = tower.create_flag(app.id, &new).await.unwrap();
                for _ in 0..4 {
                    tower.change_flag(flag.id, &FlagCommand::Toggle(None)).await.unwrap();
                }
                first_flag.get_or_insert((app.id, flag.id));
            }
        }
        let (app, flag) = first_flag.expect("at least one flag");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(flagtower_http::run(listener, tower, std::future::pending()));
        println!(
            "# {apps} apps x {flags} flags, {} log entries; embedded files {} bytes",
            apps * flags * 5,
            flagtower_http::dashboard_size()
        );

        let browser = Browser::start().await.expect("Chromium and chromedriver");
        let screens = [
            ("apps", "/".to_owned()),
            ("app-flags", format!("/apps/{app}")),
            ("flag", format!("/flags/{flag}")),
            ("logs", "/logs".to_owned()),
            ("sdk-key", "/sdk-key".to_owned()),
        ];
        for (name, path) in &screens {
            let mut ready = Vec::new();
            let mut first: Option<Value> = None;
            let mut worst_cls: f64 = 0.0;
            for _ in 0..runs {
                browser.client.goto("about:blank").await.unwrap();
                browser.client.goto(&format!("{base}{path}")).await.unwrap();
                let m = tokio::time::timeout(
                    Duration::from_secs(20),
                    browser.client.execute_async(MEASURE, vec![]),
                )
                .await
                .expect("the page marks tower:ready within 20 s")
                .expect("measure");
                ready.push(m["ready"].as_f64().unwrap());
                worst_cls = worst_cls.max(m["cls"].as_f64().unwrap());
                first.get_or_insert(m);
            }
            let first = first.unwrap();
            let mut sorted = if ready.len() > 1 { ready[1..].to_vec() } else { ready.clone() };
            sorted.sort_by(f64::total_cmp);
            println!(
                "screen={name:<9} first_ready_ms={:.0} first_dcl_ms={:.0} first_bytes={} body_bytes={} requests={} warm_ready_p50_ms={:.0} warm_ready_max_ms={:.0} max_cls={:.3}",
                first["ready"].as_f64().unwrap(),
                first["dcl"].as_f64().unwrap(),
                first["bytes"],
                first["body"],
                first["requests"],
                sorted[sorted.len() / 2],
                sorted[sorted.len() - 1],
                worst_cls,
            );
        }
        browser.close().await;
        drop(bench);
    });
}
