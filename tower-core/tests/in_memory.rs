//! The service, the relay, the live feed and the breaker engine on [`InMemoryStore`], with a
//! [`ManualClock`] for timestamps and tokio's paused time for the tasks' timers: nothing here
//! waits on the wall clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flagtower_core::breaker::BreakerSettings;
use flagtower_core::command::{FlagPatch, NewFlag};
use flagtower_core::model::{Action, AppId, CircuitState, Counts, IntervalMs, Percent, Revision};
use flagtower_core::ports::{PublishError, Publisher, Resource, Store};
use flagtower_core::relay::Stage;
use flagtower_core::{
    Error, FeedEvent, InMemoryMetrics, InMemoryStore, InProcessPublisher, ManualClock, RelayConfig,
    Timestamp, Title, Tower,
};

const START: i64 = 1_700_000_000_000;

fn title(s: &str) -> Title {
    Title::parse(s).unwrap()
}

fn flag(s: &str) -> NewFlag {
    NewFlag { title: title(s), settings: FlagPatch::default() }
}

/// A publisher that refuses the apps it is told to (as unavailable, or rejected for good), or
/// never answers for them (a broker that hangs), and hands the rest to an in-process publisher.
#[derive(Debug)]
struct Failing {
    inner: Arc<InProcessPublisher>,
    unavailable: Mutex<HashSet<AppId>>,
    rejected: Mutex<HashSet<AppId>>,
    hanging: Mutex<HashSet<AppId>>,
    attempts: Mutex<Vec<(AppId, Revision)>>,
}

impl Failing {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: InProcessPublisher::new(),
            unavailable: Mutex::default(),
            rejected: Mutex::default(),
            hanging: Mutex::default(),
            attempts: Mutex::default(),
        })
    }

    fn attempts_of(&self, app: AppId) -> usize {
        self.attempts.lock().unwrap().iter().filter(|(a, _)| *a == app).count()
    }
}

#[async_trait]
impl Publisher for Failing {
    async fn publish(&self, ruleset: &flagtower_core::EncodedRuleset) -> Result<(), PublishError> {
        self.attempts.lock().unwrap().push((ruleset.app_id, ruleset.revision));
        if self.unavailable.lock().unwrap().contains(&ruleset.app_id) {
            return Err(PublishError::Unavailable("broker down for this app".into()));
        }
        if self.rejected.lock().unwrap().contains(&ruleset.app_id) {
            return Err(PublishError::Rejected("too large".into()));
        }
        let hangs = self.hanging.lock().unwrap().contains(&ruleset.app_id);
        if hangs {
            std::future::pending::<()>().await;
        }
        self.inner.publish(ruleset).await
    }
}

/// Lets the tasks run until `ok` holds, in paused time (each round moves it 10 ms).
async fn until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..2_000 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 20 s of tokio time");
}

/// The next ruleset published, within 30 s of tokio time.
#[track_caller]
fn next(
    rulesets: &mut flagtower_core::Subscription,
) -> impl Future<Output = flagtower_core::EncodedRuleset> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(Duration::from_secs(30), rulesets.next()).await {
            Ok(Some(r)) => r,
            other => panic!("no ruleset published ({other:?}), waited at {caller}"),
        }
    }
}

/// A Tower on `store` publishing to `publisher`, its relay tuned by `config`.
async fn relaying(
    store: Arc<InMemoryStore>,
    publisher: Arc<dyn Publisher>,
    config: RelayConfig,
) -> Tower {
    Tower::builder(store).publisher(publisher).relay_config(config).start().await.unwrap()
}

/// How often the Tower's relay has read the outbox (its store's `pending`).
fn outbox_reads(tower: &Tower) -> u64 {
    let stats = tower.stats();
    stats.store_latency.iter().find(|(op, _)| *op == "pending").expect("pending").1.count
}

