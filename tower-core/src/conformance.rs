//! The conformance suite every [`Store`] implementation runs.
//!
//! An adapter's tests call [`run`] with a function that opens a fresh, empty store; each check
//! gets its own store. A failed check panics with the check's name.
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     flagtower_core::conformance::run(|| async { Arc::new(MyStore::open_temp().await) as _ }).await;
//! }
//! ```

use std::future::Future;
use std::sync::Arc;

use crate::command::{FlagCommand, FlagPatch, NewFlag};
use crate::model::{
    Action, Actor, AppId, CircuitState, FlagId, LogId, Origin, Percent, Revision, SdkKey, Title,
};
use crate::ports::{AppCursor, LogQuery, MAX_LOG_PAGE, Resource, Store, StoreError};
use crate::time::Timestamp;

type Check = (&'static str, fn(Arc<dyn Store>) -> futures_like::BoxFuture);

mod futures_like {
    use std::future::Future;
    use std::pin::Pin;
    pub(super) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
    pub(super) fn boxed(f: impl Future<Output = ()> + Send + 'static) -> BoxFuture {
        Box::pin(f)
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), |s| $crate::conformance::futures_like::boxed($name(s)))),*]
    };
}

/// Every check, by name.
const CHECKS: &[Check] = checks![
    apps_round_trip,
    app_titles_are_unique_case_insensitively,
    deleted_apps_are_gone_but_their_logs_stay,
    flags_round_trip_with_defaults,
    flag_titles_are_unique_within_their_app,
    unknown_parents_and_ids_are_not_found,
    commands_write_a_log_entry_and_a_revision,
    a_no_op_writes_nothing,
    a_failed_change_writes_nothing,
    deleting_a_flag_keeps_its_logs,
    logs_are_ordered,
    log_pages_filter_and_page,
    cursors_follow_revisions_and_logs,
    revisions_and_the_outbox,
    sdk_keys,
    the_breakers_clock_is_stored_and_its_moves_are_checked,
    strange_strings_round_trip,
    concurrent_toggles_are_serialized,
    log_entries_record_who_and_what,
    a_flag_reads_its_newest_logs,
    app_summaries_count_every_live_apps_flags,
    apps_with_flags_are_the_live_apps_and_their_flags,
];

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for (name, check) in CHECKS {
        let store = fresh().await;
        eprintln!("conformance: {name}");
        let handle = tokio::spawn(check(store));
        if let Err(e) = handle.await {
            panic!("conformance check `{name}` failed: {e}");
        }
    }
}

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + ms)
}

/// The actor of the checks' changes.
fn me() -> Actor {
    Actor::named("conformance")
}

fn title(s: &str) -> Title {
    Title::parse(s).expect("valid title")
}

fn new_flag(s: &str) -> NewFlag {
    NewFlag { title: title(s), settings: FlagPatch::default() }
}

async fn apps_round_trip(s: Arc<dyn Store>) {
    assert!(s.list_apps().await.unwrap().is_empty());
    let a = s.create_app(&title("First app"), t(1)).await.unwrap();
    let b = s.create_app(&title("Second App"), t(2)).await.unwrap();
    assert!(b.id > a.id);
    assert_eq!((a.created_at, a.updated_at), (t(1), t(1)));
    assert_eq!(s.get_app(a.id).await.unwrap(), a);
    assert_eq!(s.list_apps().await.unwrap(), vec![a.clone(), b.clone()]);
    let renamed = s.rename_app(b.id, &title("App with Edited name"), t(3)).await.unwrap();
    assert_eq!(renamed.title.as_str(), "App with Edited name");
    assert_eq!((renamed.created_at, renamed.updated_at), (t(2), t(3)));
    assert_eq!(s.get_app(b.id).await.unwrap(), renamed);
    // Renaming to its own title in another case is not a conflict with itself.
    s.rename_app(b.id, &title("APP WITH EDITED NAME"), t(4)).await.unwrap();
    s.ping().await.unwrap();
}

async fn app_titles_are_unique_case_insensitively(s: Arc<dyn Store>) {
    let a = s.create_app(&title("Checkout"), t(1)).await.unwrap();
    for dup in ["Checkout", "checkout", "CHECKOUT"] {
        match s.create_app(&title(dup), t(2)).await {
            Err(StoreError::AlreadyExists { what: Resource::App, .. }) => {}
            other => panic!("duplicate app {dup:?}: {other:?}"),
        }
    }
    let b = s.create_app(&title("Search"), t(3)).await.unwrap();
    assert!(matches!(
        s.rename_app(b.id, &title("checkOUT"), t(4)).await,
        Err(StoreError::AlreadyExists { what: Resource::App, .. })
    ));
    assert_eq!(s.get_app(b.id).await.unwrap().title.as_str(), "Search");
    assert_eq!(s.list_apps().await.unwrap().len(), 2);
    let _ = a;
}

async fn deleted_apps_are_gone_but_their_logs_stay(s: Arc<dyn Store>) {
    let a = s.create_app(&title("Doomed"), t(1)).await.unwrap();
    let f1 = s.create_flag(a.id, &new_flag("one"), t(2), &me()).await.unwrap().value;
    let f2 = s.create_flag(a.id, &new_flag("two"), t(3), &me()).await.unwrap().value;
    let before = s.ruleset(a.id).await.unwrap();
    let deleted = s.delete_app(a.id, t(4), &me()).await.unwrap();
    assert_eq!(deleted.value, a);
    assert_eq!(deleted.revision, Some(Revision::new(before.revision.get() + 1)));
    assert!(matches!(s.get_app(a.id).await, Err(StoreError::NotFound(Resource::App))));
    assert!(matches!(s.list_flags(a.id).await, Err(StoreError::NotFound(Resource::App))));
    assert!(matches!(s.get_flag(f1.id).await, Err(StoreError::NotFound(Resource::Flag))));
    assert!(matches!(s.app_logs(a.id).await, Err(StoreError::NotFound(Resource::App))));
    assert!(matches!(
        s.delete_app(a.id, t(5), &me()).await,
        Err(StoreError::NotFound(Resource::App))
    ));
    assert!(s.list_apps().await.unwrap().is_empty());
    let rs = s.ruleset(a.id).await.unwrap();
    assert!(rs.flags.is_empty());
    assert_eq!(Some(rs.revision), deleted.revision);
    let logs = s.list_logs().await.unwrap();
    let actions: Vec<_> = logs.iter().map(|l| (l.flag_id, l.action)).collect();
    assert!(
        actions.contains(&(f1.id, Action::Delete)) && actions.contains(&(f2.id, Action::Delete))
    );
    assert_eq!(logs.len(), 4, "two creates and two deletes: {actions:?}");
    // The title is free again, and ids are not reused.
    let again = s.create_app(&title("doomed"), t(6)).await.unwrap();
    assert!(again.id > a.id);
    let f3 = s.create_flag(again.id, &new_flag("one"), t(7), &me()).await.unwrap().value;
    assert!(f3.id > f2.id);
}

