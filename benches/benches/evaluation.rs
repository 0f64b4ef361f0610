//! Flag evaluation: one lookup in an app's index plus the whitelist and rollout checks, per
//! bucketing, with allocations counted (the goal: none), beside Unleash's engine
//! (`unleash-yggdrasil`) on the equivalent flag; and ruleset ingestion (decode + index) for 1 to
//! 10 000 flags.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flagtower_core::eval::{Bucketing, Index};
use flagtower_core::model::{CircuitState, Percent, UserList};
use flagtower_core::ruleset::{decode_flags, encode_flags};
use flagtower_core::{AppId, Revision};

/// The system allocator, counting allocations.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// An app of 100 flags; `feature-0042-rollout` is on at 30 % with a whitelist of 100 users.
fn index() -> Index {
    let mut flags = flagtower_benches::sample_flags(100);
    for f in &mut flags {
        f.state = CircuitState::On;
    }
    flags[41].rollout_percentage = Percent::from_tenths(300).unwrap();
    flags[41].white_listed_users = UserList::parse(&whitelist().join(",")).unwrap();
    Index::new(AppId::new(1), Revision::new(1), &flags)
}

const FLAG: &str = "feature-0042-rollout";

fn evaluation(c: &mut Criterion) {
    let index = index();
    let users: Vec<String> = (0..1024).map(|i| format!("user-{i:08}")).collect();
    // Allocations per evaluation, over every case measured below.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut on = 0u32;
    for user in &users {
        for b in [Bucketing::Tower, Bucketing::Tailslide] {
            on += u32::from(index.evaluate(FLAG, Some(user), b).unwrap().unwrap().enabled);
        }
        on += u32::from(
            index.evaluate(FLAG, Some("vip-7"), Bucketing::Tower).unwrap().unwrap().enabled,
        );
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("allocations in {} evaluations: {allocations} ({on} on)", users.len() * 3);
    assert_eq!(allocations, 0, "an evaluation allocates nothing");

    let mut g = c.benchmark_group("evaluate");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) & 1023;
        users[i].as_str()
    };
    g.bench_function("rollout 30 % (murmur3)", |b| {
        b.iter(|| index.evaluate(FLAG, Some(next()), Bucketing::Tower))
    });
    let mut next = || {
        i = (i + 1) & 1023;
        users[i].as_str()
    };
    g.bench_function("rollout 30 % (tailslide md5)", |b| {
        b.iter(|| index.evaluate(FLAG, Some(next()), Bucketing::Tailslide))
    });
    g.bench_function("whitelisted", |b| {
        b.iter(|| index.evaluate(FLAG, Some("vip-7"), Bucketing::Tower))
    });

    // Unleash's engine on the same app: the flag is a `userWithId` strategy for the 100 users
    // followed by a `flexibleRollout` at 30 % sticky on the user id, the other 99 flags on for
    // everyone. Its context owns its strings, so one is built per user beforehand and only the
    // evaluation is measured.
    let unleash = unleash_engine(&whitelist(), 100);
    let contexts: Vec<unleash_yggdrasil::Context> = users
        .iter()
        .map(|u| unleash_yggdrasil::Context { user_id: Some(u.clone()), ..Default::default() })
        .collect();
    let vip = unleash_yggdrasil::Context { user_id: Some("vip-7".into()), ..Default::default() };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for context in &contexts {
        std::hint::black_box(unleash.is_enabled(FLAG, context, &None));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("allocations in {} Unleash evaluations: {allocations}", contexts.len());
    let (mut tower_on, mut unleash_on) = (0, 0);
    for (user, context) in users.iter().zip(&contexts) {
        tower_on +=
            u32::from(index.evaluate(FLAG, Some(user), Bucketing::Tower).unwrap().unwrap().enabled);
        unleash_on += u32::from(unleash.is_enabled(FLAG, context, &None));
    }
    assert!(unleash.is_enabled(FLAG, &vip, &None), "Unleash's engine sees the whitelist");
    println!("of {} users, on: Tower {tower_on}, Unleash {unleash_on} (30 % each)", users.len());
    assert!((200..420).contains(&unleash_on), "Unleash's engine evaluates the rollout");
    let mut next = || {
        i = (i + 1) & 1023;
        &contexts[i]
    };
    g.bench_function("unleash-yggdrasil: rollout 30 %", |b| {
        b.iter(|| unleash.is_enabled(FLAG, next(), &None))
    });
    g.bench_function("unleash-yggdrasil: whitelisted", |b| {
        b.iter(|| unleash.is_enabled(FLAG, &vip, &None))
    });
    g.finish();
}

/// Unleash's engine holding `flags` flags named as Tower's, [`FLAG`] the equivalent of Tower's.
fn unleash_engine(whitelist: &[String], flags: usize) -> unleash_yggdrasil::EngineState {
    let features: Vec<serde_json::Value> = flagtower_benches::sample_flags(flags)
        .iter()
        .map(|f| {
            let title = f.title.as_str();
            let strategies = if title == FLAG {
                serde_json::json!([
                    {"name": "userWithId", "parameters": {"userIds": whitelist.join(",")}},
                    {"name": "flexibleRollout",
                     "parameters": {"rollout": "30", "stickiness": "userId", "groupId": title}},
                ])
            } else {
                serde_json::json!([{"name": "default"}])
            };
            serde_json::json!({"name": title, "enabled": true, "strategies": strategies})
        })
        .collect();
    let state: unleash_yggdrasil::UpdateMessage =
        serde_json::from_value(serde_json::json!({"version": 2, "features": features}))
            .expect("an Unleash client features document");
    let engine = unleash_yggdrasil::EngineState::default();
    engine.take_state(state);
    engine
}

fn whitelist() -> Vec<String> {
    (0..100).map(|i| format!("vip-{i}")).collect()
}

fn ingestion(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    for n in [1usize, 100, 1000, 10_000] {
        let body = encode_flags(&flagtower_benches::sample_flags(n));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("decode + index", n), &body, |b, body| {
            b.iter(|| {
                Index::new(AppId::new(1), Revision::new(1), &decode_flags(body).expect("decodes"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, evaluation, ingestion);
criterion_main!(benches);