#[tokio::test(start_paused = true)]
async fn the_service_logs_and_publishes_every_change_in_order() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let publisher = InProcessPublisher::new();
    let store = Arc::new(InMemoryStore::new());
    let tower = Tower::builder(store.clone())
        .publisher(publisher.clone())
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let mut rulesets = publisher.subscribe();

    let app = tower.create_app(&title("Shop")).await.unwrap();
    assert_eq!(app.created_at, Timestamp::from_millis(START));
    let first = next(&mut rulesets).await;
    assert_eq!(
        (first.app_id, first.revision, &first.body[..]),
        (app.id, Revision::new(0), &b"[]"[..])
    );

    clock.advance(5);
    let f = tower.create_flag(app.id, &flag("checkout")).await.unwrap();
    assert_eq!(next(&mut rulesets).await.revision, Revision::new(1));
    clock.advance(5);
    let on = tower.toggle_flag(f.id, Some(true)).await.unwrap();
    assert_eq!((on.state, on.updated_at), (CircuitState::On, Timestamp::from_millis(START + 10)));
    // Turning on what is on changes nothing: no log entry, no revision.
    tower.toggle_flag(f.id, Some(true)).await.unwrap();
    let published = next(&mut rulesets).await;
    assert_eq!(published.revision, Revision::new(2));
    assert!(std::str::from_utf8(&published.body).unwrap().contains("\"is_active\":true"));
    // Changes committed together are published as the newest ruleset, once.
    for _ in 0..3 {
        tower.toggle_flag(f.id, None).await.unwrap();
    }
    let published = next(&mut rulesets).await;
    assert!(published.revision > Revision::new(2) && published.revision <= Revision::new(5));
    if published.revision < Revision::new(5) {
        assert_eq!(next(&mut rulesets).await.revision, Revision::new(5));
    }
    let logs = tower.app_logs(app.id).await.unwrap();
    assert_eq!(
        logs.iter().map(|l| l.action).collect::<Vec<_>>(),
        [Action::Create, Action::FlagOn, Action::FlagOff, Action::FlagOn, Action::FlagOff]
    );
    assert_eq!(logs[1].created_at, Timestamp::from_millis(START + 10));

    // Errors: the right variant, and nothing written.
    assert!(matches!(
        tower.create_flag(app.id, &flag("CHECKOUT")).await,
        Err(Error::Conflict { what: Resource::Flag, .. })
    ));
    assert!(matches!(
        tower.create_flag(AppId::new(99), &flag("x")).await,
        Err(Error::NotFound(Resource::App))
    ));
    assert_eq!(store.ruleset(app.id).await.unwrap().revision, Revision::new(5));

    // Deleting the app publishes its empty ruleset and keeps its log.
    tower.delete_app(app.id).await.unwrap();
    let last = next(&mut rulesets).await;
    assert_eq!((last.revision, &last.body[..]), (Revision::new(6), &b"[]"[..]));
    assert_eq!(tower.logs().await.unwrap().len(), 6);
    tower.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_keeps_other_apps_moving_while_one_cannot_be_published() {
    let publisher = Failing::new();
    let store = Arc::new(InMemoryStore::new());
    let config = RelayConfig {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        ..RelayConfig::default()
    };
    let tower = relaying(store.clone(), publisher.clone(), config).await;
    let (a, b) = (
        tower.create_app(&title("A")).await.unwrap(),
        tower.create_app(&title("B")).await.unwrap(),
    );
    publisher.unavailable.lock().unwrap().insert(a.id);
    let fa = tower.create_flag(a.id, &flag("fa")).await.unwrap();
    let fb = tower.create_flag(b.id, &flag("fb")).await.unwrap();
    let inner = publisher.inner.clone();
    until("B published while A fails", async || {
        inner.latest(b.id).is_some_and(|r| r.revision == Revision::new(1))
    })
    .await;
    until("A retried with backoff", async || publisher.attempts_of(a.id) >= 4).await;
    let health = tower.health().await;
    let stuck = health.relay.unpublished.iter().find(|u| u.app_id == a.id).expect("A listed");
    assert_eq!(
        (stuck.stage, stuck.revision, stuck.rejected),
        (Stage::Publisher, Some(Revision::new(1)), false)
    );
    assert!(health.relay.publisher_degraded());

    // B keeps moving; A catches up with its newest revision once the publisher takes it.
    tower.toggle_flag(fb.id, None).await.unwrap();
    tower.toggle_flag(fa.id, None).await.unwrap();
    until("B's change published", async || {
        inner.latest(b.id).is_some_and(|r| r.revision == Revision::new(2))
    })
    .await;
    assert!(inner.latest(a.id).is_none_or(|r| r.revision == Revision::new(0)));
    publisher.unavailable.lock().unwrap().clear();
    until("A published", async || {
        inner.latest(a.id).is_some_and(|r| r.revision == Revision::new(2))
    })
    .await;
    until("health clean", async || tower.health().await.relay.unpublished.is_empty()).await;
    assert!(store.pending().await.unwrap().is_empty(), "the outbox is cleared");
    tower.shutdown().await;
}