async fn flags_round_trip_with_defaults(s: Arc<dyn Store>) {
    let a = s.create_app(&title("App"), t(0)).await.unwrap();
    let change = s.create_flag(a.id, &new_flag("App 1 Flag 1"), t(1), &me()).await.unwrap();
    assert_eq!(change.action, Some(Action::Create));
    let f = change.value;
    assert!(change.revision.is_some());
    assert_eq!(f.app_id, a.id);
    assert_eq!(f.state, CircuitState::Off);
    let mut expected = crate::model::Flag::new(a.id, title("App 1 Flag 1"), t(1));
    expected.id = f.id;
    assert_eq!(f, expected, "a new flag has every default");
    assert_eq!(s.get_flag(f.id).await.unwrap(), f);

    let settings = FlagPatch {
        description: Some(crate::model::Description::parse("desc").unwrap()),
        is_active: Some(true),
        rollout_percentage: Percent::from_tenths(333),
        white_listed_users: Some(crate::model::UserList::parse("a,b").unwrap()),
        error_threshold_percentage: Percent::from_tenths(0),
        is_recoverable: Some(true),
        circuit_recovery_delay: Some(crate::model::IntervalMs::new(8000).unwrap()),
        circuit_initial_recovery_percentage: Percent::from_tenths(1),
        circuit_recovery_rate: Some(crate::model::IntervalMs::new(400).unwrap()),
        circuit_recovery_increment_percentage: Percent::from_tenths(1000),
        circuit_recovery_profile: Some(crate::model::RecoveryProfile::Exponential),
        webhooks: Some(crate::model::Webhooks::parse("https://h.example/x").unwrap()),
        ..FlagPatch::default()
    };
    let full = NewFlag { title: title("App 1 Flag 2"), settings };
    let g = s.create_flag(a.id, &full, t(2), &me()).await.unwrap().value;
    assert_eq!(g, full.build(a.id, t(2)).with_id(g.id));
    assert_eq!(s.get_flag(g.id).await.unwrap(), g);
    assert_eq!(s.list_flags(a.id).await.unwrap(), vec![f.clone(), g.clone()]);
    let (flag, logs) = s.flag_with_logs(g.id, MAX_LOG_PAGE).await.unwrap();
    assert_eq!(flag, g);
    assert_eq!(logs.len(), 1);
    assert_eq!((logs[0].action, logs[0].flag_id, logs[0].app_id), (Action::Create, g.id, a.id));
    assert_eq!(logs[0].flag_title, "App 1 Flag 2");
    assert_eq!(logs[0].flag_description, "desc");
    assert_eq!(logs[0].created_at, t(2));
}

async fn flag_titles_are_unique_within_their_app(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let b = s.create_app(&title("B"), t(0)).await.unwrap();
    s.create_flag(a.id, &new_flag("dark-mode"), t(1), &me()).await.unwrap();
    assert!(matches!(
        s.create_flag(a.id, &new_flag("Dark-Mode"), t(2), &me()).await,
        Err(StoreError::AlreadyExists { what: Resource::Flag, .. })
    ));
    let other = s.create_flag(b.id, &new_flag("dark-mode"), t(3), &me()).await.unwrap().value;
    let second = s.create_flag(a.id, &new_flag("beta"), t(4), &me()).await.unwrap().value;
    let rename =
        FlagCommand::Update(FlagPatch { title: Some(title("DARK-MODE")), ..FlagPatch::default() });
    let renamed = s.change_flag(second.id, &rename, Origin::Manual, t(5), &me()).await;
    assert!(
        matches!(renamed, Err(StoreError::AlreadyExists { what: Resource::Flag, .. })),
        "renaming onto a taken title: {renamed:?}"
    );
    assert_eq!(s.get_flag(second.id).await.unwrap().title.as_str(), "beta");
    // Renaming within its own app to a title used in another app is fine.
    s.change_flag(
        other.id,
        &FlagCommand::Update(FlagPatch { title: Some(title("beta")), ..FlagPatch::default() }),
        Origin::Manual,
        t(6),
        &me(),
    )
    .await
    .unwrap();
}

async fn unknown_parents_and_ids_are_not_found(s: Arc<dyn Store>) {
    let nope = AppId::new(4242);
    let nof = FlagId::new(4242);
    let app = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound(Resource::App)));
    let flag = |r: Result<_, StoreError>| matches!(r, Err(StoreError::NotFound(Resource::Flag)));
    assert!(app(s.get_app(nope).await.map(drop)));
    assert!(app(s.rename_app(nope, &title("x"), t(0)).await.map(drop)));
    assert!(app(s.delete_app(nope, t(0), &me()).await.map(drop)));
    assert!(app(s.list_flags(nope).await.map(drop)));
    assert!(app(s.create_flag(nope, &new_flag("x"), t(0), &me()).await.map(drop)));
    assert!(app(s.app_logs(nope).await.map(drop)));
    assert!(app(s.ruleset(nope).await.map(drop)));
    assert!(flag(s.get_flag(nof).await.map(drop)));
    assert!(flag(s.flag_with_logs(nof, MAX_LOG_PAGE).await.map(drop)));
    assert!(flag(
        s.change_flag(nof, &FlagCommand::Toggle(None), Origin::Manual, t(0), &me()).await.map(drop)
    ));
    assert!(flag(s.delete_flag(nof, t(0), &me()).await.map(drop)));
    assert!(flag(s.get_flag(FlagId::new(i64::MAX)).await.map(drop)));
    assert!(flag(s.get_flag(FlagId::new(0)).await.map(drop)));
    assert!(s.list_logs().await.unwrap().is_empty());
}

