//! Changes to a flag as data, and the pure function that applies them
//! (the circuit state table: off, on, recovering).
//!
//! A store runs [`FlagCommand::apply`] inside its transaction, on the flag as it is in that
//! transaction, so a read-modify-write (a toggle that flips) is never lost to a concurrent one.

use crate::model::{
    Action, CircuitState, Description, Flag, IntervalMs, Percent, RecoveryProfile, Title, UserList,
    Webhooks,
};
use crate::time::Timestamp;

/// A partial edit of a flag's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagPatch {
    /// New title.
    pub title: Option<Title>,
    /// New description.
    pub description: Option<Description>,
    /// Turns the flag on (`close`, recovery 100 %) or off (`open`).
    pub is_active: Option<bool>,
    /// New rollout.
    pub rollout_percentage: Option<Percent>,
    /// New whitelist.
    pub white_listed_users: Option<UserList>,
    /// New error threshold.
    pub error_threshold_percentage: Option<Percent>,
    /// New recoverability.
    pub is_recoverable: Option<bool>,
    /// New recovery share.
    pub circuit_recovery_percentage: Option<Percent>,
    /// New recovery delay.
    pub circuit_recovery_delay: Option<IntervalMs>,
    /// New first recovery step.
    pub circuit_initial_recovery_percentage: Option<Percent>,
    /// New time between recovery steps.
    pub circuit_recovery_rate: Option<IntervalMs>,
    /// New recovery step size.
    pub circuit_recovery_increment_percentage: Option<Percent>,
    /// New recovery profile.
    pub circuit_recovery_profile: Option<RecoveryProfile>,
    /// New webhook list.
    pub webhooks: Option<Webhooks>,
}

impl FlagPatch {
    /// Writes every given field into `flag`, then the state `is_active` asks for.
    pub fn apply_to(&self, flag: &mut Flag) {
        fn set<T: Clone>(dst: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *dst = v.clone();
            }
        }
        set(&mut flag.title, &self.title);
        set(&mut flag.description, &self.description);
        set(&mut flag.rollout_percentage, &self.rollout_percentage);
        set(&mut flag.white_listed_users, &self.white_listed_users);
        set(&mut flag.error_threshold_percentage, &self.error_threshold_percentage);
        set(&mut flag.is_recoverable, &self.is_recoverable);
        set(&mut flag.circuit_recovery_percentage, &self.circuit_recovery_percentage);
        set(&mut flag.circuit_recovery_delay, &self.circuit_recovery_delay);
        set(
            &mut flag.circuit_initial_recovery_percentage,
            &self.circuit_initial_recovery_percentage,
        );
        set(&mut flag.circuit_recovery_rate, &self.circuit_recovery_rate);
        set(
            &mut flag.circuit_recovery_increment_percentage,
            &self.circuit_recovery_increment_percentage,
        );
        set(&mut flag.circuit_recovery_profile, &self.circuit_recovery_profile);
        set(&mut flag.webhooks, &self.webhooks);
        match self.is_active {
            Some(true) => turn_on(flag),
            Some(false) => flag.state = CircuitState::Off,
            None => {}
        }
    }
}

/// The settings of a flag to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlag {
    /// Its title.
    pub title: Title,
    /// Every other setting; unset ones take their defaults. A new flag is off unless
    /// `is_active` is true.
    pub settings: FlagPatch,
}

impl NewFlag {
    /// The flag to insert (its id is assigned by the store).
    pub fn build(&self, app_id: crate::model::AppId, now: Timestamp) -> Flag {
        let mut flag = Flag::new(app_id, self.title.clone(), now);
        self.settings.apply_to(&mut flag);
        flag
    }
}

fn turn_on(flag: &mut Flag) {
    // "On" means normal evaluation: nothing of the rollout is held back.
    flag.state = CircuitState::On;
    flag.circuit_recovery_percentage = Percent::HUNDRED;
}

/// A change to one existing flag.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlagCommand {
    /// `PATCH /api/flags/:id`: edit settings; log `update`.
    Update(FlagPatch),
    /// `PATCH /api/flags/:id/toggle`: set `is_active`, or flip it when `None`; log
    /// `flag_on` / `flag_off`.
    Toggle(Option<bool>),
    /// `POST /api/flags/circuit/:id/open`, an operator's emergency stop: off, recovery 0 %, no
    /// automatic recovery; log `circuit_open`.
    TripOpen,
    /// `POST /api/flags/circuit/:id/close`: on, recovery 100 %; log `circuit_close`.
    Close,
    /// A move of the circuit breaker, decided on the flag `seen`: applied only if the flag is
    /// still exactly that (check-and-set), so the breaker never overwrites a change made since,
    /// even one made within the same millisecond.
    Breaker {
        /// The move.
        transition: crate::breaker::Transition,
        /// The flag the breaker decided on.
        seen: Box<Flag>,
    },
}