/// A publication that hangs (a broker that never answers) holds the others back only for its
/// first 10 ms: then another starts beside it, and the other app's change goes out.
#[tokio::test(start_paused = true)]
async fn a_hanging_publication_lets_another_start_beside_it() {
    let publisher = Failing::new();
    let store = Arc::new(InMemoryStore::new());
    let tower = relaying(store, publisher.clone(), RelayConfig::default()).await;
    let (a, b) = (
        tower.create_app(&title("A")).await.unwrap(),
        tower.create_app(&title("B")).await.unwrap(),
    );
    let published = |app: AppId| publisher.inner.latest(app).map(|r| r.revision);
    until("both empty rulesets published", async || {
        published(a.id).is_some() && published(b.id).is_some()
    })
    .await;
    publisher.hanging.lock().unwrap().insert(a.id);
    tower.create_flag(a.id, &flag("stuck")).await.unwrap();
    // B's change comes while A's publication is in its first 10 ms (no tokio time passes).
    while publisher.attempts_of(a.id) < 2 {
        tokio::task::yield_now().await;
    }
    tower.create_flag(b.id, &flag("free")).await.unwrap();
    // Well before the relay's next poll (a second): the publication beside A's hanging one.
    let beside = until("B's change published", async || published(b.id) == Some(Revision::new(1)));
    tokio::time::timeout(Duration::from_millis(100), beside)
        .await
        .expect("B published within 100 ms while A's publication hangs");
    assert_eq!(published(a.id), Some(Revision::new(0)), "A's publication still hangs");
}