async fn commands_write_a_log_entry_and_a_revision(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let f = s.create_flag(a.id, &new_flag("f"), t(1), &me()).await.unwrap();
    let mut rev = f.revision.unwrap();
    let id = f.value.id;
    let steps = [
        (FlagCommand::Toggle(None), Action::FlagOn, CircuitState::On),
        (FlagCommand::TripOpen, Action::CircuitOpen, CircuitState::Off),
        (FlagCommand::Close, Action::CircuitClose, CircuitState::On),
        (FlagCommand::Toggle(Some(false)), Action::FlagOff, CircuitState::Off),
        (
            FlagCommand::Update(FlagPatch {
                rollout_percentage: Percent::from_tenths(505),
                ..FlagPatch::default()
            }),
            Action::Update,
            CircuitState::Off,
        ),
    ];
    for (i, (cmd, action, state)) in steps.iter().enumerate() {
        let now = t(10 + i as i64);
        let c = s.change_flag(id, cmd, Origin::Manual, now, &me()).await.unwrap();
        assert_eq!(c.value.state, *state, "{cmd:?}");
        assert_eq!(c.value.updated_at, now);
        assert_eq!(c.action, Some(*action), "{cmd:?} says what it logged");
        assert_eq!(
            c.revision,
            Some(Revision::new(rev.get() + 1)),
            "{cmd:?} bumps the revision by one"
        );
        rev = c.revision.unwrap();
        assert_eq!(s.get_flag(id).await.unwrap(), c.value, "{cmd:?} is stored");
        let (_, logs) = s.flag_with_logs(id, MAX_LOG_PAGE).await.unwrap();
        assert_eq!(logs.last().unwrap().action, *action);
        assert_eq!(logs.len(), i + 2);
    }
    assert_eq!(s.get_flag(id).await.unwrap().rollout_percentage.tenths(), 505);
    let rs = s.ruleset(a.id).await.unwrap();
    assert_eq!(rs.revision, rev);
    assert_eq!(rs.flags, vec![s.get_flag(id).await.unwrap()]);
}

async fn a_no_op_writes_nothing(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let f = s.create_flag(a.id, &new_flag("f"), t(1), &me()).await.unwrap().value;
    let before = s.ruleset(a.id).await.unwrap().revision;
    let c = s
        .change_flag(f.id, &FlagCommand::Toggle(Some(false)), Origin::Manual, t(2), &me())
        .await
        .unwrap();
    assert_eq!((c.revision, c.action), (None, None));
    assert_eq!(c.value, f, "unchanged, updated_at included");
    assert_eq!(s.ruleset(a.id).await.unwrap().revision, before);
    assert_eq!(s.flag_with_logs(f.id, MAX_LOG_PAGE).await.unwrap().1.len(), 1);
}

async fn a_failed_change_writes_nothing(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    s.create_flag(a.id, &new_flag("taken"), t(1), &me()).await.unwrap();
    let f = s.create_flag(a.id, &new_flag("f"), t(2), &me()).await.unwrap().value;
    let before = s.ruleset(a.id).await.unwrap();
    let logs_before = s.list_logs().await.unwrap().len();
    let bad = FlagCommand::Update(FlagPatch {
        title: Some(title("TAKEN")),
        is_active: Some(true),
        ..FlagPatch::default()
    });
    assert!(s.change_flag(f.id, &bad, Origin::Manual, t(3), &me()).await.is_err());
    assert_eq!(s.ruleset(a.id).await.unwrap(), before);
    assert_eq!(s.list_logs().await.unwrap().len(), logs_before);
    assert!(s.create_flag(a.id, &new_flag("taken"), t(4), &me()).await.is_err());
    assert_eq!(s.ruleset(a.id).await.unwrap(), before);
    assert_eq!(s.list_logs().await.unwrap().len(), logs_before);
}

async fn deleting_a_flag_keeps_its_logs(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let f = s.create_flag(a.id, &new_flag("f"), t(1), &me()).await.unwrap().value;
    s.change_flag(f.id, &FlagCommand::Toggle(None), Origin::Manual, t(2), &me()).await.unwrap();
    let rev = s.ruleset(a.id).await.unwrap().revision;
    let d = s.delete_flag(f.id, t(3), &me()).await.unwrap();
    assert_eq!((d.value.id, d.action), (f.id, Some(Action::Delete)));
    assert_eq!(d.revision, Some(Revision::new(rev.get() + 1)));
    assert!(matches!(s.get_flag(f.id).await, Err(StoreError::NotFound(Resource::Flag))));
    assert!(matches!(
        s.delete_flag(f.id, t(4), &me()).await,
        Err(StoreError::NotFound(Resource::Flag))
    ));
    let logs = s.app_logs(a.id).await.unwrap();
    let actions: Vec<_> = logs.iter().map(|l| l.action).collect();
    assert_eq!(actions, [Action::Create, Action::FlagOn, Action::Delete]);
    assert!(logs.iter().all(|l| l.flag_title == "f" && l.flag_id == f.id));
    assert!(s.ruleset(a.id).await.unwrap().flags.is_empty());
    // The title can be used again.
    s.create_flag(a.id, &new_flag("f"), t(5), &me()).await.unwrap();
}

