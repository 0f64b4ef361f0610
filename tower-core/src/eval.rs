//! Flag evaluation: is this flag on for this user. One evaluator for every client of Tower (the
//! OFREP routes, the Rust client, an embedding service), whose answers are specified by the
//! fixture `tower-core/tests/fixtures/evaluation.json` and the same everywhere.
//!
//! ```text
//! on = is_active && (user ∈ whitelist || in_rollout(user))
//! ```
//!
//! An open circuit (a flag that is off, or tripped) is off for everyone, whitelist included;
//! while the circuit is recovering, the rollout is scaled by `circuit_recovery_percentage`.
//!
//! # Bucketing
//!
//! [`Bucketing::Tower`] (the default): `h = murmur3_x86_32("<flag id>:<user>", seed 0)`,
//! `bucket = (h × 100 000) >> 32` (0 to 99 999), and the user is in the rollout iff
//! `bucket < rollout_tenths × 100` (a rollout of 12.5 % is 125 tenths: buckets 0 to 12 499).
//! Exact at 0 % and 100 %, monotonic (raising the percentage never removes a user), and
//! independent across flags (the flag id salts the hash). While recovering, the bound is
//! `rollout_tenths × recovery_tenths / 10`.
//!
//! [`Bucketing::Tailslide`], for fleets that still run the Tailslide SDKs: what their Python and
//! Ruby SDKs compute, `v = (int(md5(user), 16) mod 100) / 100`, in the rollout iff
//! `v <= rollout / 100` (so a 0 % rollout still reaches the 1 % of users whose `v` is 0, as
//! those SDKs do), the recovery scaling applied only when the flag `is_recoverable`.
//!
//! # Cost
//!
//! [`Index`] compiles a ruleset once (title → [`Rule`], the whitelist as a set); a lookup and an
//! evaluation hash the user in place and allocate nothing.

use std::collections::{HashMap, HashSet};

use crate::model::{AppId, CircuitState, Flag, FlagId, Revision};

/// The lookups' hasher: foldhash, seeded per process. A title or a user is hashed in a few
/// nanoseconds where std's SipHash takes about 20; the random seed keeps chosen keys from
/// colliding on purpose.
type Hasher = foldhash::fast::RandomState;

/// How users are assigned to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bucketing {
    /// murmur3 of `<flag id>:<user>` into 100 000 buckets (the default).
    #[default]
    Tower,
    /// md5 of the user into 100 buckets, as the Tailslide Python and Ruby SDKs do.
    Tailslide,
}

impl Bucketing {
    /// `tower` or `tailslide`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tower" => Some(Self::Tower),
            "tailslide" => Some(Self::Tailslide),
            _ => None,
        }
    }

    /// `tower` or `tailslide`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tower => "tower",
            Self::Tailslide => "tailslide",
        }
    }
}

/// Why an evaluation came out as it did, in OpenFeature's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The flag is off, or its circuit is open: off for everyone.
    Disabled,
    /// The user is on the whitelist.
    TargetingMatch,
    /// On for everyone: a 100 % rollout with a closed circuit.
    Static,
    /// Decided by the user's bucket: a partial rollout, or a recovering circuit.
    Split,
}

impl Reason {
    /// `DISABLED`, `TARGETING_MATCH`, `STATIC` or `SPLIT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "DISABLED",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Static => "STATIC",
            Self::Split => "SPLIT",
        }
    }
}

/// The answer for one flag and one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// Whether the flag is on for the user.
    pub enabled: bool,
    /// Why.
    pub reason: Reason,
}

/// Why a flag could not be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The answer depends on the user's bucket and no user was given.
    #[error("this flag is rolled out to part of its users: the evaluation needs a targeting key")]
    TargetingKeyMissing,
}

