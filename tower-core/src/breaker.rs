//! The circuit breaker as a pure state machine (DESIGN §3): functions of (flag, its breaker
//! clock, counts, now) → transition, with no I/O and no sleeping. An engine (a task of the
//! service) reads counts, asks [`decide`], and commits what [`apply`] returns.

use crate::input::Counts;
use crate::model::{Action, CircuitState, Flag, Percent, RecoveryProfile};
use crate::time::Timestamp;

/// Settings of the breaker engine, shared by every flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// How often flags are checked (TOWER_BREAKER_INTERVAL_MS).
    pub interval_ms: u64,
    /// How far back counts are read (TOWER_BREAKER_WINDOW_MS).
    pub window_ms: u64,
    /// The fewest requests in the window that can trip a flag (TOWER_BREAKER_MIN_REQUESTS).
    pub min_requests: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { interval_ms: 1_000, window_ms: 10_000, min_requests: 10 }
    }
}

/// What the breaker remembers of a flag beyond its settings; stored with the flag so that a
/// restart resumes where it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerClock {
    /// When the flag last went on or started recovering: the counting window never reaches back
    /// before it, so the failures that tripped a flag cannot trip it again.
    pub since: Timestamp,
    /// After a trip of a recoverable flag: when recovery starts.
    pub recovery_due: Option<Timestamp>,
    /// While recovering: when the next step is due.
    pub next_step_due: Option<Timestamp>,
}

/// A move of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The error rate crossed the threshold: off, recovery 0 %.
    Trip,
    /// The recovery delay passed: recovering at the initial percentage.
    StartRecovery,
    /// The recovery rate passed: one step of the profile (closing at 100 %).
    Step,
}

/// The counting window of a monitored flag at `now`: `(from, to]`, or `None` when the flag is
/// not monitored (off, or a threshold of 0).
pub fn window(
    flag: &Flag,
    clock: &BreakerClock,
    now: Timestamp,
    s: &BreakerSettings,
) -> Option<(Timestamp, Timestamp)> {
    if flag.state == CircuitState::Off || flag.error_threshold_percentage == Percent::ZERO {
        return None;
    }
    let from = now.plus_millis(-(s.window_ms as i64)).max(clock.since);
    Some((from, now))
}

/// Whether `counts` trip a flag: at least `min_requests`, and
/// `failures × 100 ≥ threshold × total`.
pub fn trips(flag: &Flag, counts: Counts, s: &BreakerSettings) -> bool {
    let threshold = u128::from(flag.error_threshold_percentage.tenths());
    let total = u128::from(counts.total());
    threshold > 0
        && counts.total() >= s.min_requests.max(1)
        && u128::from(counts.failure) * 1000 >= threshold * total
}

/// What the breaker does to a flag at `now`, given the counts of its [`window`] (`None` when
/// it is not monitored).
pub fn decide(
    flag: &Flag,
    clock: &BreakerClock,
    counts: Option<Counts>,
    now: Timestamp,
    s: &BreakerSettings,
) -> Option<Transition> {
    if flag.state != CircuitState::Off && counts.is_some_and(|c| trips(flag, c, s)) {
        return Some(Transition::Trip);
    }
    match flag.state {
        CircuitState::Off if clock.recovery_due.is_some_and(|due| due <= now) => {
            Some(Transition::StartRecovery)
        }
        CircuitState::Recovering if clock.next_step_due.is_some_and(|due| due <= now) => {
            Some(Transition::Step)
        }
        _ => None,
    }
}

/// One step of the recovery profile from `p`: linear `p + increment`; exponential
/// `p × (1 + increment / 100)`, starting from the increment when `p` is 0. Always at least a
/// tenth of a percent, so recovery ends.
pub fn next_percent(p: Percent, increment: Percent, profile: RecoveryProfile) -> u32 {
    let (p, inc) = (u32::from(p.tenths()), u32::from(increment.tenths().max(1)));
    let next = match profile {
        RecoveryProfile::Linear => p + inc,
        RecoveryProfile::Exponential if p == 0 => inc,
        RecoveryProfile::Exponential => (p * (1000 + inc)).div_ceil(1000),
    };
    next.max(p + 1)
}