async fn logs_are_ordered(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let b = s.create_app(&title("B"), t(0)).await.unwrap();
    let fa = s.create_flag(a.id, &new_flag("fa"), t(1), &me()).await.unwrap().value;
    let fb = s.create_flag(b.id, &new_flag("fb"), t(2), &me()).await.unwrap().value;
    s.change_flag(fa.id, &FlagCommand::TripOpen, Origin::Manual, t(3), &me()).await.unwrap();
    let all = s.list_logs().await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(all[0].action, Action::CircuitOpen);
    let of_a = s.app_logs(a.id).await.unwrap();
    assert_eq!(
        of_a.iter().map(|l| l.action).collect::<Vec<_>>(),
        [Action::Create, Action::CircuitOpen]
    );
    assert!(of_a.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
    assert!(of_a.iter().all(|l| l.app_id == a.id && l.flag_id == fa.id));
    assert_eq!(s.app_logs(b.id).await.unwrap()[0].flag_id, fb.id);
    // The snapshot keeps the title of the time.
    let rename =
        FlagCommand::Update(FlagPatch { title: Some(title("renamed")), ..FlagPatch::default() });
    s.change_flag(fa.id, &rename, Origin::Manual, t(4), &me()).await.unwrap();
    let of_a = s.app_logs(a.id).await.unwrap();
    assert_eq!(of_a[0].flag_title, "fa");
    assert_eq!(of_a.last().unwrap().flag_title, "renamed");
}

async fn log_pages_filter_and_page(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let b = s.create_app(&title("B"), t(0)).await.unwrap();
    let fa = s.create_flag(a.id, &new_flag("fa"), t(1), &me()).await.unwrap().value;
    let fb = s.create_flag(b.id, &new_flag("fb"), t(2), &me()).await.unwrap().value;
    for i in 0..5 {
        s.change_flag(fa.id, &FlagCommand::Toggle(None), Origin::Manual, t(3 + i), &me())
            .await
            .unwrap();
    }
    s.delete_flag(fb.id, t(10), &me()).await.unwrap();
    let all = s.query_logs(&LogQuery::default()).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].entry.id > w[1].entry.id), "newest first");
    let same: Vec<_> = s.list_logs().await.unwrap();
    assert_eq!(all.iter().map(|r| r.entry.clone()).collect::<Vec<_>>(), same);
    assert!(all.iter().all(|r| r.flag_deleted == (r.entry.flag_id == fb.id)));

    // Pages of 3, newest first, each older than the last entry of the one before.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s.query_logs(&LogQuery { before, limit: 3, ..LogQuery::default() }).await;
        let page = page.unwrap();
        if page.is_empty() {
            break;
        }
        before = Some(page.last().unwrap().entry.id);
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
    assert_eq!(pages.concat(), all);

    let ons = LogQuery { action: Some(Action::FlagOn), ..LogQuery::default() };
    let ons = s.query_logs(&ons).await.unwrap();
    assert_eq!(ons.len(), 3);
    assert!(ons.iter().all(|r| r.entry.action == Action::FlagOn && !r.flag_deleted));
    let of_b = s.query_logs(&LogQuery { app: Some(b.id), ..LogQuery::default() }).await.unwrap();
    assert_eq!(
        of_b.iter().map(|r| r.entry.action).collect::<Vec<_>>(),
        [Action::Delete, Action::Create]
    );

    // `after`: oldest first, strictly newer.
    let first = all.last().unwrap().entry.id;
    let q = LogQuery { after: Some(first), limit: 2, ..LogQuery::default() };
    let newer = s.query_logs(&q).await.unwrap();
    assert_eq!(newer.len(), 2);
    assert!(newer[0].entry.id > first && newer[1].entry.id > newer[0].entry.id);
    assert_eq!(newer[0], all[all.len() - 2]);
    let q = LogQuery { after: Some(all[0].entry.id), ..LogQuery::default() };
    assert!(s.query_logs(&q).await.unwrap().is_empty());
    let q = LogQuery { before: Some(LogId::new(0)), ..LogQuery::default() };
    assert!(s.query_logs(&q).await.unwrap().is_empty());
}

async fn cursors_follow_revisions_and_logs(s: Arc<dyn Store>) {
    let all = || async { s.changed_since(None).await.unwrap().apps };
    let empty = s.changed_since(None).await.unwrap();
    assert!(empty.apps.is_empty());
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let b = s.create_app(&title("B"), t(0)).await.unwrap();
    let cursor = |app: &crate::App, deleted, revision, last_log| AppCursor {
        app: app.clone(),
        deleted,
        revision: Revision::new(revision),
        last_log,
    };
    assert_eq!(all().await, [cursor(&a, false, 0, None), cursor(&b, false, 0, None)]);
    // Since the empty store's mark: both creations.
    assert_eq!(s.changed_since(Some(empty.mark)).await.unwrap().apps.len(), 2);
    let before = s.changed_since(None).await.unwrap().mark;
    s.create_flag(a.id, &new_flag("f"), t(1), &me()).await.unwrap();
    let q = LogQuery { app: Some(a.id), limit: 1, ..LogQuery::default() };
    let last = s.query_logs(&q).await.unwrap().first().map(|r| r.entry.id);
    assert!(last.is_some());
    assert_eq!(all().await[0], cursor(&a, false, 1, last));
    // Since a mark: the app that changed. A store may repeat one that did not (PostgreSQL's do
    // while a transaction older than the mark runs anywhere in the cluster, as other tests'
    // do); `exact_changes` checks the stores that never repeat.
    let since = s.changed_since(Some(before)).await.unwrap();
    assert!(since.apps.contains(&cursor(&a, false, 1, last)), "{:?}", since.apps);
    assert!(since.apps.iter().all(|c| c.app.id == a.id || *c == cursor(&b, false, 0, None)));
    let quiet = s.changed_since(Some(since.mark)).await.unwrap();
    assert!(quiet.apps.len() <= 2);
    // A rename shows in the app; a deleted app keeps its cursor, moved by the delete.
    let renamed = s.rename_app(b.id, &title("B2"), t(2)).await.unwrap();
    s.delete_app(a.id, t(3), &me()).await.unwrap();
    let moved = s.changed_since(Some(quiet.mark)).await.unwrap().apps;
    assert_eq!(moved.len(), 2, "the rename and the deletion: {moved:?}");
    let after = all().await;
    assert_eq!(moved, after);
    assert_eq!(after.len(), 2, "deleted apps keep their cursor");
    assert!(after[0].deleted);
    assert_eq!(after[0].app, a);
    assert_eq!(after[0].revision, Revision::new(2));
    assert!(after[0].last_log > last);
    assert_eq!(after[1], cursor(&renamed, false, 0, None));
}

/// For a store whose [`Store::changed_since`] never repeats an app that did not change (SQLite's
/// and the in-memory one): after a mark, exactly the apps changed since, however many there are.
pub async fn exact_changes(s: Arc<dyn Store>) {
    let mut apps = Vec::new();
    for i in 0..50 {
        apps.push(s.create_app(&title(&format!("app-{i}")), t(0)).await.unwrap());
    }
    let mark = s.changed_since(None).await.unwrap().mark;
    assert!(s.changed_since(Some(mark)).await.unwrap().apps.is_empty());
    s.create_flag(apps[7].id, &new_flag("f"), t(1), &me()).await.unwrap();
    s.rename_app(apps[30].id, &title("renamed"), t(1)).await.unwrap();
    let changed = s.changed_since(Some(mark)).await.unwrap();
    let ids: Vec<_> = changed.apps.iter().map(|c| c.app.id).collect();
    assert_eq!(ids, [apps[7].id, apps[30].id]);
    assert!(s.changed_since(Some(changed.mark)).await.unwrap().apps.is_empty());
}

