//! The circuit breaker as a pure state machine: functions of (flag, its breaker clock, counts,
//! now) → transition, with no I/O and no sleeping. An engine (a task of the service) reads
//! counts, asks [`decide`], and commits what [`apply`] returns.
//!
//! # When a flag trips
//!
//! A flag's `error_threshold_percentage` θ says "more failures than this is too many". The
//! breaker trips it when the requests since some moment in its window show, with confidence
//! 1 − α ([`BreakerSettings::alpha_ppm`], `TOWER_BREAKER_ALPHA`, default 0.01), that the flag's
//! true failure rate is above θ — not when the observed ratio crosses θ on a handful of requests,
//! which a healthy flag with little traffic does many times an hour.
//!
//! The test is a sequential likelihood-ratio test, which stays valid however often it is looked
//! at. For `n` requests of which `f` failed, and an alternative failure rate `p > θ`,
//!
//! ```text
//! Λ_p(n, f) = (p / θ)^f · ((1 − p) / (1 − θ))^(n − f)
//! ```
//!
//! is, under any true rate `q ≤ θ`, a nonnegative supermartingale with mean at most 1 as
//! requests arrive: one request multiplies it by `p/θ` with probability `q` and by
//! `(1 − p)/(1 − θ)` otherwise, whose mean `q·p/θ + (1 − q)(1 − p)/(1 − θ)` is 1 at `q = θ` and
//! less below. So is the mixture `E = (1/K) Σ_k Λ_{p_k}` over alternatives `p_k` whose odds are
//! those of θ times 2, 4, 8, … (up to 99 %), which does not need to know how bad a regression
//! is. By Ville's inequality, `P(E ever reaches 1/α) ≤ α` for a flag whose true rate is at most
//! θ: the confidence holds at every check, not only at a fixed sample size.
//!
//! The breaker computes `E` for the requests since each start point in its window (one per check
//! interval: a regression that starts mid-window is measured from where it starts, not diluted by
//! the healthy requests before it) that has at least `min_requests` requests since, and trips
//! when the largest reaches `1/α`. Looking at several start points is what a change detector does;
//! its guarantee over time is a rate (Shiryaev–Roberts: at a true rate equal to θ the mean time
//! between false trips is at least 1/α checks), and at healthy rates below θ false trips are far
//! rarer — `benches/` simulates both, side by side with the earlier ratio rule. A regression to
//! three times θ is caught after about `(ln(1/α) + ln K) / KL(3θ ‖ θ)` requests: 48 at θ = 10 %,
//! α = 0.01, a dozen or so when everything fails.
//!
//! A threshold of 0 % disables the breaker for the flag; at 100 % no failure rate can be above
//! it, so it never trips either.

use std::fmt;

use crate::model::Counts;
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
    /// α, the chance the test accepts of tripping a flag whose failure rate is at its threshold,
    /// in millionths (TOWER_BREAKER_ALPHA × 10⁶; 10 000 = 0.01).
    pub alpha_ppm: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { interval_ms: 1_000, window_ms: 60_000, min_requests: 10, alpha_ppm: 10_000 }
    }
}

impl BreakerSettings {
    /// `ln(1/α)`: the evidence a trip needs, on the log scale.
    fn log_bar(&self) -> f64 {
        -(f64::from(self.alpha_ppm.clamp(1, 999_999)) / 1e6).ln()
    }

    /// The width of the buckets the window is read in: one start point per check interval, at
    /// most [`MAX_START_POINTS`] of them.
    pub fn bucket_ms(&self) -> u64 {
        self.interval_ms.max(self.window_ms.div_ceil(MAX_START_POINTS)).max(1)
    }
}

/// The most start points the breaker tests in one window.
pub const MAX_START_POINTS: u64 = 120;

/// Why the breaker tripped a flag: the requests it measured from the start point with the
/// strongest evidence, the threshold and the confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TripReason {
    /// Requests since the start point.
    pub requests: u64,
    /// Failures among them.
    pub failures: u64,
    /// The flag's threshold.
    pub threshold: Percent,
    /// α in millionths.
    pub alpha_ppm: u32,
}

