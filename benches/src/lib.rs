//! Tower's benchmarks: criterion benches (`benches/`) and an HTTP load generator
//! (`src/bin/loadgen.rs`). Results and the commands that reproduce them are in
//! `benches/README.md`.

pub mod nats_server;

use flagtower_core::model::{Description, UserList, Webhooks};
use flagtower_core::{AppId, Flag, FlagId, Percent, Timestamp, Title};

/// `n` flags of one app, with realistic titles, descriptions and whitelists.
pub fn sample_flags(n: usize) -> Vec<Flag> {
    (1..=n)
        .map(|i| {
            let mut f = Flag::new(
                AppId::new(1),
                Title::parse(&format!("feature-{i:04}-rollout")).expect("title"),
                Timestamp::from_millis(1_700_000_000_000 + i as i64),
            )
            .with_id(FlagId::new(i as i64));
            f.description = Description::parse("Gradual rollout of the new checkout flow")
                .expect("description");
            f.rollout_percentage = Percent::from_tenths((i * 37 % 1001) as u16).expect("percent");
            f.white_listed_users = UserList::parse("alice,bob,carol").expect("users");
            f.webhooks =
                Webhooks::parse("https://hooks.example.com/services/T0/B0/x").expect("webhooks");
            f
        })
        .collect()
}