async fn revisions_and_the_outbox(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let b = s.create_app(&title("B"), t(0)).await.unwrap();
    assert_eq!(s.ruleset(a.id).await.unwrap().revision, Revision::new(0));
    assert!(s.pending().await.unwrap().is_empty(), "creating an app changes no ruleset");
    let fa = s.create_flag(a.id, &new_flag("fa"), t(1), &me()).await.unwrap();
    assert_eq!(fa.revision, Some(Revision::new(1)));
    s.change_flag(fa.value.id, &FlagCommand::Toggle(None), Origin::Circuit, t(2), &me())
        .await
        .unwrap();
    let fb = s.create_flag(b.id, &new_flag("fb"), t(3), &me()).await.unwrap();
    assert_eq!(fb.revision, Some(Revision::new(1)), "revisions are per app");
    let mut pending = s.pending().await.unwrap();
    pending.sort_by_key(|p| p.app_id);
    assert_eq!(pending.len(), 2);
    assert_eq!(
        (pending[0].app_id, pending[0].revision, pending[0].origin),
        (a.id, Revision::new(2), Origin::Circuit)
    );
    assert_eq!(
        (pending[1].app_id, pending[1].revision, pending[1].origin),
        (b.id, Revision::new(1), Origin::Manual)
    );
    s.mark_published(a.id, Revision::new(1)).await.unwrap();
    assert_eq!(s.pending().await.unwrap().len(), 2, "revision 2 of A is still unpublished");
    s.mark_published(a.id, Revision::new(2)).await.unwrap();
    let pending = s.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].app_id, b.id);
    s.mark_published(b.id, Revision::new(1)).await.unwrap();
    assert!(s.pending().await.unwrap().is_empty());
    // Renaming an app does not change its ruleset.
    s.rename_app(a.id, &title("A2"), t(4)).await.unwrap();
    assert!(s.pending().await.unwrap().is_empty());
    let rs = s.ruleset(a.id).await.unwrap();
    assert_eq!((rs.app_id, rs.revision, rs.flags.len()), (a.id, Revision::new(2), 1));
}

async fn sdk_keys(s: Arc<dyn Store>) {
    assert!(s.sdk_key().await.unwrap().is_none());
    let first = SdkKey::generate(t(1));
    assert_eq!(s.ensure_sdk_key(&first).await.unwrap(), first);
    assert_eq!(s.ensure_sdk_key(&SdkKey::generate(t(2))).await.unwrap(), first, "kept");
    assert_eq!(s.sdk_key().await.unwrap(), Some(first.clone()));
    let second = SdkKey::generate(t(3));
    assert_eq!(s.replace_sdk_key(&second).await.unwrap(), second);
    assert_eq!(s.sdk_key().await.unwrap(), Some(second));
}

async fn the_breakers_clock_is_stored_and_its_moves_are_checked(s: Arc<dyn Store>) {
    use crate::breaker::Transition;
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let settings = FlagPatch {
        is_recoverable: Some(true),
        circuit_recovery_delay: Some(crate::model::IntervalMs::new(5_000).unwrap()),
        circuit_recovery_rate: Some(crate::model::IntervalMs::new(1_000).unwrap()),
        circuit_initial_recovery_percentage: Percent::from_tenths(100),
        circuit_recovery_increment_percentage: Percent::from_tenths(300),
        ..FlagPatch::default()
    };
    let f = s
        .create_flag(a.id, &NewFlag { title: title("f"), settings }, t(1), &me())
        .await
        .unwrap()
        .value;
    let on = s
        .change_flag(f.id, &FlagCommand::Toggle(Some(true)), Origin::Manual, t(10), &me())
        .await
        .unwrap()
        .value;
    assert_eq!(
        s.get_flag(f.id).await.unwrap().breaker.since,
        t(10),
        "the window starts when it goes on"
    );
    let logs = |s: Arc<dyn Store>| async move {
        s.flag_with_logs(f.id, MAX_LOG_PAGE).await.unwrap().1.len()
    };

    let why = crate::breaker::TripReason {
        requests: 412,
        failures: 61,
        threshold: on.error_threshold_percentage,
        alpha_ppm: 10_000,
    };
    let trip =
        FlagCommand::Breaker { transition: Transition::Trip(why), seen: Box::new(on.clone()) };
    let c = s.change_flag(f.id, &trip, Origin::Circuit, t(20), &me()).await.unwrap();
    assert!(c.revision.is_some());
    let stored = s.get_flag(f.id).await.unwrap();
    assert_eq!(stored, c.value);
    assert_eq!((stored.state, stored.breaker.recovery_due), (CircuitState::Off, Some(t(5_020))));
    assert_eq!(
        s.pending().await.unwrap().iter().find(|p| p.app_id == a.id).unwrap().origin,
        Origin::Circuit
    );
    let (_, entries) = s.flag_with_logs(f.id, MAX_LOG_PAGE).await.unwrap();
    let last = entries.last().unwrap();
    assert_eq!(last.action, Action::CircuitOpen);
    // The trip's log entry keeps why, in numbers; the others have nothing more to say.
    assert_eq!(last.detail.as_deref(), Some(why.to_string().as_str()));
    assert!(entries[..entries.len() - 1].iter().all(|e| e.detail.is_none()));
    let newest = LogQuery { app: Some(a.id), limit: 1, ..LogQuery::default() };
    let page = s.query_logs(&newest).await.unwrap();
    assert_eq!(page[0].entry.detail, last.detail, "pages of the log carry it too");
    assert_eq!(s.app_logs(a.id).await.unwrap().last().unwrap().detail, last.detail);
    // The same move decided on the flag before the trip is stale: nothing is written.
    let before = logs(Arc::clone(&s)).await;
    let again = s.change_flag(f.id, &trip, Origin::Circuit, t(21), &me()).await.unwrap();
    assert_eq!(again.revision, None);
    assert_eq!(logs(Arc::clone(&s)).await, before);

    let start = FlagCommand::Breaker {
        transition: Transition::StartRecovery,
        seen: Box::new(stored.clone()),
    };
    let rec = s.change_flag(f.id, &start, Origin::Circuit, t(5_020), &me()).await.unwrap().value;
    assert_eq!(
        (rec.state, rec.circuit_recovery_percentage.tenths()),
        (CircuitState::Recovering, 100)
    );
    assert_eq!(s.get_flag(f.id).await.unwrap().breaker.next_step_due, Some(t(6_020)));
    let before = logs(Arc::clone(&s)).await;
    let step = FlagCommand::Breaker { transition: Transition::Step, seen: Box::new(rec.clone()) };
    let stepped = s.change_flag(f.id, &step, Origin::Circuit, t(6_020), &me()).await.unwrap();
    assert!(stepped.revision.is_some(), "a step is published");
    assert_eq!(stepped.action, None, "and says it wrote no log entry");
    assert_eq!(stepped.value.circuit_recovery_percentage.tenths(), 400);
    assert_eq!(logs(Arc::clone(&s)).await, before, "but not logged");

    // An operator turning it off stops the recovery for good.
    let off = s
        .change_flag(f.id, &FlagCommand::Toggle(Some(false)), Origin::Manual, t(6_100), &me())
        .await
        .unwrap()
        .value;
    assert_eq!(off.breaker.next_step_due, None);
    assert_eq!(s.get_flag(f.id).await.unwrap().breaker, off.breaker);
}