/// The flag and clock after `t` at `now`, and the log action to write (`None` for an
/// intermediate recovery step: the log records the trip, the start of recovery and the close;
/// every step is still published). Scheduling is from `now`, so a breaker that was stopped
/// catches up at most one step per check.
pub fn apply(
    t: Transition,
    flag: &Flag,
    clock: &BreakerClock,
    now: Timestamp,
) -> (Flag, BreakerClock, Option<Action>) {
    let mut f = flag.clone();
    f.updated_at = now.max(flag.updated_at);
    let after = |ms: u32| Some(now.plus_millis(i64::from(ms)));
    match t {
        Transition::Trip => {
            f.state = CircuitState::Off;
            f.circuit_recovery_percentage = Percent::ZERO;
            let recovery_due =
                if f.is_recoverable { after(f.circuit_recovery_delay.get()) } else { None };
            (
                f,
                BreakerClock { since: clock.since, recovery_due, next_step_due: None },
                Some(Action::CircuitOpen),
            )
        }
        Transition::StartRecovery => {
            if f.circuit_initial_recovery_percentage == Percent::HUNDRED {
                return close(f, now);
            }
            f.state = CircuitState::Recovering;
            f.circuit_recovery_percentage = f.circuit_initial_recovery_percentage;
            let next_step_due = after(f.circuit_recovery_rate.get());
            (
                f,
                BreakerClock { since: now, recovery_due: None, next_step_due },
                Some(Action::CircuitRecovery),
            )
        }
        Transition::Step => {
            let next = next_percent(
                f.circuit_recovery_percentage,
                f.circuit_recovery_increment_percentage,
                f.circuit_recovery_profile,
            );
            if next >= 1000 {
                return close(f, now);
            }
            f.circuit_recovery_percentage =
                Percent::from_tenths(next as u16).unwrap_or(Percent::HUNDRED);
            let next_step_due = after(f.circuit_recovery_rate.get());
            (f, BreakerClock { since: clock.since, recovery_due: None, next_step_due }, None)
        }
    }
}