/// One flag, compiled for evaluation.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The flag.
    pub id: FlagId,
    /// Its app.
    pub app_id: AppId,
    /// Its circuit state.
    pub state: CircuitState,
    rollout_tenths: u32,
    recovery_tenths: u32,
    is_recoverable: bool,
    whitelist: HashSet<Box<str>, Hasher>,
    /// `"<flag id>:"`, the salt of the default bucketing.
    salt: Box<[u8]>,
}

impl Rule {
    /// Compiles a flag.
    pub fn compile(flag: &Flag) -> Self {
        let whitelist = flag
            .white_listed_users
            .as_str()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(Box::from)
            .collect();
        Self {
            id: flag.id,
            app_id: flag.app_id,
            state: flag.state,
            rollout_tenths: u32::from(flag.rollout_percentage.tenths()),
            recovery_tenths: u32::from(flag.circuit_recovery_percentage.tenths()),
            is_recoverable: flag.is_recoverable,
            whitelist,
            salt: format!("{}:", flag.id).into_bytes().into_boxed_slice(),
        }
    }

    /// Whether the flag is on for `user` (`None`: no targeting key), and why.
    pub fn evaluate(
        &self,
        user: Option<&str>,
        bucketing: Bucketing,
    ) -> Result<Evaluation, EvalError> {
        let answer = |enabled, reason| Ok(Evaluation { enabled, reason });
        if self.state == CircuitState::Off {
            return answer(false, Reason::Disabled);
        }
        if user.is_some_and(|u| self.whitelist.contains(u)) {
            return answer(true, Reason::TargetingMatch);
        }
        let recovering = self.state == CircuitState::Recovering;
        match bucketing {
            Bucketing::Tower => {
                // The bound in 1/100 000ths: buckets below it are in.
                let bound = if recovering {
                    self.rollout_tenths * self.recovery_tenths / 10
                } else {
                    self.rollout_tenths * 100
                };
                let reason =
                    if bound >= 100_000 && !recovering { Reason::Static } else { Reason::Split };
                if bound == 0 || bound >= 100_000 {
                    return answer(bound > 0, reason);
                }
                let user = user.ok_or(EvalError::TargetingKeyMissing)?;
                answer(tower_bucket(&self.salt, user) < bound, reason)
            }
            Bucketing::Tailslide => {
                let mut rollout = f64::from(self.rollout_tenths) / 10.0 / 100.0;
                if self.is_recoverable && recovering {
                    rollout *= f64::from(self.recovery_tenths) / 10.0 / 100.0;
                }
                let reason =
                    if rollout >= 1.0 && !recovering { Reason::Static } else { Reason::Split };
                // Every v is at most 0.99: a rollout of 99 % or more is everyone.
                if rollout >= 0.99 {
                    return answer(true, reason);
                }
                let user = user.ok_or(EvalError::TargetingKeyMissing)?;
                answer(f64::from(tailslide_bucket(user)) / 100.0 <= rollout, reason)
            }
        }
    }
}

/// One app's flags compiled for evaluation, by title.
#[derive(Debug, Clone)]
pub struct Index {
    /// The app.
    pub app_id: AppId,
    /// The revision of the ruleset it was built from.
    pub revision: Revision,
    by_title: HashMap<Box<str>, Rule, Hasher>,
    /// Titles by flag id, for listing in order.
    order: Vec<Box<str>>,
}

impl Index {
    /// Compiles an app's flags at a revision.
    pub fn new(app_id: AppId, revision: Revision, flags: &[Flag]) -> Self {
        let mut sorted: Vec<&Flag> = flags.iter().collect();
        sorted.sort_by_key(|f| f.id);
        let order = sorted.iter().map(|f| Box::from(f.title.as_str())).collect();
        let by_title =
            sorted.iter().map(|f| (Box::from(f.title.as_str()), Rule::compile(f))).collect();
        Self { app_id, revision, by_title, order }
    }

    /// Compiles a ruleset.
    pub fn of(ruleset: &crate::Ruleset) -> Self {
        Self::new(ruleset.app_id, ruleset.revision, &ruleset.flags)
    }