async fn strange_strings_round_trip(s: Arc<dyn Store>) {
    for raw in
        ["Robert'); DROP TABLE apps;--", "日本語のアプリ 🚀", "\"quoted\" \\ back", "%_ like"]
    {
        let a = s.create_app(&title(raw), t(0)).await.unwrap();
        assert_eq!(s.get_app(a.id).await.unwrap().title.as_str(), raw);
        let f = s.create_flag(a.id, &new_flag(raw), t(1), &me()).await.unwrap().value;
        assert_eq!(s.get_flag(f.id).await.unwrap().title.as_str(), raw);
    }
    assert_eq!(s.list_apps().await.unwrap().len(), 4);
    let long = "é".repeat(255);
    let a = s.create_app(&title(&long), t(2)).await.unwrap();
    assert_eq!(s.get_app(a.id).await.unwrap().title.as_str(), long);
}

async fn concurrent_toggles_are_serialized(s: Arc<dyn Store>) {
    const N: usize = 40;
    let a = s.create_app(&title("A"), t(0)).await.unwrap();
    let f = s.create_flag(a.id, &new_flag("f"), t(1), &me()).await.unwrap().value;
    let mut tasks = Vec::new();
    for i in 0..N {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            s.change_flag(f.id, &FlagCommand::Toggle(None), Origin::Manual, t(2 + i as i64), &me())
                .await
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.unwrap().unwrap().revision.unwrap().get());
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (2..2 + N as u64).collect::<Vec<_>>(), "no gaps, no duplicates");
    let (flag, logs) = s.flag_with_logs(f.id, MAX_LOG_PAGE).await.unwrap();
    assert_eq!(logs.len(), N + 1);
    // An even number of flips from off ends off; on/off alternate in commit order.
    assert_eq!(flag.state, CircuitState::Off);
    for (i, log) in logs[1..].iter().enumerate() {
        let expected = if i % 2 == 0 { Action::FlagOn } else { Action::FlagOff };
        assert_eq!(log.action, expected);
    }
}

/// The conformance suite every [`crate::Coordination`] runs: leases exclusive between two handles
/// (two processes sharing a store, or two users of one in-process coordination), per app, and
/// given back by release and by drop.
pub mod coordination {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::model::AppId;
    use crate::ports::Coordination;

    /// Runs every check on a fresh pair from `pair`: two handles on the same coordination, as two
    /// processes sharing one store hold them.
    pub async fn run<F, Fut>(pair: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = (Arc<dyn Coordination>, Arc<dyn Coordination>)>,
    {
        let (a, b) = pair().await;
        eprintln!("coordination conformance: publication leases");
        publication_leases_are_exclusive_per_app(&*a, &*b).await;
        let (a, b) = pair().await;
        eprintln!("coordination conformance: publication leases taken together");
        leases_taken_together_are_each_exclusive(&*a, &*b).await;
        let (a, b) = pair().await;
        eprintln!("coordination conformance: the breaker lease");
        one_holds_the_breaker_lease(&*a, &*b).await;
    }

    /// Retries `take` until it grants, within 5 s: a lease given back by a closed connection is
    /// freed when the server notices.
    async fn eventually<T, Fut: Future<Output = Option<T>>>(
        what: &str,
        take: impl Fn() -> Fut,
    ) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(lease) = take().await {
                return lease;
            }
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn publication_leases_are_exclusive_per_app(a: &dyn Coordination, b: &dyn Coordination) {
        let (app, other) = (AppId::new(7), AppId::new(8));
        let held = a.lease_publication(app).await.unwrap().expect("free at first");
        assert!(b.lease_publication(app).await.unwrap().is_none(), "refused while held");
        assert!(a.lease_publication(app).await.unwrap().is_none(), "by the same handle too");
        let second = b.lease_publication(other).await.unwrap().expect("leases are per app");
        second.release().await;
        held.release().await;
        let again = b.lease_publication(app).await.unwrap().expect("free after release");
        assert!(a.lease_publication(app).await.unwrap().is_none(), "held by the other again");
        // Dropped without release (a cancelled relay): freed too.
        drop(again);
        let l = eventually("a dropped lease is freed", || async {
            a.lease_publication(app).await.unwrap()
        })
        .await;
        l.release().await;
    }

    async fn leases_taken_together_are_each_exclusive(a: &dyn Coordination, b: &dyn Coordination) {
        let (x, y, z) = (AppId::new(17), AppId::new(18), AppId::new(19));
        let held = b.lease_publication(y).await.unwrap().expect("free at first");
        let mut leases = a.lease_publications(&[x, y, z]).await.unwrap();
        assert_eq!(leases.len(), 3, "one answer per app");
        let lz = leases.pop().flatten().expect("a free app is granted");
        assert!(leases.pop().flatten().is_none(), "an app another holds is refused");
        let lx = leases.pop().flatten().expect("a free app is granted");
        for app in [x, z] {
            assert!(b.lease_publication(app).await.unwrap().is_none(), "refused while held");
        }
        held.release().await;
        // Released together (releasing one may wait for the others), they are all freed.
        futures_util::future::join(lx.release(), lz.release()).await;
        let again = b.lease_publications(&[x, y, z]).await.unwrap();
        assert!(again.iter().all(Option::is_some), "all free after release");
        // One dropped without release (a cancelled relay), the others released: all freed.
        let mut again = again.into_iter().flatten();
        let (first, second, third) = (again.next(), again.next(), again.next());
        drop(first);
        futures_util::future::join(second.unwrap().release(), third.unwrap().release()).await;
        let all = eventually("leases taken together are freed", || async {
            let leases = a.lease_publications(&[x, y, z]).await.unwrap();
            leases.iter().all(Option::is_some).then_some(leases)
        })
        .await;
        futures_util::future::join_all(all.into_iter().flatten().map(|l| l.release())).await;
    }

    async fn one_holds_the_breaker_lease(a: &dyn Coordination, b: &dyn Coordination) {
        let mut leader = a.lease_breaker().await.unwrap().expect("the first one leads");
        assert!(leader.alive().await);
        assert!(b.lease_breaker().await.unwrap().is_none(), "only one leader");
        assert!(a.lease_breaker().await.unwrap().is_none(), "not twice from one handle either");
        drop(leader);
        let mut next =
            eventually("the lease is taken over", || async { b.lease_breaker().await.unwrap() })
                .await;
        assert!(next.alive().await);
    }
}

/// The conformance suite every [`crate::MetricsStore`] runs: the same counts in, the same
/// buckets out.
pub mod metrics {
    use std::future::Future;
    use std::sync::Arc;

