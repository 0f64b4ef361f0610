//! The PostgreSQL store against a real server: the core's conformance suite, migrations,
//! concurrency across two stores, TLS and configuration.

use std::sync::Arc;

use flagtower_core::{FlagCommand, NewFlag, Origin, Store, StoreError, Timestamp, Title};
use futures_util::FutureExt;

use flagtower_testkit::TestDatabase;

use super::*;

/// A test database as this store opens it.
trait Open {
    fn options(&self) -> PostgresOptions;
    async fn open(&self) -> PostgresStore;
}

impl Open for TestDatabase {
    fn options(&self) -> PostgresOptions {
        PostgresOptions::from_url(self.url()).expect("the test database URL").pool_size(8)
    }

    async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.options()).await.expect("open the test database")
    }
}

/// A new app titled `title` with a flag of each title of `flags`, made at `t` by no one: the
/// app's id and the flags' ids, in order.
async fn app_with_flags(
    store: &PostgresStore,
    title: &str,
    flags: &[&str],
    t: Timestamp,
) -> (flagtower_core::AppId, Vec<flagtower_core::FlagId>) {
    let by = flagtower_core::Actor::anonymous();
    let app = store.create_app(&Title::parse(title).unwrap(), t).await.unwrap().id;
    let mut ids = Vec::with_capacity(flags.len());
    for f in flags {
        let nf = NewFlag { title: Title::parse(f).unwrap(), settings: Default::default() };
        ids.push(store.create_flag(app, &nf, t, &by).await.unwrap().value.id);
    }
    (app, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    // Each check gets its own database; they are dropped at the end.
    let dbs = Arc::new(std::sync::Mutex::new(Vec::new()));
    if TestDatabase::create().await.is_none() {
        return;
    }
    flagtower_core::conformance::run(|| {
        let dbs = Arc::clone(&dbs);
        async move {
            let db = TestDatabase::create().await.expect("PostgreSQL went away");
            let store = db.open().await;
            dbs.lock().unwrap().push(db);
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_migrate_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let opts = db.options();
    let opens = (0..4).map(|_| {
        let o = opts.clone();
        tokio::spawn(async move { PostgresStore::open(&o).await })
    });
    for o in opens {
        o.await.unwrap().expect("concurrent open");
    }
    let store = db.open().await;
    let client = store.client().await.unwrap();
    let rows = client.query("SELECT version FROM tower_schema_migrations", &[]).await.unwrap();
    assert_eq!(rows.len(), MIGRATIONS.len());
    // The schema is the one the issue asks for: timestamptz, tenths, foreign keys, indexes.
    let ty: String = client
        .query_one("SELECT data_type FROM information_schema.columns WHERE table_name = 'flags' AND column_name = 'created_at'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "timestamp with time zone");
    let fks: i64 = client
        .query_one("SELECT count(*) FROM information_schema.table_constraints WHERE constraint_type = 'FOREIGN KEY'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(fks, 1, "flags reference apps; log entries and outbox records do not (v6)");
    for index in [
        "flags_by_app",
        "logs_by_app",
        "logs_by_flag",
        "outbox_pending",
        "apps_live_title",
        "flags_app_title",
    ] {
        let n: i64 = client
            .query_one("SELECT count(*) FROM pg_indexes WHERE indexname = $1", &[&index])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "index {index}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = db.open().await;
    store
        .client()
        .await
        .unwrap()
        .execute("INSERT INTO tower_schema_migrations (version) VALUES (99)", &[])
        .await
        .unwrap();
    let err = PostgresStore::open(&db.options()).await.unwrap_err();
    assert!(matches!(err, OpenError::TooNew { found: 99, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_behave_as_one() {
    const N: usize = 60;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = (Arc::new(db.open().await), Arc::new(db.open().await));
    let t = Timestamp::from_millis(1_700_000_000_000);
    let app = a.create_app(&Title::parse("shared").unwrap(), t).await.unwrap();
    let nf = NewFlag { title: Title::parse("f").unwrap(), settings: Default::default() };
    let flag =
        b.create_flag(app.id, &nf, t, &flagtower_core::Actor::anonymous()).await.unwrap().value;
    let mut tasks = Vec::new();
    for i in 0..N {
        let s: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.change_flag(
                flag.id,
                &FlagCommand::Toggle(None),
                Origin::Manual,
                t.plus_millis(i as i64),
                &flagtower_core::Actor::anonymous(),
            )
            .await
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.unwrap().unwrap().revision.unwrap().get());
    }
    revisions.sort_unstable();
    assert_eq!(
        revisions,
        (2..2 + N as u64).collect::<Vec<_>>(),
        "strictly increasing, no gaps, no duplicates"
    );
    let (final_flag, logs) =
        a.flag_with_logs(flag.id, flagtower_core::ports::MAX_LOG_PAGE).await.unwrap();
    assert_eq!(logs.len(), N + 1);
    let last = logs.last().unwrap().action;
    assert_eq!(
        final_flag.state.is_active(),
        last == flagtower_core::Action::FlagOn,
        "the final state is the last committed write"
    );
    assert_eq!(b.ruleset(app.id).await.unwrap().revision.get(), 1 + N as u64);

    // The same title from both sides at once: exactly one wins.
    for round in 0..10 {
        let title = Title::parse(&format!("race {round}")).unwrap();
        let (ra, rb) = tokio::join!(a.create_app(&title, t), b.create_app(&title, t));
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {ra:?} / {rb:?}");
        assert!([ra, rb].into_iter().any(|r| matches!(r, Err(StoreError::AlreadyExists { .. }))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_when_required() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let sep = if db.url().contains('?') { '&' } else { '?' };
    let opts = PostgresOptions::from_url(&format!("{}{sep}sslmode=require", db.url())).unwrap();
    let store = match PostgresStore::open(&opts).await {
        Ok(s) => s,
        Err(e) => {
            // A server without TLS refuses sslmode=require: that refusal is the feature working.
            let chain = flagtower_core::ErrorChain(&e).to_string();
            assert!(
                chain.contains("TLS") || chain.contains("SSL") || chain.contains("ssl"),
                "{chain}"
            );
            eprintln!("note: the test server has no TLS; checked that sslmode=require refuses it");
            return;
        }
    };
    let ssl: bool = store
        .client()
        .await
        .unwrap()
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the connection is encrypted");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_the_password_is_never_shown() {
    // Nothing listens on port 1.
    let opts =
        PostgresOptions::from_url("postgres://tower:hunter2@127.0.0.1:1/tower?connect_timeout=2")
            .unwrap();
    let err = PostgresStore::open(&opts).await.unwrap_err();
    let shown = format!("{} | {:?} | {}", err, err, flagtower_core::ErrorChain(&err));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("127.0.0.1:1/tower"), "{shown}");
    match err {
        OpenError::Connect { source: StoreError::Unavailable(_), .. } => {}
        other => panic!("expected an unavailable connect error, got {other:?}"),
    }
    assert!(!format!("{opts:?}").contains("hunter2"));
}

#[test]
fn libpq_variables_fill_what_the_url_leaves_out() {
    let env = |k: &str| match k {
        "PGHOST" => Some("db.internal".to_owned()),
        "PGPORT" => Some("6543".to_owned()),
        "PGUSER" => Some("tower".to_owned()),
        "PGPASSWORD" => Some("secret".to_owned()),
        "PGDATABASE" => Some("tower".to_owned()),
        _ => None,
    };
    let o = PostgresOptions::from_url_and_env(None, env).unwrap();
    assert_eq!(o.target(), "db.internal:6543/tower (user tower)");
    assert_eq!(o.config.get_password(), Some(&b"secret"[..]));
    let o = PostgresOptions::from_url_and_env(Some("postgres://me@other/app"), env).unwrap();
    assert_eq!(o.target(), "other:6543/app (user me)", "the URL wins, variables fill the rest");
    assert!(
        PostgresOptions::from_url_and_env(None, |k| (k == "PGPORT").then(|| "x".to_owned()))
            .is_err()
    );
    assert!(PostgresOptions::from_url("postgres://h/db?sslmode=bogus").is_err());
}

#[test]
fn empty_hosts_and_missing_ports_come_from_the_variables() {
    let target = |url: &str, vars: &[(&str, &str)]| {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        PostgresOptions::from_url_and_env(Some(url), |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap()
        .target()
    };
    let both = [("PGHOST", "db"), ("PGPORT", "6543")];
    assert_eq!(target("postgres://", &both), "db:6543/postgres (user postgres)");
    assert_eq!(target("postgres://", &[]), "localhost:5432/postgres (user postgres)");
    assert_eq!(
        target("postgres://u:p@/x?connect_timeout=3", &[("PGHOST", "h")]),
        "h:5432/x (user u)"
    );
    assert_eq!(target("postgres://u@h:1/x", &[("PGHOST", "o"), ("PGPORT", "2")]), "h:1/x (user u)");
    assert_eq!(target("postgres://u@h/x", &[("PGPORT", "2")]), "h:2/x (user u)");
    assert_eq!(target("postgres://[::1]/x", &[("PGPORT", "2")]), "::1:2/x (user postgres)");
    assert_eq!(
        fill_port("postgres://tower:p%2Fw@db/tower", Some(7)),
        "postgres://tower:p%2Fw@db:7/tower"
    );
    let o = PostgresOptions::from_url_and_env(Some("postgres://"), |k| {
        (k == "PGHOST").then(|| "db.internal".to_owned())
    })
    .unwrap();
    assert_eq!(o.target(), "db.internal:5432/postgres (user postgres)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_exclusive_across_processes() {
    let Some(db) = TestDatabase::create().await else { return };
    // Two stores on one database, as two processes have them.
    flagtower_core::conformance::coordination::run(|| async {
        let (a, b) = (db.open().await, db.open().await);
        (a.coordination().expect("shared"), b.coordination().expect("shared"))
    })
    .await;
    // Connections handed back to the pool are not left inside a transaction.
    // SAVEPOINT only works inside a transaction block.
    let a = db.open().await;
    let coordination = a.coordination().unwrap();
    for _ in 0..4 {
        let held = coordination.lease_publication(flagtower_core::AppId::new(9)).await.unwrap();
        held.expect("free").release().await;
        let client = a.client().await.unwrap();
        assert!(
            client.batch_execute("SAVEPOINT probe").await.is_err(),
            "a pooled connection was left inside a transaction"
        );
    }
}

/// A batch of changes to one app's flags in one transaction leaves the app, its log and its
/// outbox exactly as the same changes made one after the other do, each answered as it would
/// have been alone: not found, unchanged, too large, or written at its own revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_changes_is_the_same_changes_one_after_the_other() {
    use flagtower_core::{FlagPatch, LogQuery};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = db.open().await;
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let described = |d: &str| {
        FlagCommand::Update(FlagPatch {
            description: Some(flagtower_core::model::Description::parse(d).unwrap()),
            ..Default::default()
        })
    };
    // The same commands on two apps of three flags each: alone on the first, batched on the
    // second (the third flag is deleted first, so its change finds nothing).
    let long = "d".repeat(400);
    let commands = |flags: &[flagtower_core::FlagId]| {
        vec![
            (flags[0], FlagCommand::Toggle(None), None),
            (flags[0], FlagCommand::Toggle(None), None),
            (flags[1], FlagCommand::TripOpen, None),
            (flags[0], FlagCommand::Toggle(Some(false)), None), // already off: unchanged
            (flags[2], FlagCommand::Toggle(None), None),        // deleted: not found
            (flags[1], described(&long), Some(1000)),           // grows past the limit
            (flags[1], described("short"), Some(1000)),
            (flags[0], FlagCommand::Close, None),
        ]
    };
    let mut apps = Vec::new();
    for name in ["alone", "batched"] {
        let (app, flags) = app_with_flags(&store, name, &["a", "b", "c"], t).await;
        store.delete_flag(flags[2], t, &by).await.unwrap();
        apps.push((app, flags));
    }
    let (alone_app, alone_flags) = &apps[0];
    let mut alone = Vec::new();
    let change = |i: usize, (id, command, max_ruleset_bytes)| {
        let (now, by) = (t.plus_millis(1 + i as i64), by.clone());
        batch::FlagChange { id, command, origin: Origin::Manual, now, by, max_ruleset_bytes }
    };
    for (i, c) in commands(alone_flags).into_iter().enumerate() {
        alone.push(store.change_flag_alone(&change(i, c)).await);
    }
    let (batched_app, batched_flags) = &apps[1];
    let changes: Vec<_> =
        commands(batched_flags).into_iter().enumerate().map(|(i, c)| change(i, c)).collect();
    let batched = store.change_flags(&changes).await.expect("the batch commits");

    // Each answer as it was alone, but for the ids and revisions of the other app.
    let store = &store;
    let start = |app| async move { store.ruleset(app).await.unwrap().revision.get() };
    assert_eq!(alone.len(), batched.len());
    let (alone_rev, batched_rev) = (start(*alone_app).await, start(*batched_app).await);
    for (i, (a, b)) in alone.iter().zip(&batched).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.action, b.action, "change {i}");
                assert_eq!(a.value.state, b.value.state, "change {i}");
                assert_eq!(a.value.description, b.value.description, "change {i}");
                assert_eq!(
                    a.revision.map(|r| alone_rev - r.get()),
                    b.revision.map(|r| batched_rev - r.get()),
                    "change {i}: the same place among the revisions"
                );
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "change {i}"),
            (a, b) => panic!("change {i}: alone {a:?}, batched {b:?}"),
        }
    }
    assert!(matches!(batched[4], Err(StoreError::NotFound(_))));
    assert!(matches!(batched[5], Err(StoreError::TooLarge { .. })));
    assert!(batched[3].as_ref().unwrap().revision.is_none());

    // The same flags, the same log entries in the same order, the same pending revision.
    let flags_of = |app| async move { store.list_flags(app).await.unwrap() };
    let (fa, fb) = (flags_of(*alone_app).await, flags_of(*batched_app).await);
    assert_eq!(fa.len(), fb.len());
    for (a, b) in fa.iter().zip(&fb) {
        assert_eq!(
            (&a.state, &a.description, a.updated_at),
            (&b.state, &b.description, b.updated_at)
        );
    }
    let logs = |app| async move {
        let q = LogQuery { app: Some(app), ..Default::default() };
        store
            .query_logs(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.entry.action, r.entry.flag_title, r.entry.created_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(logs(*alone_app).await, logs(*batched_app).await);
    let pending = store.pending().await.unwrap();
    let of = |app| pending.iter().find(|p| p.app_id == app).map(|p| p.revision.get());
    assert_eq!(of(*batched_app), Some(batched_rev));
    assert_eq!(of(*alone_app), Some(alone_rev));
}

/// A batch of changes of several apps' flags, interleaved, commits in one transaction, each app's
/// changes at contiguous revisions of its own, in their order, with a log entry each and each
/// app's newest revision in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_across_apps_gives_each_app_its_own_revisions() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = db.open().await;
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let (a, af) = app_with_flags(&store, "a", &["a0", "a1"], t).await;
    let (b, bf) = app_with_flags(&store, "b", &["b0"], t).await;
    let (c, cf) = app_with_flags(&store, "c", &["c0"], t).await;
    let revision = |app| {
        let store = &store;
        async move { store.ruleset(app).await.unwrap().revision.get() }
    };
    let before = [revision(a).await, revision(b).await, revision(c).await];
    let jobs = [
        (af[0], FlagCommand::Toggle(None)),
        (bf[0], FlagCommand::Toggle(None)),
        (af[1], FlagCommand::Toggle(None)),
        (cf[0], FlagCommand::Toggle(None)),
        (af[0], FlagCommand::Toggle(None)),
        (bf[0], FlagCommand::TripOpen),
    ];
    let changes: Vec<_> = jobs
        .iter()
        .enumerate()
        .map(|(i, (id, command))| batch::FlagChange {
            id: *id,
            command: command.clone(),
            origin: Origin::Manual,
            now: t.plus_millis(1 + i as i64),
            by: by.clone(),
            max_ruleset_bytes: None,
        })
        .collect();
    let results = store.change_flags(&changes).await.expect("the batch commits");
    let revisions: Vec<u64> =
        results.iter().map(|r| r.as_ref().unwrap().revision.expect("a change").get()).collect();
    let [ra, rb, rc] = before;
    assert_eq!(revisions, [ra + 1, rb + 1, ra + 2, rc + 1, ra + 3, rb + 2]);
    assert_eq!([revision(a).await, revision(b).await, revision(c).await], [ra + 3, rb + 2, rc + 1]);
    let pending = store.pending().await.unwrap();
    let of = |app| pending.iter().find(|p| p.app_id == app).map(|p| p.revision.get());
    assert_eq!([of(a), of(b), of(c)], [Some(ra + 3), Some(rb + 2), Some(rc + 1)]);
    // Each flag as its last change left it, with a log entry per change after its creation.
    let (a0, a0_logs) = store.flag_with_logs(af[0], 100).await.unwrap();
    assert!(!a0.state.is_active(), "toggled twice");
    assert_eq!(a0_logs.len(), 3);
    let (b0, b0_logs) = store.flag_with_logs(bf[0], 100).await.unwrap();
    assert_eq!(b0.state, flagtower_core::CircuitState::Off, "tripped open");
    assert_eq!(b0_logs.len(), 3);
    for id in [af[1], cf[0]] {
        let (flag, logs) = store.flag_with_logs(id, 100).await.unwrap();
        assert!(flag.state.is_active());
        assert_eq!(logs.len(), 2);
    }
}

/// While one app's change stalls in its transaction, another app's change commits beside it:
/// an app's waiting changes wait only for their own app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_app_holds_back_only_its_own_changes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (store, t) = faulty_store(&db).await;
    let by = flagtower_core::Actor::anonymous();
    let (_, slow) = app_with_flags(&store, "slow", &["stall"], t).await;
    let (_, quick) = app_with_flags(&store, "quick", &["quick"], t).await;
    first_changes(&store, &[slow[0], quick[0]], t).await;
    let client = store.client().await.unwrap();
    client
        .execute("INSERT INTO test_faults VALUES ($1, 'stall')", &[&slow[0].get()])
        .await
        .unwrap();
    let toggle = |id: flagtower_core::FlagId| {
        let (store, by) = (Arc::clone(&store), by.clone());
        tokio::spawn(async move {
            store.change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, t, &by).await
        })
    };
    let stalled = toggle(slow[0]);
    until_stalled(&client).await;
    let quick_change = toggle(quick[0]).await.unwrap().expect("the other app's change commits");
    assert!(quick_change.revision.is_some());
    assert!(!stalled.is_finished(), "the other app's change committed while this one stalled");
    assert!(stalled.await.unwrap().unwrap().revision.is_some());
}

/// Concurrent changes of flags of several apps all commit, an app's many in one transaction,
/// each app's at contiguous revisions of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_commit_together_and_each_counts() {
    const N: usize = 96;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Arc::new(db.open().await);
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let mut flags = Vec::new();
    for (app, flag) in [("one", "a"), ("one", "b"), ("two", "c")] {
        let app = match store.create_app(&Title::parse(app).unwrap(), t).await {
            Ok(app) => app,
            Err(StoreError::AlreadyExists { .. }) => store.list_apps().await.unwrap()[0].clone(),
            Err(e) => panic!("{e}"),
        };
        let nf = NewFlag { title: Title::parse(flag).unwrap(), settings: Default::default() };
        let id = store.create_flag(app.id, &nf, t, &by).await.unwrap().value.id;
        // The first change of each flag goes alone, and teaches the store the flag's app.
        let first = store.change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, t, &by);
        first.await.unwrap();
        flags.push((app.id, id));
    }
    let (one, two) = (flags[0].0, flags[2].0);
    let revision = |app| {
        let store = Arc::clone(&store);
        async move { store.ruleset(app).await.unwrap().revision.get() }
    };
    let before = (revision(one).await, revision(two).await);
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (store, by, (app, id)) = (Arc::clone(&store), by.clone(), flags[i % 3]);
            tokio::spawn(async move {
                let now = t.plus_millis(i as i64);
                let change =
                    store.change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, now, &by);
                (app, change.await.unwrap().revision.expect("a toggle changes").get())
            })
        })
        .collect();
    let (mut of_one, mut of_two) = (Vec::new(), Vec::new());
    for task in tasks {
        let (app, revision) = task.await.unwrap();
        if app == one { of_one.push(revision) } else { of_two.push(revision) }
    }
    of_one.sort_unstable();
    of_two.sort_unstable();
    assert_eq!(of_one, (before.0 + 1..=before.0 + 2 * N as u64 / 3).collect::<Vec<_>>());
    assert_eq!(of_two, (before.1 + 1..=before.1 + N as u64 / 3).collect::<Vec<_>>());
    assert_eq!(revision(one).await, before.0 + 2 * N as u64 / 3);
    assert_eq!(revision(two).await, before.1 + N as u64 / 3);
    assert!(
        store.batcher.batched.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "some changes waited for another's transaction and committed with others"
    );
    for (_, id) in &flags {
        let (flag, logs) = store.flag_with_logs(*id, 1000).await.unwrap();
        // Created, toggled alone, then N/3 toggles (an even number): on.
        assert_eq!(logs.len(), 2 + N / 3);
        assert!(flag.state.is_active());
        assert_eq!(logs.last().unwrap().action, flagtower_core::Action::FlagOn);
    }
}

/// Faults injected into the real server: a trigger on `flags` that fails or stalls the update of
/// the flags listed in `test_faults`.
async fn inject_faults(store: &PostgresStore) {
    let client = store.client().await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE test_faults (flag_id bigint PRIMARY KEY, fault text NOT NULL);
             CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE f text;
             BEGIN
               SELECT fault INTO f FROM test_faults WHERE flag_id = NEW.id;
               IF f = 'fail' THEN RAISE EXCEPTION 'injected fault on flag %', NEW.id; END IF;
               IF f = 'stall' THEN PERFORM pg_sleep(0.5); END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER test_fault BEFORE UPDATE ON flags
               FOR EACH ROW EXECUTE FUNCTION test_fault();",
        )
        .await
        .unwrap();
}

/// A store on `db` with faults injectable (`inject_faults`), and the time its tests write at.
async fn faulty_store(db: &TestDatabase) -> (Arc<PostgresStore>, Timestamp) {
    let store = Arc::new(db.open().await);
    inject_faults(&store).await;
    (store, Timestamp::from_millis(1_700_000_000_000))
}

/// Toggles each flag of `ids` once: the first change of a flag goes alone and teaches the store
/// the flag's app, so that the next ones wait for a lane.
async fn first_changes(store: &PostgresStore, ids: &[flagtower_core::FlagId], t: Timestamp) {
    let by = flagtower_core::Actor::anonymous();
    for &id in ids {
        store.change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, t, &by).await.unwrap();
    }
}

/// Returns once a change is stalled by an injected fault: sleeping inside its transaction.
async fn until_stalled(client: &deadpool_postgres::Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event = 'PgSleep'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the stalled change never stalled");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A batch whose transaction fails is made again change by change: the change that fails gets
/// its own error and writes nothing, and the others of its batch commit as they would have alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_made_change_by_change() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (store, t) = faulty_store(&db).await;
    let by = flagtower_core::Actor::anonymous();
    let (app, ids) = app_with_flags(&store, "app", &["stall", "fail", "good 1", "good 2"], t).await;
    first_changes(&store, &ids, t).await;
    let (stall, fail, good) = (ids[0], ids[1], [ids[2], ids[3]]);
    let client = store.client().await.unwrap();
    let mark = "INSERT INTO test_faults VALUES ($1, $2)";
    client.execute(mark, &[&stall.get(), &"stall"]).await.unwrap();
    client.execute(mark, &[&fail.get(), &"fail"]).await.unwrap();
    let before = store.ruleset(app).await.unwrap().revision.get();

    let toggle = |id: flagtower_core::FlagId| {
        let (store, by) = (Arc::clone(&store), by.clone());
        tokio::spawn(async move {
            store.change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, t, &by).await
        })
    };
    // The stalled change holds its app; the three behind it wait for one transaction, which
    // the failing one aborts.
    let first = toggle(stall);
    until_stalled(&client).await;
    let behind = [toggle(fail), toggle(good[0]), toggle(good[1])];
    assert!(first.await.unwrap().unwrap().revision.is_some());
    let mut results = Vec::new();
    for task in behind {
        results.push(task.await.unwrap());
    }
    let failed = results[0].as_ref().expect_err("the failing change fails");
    assert!(matches!(failed, StoreError::Backend(_)), "{failed:?}");
    assert!(flagtower_core::ErrorChain(failed).to_string().contains("injected fault"));
    let mut revisions: Vec<u64> = results[1..]
        .iter()
        .map(|r| r.as_ref().expect("a good change commits").revision.unwrap().get())
        .collect();
    revisions.sort_unstable();
    assert_eq!(revisions, [before + 2, before + 3], "after the stalled change's revision");
    assert_eq!(store.ruleset(app).await.unwrap().revision.get(), before + 3);
    assert_eq!(
        store.batcher.batched.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the batch did not commit"
    );
    // The failed flag is as it was, with no log entry of the attempt; the good ones are off.
    let (flag, logs) = store.flag_with_logs(fail, 100).await.unwrap();
    assert!(flag.state.is_active());
    assert_eq!(logs.len(), 2);
    for id in good {
        let (flag, logs) = store.flag_with_logs(id, 100).await.unwrap();
        assert!(!flag.state.is_active());
        assert_eq!(logs.len(), 3);
    }
}