    /// The flag titled `title`.
    pub fn get(&self, title: &str) -> Option<&Rule> {
        self.by_title.get(title)
    }

    /// Evaluates the flag titled `title` for `user`; `None` when there is no such flag.
    pub fn evaluate(
        &self,
        title: &str,
        user: Option<&str>,
        bucketing: Bucketing,
    ) -> Option<Result<Evaluation, EvalError>> {
        self.get(title).map(|r| r.evaluate(user, bucketing))
    }

    /// Every flag, by id: its title and rule.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Rule)> {
        self.order.iter().filter_map(|t| self.by_title.get_key_value(t)).map(|(t, r)| (&**t, r))
    }

    /// How many flags it holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether it holds no flag.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The default bucket of `user` for the flag whose salt is `"<flag id>:"`: 0 to 99 999.
fn tower_bucket(salt: &[u8], user: &str) -> u32 {
    let h = Murmur3::new(0).chain(salt).chain(user.as_bytes()).finish();
    ((u64::from(h) * 100_000) >> 32) as u32
}

/// The default bucket of `user` for `flag`: 0 to 99 999.
pub fn bucket(flag: FlagId, user: &str) -> u32 {
    tower_bucket(format!("{flag}:").as_bytes(), user)
}

/// The Tailslide SDKs' bucket of `user`: `int(md5(user), 16) mod 100`, 0 to 99.
pub fn tailslide_bucket(user: &str) -> u32 {
    use md5::Digest;
    let digest: [u8; 16] = md5::Md5::digest(user.as_bytes()).into();
    (u128::from_be_bytes(digest) % 100) as u32
}

/// MurmurHash3 x86 32-bit of `data` with `seed`.
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    Murmur3::new(seed).chain(data).finish()
}

/// MurmurHash3 x86 32-bit over bytes that arrive in pieces (so a salt and a user hash without
/// being copied together).
struct Murmur3 {
    h: u32,
    tail: [u8; 4],
    tail_len: usize,
    len: usize,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

impl Murmur3 {
    fn new(seed: u32) -> Self {
        Self { h: seed, tail: [0; 4], tail_len: 0, len: 0 }
    }

    fn block(&mut self, k: u32) {
        self.h ^= mix_k(k);
        self.h = self.h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }

    fn chain(mut self, mut data: &[u8]) -> Self {
        self.len += data.len();
        while self.tail_len > 0 && !data.is_empty() {
            self.tail[self.tail_len] = data[0];
            self.tail_len += 1;
            data = &data[1..];
            if self.tail_len == 4 {
                self.block(u32::from_le_bytes(self.tail));
                self.tail_len = 0;
            }
        }
        let mut blocks = data.chunks_exact(4);
        for b in &mut blocks {
            self.block(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        }
        for &byte in blocks.remainder() {
            self.tail[self.tail_len] = byte;
            self.tail_len += 1;
        }
        self
    }

    fn finish(mut self) -> u32 {
        if self.tail_len > 0 {
            let mut k = 0u32;
            for i in (0..self.tail_len).rev() {
                k = (k << 8) | u32::from(self.tail[i]);
            }
            self.h ^= mix_k(k);
        }
        let mut h = self.h ^ (self.len as u32);
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Percent, Title, UserList};
    use crate::time::Timestamp;
    use proptest::prelude::*;

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_x86_32(&[0, 0, 0, 0], 0), 0x2362_f9de);
        assert_eq!(murmur3_x86_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_x86_32(b"aaaa", 0x9747_b28c), 0x5a97_808a);
        assert_eq!(murmur3_x86_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
        // Pieces hash like the whole, wherever they are cut.
        let s = b"42:user-123456789";
        for cut in 0..=s.len() {
            let pieces = Murmur3::new(0).chain(&s[..cut]).chain(&s[cut..]).finish();
            assert_eq!(pieces, murmur3_x86_32(s, 0), "cut at {cut}");
        }
    }