impl FlagCommand {
    /// What the log entry of this command says beyond its action: why the breaker tripped.
    pub fn log_detail(&self) -> Option<String> {
        match self {
            Self::Breaker { transition: crate::breaker::Transition::Trip(why), .. } => {
                Some(why.to_string())
            }
            _ => None,
        }
    }

    /// The flag after the command and the log action to write (`None` for a breaker step that
    /// is published but not logged), or `None` when the command changes nothing (then nothing
    /// is written or published).
    ///
    /// Manual commands keep the breaker's clock true: a change of state cancels any pending
    /// automatic recovery, and a flag that goes on starts a new counting window.
    pub fn apply(&self, current: &Flag, now: Timestamp) -> Option<(Flag, Option<Action>)> {
        if let Self::Breaker { transition, seen } = self {
            if current != &**seen {
                return None;
            }
            return Some(crate::breaker::apply(*transition, current, now));
        }
        let mut next = current.clone();
        let action = match self {
            Self::Update(patch) => {
                patch.apply_to(&mut next);
                Action::Update
            }
            Self::Toggle(target) => {
                let on = target.unwrap_or(!current.state.is_active());
                if on {
                    turn_on(&mut next);
                    Action::FlagOn
                } else {
                    next.state = CircuitState::Off;
                    Action::FlagOff
                }
            }
            Self::TripOpen => {
                next.state = CircuitState::Off;
                next.circuit_recovery_percentage = Percent::ZERO;
                Action::CircuitOpen
            }
            Self::Close => {
                turn_on(&mut next);
                Action::CircuitClose
            }
            Self::Breaker { .. } => unreachable!("handled above"),
        };
        let sets_state = match self {
            Self::Update(patch) => patch.is_active.is_some(),
            _ => true,
        };
        if next.state != current.state || sets_state {
            next.breaker.recovery_due = None;
            next.breaker.next_step_due = None;
        }
        if next.state == CircuitState::On && current.state != CircuitState::On {
            next.breaker.since = now;
        }
        if next.same_settings(current) {
            return None;
        }
        next.updated_at = now.max(current.updated_at);
        Some((next, Some(action)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, FlagId};
    use proptest::prelude::*;

    fn flag() -> Flag {
        let mut f = Flag::new(AppId::new(1), Title::parse("f").unwrap(), Timestamp::from_millis(1));
        f.id = FlagId::new(1);
        f
    }

    const NOW: Timestamp = Timestamp::from_millis(1_000);

    #[test]
    fn toggle_flips_and_sets() {
        let (on, a) = FlagCommand::Toggle(None).apply(&flag(), NOW).unwrap();
        assert_eq!((on.state, a), (CircuitState::On, Some(Action::FlagOn)));
        assert_eq!(on.updated_at, NOW);
        let (off, a) = FlagCommand::Toggle(None).apply(&on, NOW).unwrap();
        assert_eq!((off.state, a), (CircuitState::Off, Some(Action::FlagOff)));
        assert!(FlagCommand::Toggle(Some(false)).apply(&off, NOW).is_none(), "no-op");
        let (on2, _) = FlagCommand::Toggle(Some(true)).apply(&off, NOW).unwrap();
        assert_eq!(on2.state, CircuitState::On);
    }

    #[test]
    fn trip_and_close_follow_the_state_table() {
        let (on, _) = FlagCommand::Toggle(Some(true)).apply(&flag(), NOW).unwrap();
        let (tripped, a) = FlagCommand::TripOpen.apply(&on, NOW).unwrap();
        assert_eq!(a, Some(Action::CircuitOpen));
        assert_eq!(tripped.state, CircuitState::Off);
        assert_eq!(tripped.circuit_recovery_percentage, Percent::ZERO);
        let (closed, a) = FlagCommand::Close.apply(&tripped, NOW).unwrap();
        assert_eq!(a, Some(Action::CircuitClose));
        assert_eq!(
            (closed.state, closed.circuit_recovery_percentage),
            (CircuitState::On, Percent::HUNDRED)
        );
    }

    #[test]
    fn patch_changes_state_only_through_is_active() {
        let patch = FlagPatch {
            rollout_percentage: Some(Percent::from_tenths(500).unwrap()),
            ..FlagPatch::default()
        };
        let (next, a) = FlagCommand::Update(patch).apply(&flag(), NOW).unwrap();
        assert_eq!(a, Some(Action::Update));
        assert_eq!(next.state, CircuitState::Off);
        assert_eq!(next.rollout_percentage.tenths(), 500);

        let on = FlagPatch { is_active: Some(true), ..FlagPatch::default() };
        let (next, _) = FlagCommand::Update(on).apply(&flag(), NOW).unwrap();
        assert_eq!(next.state, CircuitState::On);
        assert!(FlagCommand::Update(FlagPatch::default()).apply(&flag(), NOW).is_none());
    }

    #[test]
    fn the_seed_patch_example_keeps_the_flag_off() {
        // The seed PATCHes is_active=false with circuit_status="close": the flag stays open,
        // with the given recovery percentage.
        let patch = FlagPatch {
            is_active: Some(false),
            circuit_recovery_percentage: Some(Percent::from_tenths(100).unwrap()),
            ..FlagPatch::default()
        };
        let (next, _) = FlagCommand::Update(patch).apply(&flag(), NOW).unwrap();
        assert_eq!(next.state.circuit_status(), "open");
        assert_eq!(next.circuit_recovery_percentage.tenths(), 100);
    }

    #[test]
    fn manual_commands_keep_the_breaker_clock_true() {
        use crate::breaker::Transition;
        let mut f = flag();
        f.is_recoverable = true;
        let (on, _) = FlagCommand::Toggle(Some(true)).apply(&f, NOW).unwrap();
        assert_eq!(on.breaker.since, NOW, "going on starts a new counting window");
        // The breaker trips it: recovery is scheduled.
        let why = crate::breaker::TripReason {
            requests: 30,
            failures: 12,
            threshold: on.error_threshold_percentage,
            alpha_ppm: 10_000,
        };
        let trip =
            FlagCommand::Breaker { transition: Transition::Trip(why), seen: Box::new(on.clone()) };
        let (tripped, action) = trip.apply(&on, Timestamp::from_millis(2_000)).unwrap();
        assert_eq!(action, Some(Action::CircuitOpen));
        assert_eq!(
            trip.log_detail().as_deref(),
            Some("30 requests, 12 failures: failure rate above 50 % with 99 % confidence")
        );
        assert_eq!(FlagCommand::TripOpen.log_detail(), None);
        assert_eq!(tripped.breaker.recovery_due, Some(Timestamp::from_millis(2_100)));
        // A breaker move decided on an older version of the flag is dropped.
        assert!(trip.apply(&tripped, Timestamp::from_millis(2_001)).is_none());
        // An operator's trip cancels the pending recovery.
        let (stopped, _) =
            FlagCommand::TripOpen.apply(&tripped, Timestamp::from_millis(2_050)).unwrap();
        assert_eq!(stopped.breaker.recovery_due, None);
        // So does turning it off by hand, even though it is already off.
        let (off, action) = FlagCommand::Toggle(Some(false))
            .apply(&tripped, Timestamp::from_millis(2_050))
            .unwrap();
        assert_eq!((off.breaker.recovery_due, action), (None, Some(Action::FlagOff)));
        // An edit of its settings keeps the schedule.
        let edit = FlagCommand::Update(FlagPatch {
            description: Some(crate::model::Description::parse("x").unwrap()),
            ..FlagPatch::default()
        });
        let (edited, _) = edit.apply(&tripped, Timestamp::from_millis(2_050)).unwrap();
        assert_eq!(edited.breaker, tripped.breaker);
    }

    #[test]
    fn updated_at_never_goes_back() {
        let mut f = flag();
        f.updated_at = Timestamp::from_millis(5_000);
        let (next, _) = FlagCommand::Toggle(None).apply(&f, NOW).unwrap();
        assert_eq!(next.updated_at, Timestamp::from_millis(5_000));
    }

    fn arb_command() -> impl Strategy<Value = FlagCommand> {
        prop_oneof![
            Just(FlagCommand::Toggle(None)),
            Just(FlagCommand::Toggle(Some(true))),
            Just(FlagCommand::Toggle(Some(false))),
            Just(FlagCommand::TripOpen),
            Just(FlagCommand::Close),
            (0u16..=1000).prop_map(|t| FlagCommand::Update(FlagPatch {
                rollout_percentage: Percent::from_tenths(t),
                ..FlagPatch::default()
            })),
            any::<bool>().prop_map(|b| FlagCommand::Update(FlagPatch {
                is_active: Some(b),
                ..FlagPatch::default()
            })),
        ]
    }

    proptest! {
        #[test]
        fn every_reachable_state_is_consistent(cmds in proptest::collection::vec(arb_command(), 0..30)) {
            let mut f = flag();
            for (i, c) in cmds.iter().enumerate() {
                let before = f.clone();
                if let Some((next, action)) = c.apply(&f, Timestamp::from_millis(i as i64)) {
                    prop_assert!(!next.same_settings(&before));
                    // On always lets the whole rollout through.
                    if next.state == CircuitState::On {
                        prop_assert_eq!(next.circuit_recovery_percentage, Percent::HUNDRED);
                    }
                    // Only the breaker starts recovery.
                    prop_assert_ne!(next.state, CircuitState::Recovering);
                    match action.expect("manual commands always log") {
                        Action::FlagOn | Action::CircuitClose => prop_assert_eq!(next.state, CircuitState::On),
                        Action::FlagOff | Action::CircuitOpen => prop_assert_eq!(next.state, CircuitState::Off),
                        _ => {}
                    }
                    prop_assert!(next.updated_at >= before.updated_at);
                    f = next;
                } else {
                    prop_assert!(c.apply(&f, Timestamp::from_millis(0)).is_none());
                }
            }
        }
    }
}