/// A change whose request goes away while it waits for a lock leaves no transaction open: its
/// connection goes back to the pool only after a `ROLLBACK`, and nothing of it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_dropped_mid_transaction_is_rolled_back() {
    use flagtower_core::FlagPatch;
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = db.open().await;
    let other = db.open().await;
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let (app, ids) = app_with_flags(&store, "app", &["flag"], t).await;
    let id = ids[0];
    let before = store.ruleset(app).await.unwrap().revision.get();

    // Another process holds the app's row lock, which every writer takes first.
    let mut holder = other.client().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT 1 FROM apps WHERE id = $1 FOR UPDATE", &[&app.get()]).await.unwrap();
    // A rename (which goes alone, never through a lane) waits for it, and is given up.
    let rename = FlagCommand::Update(FlagPatch {
        title: Some(Title::parse("renamed").unwrap()),
        ..Default::default()
    });
    let change = store.change_flag(id, &rename, Origin::Manual, t, &by);
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(200), change).await;
    assert!(gave_up.is_err(), "the change waits for the lock");
    tx.rollback().await.unwrap();

    // The dropped change's transaction ends: no connection of this database stays in one.
    let probe = other.client().await.unwrap();
    let open = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                AND state LIKE 'idle in transaction%'";
    let mut left = 1;
    for _ in 0..500 {
        left = probe.query_one(open, &[]).await.unwrap().get::<_, i64>(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(left, 0, "a transaction was left open");
    // Nothing of it was written, and every pooled connection works.
    let (flag, logs) = store.flag_with_logs(id, 100).await.unwrap();
    assert_eq!(flag.title.as_str(), "flag");
    assert_eq!(logs.len(), 1);
    assert_eq!(store.ruleset(app).await.unwrap().revision.get(), before);
    let toggles =
        (0..16).map(|i| {
            let now = t.plus_millis(i);
            let by = by.clone();
            let store = &store;
            async move {
                store.change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, now, &by).await
            }
        });
    for result in futures_util::future::join_all(toggles).await {
        assert!(result.unwrap().revision.is_some());
    }
    assert_eq!(store.ruleset(app).await.unwrap().revision.get(), before + 16);
}

