//! Domain types. Each value type has one validating constructor and private fields, so a value
//! that exists is valid; serde goes through the same constructors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::time::Timestamp;

/// Why a value was refused; the message is written for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a raw database id.
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }
            /// The raw id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;
            /// Parses a path segment: decimal digits only, within `i64`.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(format!("`{s}` is not a valid id: ids are positive integers")));
                }
                match s.parse::<i64>() {
                    Ok(0) => Err(invalid(format!("`{s}` is not a valid id: ids are positive integers"))),
                    Ok(n) => Ok(Self(n)),
                    Err(_) => Err(invalid(format!("id `{s}` is out of range"))),
                }
            }
        }
    };
}

id_type!(
    /// The id of an app.
    AppId
);
id_type!(
    /// The id of a flag.
    FlagId
);
id_type!(
    /// The id of an audit log entry.
    LogId
);

/// A per-app counter bumped in the same transaction as every change of the app's ruleset.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(u64);

impl Revision {
    /// The revision numbered `n` (an app starts at 0).
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The revision after it.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 255;
/// The longest flag description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
/// The longest whitelist or webhook list, in characters.
pub const MAX_LIST_CHARS: usize = 65_536;

/// The title of an app or a flag: trimmed, 1–255 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl Title {
    /// Validates and trims a title.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(invalid("must not be empty"));
        }
        let n = t.chars().count();
        if n > MAX_TITLE_CHARS {
            return Err(invalid(format!("must be at most {MAX_TITLE_CHARS} characters (got {n})")));
        }
        if t.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        Ok(Self(t.to_owned()))
    }

    /// The title as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key uniqueness is checked on: titles are unique case-insensitively (Unicode lowercase,
    /// computed here so every store agrees).
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<String> for Title {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Title> for String {
    fn from(t: Title) -> Self {
        t.0
    }
}

impl fmt::Display for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A flag's description: at most 10 000 characters, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// Validates a description: any text but NUL (which no database stores as text).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.contains('\0') {
            return Err(invalid("must not contain NUL characters"));
        }
        let n = raw.chars().count();
        if n > MAX_DESCRIPTION_CHARS {
            return Err(invalid(format!(
                "must be at most {MAX_DESCRIPTION_CHARS} characters (got {n})"
            )));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Description {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Description> for String {
    fn from(t: Description) -> Self {
        t.0
    }
}

/// A percentage kept exactly as integer tenths of a percent (0–1000).
///
/// On the wire it is a decimal number with at most one decimal place: `33.3`, `100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(u16);

impl Percent {
    /// 0 %.
    pub const ZERO: Self = Self(0);
    /// 100 %.
    pub const HUNDRED: Self = Self(1000);

    /// From tenths of a percent; `None` above 1000.
    pub const fn from_tenths(tenths: u16) -> Option<Self> {
        if tenths <= 1000 { Some(Self(tenths)) } else { None }
    }

    /// From a decimal number in 0–100, rounded to the nearest tenth.
    pub fn from_f64(v: f64) -> Result<Self, InvalidValue> {
        if !v.is_finite() || !(0.0..=100.0).contains(&v) {
            return Err(invalid(format!("must be a number from 0 to 100 (got {v})")));
        }
        // In range, so the cast cannot truncate.
        Ok(Self((v * 10.0).round() as u16))
    }

    /// Tenths of a percent, 0–1000.
    pub const fn tenths(self) -> u16 {
        self.0
    }

    /// The percentage as a decimal number.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(10) {
            write!(f, "{}", self.0 / 10)
        } else {
            write!(f, "{}.{}", self.0 / 10, self.0 % 10)
        }
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Whole percentages are integers on the wire, as in the original (`100`, not `100.0`).
        if self.0.is_multiple_of(10) {
            s.serialize_u16(self.0 / 10)
        } else {
            s.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The smallest recovery delay and rate, in milliseconds.
pub const MIN_INTERVAL_MS: u32 = 100;
/// The largest recovery delay and rate, in milliseconds (what a 32-bit signed column holds).
pub const MAX_INTERVAL_MS: u32 = i32::MAX as u32;

/// A recovery delay or rate: whole milliseconds, 100 to 2 147 483 647.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct IntervalMs(u32);

impl IntervalMs {
    /// Validates an interval.
    pub fn new(ms: u32) -> Result<Self, InvalidValue> {
        if (MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(invalid(format!(
                "must be an integer number of milliseconds from {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS} (got {ms})"
            )))
        }
    }

    /// Milliseconds.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for IntervalMs {
    type Error = InvalidValue;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        Self::new(v)
    }
}

impl From<IntervalMs> for u32 {
    fn from(v: IntervalMs) -> Self {
        v.0
    }
}

/// Comma-separated user ids; entries trimmed, empty entries dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserList(String);

impl UserList {
    /// Normalizes a whitelist.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let joined = normalize_list(raw)?;
        if joined.split(',').any(|u| u.chars().any(char::is_control)) {
            return Err(invalid("user ids must not contain control characters"));
        }
        Ok(Self(joined))
    }

    /// The normalized list, comma-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `user` is on the list.
    pub fn contains(&self, user: &str) -> bool {
        !self.0.is_empty() && self.0.split(',').any(|u| u == user)
    }
}

fn normalize_list(raw: &str) -> Result<String, InvalidValue> {
    let n = raw.chars().count();
    if n > MAX_LIST_CHARS {
        return Err(invalid(format!("must be at most {MAX_LIST_CHARS} characters (got {n})")));
    }
    let entries: Vec<&str> = raw.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    Ok(entries.join(","))
}

impl TryFrom<String> for UserList {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<UserList> for String {
    fn from(t: UserList) -> Self {
        t.0
    }
}

/// Comma-separated `http://` or `https://` URLs; entries trimmed, empty entries dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Webhooks(String);

impl Webhooks {
    /// Validates and normalizes a webhook list: each entry an absolute `http://` or `https://`
    /// URL with a host, as the `url` crate (WHATWG URL) parses it.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let joined = normalize_list(raw)?;
        for entry in joined.split(',').filter(|u| !u.is_empty()) {
            let shown = crate::redact::url(entry);
            if entry.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid(format!("`{shown}` is not a valid URL")));
            }
            let url = url::Url::parse(entry)
                .map_err(|e| invalid(format!("`{shown}` is not a valid URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!("`{shown}` is not an http:// or https:// URL")));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid(format!("`{shown}` has no host")));
            }
        }
        Ok(Self(joined))
    }

    /// The normalized list, comma-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Each URL.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').filter(|u| !u.is_empty())
    }
}