    #[test]
    fn tailslide_buckets_are_the_sdks() {
        assert_eq!(tailslide_bucket("alice"), 0);
        assert_eq!(tailslide_bucket("user-1"), 20);
        assert_eq!(tailslide_bucket("bob"), 32);
    }

    fn flag(id: i64, tenths: u16) -> Flag {
        let mut f = Flag::new(
            AppId::new(1),
            Title::parse(&format!("f{id}")).unwrap(),
            Timestamp::from_millis(0),
        )
        .with_id(FlagId::new(id));
        f.state = CircuitState::On;
        f.rollout_percentage = Percent::from_tenths(tenths).unwrap();
        f
    }

    fn share(rule: &Rule, users: u32, bucketing: Bucketing) -> f64 {
        let on = (0..users)
            .filter(|u| rule.evaluate(Some(&format!("user-{u}")), bucketing).unwrap().enabled)
            .count();
        on as f64 / f64::from(users) * 100.0
    }

    #[test]
    fn rollouts_reach_their_share_of_users() {
        for (tenths, pct) in [(10, 1.0), (50, 5.0), (250, 25.0), (500, 50.0)] {
            let got = share(&Rule::compile(&flag(7, tenths)), 100_000, Bucketing::Tower);
            assert!((got - pct).abs() <= 0.5, "{pct} %: {got:.2} %");
        }
        // Two flags at 50 % overlap on about a quarter of the users: independent buckets.
        let (a, b) = (Rule::compile(&flag(1, 500)), Rule::compile(&flag(2, 500)));
        let both = (0..100_000)
            .filter(|u| {
                let u = format!("user-{u}");
                a.evaluate(Some(&u), Bucketing::Tower).unwrap().enabled
                    && b.evaluate(Some(&u), Bucketing::Tower).unwrap().enabled
            })
            .count();
        let overlap = both as f64 / 1000.0;
        assert!((overlap - 25.0).abs() <= 0.5, "{overlap:.2} %");
    }

    #[test]
    fn reasons_and_the_targeting_key() {
        let mut f = flag(3, 1000);
        f.white_listed_users = UserList::parse("alice, bob").unwrap();
        let r = Rule::compile(&f);
        let eval = |r: &Rule, u| r.evaluate(u, Bucketing::Tower);
        assert_eq!(eval(&r, None), Ok(Evaluation { enabled: true, reason: Reason::Static }));
        assert_eq!(eval(&r, Some("bob")).unwrap().reason, Reason::TargetingMatch);
        f.rollout_percentage = Percent::from_tenths(300).unwrap();
        let r = Rule::compile(&f);
        assert_eq!(eval(&r, None), Err(EvalError::TargetingKeyMissing));
        assert_eq!(eval(&r, Some("carol")).unwrap().reason, Reason::Split);
        f.state = CircuitState::Off;
        let r = Rule::compile(&f);
        assert_eq!(
            eval(&r, Some("alice")),
            Ok(Evaluation { enabled: false, reason: Reason::Disabled })
        );
    }

    proptest! {
        #[test]
        fn raising_the_rollout_never_removes_a_user(
            id in 1i64..1_000_000,
            user in ".{0,30}",
            (low, high) in (0u16..=1000).prop_flat_map(|l| (Just(l), l..=1000)),
            tailslide in any::<bool>(),
        ) {
            let b = if tailslide { Bucketing::Tailslide } else { Bucketing::Tower };
            let on = |t| Rule::compile(&flag(id, t)).evaluate(Some(&user), b).unwrap().enabled;
            prop_assert!(!on(low) || on(high));
            prop_assert!(on(1000), "100 % is everybody");
            if b == Bucketing::Tower {
                prop_assert!(!on(0), "0 % is nobody");
            }
        }
    }
}