/// Leases taken together read each app's ruleset in their round trip, and their marks are
/// written by the commit that frees them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_taken_together_read_the_rulesets_and_mark_them_published() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = db.open().await;
    let t = Timestamp::from_millis(1_700_000_000_000);
    let mut apps = Vec::new();
    for (name, flags) in [("one", &["f0", "f1"][..]), ("two", &[]), ("three", &["f0"])] {
        apps.push(app_with_flags(&store, name, flags, t).await.0);
    }
    let gone = flagtower_core::AppId::new(999);
    let pending = |store: &PostgresStore| {
        let store = store.clone();
        async move {
            let mut apps: Vec<_> =
                store.pending().await.unwrap().into_iter().map(|p| p.app_id).collect();
            apps.sort_unstable();
            apps
        }
    };
    assert_eq!(pending(&store).await, [apps[0], apps[2]]);
    let coordination = store.coordination().unwrap();
    let asked = [apps[0], apps[1], gone, apps[2]];
    let leases = coordination.lease_publications(&asked).await.unwrap();
    assert!(leases.iter().all(Option::is_some), "all free");
    let mut releases = Vec::new();
    for (app, lease) in asked.into_iter().zip(leases) {
        let mut lease = lease.unwrap();
        let read = lease.take_ruleset().expect("read with the lease");
        if app == gone {
            assert!(matches!(read, Err(StoreError::NotFound(_))), "{read:?}");
            releases.push(lease.release().boxed());
            continue;
        }
        let read = read.unwrap();
        let stored = store.ruleset(app).await.unwrap();
        assert_eq!((read.app_id, read.revision), (stored.app_id, stored.revision));
        assert_eq!(
            read.flags.iter().map(|f| f.id).collect::<Vec<_>>(),
            stored.flags.iter().map(|f| f.id).collect::<Vec<_>>()
        );
        let store = store.clone();
        releases.push(
            async move { lease.release_published(&store, app, read.revision).await.unwrap() }
                .boxed(),
        );
    }
    // Not marked while one of them is still held.
    let last = releases.pop().unwrap();
    let before_last = futures_util::future::join_all(releases);
    let (_, ()) = futures_util::future::join(before_last, async {
        assert_eq!(pending(&store).await, [apps[0], apps[2]], "marked only at the commit");
        last.await
    })
    .await;
    assert_eq!(pending(&store).await, []);
}