impl TryFrom<String> for Webhooks {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Webhooks> for String {
    fn from(t: Webhooks) -> Self {
        t.0
    }
}

/// How recovery ramps a tripped flag back in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryProfile {
    /// p + increment per step.
    #[default]
    Linear,
    /// p × (1 + increment / 100) per step.
    Exponential,
}

impl RecoveryProfile {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Exponential => "exponential",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "linear" => Ok(Self::Linear),
            "exponential" => Ok(Self::Exponential),
            _ => Err(invalid(format!("must be \"linear\" or \"exponential\" (got {s:?})"))),
        }
    }
}

/// Where a flag stands. `is_active` and `circuit_status` on the wire are both derived from it, so
/// they can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CircuitState {
    /// Off for everyone (turned off, or tripped): `is_active=false`, `circuit_status="open"`.
    #[default]
    Off,
    /// Normal evaluation: `is_active=true`, `circuit_status="close"`.
    On,
    /// Ramping back in after a trip: `is_active=true`, `circuit_status="recovery"`.
    Recovering,
}

impl CircuitState {
    /// `is_active` on the wire.
    pub const fn is_active(self) -> bool {
        !matches!(self, Self::Off)
    }

    /// `circuit_status` on the wire.
    pub const fn circuit_status(self) -> &'static str {
        match self {
            Self::Off => "open",
            Self::On => "close",
            Self::Recovering => "recovery",
        }
    }

    /// The state named by a `circuit_status`.
    pub fn from_circuit_status(s: &str) -> Result<Self, InvalidValue> {
        match s {
            "open" => Ok(Self::Off),
            "close" => Ok(Self::On),
            "recovery" => Ok(Self::Recovering),
            _ => Err(invalid(format!("must be \"open\", \"close\" or \"recovery\" (got {s:?})"))),
        }
    }
}

/// An app: a group of flags published together as one ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its title, unique case-insensitively among live apps.
    pub title: Title,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last renamed.
    pub updated_at: Timestamp,
}