    use crate::model::Counts;
    use crate::model::{AppId, FlagId};
    use crate::ports::{Bucket, MetricsStore};
    use crate::time::Timestamp;

    /// Runs every check, each on a fresh metrics store from `fresh`.
    pub async fn run<F, Fut>(fresh: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Arc<dyn MetricsStore>>,
    {
        type Check = (&'static str, fn(Arc<dyn MetricsStore>) -> super::futures_like::BoxFuture);
        let checks: &[Check] = checks![
            counts_sum_into_aligned_buckets,
            same_millisecond_writers_all_count,
            flags_are_independent_and_prepare_is_idempotent,
        ];
        for (name, check) in checks {
            let store = fresh().await;
            eprintln!("metrics conformance: {name}");
            if let Err(e) = tokio::spawn(check(store)).await {
                panic!("metrics conformance check `{name}` failed: {e}");
            }
        }
    }

    /// Recent enough for any retention a store applies (its clock is the wall clock).
    fn base() -> i64 {
        let now = crate::time::Clock::now(&crate::time::SystemClock).as_millis();
        now - now.rem_euclid(60_000) - 120_000
    }

    fn c(success: u64, failure: u64) -> Counts {
        Counts { success, failure }
    }

    async fn counts_sum_into_aligned_buckets(m: Arc<dyn MetricsStore>) {
        let (f, a) = (FlagId::new(1), AppId::new(1));
        m.prepare(f, a).await.unwrap();
        let t = base();
        for (dt, counts) in [
            (0, c(1, 0)),
            (10, c(2, 1)),
            (2_999, c(1, 1)),
            (3_000, c(0, 4)),
            (7_500, c(5, 0)),
            (20_000, c(9, 9)),
        ] {
            m.record(f, a, counts, Timestamp::from_millis(t + dt)).await.unwrap();
        }
        let got = m
            .buckets(f, Timestamp::from_millis(t), Timestamp::from_millis(t + 9_999), 3_000)
            .await
            .unwrap();
        let got: Vec<Bucket> = got.into_iter().filter(|b| b.success + b.failure > 0).collect();
        // `t` is a multiple of 60 000, so of 3 000: buckets start at t, t+3000, t+6000.
        assert_eq!(
            got,
            vec![
                Bucket { timestamp: t, success: 4, failure: 2 },
                Bucket { timestamp: t + 3_000, success: 0, failure: 4 },
                Bucket { timestamp: t + 6_000, success: 5, failure: 0 },
            ],
            "sums per aligned bucket, ascending, samples after `to` left out"
        );
        // A window starting mid-bucket: edges stay multiples of the width.
        let got = m
            .buckets(
                f,
                Timestamp::from_millis(t + 3_000),
                Timestamp::from_millis(t + 60_000),
                10_000,
            )
            .await
            .unwrap();
        let got: Vec<Bucket> = got.into_iter().filter(|b| b.success + b.failure > 0).collect();
        assert_eq!(
            got,
            vec![
                Bucket { timestamp: t, success: 5, failure: 4 },
                Bucket { timestamp: t + 20_000, success: 9, failure: 9 },
            ]
        );
    }

    async fn same_millisecond_writers_all_count(m: Arc<dyn MetricsStore>) {
        let (f, a) = (FlagId::new(2), AppId::new(1));
        m.prepare(f, a).await.unwrap();
        let at = Timestamp::from_millis(base() + 1_234);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let m = Arc::clone(&m);
                tokio::spawn(async move { m.record(f, a, c(1, i % 2), at).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let got = m.buckets(f, at, at, 1_000).await.unwrap();
        let total =
            got.iter().fold(c(0, 0), |acc, b| c(acc.success + b.success, acc.failure + b.failure));
        assert_eq!(total, c(20, 10), "no count lost to a same-millisecond write");
    }

    async fn flags_are_independent_and_prepare_is_idempotent(m: Arc<dyn MetricsStore>) {
        let a = AppId::new(1);
        let (f1, f2, f3) = (FlagId::new(3), FlagId::new(4), FlagId::new(5));
        for f in [f1, f2, f1, f2] {
            m.prepare(f, a).await.unwrap();
        }
        let t = base();
        m.record(f1, a, c(3, 0), Timestamp::from_millis(t + 1)).await.unwrap();
        m.record(f2, a, c(0, 7), Timestamp::from_millis(t + 1)).await.unwrap();
        let from = Timestamp::from_millis(t);
        let to = Timestamp::from_millis(t + 59_999);
        let sum = |b: Vec<Bucket>| {
            b.iter().fold(c(0, 0), |acc, b| c(acc.success + b.success, acc.failure + b.failure))
        };
        assert_eq!(sum(m.buckets(f1, from, to, 60_000).await.unwrap()), c(3, 0));
        assert_eq!(sum(m.buckets(f2, from, to, 60_000).await.unwrap()), c(0, 7));
        assert_eq!(
            sum(m.buckets(f3, from, to, 60_000).await.unwrap()),
            c(0, 0),
            "a flag never written reads as empty"
        );
    }
}

/// MUST: every log entry keeps its actor; an edit's entry keeps what it changed
/// ([`crate::plan::changes`]); creation and deletion record no changes; deleting an app logs
/// each flag's deletion by the app's deleter.
async fn log_entries_record_who_and_what(s: Arc<dyn Store>) {
    let app = s.create_app(&title("Audit"), t(1)).await.unwrap();
    let ops = Actor::named("ops@example.com");
    let flag = s.create_flag(app.id, &new_flag("audited"), t(2), &ops).await.unwrap().value;
    let patch = FlagPatch {
        rollout_percentage: Some(Percent::from_tenths(250).unwrap()),
        ..FlagPatch::default()
    };
    s.change_flag(flag.id, &FlagCommand::Update(patch), Origin::Manual, t(3), &Actor::named("ci"))
        .await
        .unwrap();
    s.change_flag(flag.id, &FlagCommand::Toggle(Some(true)), Origin::Manual, t(4), &ops)
        .await
        .unwrap();
    let second = s.create_flag(app.id, &new_flag("second"), t(5), &ops).await.unwrap().value;
    s.delete_flag(second.id, t(6), &Actor::breaker()).await.unwrap();
    let (_, own) = s.flag_with_logs(flag.id, MAX_LOG_PAGE).await.unwrap();
    s.delete_app(app.id, t(7), &Actor::anonymous()).await.unwrap();
    let mut logs = s.list_logs().await.unwrap();
    logs.reverse();
    let seen: Vec<_> = logs
        .iter()
        .map(|l| (l.action, l.actor.as_ref().map(Actor::as_str).unwrap_or("?")))
        .collect();
    assert_eq!(
        seen,
        [
            (Action::Create, "ops@example.com"),
            (Action::Update, "ci"),
            (Action::FlagOn, "ops@example.com"),
            (Action::Create, "ops@example.com"),
            (Action::Delete, "breaker"),
            (Action::Delete, "anonymous"),
        ]
    );
    let update = logs[1].changes.as_ref().expect("an update records its changes");
    assert_eq!(update.len(), 1, "{update:?}");
    assert_eq!(update["rollout_percentage"], serde_json::json!([100, 25]));
    let toggle = logs[2].changes.as_ref().expect("a toggle records its changes");
    assert_eq!(toggle["is_active"], serde_json::json!([false, true]));
    assert!(logs[0].changes.is_none() && logs[4].changes.is_none() && logs[5].changes.is_none());
    // The flag's own log reads the same.
    assert_eq!(own[1].actor, logs[1].actor);
    assert_eq!(own[1].changes, logs[1].changes);
}

/// MUST: `flag_with_logs(id, n)` returns the flag's newest `n` entries, oldest first.
async fn a_flag_reads_its_newest_logs(s: Arc<dyn Store>) {
    let app = s.create_app(&title("Busy"), t(1)).await.unwrap();
    let flag = s.create_flag(app.id, &new_flag("busy"), t(2), &me()).await.unwrap().value;
    let other = s.create_flag(app.id, &new_flag("other"), t(2), &me()).await.unwrap().value;
    for i in 0..9 {
        for f in [flag.id, other.id] {
            s.change_flag(f, &FlagCommand::Toggle(None), Origin::Manual, t(3 + i), &me())
                .await
                .unwrap();
        }
    }
    let (_, all) = s.flag_with_logs(flag.id, MAX_LOG_PAGE).await.unwrap();
    assert_eq!(all.len(), 10);
    let (_, newest) = s.flag_with_logs(flag.id, 3).await.unwrap();
    assert_eq!(newest, all[7..].to_vec());
    assert!(newest.iter().all(|l| l.flag_id == flag.id));
    let (_, one) = s.flag_with_logs(flag.id, 1).await.unwrap();
    assert_eq!(one, all[9..].to_vec());
}

/// MUST: `app_summaries` lists the live apps by id with the counts of their flags' states, the
/// same as counting `list_flags`; deleted apps are left out, apps without flags count zeros.
async fn app_summaries_count_every_live_apps_flags(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(1)).await.unwrap();
    let empty = s.create_app(&title("Empty"), t(1)).await.unwrap();
    let gone = s.create_app(&title("Gone"), t(1)).await.unwrap();
    for (i, on) in [true, false, true].into_iter().enumerate() {
        let f = s.create_flag(a.id, &new_flag(&format!("f{i}")), t(2), &me()).await.unwrap().value;
        if on {
            s.change_flag(f.id, &FlagCommand::Toggle(Some(true)), Origin::Manual, t(3), &me())
                .await
                .unwrap();
        }
    }
    s.create_flag(gone.id, &new_flag("g"), t(2), &me()).await.unwrap();
    s.delete_app(gone.id, t(4), &me()).await.unwrap();
    let summaries = s.app_summaries().await.unwrap();
    let ids: Vec<AppId> = summaries.iter().map(|(app, _)| app.id).collect();
    assert_eq!(ids, [a.id, empty.id]);
    let counts = summaries[0].1;
    assert_eq!(counts, crate::model::FlagCounts::of(&s.list_flags(a.id).await.unwrap()));
    assert_eq!((counts.total, counts.active, counts.closed, counts.open), (3, 2, 2, 1));
    assert_eq!(summaries[1].1, crate::model::FlagCounts::default());
    assert_eq!(summaries[0].0, s.get_app(a.id).await.unwrap());
}

/// MUST: `apps_with_flags` is every live app by id with its flags by id, as `list_apps` and
/// `list_flags` give them; deleted apps are left out, an app without flags has none.
async fn apps_with_flags_are_the_live_apps_and_their_flags(s: Arc<dyn Store>) {
    let a = s.create_app(&title("A"), t(1)).await.unwrap();
    let empty = s.create_app(&title("Empty"), t(1)).await.unwrap();
    let gone = s.create_app(&title("Gone"), t(1)).await.unwrap();
    let b = s.create_app(&title("B"), t(1)).await.unwrap();
    // Created out of order across apps, so that "by id" is checked within each app.
    for (app, name) in [(b.id, "b1"), (a.id, "a1"), (b.id, "b2"), (gone.id, "g"), (a.id, "a2")] {
        s.create_flag(app, &new_flag(name), t(2), &me()).await.unwrap();
    }
    let f = s.list_flags(a.id).await.unwrap()[0].id;
    s.change_flag(f, &FlagCommand::Toggle(Some(true)), Origin::Manual, t(3), &me()).await.unwrap();
    s.delete_app(gone.id, t(4), &me()).await.unwrap();
    let all = s.apps_with_flags().await.unwrap();
    let ids: Vec<AppId> = all.iter().map(|(app, _)| app.id).collect();
    assert_eq!(ids, [a.id, empty.id, b.id]);
    for (app, flags) in &all {
        assert_eq!(*app, s.get_app(app.id).await.unwrap());
        assert_eq!(
            *flags,
            s.list_flags(app.id).await.unwrap(),
            "the flags of {}",
            app.title.as_str()
        );
    }
    assert_eq!(all[0].1.len(), 2);
    assert!(all[0].1[0].state.is_active());
    assert!(all[1].1.is_empty());
    assert_eq!(all[2].1.len(), 2);
}