/// When the last of leases taken together is dropped unreleased (a cancelled relay), their
/// transaction is rolled back: a lease released before it learns that its mark was not written,
/// and its app is still pending, to be published again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_whose_last_is_dropped_write_no_mark() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = db.open().await;
    let t = Timestamp::from_millis(1_700_000_000_000);
    let (one, _) = app_with_flags(&store, "one", &["f"], t).await;
    let (two, _) = app_with_flags(&store, "two", &["f"], t).await;
    let coordination = store.coordination().unwrap();
    let mut leases = coordination.lease_publications(&[one, two]).await.unwrap().into_iter();
    let (mut first, second) = (leases.next().flatten().unwrap(), leases.next().flatten().unwrap());
    let revision = first.take_ruleset().unwrap().unwrap().revision;
    let (marked, ()) =
        futures_util::future::join(first.release_published(&store, one, revision), async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(second);
        })
        .await;
    assert!(matches!(marked, Err(StoreError::Unavailable(_))), "{marked:?}");
    let mut pending: Vec<_> =
        store.pending().await.unwrap().into_iter().map(|p| p.app_id).collect();
    pending.sort_unstable();
    assert_eq!(pending, [one, two], "no mark was written");
    // Both apps are free again, once the server has ended the closed connection's backend
    // (which it does on its own time, after the socket closed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let again = coordination.lease_publications(&[one, two]).await.unwrap();
        let free = again.iter().all(Option::is_some);
        futures_util::future::join_all(again.into_iter().flatten().map(|l| l.release())).await;
        if free {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the dropped leases' locks were never freed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Once this process's relay has taken a lease, a change made alone takes its app's lease
/// behind its `COMMIT`: another process cannot lease the app meanwhile, the relay's next lease
/// of it is that one, its ruleset already read at the change's revision; and a lease the
/// relay does not take is given up within a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_alone_takes_its_apps_lease_for_the_relay() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (store, elsewhere) = (db.open().await, db.open().await);
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let (app, flags) = app_with_flags(&store, "early", &["f"], t).await;
    let (here, there) = (store.coordination().unwrap(), elsewhere.coordination().unwrap());
    let free_elsewhere = || async {
        let mut leases = there.lease_publications(&[app]).await.unwrap();
        match leases.pop().flatten() {
            Some(lease) => {
                lease.release().await;
                true
            }
            None => false,
        }
    };

    // No relay has leased anything here yet: a change takes no lease.
    let flag = flags[0];
    let change = |store: &PostgresStore| {
        let (store, by) = (store.clone(), by.clone());
        async move { store.change_flag(flag, &FlagCommand::Toggle(None), Origin::Manual, t, &by).await }
    };
    change(&store).await.unwrap();
    assert!(free_elsewhere().await, "no relay here, no early lease");

    // The relay's first lease.
    for lease in here.lease_publications(&[app]).await.unwrap() {
        lease.expect("free").release().await;
    }
    let revision = change(&store).await.unwrap().revision.expect("a change");
    assert!(!free_elsewhere().await, "the change took its app's lease");
    let mut lease = here.lease_publications(&[app]).await.unwrap().pop().flatten().expect("taken");
    let read = lease.take_ruleset().expect("read in the change's round trip").unwrap();
    assert_eq!((read.app_id, read.revision), (app, revision));
    assert!(!free_elsewhere().await, "held until released");
    lease.release_published(&store, app, revision).await.unwrap();
    assert!(store.pending().await.unwrap().is_empty(), "marked published");
    assert!(free_elsewhere().await, "released");

    // Not taken by the relay: given up.
    change(&store).await.unwrap();
    assert!(!free_elsewhere().await, "taken early");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(free_elsewhere().await, "given up unused");
    assert_eq!(store.pending().await.unwrap().len(), 1, "still to publish");
}