/// A feature flag with its circuit breaker settings.
///
/// Its JSON form (REST and ruleset) has exactly the fields of the original Tower, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Its id.
    pub id: FlagId,
    /// The app it belongs to.
    pub app_id: AppId,
    /// Its title, unique case-insensitively within its app.
    pub title: Title,
    /// Free text.
    pub description: Description,
    /// On, off or recovering.
    pub state: CircuitState,
    /// Share of users that get the flag.
    pub rollout_percentage: Percent,
    /// Users that get the flag whatever the rollout (while it is on).
    pub white_listed_users: UserList,
    /// Error rate that trips the circuit; 0 disables the breaker for the flag.
    pub error_threshold_percentage: Percent,
    /// Whether a trip by the breaker is followed by automatic recovery.
    pub is_recoverable: bool,
    /// Share of the rollout let through while recovering.
    pub circuit_recovery_percentage: Percent,
    /// Wait after a trip before recovery starts.
    pub circuit_recovery_delay: IntervalMs,
    /// First recovery step.
    pub circuit_initial_recovery_percentage: Percent,
    /// Time between recovery steps.
    pub circuit_recovery_rate: IntervalMs,
    /// Size of a recovery step (0.1–100).
    pub circuit_recovery_increment_percentage: Percent,
    /// Shape of the ramp.
    pub circuit_recovery_profile: RecoveryProfile,
    /// URLs told about circuit transitions.
    pub webhooks: Webhooks,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// What the circuit breaker remembers of it (deadlines survive restarts); not part of its
    /// JSON form.
    pub breaker: crate::breaker::BreakerClock,
}

/// The defaults of every setting of a new flag (the original Tower's create example).
pub mod defaults {
    use super::*;

    /// 100 %.
    pub const ROLLOUT: Percent = Percent::HUNDRED;
    /// 50 %.
    pub const ERROR_THRESHOLD: Percent = Percent(500);
    /// 100 %.
    pub const RECOVERY: Percent = Percent::HUNDRED;
    /// 100 ms.
    pub const RECOVERY_DELAY: IntervalMs = IntervalMs(100);
    /// 10 %.
    pub const INITIAL_RECOVERY: Percent = Percent(100);
    /// 100 ms.
    pub const RECOVERY_RATE: IntervalMs = IntervalMs(100);
    /// 0.1 %.
    pub const RECOVERY_INCREMENT: Percent = Percent(1);
}

impl Flag {
    /// A new flag with every setting at its default; the store assigns the id.
    pub fn new(app_id: AppId, title: Title, now: Timestamp) -> Self {
        Self {
            id: FlagId(0),
            app_id,
            title,
            description: Description::default(),
            state: CircuitState::Off,
            rollout_percentage: defaults::ROLLOUT,
            white_listed_users: UserList::default(),
            error_threshold_percentage: defaults::ERROR_THRESHOLD,
            is_recoverable: false,
            circuit_recovery_percentage: defaults::RECOVERY,
            circuit_recovery_delay: defaults::RECOVERY_DELAY,
            circuit_initial_recovery_percentage: defaults::INITIAL_RECOVERY,
            circuit_recovery_rate: defaults::RECOVERY_RATE,
            circuit_recovery_increment_percentage: defaults::RECOVERY_INCREMENT,
            circuit_recovery_profile: RecoveryProfile::Linear,
            webhooks: Webhooks::default(),
            created_at: now,
            updated_at: now,
            breaker: crate::breaker::BreakerClock::default(),
        }
    }

    /// This flag with another id (stores assign ids on insert).
    pub fn with_id(mut self, id: FlagId) -> Self {
        self.id = id;
        self
    }

    /// Whether everything but `updated_at` is equal: a change that leaves this true is a no-op.
    pub fn same_settings(&self, other: &Flag) -> bool {
        Flag { updated_at: other.updated_at, ..self.clone() } == *other
    }
}