impl fmt::Display for TripReason {
    /// "412 requests, 61 failures: failure rate above 10 % with 99 % confidence".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 1 − α as a percentage with up to four decimals, trailing zeros dropped.
        let confidence = format!("{:.4}", 100.0 - f64::from(self.alpha_ppm) / 10_000.0);
        let confidence = confidence.trim_end_matches('0').trim_end_matches('.');
        write!(
            f,
            "{} requests, {} failures: failure rate above {} % with {confidence} % confidence",
            self.requests, self.failures, self.threshold
        )
    }
}

/// The strongest evidence in a window that a failure rate is above `threshold`: for each start
/// point (each bucket, oldest first) with at least `min_requests` requests since, the mixture
/// likelihood ratio `E` of those requests, and the largest (on the log scale). `None` when the
/// threshold is 0 or 100 %, or no start point has enough requests.
///
/// Only some start points are worth computing: once one has `min_requests`, a start at an older
/// bucket of successes only is weaker than it, since every success divides each alternative's
/// ratio by `(1 − θ)/(1 − p) > 1`.
pub fn evidence(
    threshold: Percent,
    buckets: &[Counts],
    min_requests: u64,
) -> Option<(Counts, f64)> {
    let alternatives = Alternatives::new(threshold)?;
    let mut since = Counts::default();
    let mut best: Option<(Counts, f64)> = None;
    for b in buckets.iter().rev() {
        since.success += b.success;
        since.failure += b.failure;
        if since.total() < min_requests.max(1) || (b.failure == 0 && best.is_some()) {
            continue;
        }
        let log_e = alternatives.log_e(since);
        if best.is_none_or(|(_, e)| log_e > e) {
            best = Some((since, log_e));
        }
    }
    best
}

/// The mixture's alternatives for one threshold: per alternative `ln(p/θ)` and
/// `ln((1 − p)/(1 − θ))`.
struct Alternatives {
    terms: Vec<(f64, f64)>,
}

impl Alternatives {
    fn new(threshold: Percent) -> Option<Self> {
        let theta = f64::from(threshold.tenths()) / 1000.0;
        if !(theta > 0.0 && theta < 1.0) {
            return None;
        }
        let odds = theta / (1.0 - theta);
        let mut terms = Vec::new();
        let mut k = 1;
        loop {
            let o = odds * f64::from(1u32 << k);
            let p = o / (1.0 + o);
            if p > 0.99 || k > 24 {
                break;
            }
            terms.push(((p / theta).ln(), ((1.0 - p) / (1.0 - theta)).ln()));
            k += 1;
        }
        if terms.is_empty() {
            // θ above 98 %: one alternative halfway to 1.
            let p = (1.0 + theta) / 2.0;
            terms.push(((p / theta).ln(), ((1.0 - p) / (1.0 - theta)).ln()));
        }
        Some(Self { terms })
    }

    /// `ln E` for `c`: log-sum-exp of the alternatives' log ratios, less `ln K`.
    fn log_e(&self, c: Counts) -> f64 {
        let (f, s) = (c.failure as f64, c.success as f64);
        let logs = self.terms.iter().map(|(up, down)| f * up + s * down);
        let max = logs.clone().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = logs.map(|l| (l - max).exp()).sum();
        max + sum.ln() - (self.terms.len() as f64).ln()
    }
}

/// Whether the window's counts (buckets of [`BreakerSettings::bucket_ms`], oldest first) trip
/// a flag, and why: evidence of at least `1/α` that its failure rate is above its threshold,
/// from a start point with at least `min_requests` requests since.
pub fn trips(flag: &Flag, buckets: &[Counts], s: &BreakerSettings) -> Option<TripReason> {
    let (since, log_e) = evidence(flag.error_threshold_percentage, buckets, s.min_requests)?;
    (log_e >= s.log_bar()).then_some(TripReason {
        requests: since.total(),
        failures: since.failure,
        threshold: flag.error_threshold_percentage,
        alpha_ppm: s.alpha_ppm,
    })
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
    /// The failure rate is above the threshold: off, recovery 0 %.
    Trip(TripReason),
    /// The recovery delay passed: recovering at the initial percentage.
    StartRecovery,
    /// The recovery rate passed: one step of the profile (closing at 100 %).
    Step,
}