/// While the relay holds a lease, changes alone take none (the relay's leases take the apps
/// together), and a relay lease asked for while a change's early lease is being taken waits
/// for it rather than being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_leases_give_way_to_the_relays_own() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (store, elsewhere) = (db.open().await, db.open().await);
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let (one, one_flags) = app_with_flags(&store, "one", &["f"], t).await;
    let (two, two_flags) = app_with_flags(&store, "two", &["f"], t).await;
    let here = store.coordination().unwrap();
    let there = elsewhere.coordination().unwrap();
    let held = here.lease_publications(&[one]).await.unwrap().pop().flatten().expect("free");
    store
        .change_flag(two_flags[0], &FlagCommand::Toggle(None), Origin::Manual, t, &by)
        .await
        .unwrap();
    let mut leases = there.lease_publications(&[two]).await.unwrap();
    leases.pop().flatten().expect("no early lease while the relay holds one").release().await;
    held.release().await;

    // Many changes and relay leases at once: every relay lease of a free app is granted.
    for round in 0..20 {
        let changes = async {
            for id in [one_flags[0], two_flags[0]] {
                store
                    .change_flag(id, &FlagCommand::Toggle(None), Origin::Manual, t, &by)
                    .await
                    .unwrap();
            }
        };
        let leasing = async {
            tokio::time::sleep(std::time::Duration::from_micros(200 * round)).await;
            here.lease_publications(&[one, two]).await.unwrap()
        };
        let ((), leases) = tokio::join!(changes, leasing);
        assert!(leases.iter().all(Option::is_some), "round {round}: refused to its own relay");
        // Released together: leases taken in one transaction end with the last of them.
        futures_util::future::join_all(leases.into_iter().flatten().map(|l| l.release())).await;
    }
}

