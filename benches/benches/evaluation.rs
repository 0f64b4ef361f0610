//! Flag evaluation: one lookup in an app's index plus the whitelist and rollout checks, per
//! bucketing, with allocations counted (the goal: none); and ruleset ingestion (decode + index)
//! for 1 to 10 000 flags.

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
    let whitelist: Vec<String> = (0..100).map(|i| format!("vip-{i}")).collect();
    flags[41].rollout_percentage = Percent::from_tenths(300).unwrap();
    flags[41].white_listed_users = UserList::parse(&whitelist.join(",")).unwrap();
    Index::new(AppId::new(1), Revision(1), &flags)
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
    g.finish();
}

fn ingestion(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    for n in [1usize, 100, 1000, 10_000] {
        let body = encode_flags(&flagtower_benches::sample_flags(n));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("decode + index", n), &body, |b, body| {
            b.iter(|| Index::new(AppId::new(1), Revision(1), &decode_flags(body).expect("decodes")))
        });
    }
    g.finish();
}

criterion_group!(benches, evaluation, ingestion);
criterion_main!(benches);