/// The kind of an audit log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// A flag was created.
    Create,
    /// A flag was edited.
    Update,
    /// A flag was deleted.
    Delete,
    /// Toggled on.
    FlagOn,
    /// Toggled off.
    FlagOff,
    /// Tripped, by the API or the breaker.
    CircuitOpen,
    /// The breaker started recovery.
    CircuitRecovery,
    /// Closed, by the API or by recovery reaching 100 %.
    CircuitClose,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 8] = [
        Self::Create,
        Self::Update,
        Self::Delete,
        Self::FlagOn,
        Self::FlagOff,
        Self::CircuitOpen,
        Self::CircuitRecovery,
        Self::CircuitClose,
    ];

    /// `action_type` on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::FlagOn => "flag_on",
            Self::FlagOff => "flag_off",
            Self::CircuitOpen => "circuit_open",
            Self::CircuitRecovery => "circuit_recovery",
            Self::CircuitClose => "circuit_close",
        }
    }

    /// The human description logged with it.
    pub const fn description(self) -> &'static str {
        match self {
            Self::Create => "Flag Created",
            Self::Update => "Flag Updated",
            Self::Delete => "Flag Deleted",
            Self::FlagOn => "Flag Turned On",
            Self::FlagOff => "Flag Turned Off",
            Self::CircuitOpen => "Circuit Tripped Open",
            Self::CircuitRecovery => "Circuit Recovery Started",
            Self::CircuitClose => "Circuit Closed",
        }
    }

    /// The action named by an `action_type`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// How many of an app's flags are on, and in each circuit state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlagCounts {
    /// All flags.
    pub total: usize,
    /// Flags that are on (closed or recovering).
    pub active: usize,
    /// Closed circuits: on, normal evaluation.
    pub closed: usize,
    /// Circuits ramping back in.
    pub recovering: usize,
    /// Open circuits: off or tripped.
    pub open: usize,
}

impl FlagCounts {
    /// Counts `flags`.
    pub fn of(flags: &[Flag]) -> Self {
        let mut c = Self { total: flags.len(), ..Self::default() };
        for f in flags {
            match f.state {
                CircuitState::On => c.closed += 1,
                CircuitState::Recovering => c.recovering += 1,
                CircuitState::Off => c.open += 1,
            }
        }
        c.active = c.closed + c.recovering;
        c
    }
}

/// An append-only audit record; kept when its flag or app is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its id; ids grow with time.
    pub id: LogId,
    /// The flag it is about.
    pub flag_id: FlagId,
    /// The app of that flag.
    pub app_id: AppId,
    /// What happened.
    pub action: Action,
    /// The flag's title at the time.
    pub flag_title: String,
    /// The flag's description at the time.
    pub flag_description: String,
    /// When it happened.
    pub created_at: Timestamp,
    /// Why, beyond the action, when there is more to say: the breaker's evidence for a trip.
    pub detail: Option<String>,
    /// Who made the change; `None` for entries written before Tower recorded it.
    pub actor: Option<Actor>,
    /// What an edit changed, by the flag's JSON field names: `{field: [old, new]}`. `None`
    /// for creation, deletion, and entries written before Tower recorded it.
    pub changes: Option<Changes>,
}

/// What a change did to a flag's fields: each changed field's JSON name (as in the REST API)
/// with its old and new value.
pub type Changes = serde_json::Map<String, serde_json::Value>;

/// Who made a change, as its log entry records it: an admin token's name, [`Actor::breaker`],
/// or [`Actor::anonymous`] when authentication is off. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Actor(std::sync::Arc<str>);

impl Serialize for Actor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Actor {
    /// Changes made while authentication is off.
    pub fn anonymous() -> Self {
        Self::named("anonymous")
    }

    /// Changes the circuit breaker made.
    pub fn breaker() -> Self {
        Self::named("breaker")
    }

    /// A named actor (an admin token's name).
    pub fn named(name: &str) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<std::sync::Arc<str>> for Actor {
    fn from(name: std::sync::Arc<str>) -> Self {
        Self(name)
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SDK key; there is one current key, and creating one replaces it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdkKey {
    /// The key itself, a UUID.
    pub id: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was created (keys are never edited).
    pub updated_at: Timestamp,
}

impl SdkKey {
    /// A fresh random (v4) key.
    pub fn generate(now: Timestamp) -> Self {
        Self { id: uuid::Uuid::new_v4().to_string(), created_at: now, updated_at: now }
    }
}

impl fmt::Debug for SdkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is a secret: never in Debug output or logs.
        f.debug_struct("SdkKey")
            .field("id", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Whether a change was made by a person through the API or by the circuit breaker; it picks the
/// NATS subject (`apps.<id>.update.manual` or `.circuit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Through the API.
    Manual,
    /// By the breaker.
    Circuit,
}

impl Origin {
    /// The last subject token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Circuit => "circuit",
        }
    }

    /// Parses the last subject token.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "manual" => Some(Self::Manual),
            "circuit" => Some(Self::Circuit),
            _ => None,
        }
    }
}

/// Success and failure counts reported for a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Successful requests.
    pub success: u64,
    /// Failed requests.
    pub failure: u64,
}