fn close(mut f: Flag, now: Timestamp) -> (Flag, BreakerClock, Option<Action>) {
    f.state = CircuitState::On;
    f.circuit_recovery_percentage = Percent::HUNDRED;
    (
        f,
        BreakerClock { since: now, recovery_due: None, next_step_due: None },
        Some(Action::CircuitClose),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppId, FlagId, IntervalMs, Title};
    use proptest::prelude::*;

    fn flag(state: CircuitState, threshold_tenths: u16) -> Flag {
        let mut f = Flag::new(AppId::new(1), Title::parse("f").unwrap(), Timestamp::from_millis(0))
            .with_id(FlagId::new(1));
        f.state = state;
        f.error_threshold_percentage = Percent::from_tenths(threshold_tenths).unwrap();
        f
    }

    const S: BreakerSettings =
        BreakerSettings { interval_ms: 1_000, window_ms: 10_000, min_requests: 10 };

    fn c(success: u64, failure: u64) -> Counts {
        Counts { success, failure }
    }

    #[test]
    fn trips_at_the_threshold_with_enough_requests() {
        let f = flag(CircuitState::On, 500);
        assert!(trips(&f, c(5, 5), &S), "50 % of 10 at a 50 % threshold");
        assert!(!trips(&f, c(6, 4), &S));
        assert!(!trips(&f, c(0, 9), &S), "9 requests are below the minimum");
        assert!(
            !trips(&flag(CircuitState::On, 0), c(0, 1000), &S),
            "threshold 0 disables the breaker"
        );
        assert!(trips(&flag(CircuitState::On, 1000), c(0, 10), &S), "threshold 100: all failed");
        assert!(!trips(&flag(CircuitState::On, 1000), c(1, 99), &S));
        let one = BreakerSettings { min_requests: 0, ..S };
        assert!(!trips(&f, c(0, 0), &one), "no requests never trip");
    }

    #[test]
    fn the_window_starts_no_earlier_than_the_flag_went_on() {
        let f = flag(CircuitState::On, 500);
        let clock = BreakerClock { since: Timestamp::from_millis(95_000), ..Default::default() };
        let (from, to) = window(&f, &clock, Timestamp::from_millis(100_000), &S).unwrap();
        assert_eq!((from.as_millis(), to.as_millis()), (95_000, 100_000));
        let (from, _) =
            window(&f, &BreakerClock::default(), Timestamp::from_millis(100_000), &S).unwrap();
        assert_eq!(from.as_millis(), 90_000);
        assert!(
            window(&flag(CircuitState::Off, 500), &clock, Timestamp::from_millis(1), &S).is_none()
        );
        assert!(
            window(&flag(CircuitState::On, 0), &clock, Timestamp::from_millis(1), &S).is_none()
        );
    }

    #[test]
    fn a_recoverable_trip_recovers_step_by_step_to_closed() {
        let mut f = flag(CircuitState::On, 500);
        f.is_recoverable = true;
        f.circuit_recovery_delay = IntervalMs::new(8_000).unwrap();
        f.circuit_recovery_rate = IntervalMs::new(400).unwrap();
        f.circuit_initial_recovery_percentage = Percent::from_tenths(100).unwrap();
        f.circuit_recovery_increment_percentage = Percent::from_tenths(300).unwrap();
        let t0 = Timestamp::from_millis(1_000_000);
        let clock = BreakerClock::default();
        assert_eq!(decide(&f, &clock, Some(c(2, 8)), t0, &S), Some(Transition::Trip));
        let (f, clock, a) = apply(Transition::Trip, &f, &clock, t0);
        assert_eq!(
            (f.state, f.circuit_recovery_percentage, a),
            (CircuitState::Off, Percent::ZERO, Some(Action::CircuitOpen))
        );
        assert_eq!(clock.recovery_due, Some(t0.plus_millis(8_000)));
        assert_eq!(decide(&f, &clock, None, t0.plus_millis(7_999), &S), None);
        let t1 = t0.plus_millis(8_000);
        assert_eq!(decide(&f, &clock, None, t1, &S), Some(Transition::StartRecovery));
        let (f, clock, a) = apply(Transition::StartRecovery, &f, &clock, t1);
        assert_eq!(
            (f.state, f.circuit_recovery_percentage.tenths(), a),
            (CircuitState::Recovering, 100, Some(Action::CircuitRecovery))
        );
        assert_eq!(clock.since, t1, "the window restarts with recovery");
        let mut seen = vec![100];
        let (mut f, mut clock, mut now) = (f, clock, t1);
        loop {
            now = now.plus_millis(400);
            assert_eq!(decide(&f, &clock, Some(c(10, 0)), now, &S), Some(Transition::Step));
            let (nf, nc, a) = apply(Transition::Step, &f, &clock, now);
            (f, clock) = (nf, nc);
            seen.push(f.circuit_recovery_percentage.tenths());
            if a == Some(Action::CircuitClose) {
                break;
            }
            assert_eq!(a, None, "intermediate steps write no log entry");
        }
        assert_eq!(seen, [100, 400, 700, 1000]);
        assert_eq!((f.state, clock.next_step_due), (CircuitState::On, None));
    }

    #[test]
    fn an_api_trip_or_a_manual_off_flag_never_recovers() {
        let f = flag(CircuitState::Off, 500);
        for now in [0, 10_000, i64::MAX / 2] {
            assert_eq!(
                decide(&f, &BreakerClock::default(), None, Timestamp::from_millis(now), &S),
                None
            );
        }
    }

    #[test]
    fn exponential_steps_start_from_the_increment() {
        let inc = Percent::from_tenths(100).unwrap(); // 10 %
        assert_eq!(next_percent(Percent::ZERO, inc, RecoveryProfile::Exponential), 100);
        assert_eq!(
            next_percent(Percent::from_tenths(100).unwrap(), inc, RecoveryProfile::Exponential),
            110
        );
        assert_eq!(
            next_percent(
                Percent::from_tenths(1).unwrap(),
                Percent::from_tenths(1).unwrap(),
                RecoveryProfile::Exponential
            ),
            2,
            "always moves"
        );
    }

    fn arb_flag() -> impl Strategy<Value = Flag> {
        let pct = |lo: u16| (lo..=1000u16).prop_map(|t| Percent::from_tenths(t).unwrap());
        (pct(0), pct(0), pct(1), any::<bool>(), any::<bool>(), 100u32..5_000, 100u32..5_000)
            .prop_map(|(threshold, initial, increment, exp, recoverable, delay, rate)| {
                let mut f = flag(CircuitState::On, threshold.tenths());
                f.circuit_initial_recovery_percentage = initial;
                f.circuit_recovery_increment_percentage = increment;
                f.circuit_recovery_profile =
                    if exp { RecoveryProfile::Exponential } else { RecoveryProfile::Linear };
                f.is_recoverable = recoverable;
                f.circuit_recovery_delay = IntervalMs::new(delay).unwrap();
                f.circuit_recovery_rate = IntervalMs::new(rate).unwrap();
                f
            })
    }

    proptest! {
        #[test]
        fn below_the_minimum_nothing_trips(
            f in arb_flag(),
            (total, failures) in (0u64..S.min_requests).prop_flat_map(|t| (Just(t), 0..=t)),
        ) {
            prop_assert!(!trips(&f, c(total - failures, failures), &S));
        }

        #[test]
        fn recovery_is_monotone_and_ends_closed(f in arb_flag(), errors in 0u64..100) {
            let t0 = Timestamp::from_millis(1_000_000);
            let (mut f, mut clock, _) = apply(Transition::Trip, &f, &BreakerClock::default(), t0);
            prop_assert_eq!(f.state, CircuitState::Off);
            if !f.is_recoverable {
                prop_assert_eq!(decide(&f, &clock, None, t0.plus_millis(i64::MAX / 4), &S), None);
                return Ok(());
            }
            let mut now = clock.recovery_due.unwrap();
            prop_assert_eq!(decide(&f, &clock, None, now, &S), Some(Transition::StartRecovery));
            let mut t = Transition::StartRecovery;
            let mut last = 0u16;
            for _ in 0..2_000 {
                let (nf, nc, a) = apply(t, &f, &clock, now);
                (f, clock) = (nf, nc);
                prop_assert!(f.circuit_recovery_percentage.tenths() >= last, "monotone");
                last = f.circuit_recovery_percentage.tenths();
                if a == Some(Action::CircuitClose) {
                    prop_assert_eq!((f.state, last), (CircuitState::On, 1000));
                    return Ok(());
                }
                prop_assert_eq!(f.state, CircuitState::Recovering);
                now = clock.next_step_due.unwrap();
                // Healthy traffic during recovery: the trip check runs and does not fire.
                let healthy = Some(c(100, errors.min(f.error_threshold_percentage.tenths() as u64 / 10).saturating_sub(1)));
                t = decide(&f, &clock, healthy, now, &S).unwrap();
                prop_assert_eq!(t, Transition::Step);
            }
            prop_assert!(false, "recovery did not close within 2 000 steps");
        }

        #[test]
        fn an_off_flag_moves_only_after_a_trip(f in arb_flag(), now in 0i64..1_000_000_000) {
            let mut off = f.clone();
            off.state = CircuitState::Off;
            prop_assert_eq!(decide(&off, &BreakerClock::default(), Some(c(0, 1000)), Timestamp::from_millis(now), &S), None);
        }
    }
}