/// The counting window of a monitored flag at `now`: `(from, to]`, or `None` when the flag is
/// not monitored (off, or a threshold of 0).
pub fn window(flag: &Flag, now: Timestamp, s: &BreakerSettings) -> Option<(Timestamp, Timestamp)> {
    if flag.state == CircuitState::Off || flag.error_threshold_percentage == Percent::ZERO {
        return None;
    }
    let from = now.plus_millis(-(s.window_ms as i64)).max(flag.breaker.since);
    Some((from, now))
}

/// What the breaker does to a flag at `now`, given the counts of its [`window`] in buckets,
/// oldest first (`None` when it is not monitored or its counts could not be read).
pub fn decide(
    flag: &Flag,
    counts: Option<&[Counts]>,
    now: Timestamp,
    s: &BreakerSettings,
) -> Option<Transition> {
    if flag.state != CircuitState::Off
        && let Some(reason) = counts.and_then(|c| trips(flag, c, s))
    {
        return Some(Transition::Trip(reason));
    }
    let clock = &flag.breaker;
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

/// The flag after `t` at `now` (its breaker clock included), and the log action to write (`None` for an
/// intermediate recovery step: the log records the trip, the start of recovery and the close;
/// every step is still published). Scheduling is from `now`, so a breaker that was stopped
/// catches up at most one step per check.
pub fn apply(t: Transition, flag: &Flag, now: Timestamp) -> (Flag, Option<Action>) {
    let mut f = flag.clone();
    let since = flag.breaker.since;
    f.updated_at = now.max(flag.updated_at);
    let after = |ms: u32| Some(now.plus_millis(i64::from(ms)));
    match t {
        Transition::Trip(_) => {
            f.state = CircuitState::Off;
            f.circuit_recovery_percentage = Percent::ZERO;
            let recovery_due =
                if f.is_recoverable { after(f.circuit_recovery_delay.get()) } else { None };
            f.breaker = BreakerClock { since, recovery_due, next_step_due: None };
            (f, Some(Action::CircuitOpen))
        }
        Transition::StartRecovery => {
            if f.circuit_initial_recovery_percentage == Percent::HUNDRED {
                return close(f, now);
            }
            f.state = CircuitState::Recovering;
            f.circuit_recovery_percentage = f.circuit_initial_recovery_percentage;
            let next_step_due = after(f.circuit_recovery_rate.get());
            f.breaker = BreakerClock { since: now, recovery_due: None, next_step_due };
            (f, Some(Action::CircuitRecovery))
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
            f.breaker = BreakerClock { since, recovery_due: None, next_step_due };
            (f, None)
        }
    }
}

fn close(mut f: Flag, now: Timestamp) -> (Flag, Option<Action>) {
    f.state = CircuitState::On;
    f.circuit_recovery_percentage = Percent::HUNDRED;
    f.breaker = BreakerClock { since: now, recovery_due: None, next_step_due: None };
    (f, Some(Action::CircuitClose))
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

    const S: BreakerSettings = BreakerSettings {
        interval_ms: 1_000,
        window_ms: 10_000,
        min_requests: 10,
        alpha_ppm: 10_000,
    };

    fn c(success: u64, failure: u64) -> Counts {
        Counts { success, failure }
    }

    fn trip(f: &Flag, buckets: &[Counts]) -> bool {
        trips(f, buckets, &S).is_some()
    }

    #[test]
    fn trips_on_evidence_not_on_a_ratio() {
        let half = flag(CircuitState::On, 500);
        assert!(!trip(&half, &[c(5, 5)]), "50 % of 10 is no evidence of more than 50 %");
        assert!(!trip(&half, &[c(4, 6)]), "nor is 60 % of 10");
        assert!(trip(&half, &[c(0, 20)]), "20 failures in a row are");
        let tenth = flag(CircuitState::On, 100);
        assert!(!trip(&tenth, &[c(8, 2)]), "2 failures in 10 at a 10 % threshold");
        assert!(!trip(&tenth, &[c(88, 12)]), "12 % of 100");
        assert!(trip(&tenth, &[c(60, 40)]), "40 % of 100");
        assert!(trip(&tenth, &[c(0, 12)]), "a dozen failures and nothing else");
        assert!(!trip(&tenth, &[c(0, 9)]), "9 requests are below the minimum");
        assert!(!trip(&flag(CircuitState::On, 0), &[c(0, 1000)]), "threshold 0 disables it");
        assert!(!trip(&flag(CircuitState::On, 1000), &[c(0, 1000)]), "nothing is above 100 %");
        assert!(!trip(&tenth, &[]), "no requests never trip");
    }

    #[test]
    fn a_regression_is_measured_from_where_it_starts() {
        // 50 healthy seconds, then 5 seconds of failures: 9 % over the window, below the 10 %
        // threshold, but all failures since the change.
        let mut buckets = vec![c(10, 0); 50];
        buckets.extend([c(0, 10); 5]);
        let why = trips(&flag(CircuitState::On, 100), &buckets, &S).expect("trips");
        assert_eq!((why.requests, why.failures), (50, 50));
        assert_eq!(
            why.to_string(),
            "50 requests, 50 failures: failure rate above 10 % with 99 % confidence"
        );
        let strict = BreakerSettings { alpha_ppm: 1_000, ..S };
        let why = trips(&flag(CircuitState::On, 125), &buckets, &strict).unwrap();
        assert!(why.to_string().ends_with("above 12.5 % with 99.9 % confidence"), "{why}");
    }

    #[test]
    fn a_stricter_alpha_needs_more_evidence() {
        let f = flag(CircuitState::On, 100);
        let strict = BreakerSettings { alpha_ppm: 100, ..S };
        let needed = |s: &BreakerSettings| {
            (1..1000).find(|n| trips(&f, &[c(*n * 7 / 10, *n * 3 / 10)], s).is_some()).unwrap()
        };
        let (loose, tight) = (needed(&S), needed(&strict));
        assert!(tight > loose, "{tight} requests at α = 0.0001, {loose} at 0.01");
        // 30 % against a 10 % threshold: caught within a few dozen requests.
        assert!(loose <= 60, "{loose}");
    }

    #[test]
    fn the_window_starts_no_earlier_than_the_flag_went_on() {
        let mut f = flag(CircuitState::On, 500);
        let (from, _) = window(&f, Timestamp::from_millis(100_000), &S).unwrap();
        assert_eq!(from.as_millis(), 90_000);
        f.breaker = BreakerClock { since: Timestamp::from_millis(95_000), ..Default::default() };
        let (from, to) = window(&f, Timestamp::from_millis(100_000), &S).unwrap();
        assert_eq!((from.as_millis(), to.as_millis()), (95_000, 100_000));
        assert!(window(&flag(CircuitState::Off, 500), Timestamp::from_millis(1), &S).is_none());
        assert!(window(&flag(CircuitState::On, 0), Timestamp::from_millis(1), &S).is_none());
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
        let Some(Transition::Trip(why)) = decide(&f, Some(&[c(0, 20)]), t0, &S) else {
            panic!("20 failures trip a 50 % flag")
        };
        let (f, a) = apply(Transition::Trip(why), &f, t0);
        assert_eq!(
            (f.state, f.circuit_recovery_percentage, a),
            (CircuitState::Off, Percent::ZERO, Some(Action::CircuitOpen))
        );
        assert_eq!(f.breaker.recovery_due, Some(t0.plus_millis(8_000)));
        assert_eq!(decide(&f, None, t0.plus_millis(7_999), &S), None);
        let t1 = t0.plus_millis(8_000);
        assert_eq!(decide(&f, None, t1, &S), Some(Transition::StartRecovery));
        let (f, a) = apply(Transition::StartRecovery, &f, t1);
        assert_eq!(
            (f.state, f.circuit_recovery_percentage.tenths(), a),
            (CircuitState::Recovering, 100, Some(Action::CircuitRecovery))
        );
        assert_eq!(f.breaker.since, t1, "the window restarts with recovery");
        let mut seen = vec![100];
        let (mut f, mut now) = (f, t1);
        loop {
            now = now.plus_millis(400);
            assert_eq!(decide(&f, Some(&[c(10, 0)]), now, &S), Some(Transition::Step));
            let (next, a) = apply(Transition::Step, &f, now);
            f = next;
            seen.push(f.circuit_recovery_percentage.tenths());
            if a == Some(Action::CircuitClose) {
                break;
            }
            assert_eq!(a, None, "intermediate steps write no log entry");
        }
        assert_eq!(seen, [100, 400, 700, 1000]);
        assert_eq!((f.state, f.breaker.next_step_due), (CircuitState::On, None));
    }

    #[test]
    fn an_api_trip_or_a_manual_off_flag_never_recovers() {
        let f = flag(CircuitState::Off, 500);
        for now in [0, 10_000, i64::MAX / 2] {
            assert_eq!(decide(&f, None, Timestamp::from_millis(now), &S), None);
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
            prop_assert!(!trip(&f, &[c(total - failures, failures)]));
        }

        #[test]
        fn more_failures_never_untrip(
            f in arb_flag(),
            buckets in proptest::collection::vec((0u64..40, 0u64..40), 1..30),
            at in any::<proptest::sample::Index>(),
            turn in 0u64..40,
            add in 0u64..40,
        ) {
            let before: Vec<Counts> = buckets.iter().map(|&(s, f)| c(s, f)).collect();
            let mut after = before.clone();
            let b = &mut after[at.index(before.len())];
            // Some successes become failures, and some failures are added.
            let turned = turn.min(b.success);
            b.success -= turned;
            b.failure += turned + add;
            if trip(&f, &before) {
                prop_assert!(trip(&f, &after), "{:?} tripped, {:?} did not", before, after);
            }
        }

        #[test]
        fn no_failures_never_trip(
            f in arb_flag(),
            successes in proptest::collection::vec(0u64..100_000, 0..120),
        ) {
            let buckets: Vec<Counts> = successes.iter().map(|&s| c(s, 0)).collect();
            prop_assert!(!trip(&f, &buckets));
        }

        #[test]
        fn a_failure_rate_at_most_the_threshold_is_no_evidence(
            f in arb_flag(),
            n in 1u64..100_000,
        ) {
            // At or below θ every alternative's likelihood ratio is below 1.
            let failures = n * u64::from(f.error_threshold_percentage.tenths()) / 1000;
            prop_assert!(!trip(&f, &[c(n - failures, failures)]));
        }

        #[test]
        fn recovery_is_monotone_and_ends_closed(f in arb_flag(), errors in 0u64..100) {
            let t0 = Timestamp::from_millis(1_000_000);
            let why = TripReason { requests: 20, failures: 20, threshold: f.error_threshold_percentage, alpha_ppm: 10_000 };
            let (mut f, _) = apply(Transition::Trip(why), &f, t0);
            prop_assert_eq!(f.state, CircuitState::Off);
            if !f.is_recoverable {
                prop_assert_eq!(decide(&f, None, t0.plus_millis(i64::MAX / 4), &S), None);
                return Ok(());
            }
            let mut now = f.breaker.recovery_due.unwrap();
            prop_assert_eq!(decide(&f, None, now, &S), Some(Transition::StartRecovery));
            let mut t = Transition::StartRecovery;
            let mut last = 0u16;
            for _ in 0..2_000 {
                let (next, a) = apply(t, &f, now);
                f = next;
                prop_assert!(f.circuit_recovery_percentage.tenths() >= last, "monotone");
                last = f.circuit_recovery_percentage.tenths();
                if a == Some(Action::CircuitClose) {
                    prop_assert_eq!((f.state, last), (CircuitState::On, 1000));
                    return Ok(());
                }
                prop_assert_eq!(f.state, CircuitState::Recovering);
                now = f.breaker.next_step_due.unwrap();
                // Healthy traffic during recovery: the trip check runs and does not fire.
                let healthy = [c(100, errors.min(f.error_threshold_percentage.tenths() as u64 / 10).saturating_sub(1))];
                t = decide(&f, Some(&healthy), now, &S).unwrap();
                prop_assert_eq!(t, Transition::Step);
            }
            prop_assert!(false, "recovery did not close within 2 000 steps");
        }

        #[test]
        fn an_off_flag_moves_only_after_a_trip(f in arb_flag(), now in 0i64..1_000_000_000) {
            let mut off = f.clone();
            off.state = CircuitState::Off;
            prop_assert_eq!(decide(&off, Some(&[c(0, 1000)]), Timestamp::from_millis(now), &S), None);
        }
    }
}
