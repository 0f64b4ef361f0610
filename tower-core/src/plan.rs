//! What a change writes, decided once for every store.
//!
//! A store's transaction reads what the change depends on (the flag, under its lock), asks this
//! module for the write — the flag row as it will be, the log entry (its action and why; the
//! snapshots of title and description are the written flag's), and the origin of the revision
//! bump and outbox record — then executes it. So the rules (which commands are logged, which
//! origin a change publishes as, what a trip's entry says) live here, and a store only knows how
//! to write rows.

use crate::command::{FlagCommand, NewFlag};
use crate::model::{Action, Actor, AppId, Changes, Flag, LogEntry, LogId, Origin};
use crate::time::Timestamp;

/// One flag change to write, with its app's revision bump and outbox record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagWrite {
    /// The flag as it is written (for a new flag, before the store assigns its id).
    pub flag: Flag,
    /// The log entry, when the change is logged (an intermediate recovery step is published
    /// but not logged).
    pub log: Option<LogWrite>,
    /// Who made the change: the origin of the outbox record (`…update.manual` or
    /// `…update.circuit`).
    pub origin: Origin,
}

/// A log entry to write with a [`FlagWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogWrite {
    /// What happened.
    pub action: Action,
    /// Why, in numbers, when there is more to say (a trip's evidence).
    pub detail: Option<String>,
    /// Who made the change.
    pub actor: Actor,
    /// The fields a change of an existing flag changed, old and new ([`changes`]).
    pub changes: Option<Changes>,
}

/// The fields of `before` that `after` changes, by their JSON names (as the REST API shows a
/// flag), each with its old and new value; the timestamps are left out (they change every time).
pub fn changes(before: &Flag, after: &Flag) -> Changes {
    let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (
        serde_json::to_value(before).unwrap_or_default(),
        serde_json::to_value(after).unwrap_or_default(),
    ) else {
        return Changes::new();
    };
    let mut changed = Changes::new();
    for (field, value) in new {
        if field == "updated_at" || field == "created_at" {
            continue;
        }
        let was = old.get(&field).cloned().unwrap_or(serde_json::Value::Null);
        if was != value {
            changed.insert(field, serde_json::Value::Array(vec![was, value]));
        }
    }
    changed
}

impl FlagWrite {
    /// Creating a flag in `app`: logged as `create`, published as a manual change.
    pub fn create(app: AppId, new: &NewFlag, now: Timestamp, actor: &Actor) -> Self {
        Self {
            flag: new.build(app, now),
            log: Some(LogWrite {
                action: Action::Create,
                detail: None,
                actor: actor.clone(),
                changes: None,
            }),
            origin: Origin::Manual,
        }
    }

    /// `command` applied to `current` ([`FlagCommand::apply`]); `None` when it changes nothing,
    /// and then nothing is written.
    pub fn change(
        current: &Flag,
        command: &FlagCommand,
        origin: Origin,
        now: Timestamp,
        actor: &Actor,
    ) -> Option<Self> {
        let (flag, action) = command.apply(current, now)?;
        let log = action.map(|action| LogWrite {
            action,
            detail: command.log_detail(),
            actor: actor.clone(),
            changes: Some(changes(current, &flag)),
        });
        Some(Self { flag, log, origin })
    }

    /// Deleting `flag`: logged as `delete` with the flag's last title and description.
    pub fn delete(flag: &Flag, actor: &Actor) -> Self {
        Self {
            flag: flag.clone(),
            log: Some(LogWrite {
                action: Action::Delete,
                detail: None,
                actor: actor.clone(),
                changes: None,
            }),
            origin: Origin::Manual,
        }
    }

    /// The action of its log entry, if it writes one.
    pub fn action(&self) -> Option<Action> {
        self.log.as_ref().map(|l| l.action)
    }

    /// Its log entry as stored with `id` at `now`.
    pub fn log_entry(&self, id: LogId, now: Timestamp) -> Option<LogEntry> {
        self.log.as_ref().map(|log| LogEntry {
            id,
            flag_id: self.flag.id,
            app_id: self.flag.app_id,
            action: log.action,
            flag_title: self.flag.title.as_str().to_owned(),
            flag_description: self.flag.description.as_str().to_owned(),
            created_at: now,
            detail: log.detail.clone(),
            actor: Some(log.actor.clone()),
            changes: log.changes.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::{Transition, TripReason};
    use crate::model::{CircuitState, FlagId, Percent, Title};

    fn flag() -> Flag {
        Flag::new(AppId::new(1), Title::parse("f").unwrap(), Timestamp::from_millis(0))
            .with_id(FlagId::new(3))
    }

    #[test]
    fn each_change_says_what_it_writes() {
        let now = Timestamp::from_millis(10);
        let ops = Actor::named("ops");
        let on = FlagWrite::change(&flag(), &FlagCommand::Toggle(None), Origin::Manual, now, &ops)
            .expect("a toggle changes the flag");
        let entry = on.log_entry(LogId::new(8), now).unwrap();
        assert_eq!(entry.actor, Some(ops.clone()));
        assert_eq!(
            serde_json::Value::Object(entry.changes.unwrap()),
            serde_json::json!({"is_active": [false, true], "circuit_status": ["open", "close"]})
        );
        assert_eq!(
            (on.flag.state, on.action(), on.origin),
            (CircuitState::On, Some(Action::FlagOn), Origin::Manual)
        );
        assert!(
            FlagWrite::change(
                &on.flag,
                &FlagCommand::Toggle(Some(true)),
                Origin::Manual,
                now,
                &ops
            )
            .is_none()
        );

        let why = TripReason {
            requests: 40,
            failures: 20,
            threshold: Percent::from_tenths(100).unwrap(),
            alpha_ppm: 10_000,
        };
        let trip = FlagCommand::Breaker {
            transition: Transition::Trip(why),
            seen: Box::new(on.flag.clone()),
        };
        let tripped =
            FlagWrite::change(&on.flag, &trip, Origin::Circuit, now, &Actor::breaker()).unwrap();
        let entry = tripped.log_entry(LogId::new(9), now).unwrap();
        assert_eq!(
            (entry.action, entry.flag_id, entry.detail),
            (Action::CircuitOpen, FlagId::new(3), Some(why.to_string()))
        );
        assert_eq!(tripped.origin, Origin::Circuit);

        let gone = FlagWrite::delete(&tripped.flag, &ops);
        assert_eq!(
            (gone.action(), gone.log_entry(LogId::new(10), now).unwrap().flag_title.as_str()),
            (Some(Action::Delete), "f")
        );
    }
}