/// A change alone guesses its flag is as this handle last wrote it, and makes itself in one
/// round trip guarded by the app's revision: when another process changed the app since (a
/// setting, a rename, a deletion), the guess writes nothing and the change is made from the
/// flag as it is, so nothing the other process wrote is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_change_never_overwrites_another_process() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (store, elsewhere) = (db.open().await, db.open().await);
    let t = Timestamp::from_millis(1_700_000_000_000);
    let by = flagtower_core::Actor::anonymous();
    let (app, flags) = app_with_flags(&store, "guess", &["f", "g"], t).await;
    // A relay here, so that changes alone take early leases too (and a wrong guess gives its
    // up before the change is made the usual way).
    let here = store.coordination().unwrap();
    for lease in here.lease_publications(&[app]).await.unwrap() {
        lease.expect("free").release().await;
    }
    let published = |revision: flagtower_core::Revision| {
        let (here, store) = (Arc::clone(&here), store.clone());
        async move {
            let mut lease = here.lease_publications(&[app]).await.unwrap().pop().flatten();
            let mut lease = lease.take().expect("the relay's own lease");
            let read = lease.take_ruleset().expect("read with the lease").unwrap();
            assert_eq!(read.revision, revision, "the newest ruleset");
            lease.release_published(&store, app, revision).await.unwrap();
        }
    };
    let toggle = |store: &PostgresStore, flag| {
        let (store, by) = (store.clone(), by.clone());
        async move { store.change_flag(flag, &FlagCommand::Toggle(None), Origin::Manual, t, &by).await }
    };
    let on = toggle(&store, flags[0]).await.unwrap();
    // Guessed right: its own change is the last.
    published(on.revision.unwrap()).await;
    let off = toggle(&store, flags[0]).await.unwrap();
    assert_eq!(off.revision.unwrap().get(), on.revision.unwrap().get() + 1);
    published(off.revision.unwrap()).await;
    assert_eq!(off.value.state, flagtower_core::CircuitState::Off);

    // Another process sets the rollout: the next toggle here keeps it.
    let rollout = FlagCommand::Update(flagtower_core::FlagPatch {
        rollout_percentage: Some(flagtower_core::model::Percent::from_tenths(250).unwrap()),
        ..Default::default()
    });
    let set = elsewhere.change_flag(flags[0], &rollout, Origin::Manual, t, &by).await.unwrap();
    let after = toggle(&store, flags[0]).await.unwrap();
    assert_eq!(after.revision.unwrap().get(), set.revision.unwrap().get() + 1);
    published(after.revision.unwrap()).await;
    let stored = store.get_flag(flags[0]).await.unwrap();
    assert_eq!(stored.rollout_percentage.tenths(), 250, "the other process's setting stays");
    assert_eq!(stored, after.value);
    let entries = store.flag_with_logs(flags[0], 10).await.unwrap().1;
    assert_eq!(entries.len(), 5, "create, on, off, the setting, on: {entries:?}");

    // A rename to a taken title, guessed: refused, and nothing written.
    let before = store.ruleset(stored.app_id).await.unwrap().revision;
    let rename = FlagCommand::Update(flagtower_core::FlagPatch {
        title: Some(Title::parse("g").unwrap()),
        ..Default::default()
    });
    let taken = store.change_flag(flags[0], &rename, Origin::Manual, t, &by).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists { .. })), "{taken:?}");
    assert_eq!(store.ruleset(stored.app_id).await.unwrap().revision, before);

    // Deleted by the other process: not found here, not written.
    toggle(&store, flags[0]).await.unwrap();
    elsewhere.delete_flag(flags[0], t, &by).await.unwrap();
    let gone = toggle(&store, flags[0]).await;
    assert!(matches!(gone, Err(StoreError::NotFound(_))), "{gone:?}");
}
