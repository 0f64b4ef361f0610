//! The ruleset codec: an app's flags as the JSON array SDKs read.
//!
//! A flag's JSON form is the same in the REST API and in a ruleset: exactly the fields of the
//! original Tower, snake_case, percentages as decimal numbers, timestamps as RFC 3339.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{
    AppId, CircuitState, Description, Flag, FlagId, IntervalMs, Origin, Percent, RecoveryProfile,
    Revision, Title, UserList, Webhooks,
};
use crate::time::Timestamp;

#[derive(Serialize)]
struct FlagOut<'a> {
    id: FlagId,
    app_id: AppId,
    title: &'a str,
    description: &'a str,
    is_active: bool,
    rollout_percentage: Percent,
    white_listed_users: &'a str,
    error_threshold_percentage: Percent,
    circuit_status: &'static str,
    is_recoverable: bool,
    circuit_recovery_percentage: Percent,
    circuit_recovery_delay: u32,
    circuit_initial_recovery_percentage: Percent,
    circuit_recovery_rate: u32,
    circuit_recovery_increment_percentage: Percent,
    circuit_recovery_profile: RecoveryProfile,
    webhooks: &'a str,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'a> From<&'a Flag> for FlagOut<'a> {
    fn from(f: &'a Flag) -> Self {
        Self {
            id: f.id,
            app_id: f.app_id,
            title: f.title.as_str(),
            description: f.description.as_str(),
            is_active: f.state.is_active(),
            rollout_percentage: f.rollout_percentage,
            white_listed_users: f.white_listed_users.as_str(),
            error_threshold_percentage: f.error_threshold_percentage,
            circuit_status: f.state.circuit_status(),
            is_recoverable: f.is_recoverable,
            circuit_recovery_percentage: f.circuit_recovery_percentage,
            circuit_recovery_delay: f.circuit_recovery_delay.get(),
            circuit_initial_recovery_percentage: f.circuit_initial_recovery_percentage,
            circuit_recovery_rate: f.circuit_recovery_rate.get(),
            circuit_recovery_increment_percentage: f.circuit_recovery_increment_percentage,
            circuit_recovery_profile: f.circuit_recovery_profile,
            webhooks: f.webhooks.as_str(),
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

impl Serialize for Flag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FlagOut::from(self).serialize(s)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagIn {
    id: FlagId,
    app_id: AppId,
    title: Title,
    description: Description,
    is_active: bool,
    rollout_percentage: Percent,
    white_listed_users: UserList,
    error_threshold_percentage: Percent,
    circuit_status: String,
    is_recoverable: bool,
    circuit_recovery_percentage: Percent,
    circuit_recovery_delay: IntervalMs,
    circuit_initial_recovery_percentage: Percent,
    circuit_recovery_rate: IntervalMs,
    circuit_recovery_increment_percentage: Percent,
    circuit_recovery_profile: RecoveryProfile,
    webhooks: Webhooks,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = FlagIn::deserialize(d)?;
        let state =
            CircuitState::from_circuit_status(&w.circuit_status).map_err(D::Error::custom)?;
        if state.is_active() != w.is_active {
            return Err(D::Error::custom(format!(
                "is_active={} contradicts circuit_status={:?}",
                w.is_active, w.circuit_status
            )));
        }
        Ok(Flag {
            id: w.id,
            app_id: w.app_id,
            title: w.title,
            description: w.description,
            state,
            rollout_percentage: w.rollout_percentage,
            white_listed_users: w.white_listed_users,
            error_threshold_percentage: w.error_threshold_percentage,
            is_recoverable: w.is_recoverable,
            circuit_recovery_percentage: w.circuit_recovery_percentage,
            circuit_recovery_delay: w.circuit_recovery_delay,
            circuit_initial_recovery_percentage: w.circuit_initial_recovery_percentage,
            circuit_recovery_rate: w.circuit_recovery_rate,
            circuit_recovery_increment_percentage: w.circuit_recovery_increment_percentage,
            circuit_recovery_profile: w.circuit_recovery_profile,
            webhooks: w.webhooks,
            created_at: w.created_at,
            updated_at: w.updated_at,
            breaker: crate::breaker::BreakerClock::default(),
        })
    }
}

/// One app's flags at one revision, as read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The app.
    pub app_id: AppId,
    /// The app's revision this snapshot was read at.
    pub revision: Revision,
    /// The flags, ordered by id; empty once the app is deleted.
    pub flags: Vec<Flag>,
}

impl Ruleset {
    /// The JSON array SDKs read.
    pub fn encode(&self) -> Bytes {
        encode_flags(&self.flags)
    }
}

/// Encodes flags as the ruleset JSON array, ordering them by id.
pub fn encode_flags(flags: &[Flag]) -> Bytes {
    let sorted = flags.windows(2).all(|w| w[0].id < w[1].id);
    let out = if sorted {
        serde_json::to_vec(flags)
    } else {
        let mut refs: Vec<&Flag> = flags.iter().collect();
        refs.sort_by_key(|f| f.id);
        serde_json::to_vec(&refs)
    };
    // Serializing these types cannot fail: every key is a string and every number finite.
    Bytes::from(out.expect("a ruleset always serializes"))
}

/// The length in bytes of a flag's JSON form (as in a ruleset), without building it.
pub fn encoded_len(flag: &Flag) -> usize {
    let mut counter = ByteCounter(0);
    // Serializing a flag cannot fail (see `encode_flags`), and the counter never fails.
    serde_json::to_writer(&mut counter, flag).expect("a flag always serializes");
    counter.0
}

/// Whether a write that turns `before` (`None`: a new flag) into `after` makes the app's ruleset
/// longer, so that it must be measured against a publisher's limit.
pub fn grows(before: Option<&Flag>, after: &Flag) -> bool {
    before.is_none_or(|b| encoded_len(after) > encoded_len(b))
}

/// Checks an app's flags, as a write leaves them, against a publisher's limit on the encoded
/// ruleset: [`StoreError::TooLarge`] naming both sizes when they encode to more than `limit`.
pub fn check_size(flags: &[Flag], limit: usize) -> Result<(), crate::ports::StoreError> {
    // `[`, `]`, a comma between flags, and the flags themselves.
    let size = 2 + flags.len().saturating_sub(1) + flags.iter().map(encoded_len).sum::<usize>();
    if size > limit {
        return Err(crate::ports::StoreError::TooLarge { size, limit });
    }
    Ok(())
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes a ruleset JSON array, as an SDK would.
pub fn decode_flags(body: &[u8]) -> Result<Vec<Flag>, serde_json::Error> {
    serde_json::from_slice(body)
}

/// A ruleset ready for a publisher: the encoded body and what picks its subject and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRuleset {
    /// The app.
    pub app_id: AppId,
    /// Its revision; on NATS `Nats-Msg-Id: <app_id>-<revision>` and `Tower-Revision`.
    pub revision: Revision,
    /// Who made the newest change in it.
    pub origin: Origin,
    /// The JSON array.
    pub body: Bytes,
}

impl EncodedRuleset {
    /// Encodes a snapshot.
    pub fn new(ruleset: &Ruleset, origin: Origin) -> Self {
        Self { app_id: ruleset.app_id, revision: ruleset.revision, origin, body: ruleset.encode() }
    }

    /// The NATS subject: `apps.<appId>.update.manual` or `apps.<appId>.update.circuit`.
    pub fn subject(&self) -> String {
        format!("apps.{}.update.{}", self.app_id, self.origin.as_str())
    }

    /// The de-duplication id: `<appId>-<revision>`.
    pub fn message_id(&self) -> String {
        format!("{}-{}", self.app_id, self.revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use proptest::prelude::*;

    /// The first flag of the seed's "flags of an app" example.
    pub(crate) const SEED_FLAG: &str = r#"{"id":1,"app_id":1,"title":"App 1 Flag 1","description":"","is_active":false,"rollout_percentage":100,"white_listed_users":"","error_threshold_percentage":50,"circuit_status":"open","is_recoverable":false,"circuit_recovery_percentage":100,"circuit_recovery_delay":100,"circuit_initial_recovery_percentage":10,"circuit_recovery_rate":100,"circuit_recovery_increment_percentage":0.1,"circuit_recovery_profile":"linear","webhooks":"","created_at":"2022-08-11T18:51:52.882Z","updated_at":"2022-08-11T18:51:52.882Z"}"#;

    #[test]
    fn a_default_flag_encodes_byte_for_byte_like_the_seed() {
        let now = crate::time::parse_rfc3339_millis("2022-08-11T18:51:52.882Z").unwrap();
        let mut flag = Flag::new(AppId::new(1), Title::parse("App 1 Flag 1").unwrap(), now);
        flag.id = FlagId::new(1);
        let body = encode_flags(&[flag.clone()]);
        assert_eq!(std::str::from_utf8(&body).unwrap(), format!("[{SEED_FLAG}]"));
        assert_eq!(decode_flags(&body).unwrap(), vec![flag]);
    }

    #[test]
    fn flags_are_ordered_by_id() {
        let now = Timestamp::from_millis(0);
        let mk = |id| {
            let mut f = Flag::new(AppId::new(1), Title::parse(&format!("f{id}")).unwrap(), now);
            f.id = FlagId::new(id);
            f
        };
        let body = encode_flags(&[mk(3), mk(1), mk(2)]);
        let ids: Vec<i64> = decode_flags(&body).unwrap().iter().map(|f| f.id.get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(&encode_flags(&[])[..], b"[]");
    }

    #[test]
    fn contradictory_state_is_refused() {
        let bad = SEED_FLAG.replace(r#""is_active":false"#, r#""is_active":true"#);
        assert!(decode_flags(format!("[{bad}]").as_bytes()).is_err());
    }

    pub(crate) fn arb_flag() -> impl Strategy<Value = Flag> {
        let pct = || (0u16..=1000).prop_map(|t| Percent::from_tenths(t).unwrap());
        let ms = || (100u32..=MAX_INTERVAL_MS).prop_map(|m| IntervalMs::new(m).unwrap());
        (
            (1i64..1_000_000, 1i64..1000, "[a-zA-Z0-9 éü'\"\\\\]{1,40}", ".{0,40}"),
            (
                prop_oneof![
                    Just(CircuitState::Off),
                    Just(CircuitState::On),
                    Just(CircuitState::Recovering)
                ],
                pct(),
                "[a-z0-9,]{0,20}",
                pct(),
            ),
            (
                any::<bool>(),
                pct(),
                ms(),
                pct(),
                ms(),
                (1u16..=1000).prop_map(|t| Percent::from_tenths(t).unwrap()),
            ),
            (any::<bool>(), 0i64..4_000_000_000_000, 0i64..1_000_000),
        )
            .prop_filter_map(
                "valid title",
                |(
                    (id, app, title, desc),
                    (state, rollout, wl, thr),
                    (rec, rp, rd, irp, rr, inc),
                    (exp, created, delta),
                )| {
                    Some(Flag {
                        id: FlagId::new(id),
                        app_id: AppId::new(app),
                        title: Title::parse(&title).ok()?,
                        description: Description::parse(&desc).ok()?,
                        state,
                        rollout_percentage: rollout,
                        white_listed_users: UserList::parse(&wl).ok()?,
                        error_threshold_percentage: thr,
                        is_recoverable: rec,
                        circuit_recovery_percentage: rp,
                        circuit_recovery_delay: rd,
                        circuit_initial_recovery_percentage: irp,
                        circuit_recovery_rate: rr,
                        circuit_recovery_increment_percentage: inc,
                        circuit_recovery_profile: if exp {
                            RecoveryProfile::Exponential
                        } else {
                            RecoveryProfile::Linear
                        },
                        webhooks: Webhooks::default(),
                        created_at: Timestamp::from_millis(created),
                        updated_at: Timestamp::from_millis(created + delta),
                        breaker: Default::default(),
                    })
                },
            )
    }

    proptest! {
        #[test]
        fn ruleset_round_trips(mut flags in proptest::collection::vec(arb_flag(), 0..20)) {
            flags.sort_by_key(|f| f.id);
            flags.dedup_by_key(|f| f.id);
            let body = encode_flags(&flags);
            prop_assert_eq!(decode_flags(&body).unwrap(), flags);
        }

        #[test]
        fn the_size_check_measures_exactly_what_is_published(
            flags in proptest::collection::vec(arb_flag(), 0..20),
        ) {
            let size = encode_flags(&flags).len();
            prop_assert!(check_size(&flags, size).is_ok());
            let err = check_size(&flags, size - 1).unwrap_err();
            prop_assert!(
                matches!(err, crate::ports::StoreError::TooLarge { size: s, limit } if s == size && limit == size - 1),
                "{:?}", err
            );
        }
    }

    #[test]
    fn a_flag_grows_when_its_json_gets_longer() {
        let now = Timestamp::from_millis(0);
        let flag = Flag::new(AppId::new(1), Title::parse("f").unwrap(), now);
        assert!(grows(None, &flag), "a new flag always grows the ruleset");
        assert!(!grows(Some(&flag), &flag));
        let mut longer = flag.clone();
        longer.white_listed_users = UserList::parse("a,b").unwrap();
        assert!(grows(Some(&flag), &longer) && !grows(Some(&longer), &flag));
    }
}