impl Counts {
    /// success + failure.
    pub fn total(self) -> u64 {
        self.success.saturating_add(self.failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::parse("  My App ").unwrap().as_str(), "My App");
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse("").is_err());
        assert!(Title::parse(&"x".repeat(255)).is_ok());
        assert!(Title::parse(&"é".repeat(255)).is_ok(), "limit counts characters, not bytes");
        assert!(Title::parse(&"x".repeat(256)).is_err());
        assert!(Title::parse("a\u{0}b").is_err());
        assert_eq!(Title::parse("ÄPP").unwrap().key(), Title::parse("äpp").unwrap().key());
        assert_eq!(
            Title::parse("x'); DROP TABLE apps;--").unwrap().as_str(),
            "x'); DROP TABLE apps;--"
        );
    }

    #[test]
    fn percent_rounds_to_nearest_tenth() {
        assert_eq!(Percent::from_f64(33.33).unwrap().tenths(), 333);
        assert_eq!(Percent::from_f64(33.36).unwrap().tenths(), 334);
        assert_eq!(Percent::from_f64(0.04).unwrap().tenths(), 0);
        assert_eq!(Percent::from_f64(100.0).unwrap(), Percent::HUNDRED);
        assert!(Percent::from_f64(100.01).is_err());
        assert!(Percent::from_f64(-0.1).is_err());
        assert!(Percent::from_f64(f64::NAN).is_err());
        assert_eq!(serde_json::to_string(&Percent::HUNDRED).unwrap(), "100");
        assert_eq!(serde_json::to_string(&Percent::from_tenths(1).unwrap()).unwrap(), "0.1");
        assert_eq!(serde_json::to_string(&Percent::from_tenths(333).unwrap()).unwrap(), "33.3");
    }

    #[test]
    fn lists_are_normalized() {
        assert_eq!(UserList::parse(" a, ,b ,,c ").unwrap().as_str(), "a,b,c");
        assert_eq!(UserList::parse("").unwrap().as_str(), "");
        assert!(UserList::parse("a,b").unwrap().contains("b"));
        assert!(!UserList::parse("").unwrap().contains(""));
        assert_eq!(
            Webhooks::parse("https://a.example/x , http://b.example").unwrap().as_str(),
            "https://a.example/x,http://b.example"
        );
        assert!(Webhooks::parse("ftp://a.example").is_err());
        assert!(Webhooks::parse("https://").is_err());
        assert!(Webhooks::parse("https://a b").is_err());
    }

    #[test]
    fn ids_parse_path_segments() {
        assert_eq!("42".parse::<FlagId>().unwrap().get(), 42);
        assert!("-1".parse::<FlagId>().is_err());
        assert!("1e3".parse::<FlagId>().is_err());
        assert!("".parse::<FlagId>().is_err());
        assert!("9223372036854775808".parse::<FlagId>().is_err());
        assert!("9223372036854775807".parse::<FlagId>().is_ok());
    }

    #[test]
    fn intervals_are_bounded() {
        assert!(IntervalMs::new(99).is_err());
        assert!(IntervalMs::new(100).is_ok());
        assert!(IntervalMs::new(MAX_INTERVAL_MS).is_ok());
        assert!(IntervalMs::new(MAX_INTERVAL_MS + 1).is_err());
    }

    #[test]
    fn sdk_key_debug_hides_the_key() {
        let key = SdkKey::generate(Timestamp::from_millis(0));
        assert!(!format!("{key:?}").contains(&key.id));
    }

    proptest! {
        #[test]
        fn percent_round_trips_through_f64(t in 0u16..=1000) {
            let p = Percent::from_tenths(t).unwrap();
            prop_assert_eq!(Percent::from_f64(p.as_f64()).unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Percent>(&json).unwrap(), p);
        }

        #[test]
        fn percent_rounding_is_nearest(v in 0.0f64..=100.0) {
            let p = Percent::from_f64(v).unwrap();
            prop_assert!((p.as_f64() - v).abs() <= 0.05 + 1e-9);
        }

        #[test]
        fn title_parse_is_idempotent(s in "\\PC{0,300}") {
            if let Ok(t) = Title::parse(&s) {
                prop_assert_eq!(Title::parse(t.as_str()).unwrap(), t.clone());
                prop_assert!(t.as_str().chars().count() <= MAX_TITLE_CHARS);
            }
        }

        #[test]
        fn user_list_normalization_is_idempotent(s in "[ a-z0-9,]{0,60}") {
            let once = UserList::parse(&s).unwrap();
            prop_assert_eq!(UserList::parse(once.as_str()).unwrap(), once.clone());
            prop_assert!(!once.as_str().contains(",,") && !once.as_str().starts_with(','));
        }
    }
}
