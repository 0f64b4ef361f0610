//! Tower inside another Rust service, with no HTTP: open it on a SQLite file, create an app and
//! a flag through the service, follow the in-process publisher, toggle the flag, and print every
//! ruleset the subscriber receives.
//!
//! ```text
//! cargo run -p flagtower-examples --example embedded [PATH.db]
//! ```

use std::sync::Arc;
use std::time::Duration;

use flagtower_adapters::sqlite::SqliteStore;
use flagtower_core::input::parse_new_flag;
use flagtower_core::{InProcessPublisher, Title, Tower};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A database file of your choice, or a fresh temporary one.
    let tmp = tempfile::tempdir()?;
    let path = std::env::args().nth(1).map_or_else(|| tmp.path().join("tower.db"), Into::into);
    let store = SqliteStore::open(&path).await?;

    // The publisher is a port: here the in-process one, in production NATS JetStream.
    let publisher = InProcessPublisher::new();
    let tower = Tower::builder(Arc::new(store)).publisher(publisher.clone()).start().await?;
    let mut rulesets = publisher.subscribe();

    let app = tower.create_app(&Title::parse("Checkout")?).await?;
    // The same validation the REST API uses, from JSON…
    let new_flag =
        parse_new_flag(&serde_json::json!({"title": "new-cart", "rollout_percentage": 25}))?;
    let flag = tower.create_flag(app.id, &new_flag).await?;
    println!("created app {} and flag {} ({})", app.id, flag.id, flag.title);

    tower.toggle_flag(flag.id, None).await?; // on
    tower.toggle_flag(flag.id, None).await?; // off again

    // A new app's empty ruleset goes out at revision 0, so SDKs can start on it; the flag's
    // creation and each toggle commit a new revision of the app's ruleset: 1, 2, 3. The relay
    // publishes the newest ruleset of each changed app, so changes made faster than it publishes
    // arrive coalesced; revisions only ever grow, and the last one is always delivered.
    loop {
        let ruleset = tokio::time::timeout(Duration::from_secs(5), rulesets.next())
            .await?
            .ok_or("publisher closed")?;
        println!(
            "{} revision {}: {}",
            ruleset.subject(),
            ruleset.revision,
            String::from_utf8_lossy(&ruleset.body)
        );
        if ruleset.revision.get() == 3 {
            break;
        }
    }
    tower.shutdown().await;
    Ok(())
}