#[tokio::test(start_paused = true)]
async fn a_rejected_ruleset_waits_for_a_change_of_its_app() {
    let publisher = Failing::new();
    let config = RelayConfig { rejected_retry: Duration::from_secs(60), ..RelayConfig::default() };
    let tower = Tower::builder(Arc::new(InMemoryStore::new()))
        .publisher(publisher.clone())
        .relay_config(config)
        .start()
        .await
        .unwrap();
    let a = tower.create_app(&title("A")).await.unwrap();
    publisher.rejected.lock().unwrap().insert(a.id);
    let f = tower.create_flag(a.id, &flag("f")).await.unwrap();
    until("rejected", async || {
        tower.health().await.relay.unpublished.iter().any(|u| u.app_id == a.id && u.rejected)
    })
    .await;
    let attempts = publisher.attempts_of(a.id);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(publisher.attempts_of(a.id), attempts, "not retried before a change or 60 s");
    publisher.rejected.lock().unwrap().clear();
    tower.toggle_flag(f.id, None).await.unwrap();
    let inner = publisher.inner.clone();
    until("the change is published", async || {
        inner.latest(a.id).is_some_and(|r| r.revision == Revision::new(2))
    })
    .await;
    tower.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_relay_and_the_feed_pick_up_what_another_process_committed() {
    // Another process sharing the store: its writes reach this Tower's relay and feed only
    // through the store, at their next poll.
    let store = Arc::new(InMemoryStore::new());
    let publisher = InProcessPublisher::new();
    let tower = Tower::builder(store.clone()).publisher(publisher.clone()).start().await.unwrap();
    let mut feed = tower.subscribe().await.unwrap();
    let now = Timestamp::from_millis(START);
    let app = store.create_app(&title("Elsewhere"), now).await.unwrap();
    let f = store
        .create_flag(app.id, &flag("f"), now, &flagtower_core::Actor::anonymous())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = feed.next().await.unwrap();
        seen.push(match &*event {
            FeedEvent::App { app: a, deleted } => format!("app {} {deleted}", a.title.as_str()),
            FeedEvent::Ruleset(r) => format!("ruleset {}", r.revision.get()),
            FeedEvent::Log(l) => format!("log {:?} {}", l.entry.action, l.entry.flag_id),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "app Elsewhere false".to_owned(),
            "ruleset 1".into(),
            format!("log Create {}", f.value.id)
        ]
    );
    let mut rulesets = publisher.subscribe();
    let r = next(&mut rulesets).await;
    assert_eq!((r.app_id, r.revision), (app.id, Revision::new(1)));
    tower.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_engine_trips_on_evidence_and_ramps_a_recoverable_flag_back() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(START)));
    let metrics = Arc::new(InMemoryMetrics::default());
    let settings = BreakerSettings { interval_ms: 100, ..BreakerSettings::default() };
    let tower = Tower::builder(Arc::new(InMemoryStore::new()))
        .clock(clock.clone())
        .metrics(metrics.clone())
        .breaker(settings)
        .start()
        .await
        .unwrap();
    let app = tower.create_app(&title("A")).await.unwrap();
    let body = NewFlag {
        title: title("checkout"),
        settings: FlagPatch {
            is_active: Some(true),
            error_threshold_percentage: Percent::from_tenths(100),
            is_recoverable: Some(true),
            circuit_recovery_delay: Some(IntervalMs::new(5_000).unwrap()),
            circuit_recovery_rate: Some(IntervalMs::new(1_000).unwrap()),
            circuit_initial_recovery_percentage: Percent::from_tenths(100),
            circuit_recovery_increment_percentage: Percent::from_tenths(500),
            ..FlagPatch::default()
        },
    };
    let f = tower.create_flag(app.id, &body).await.unwrap();

    // Healthy traffic (2 % failures, threshold 10 %) for a minute: no trip.
    for _ in 0..60 {
        clock.advance(1_000);
        tower.record_events(f.id, Counts { success: 49, failure: 1 }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tower.get_flag(f.id).await.unwrap().state, CircuitState::On);

    // Then half of the calls fail: the engine trips it, saying why.
    for _ in 0..10 {
        clock.advance(1_000);
        tower.record_events(f.id, Counts { success: 25, failure: 25 }).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tripped = tower.get_flag(f.id).await.unwrap();
    assert_eq!(tripped.state, CircuitState::Off);
    let logs = tower.app_logs(app.id).await.unwrap();
    let trip = logs.last().unwrap();
    assert_eq!(trip.action, Action::CircuitOpen);
    assert!(trip.detail.as_deref().is_some_and(|d| d.contains("failures")), "{:?}", trip.detail);

    // After the recovery delay it ramps back in: 10 %, then +50 % a second, then closed.
    clock.advance(5_000);
    until("recovering", async || {
        tower.get_flag(f.id).await.unwrap().state == CircuitState::Recovering
    })
    .await;
    assert_eq!(tower.get_flag(f.id).await.unwrap().circuit_recovery_percentage.tenths(), 100);
    for _ in 0..3 {
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let back = tower.get_flag(f.id).await.unwrap();
    assert_eq!(back.state, CircuitState::On, "{back:?}");
    let actions: Vec<_> = tower.app_logs(app.id).await.unwrap().iter().map(|l| l.action).collect();
    assert_eq!(actions.first(), Some(&Action::Create));
    assert_eq!(
        actions[actions.len() - 3..],
        [Action::CircuitOpen, Action::CircuitRecovery, Action::CircuitClose],
        "{actions:?}"
    );
    tower.shutdown().await;
}

/// A change this process commits is published without reading the outbox: its app and origin
/// come with the relay's wake-up (the outbox is read on the relay's timer, here an hour).
#[tokio::test(start_paused = true)]
async fn own_commits_are_published_without_reading_the_outbox() {
    let publisher = InProcessPublisher::new();
    let store = Arc::new(InMemoryStore::new());
    let config = RelayConfig { poll_interval: Duration::from_secs(3600), ..RelayConfig::default() };
    let tower = relaying(store, publisher.clone(), config).await;
    let mut rulesets = publisher.subscribe();
    let app = tower.create_app(&title("Shop")).await.unwrap();
    assert_eq!(next(&mut rulesets).await.revision, Revision::new(0));
    let f = tower.create_flag(app.id, &flag("checkout")).await.unwrap();
    assert_eq!(next(&mut rulesets).await.revision, Revision::new(1));
    let before = outbox_reads(&tower);
    for revision in 2..=6 {
        tower.toggle_flag(f.id, None).await.unwrap();
        let published = next(&mut rulesets).await;
        assert_eq!(
            (published.revision, published.subject().ends_with(".manual")),
            (Revision::new(revision), true)
        );
    }
    tower.open_circuit(f.id).await.unwrap();
    assert_eq!(next(&mut rulesets).await.revision, Revision::new(7));
    assert_eq!(
        outbox_reads(&tower),
        before,
        "five toggles and a trip published, the outbox not read"
    );
    tower.shutdown().await;
}

/// The same with commits arriving from many tasks at once, while the relay is busy publishing:
/// a wake-up whose commits the relay's loop took already reads nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_own_commits_are_published_without_reading_the_outbox() {
    let store = Arc::new(InMemoryStore::new());
    let publisher = InProcessPublisher::new();
    let config = RelayConfig { poll_interval: Duration::from_secs(3600), ..RelayConfig::default() };
    let tower = relaying(store.clone(), publisher.clone(), config).await;
    let mut flags = Vec::new();
    for i in 0..10 {
        let app = tower.create_app(&title(&format!("app {i}"))).await.unwrap();
        flags.push(tower.create_flag(app.id, &flag("f")).await.unwrap());
    }
    // The read of its start.
    let deadline = Instant::now() + Duration::from_secs(10);
    while outbox_reads(&tower) == 0 {
        assert!(Instant::now() < deadline, "the relay never read the outbox");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = outbox_reads(&tower);
    // 8 tasks toggling the 10 apps' flags, 400 changes in all.
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (tower, flags) = (tower.clone(), flags.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    let flag = &flags[(t * 50 + i) % flags.len()];
                    tower.toggle_flag(flag.id, None).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Every app's newest revision reaches the publisher.
    let deadline = Instant::now() + Duration::from_secs(10);
    for flag in &flags {
        let newest = store.ruleset(flag.app_id).await.unwrap().revision;
        while publisher.latest(flag.app_id).is_none_or(|r| r.revision < newest) {
            assert!(Instant::now() < deadline, "app {} was not published", flag.app_id);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(
        outbox_reads(&tower),
        before,
        "the outbox was read again for this process's commits"
    );
}
