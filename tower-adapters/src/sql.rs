//! What the SQL stores share: the column lists their row readers depend on, the stored names of
//! circuit states, and the error for a row the domain refuses.

use flagtower_core::CircuitState;

/// The columns of an app, in the order `app_from_row` reads them.
pub(crate) const APP_COLUMNS: &str = "id, title, created_at, updated_at";
/// The columns of a flag, in the order `flag_from_row` reads them.
pub(crate) const FLAG_COLUMNS: &str = "id, app_id, title, description, state, rollout_tenths, \
    white_listed_users, error_threshold_tenths, is_recoverable, recovery_tenths, \
    recovery_delay_ms, initial_recovery_tenths, recovery_rate_ms, recovery_increment_tenths, \
    recovery_profile, webhooks, created_at, updated_at, breaker_since, recovery_due_at, \
    next_step_due_at";
/// The columns of a log entry, in the order `log_from_row` reads them.
pub(crate) const LOG_COLUMNS: &str =
    "id, flag_id, app_id, action_type, flag_title, flag_description, created_at";

/// The stored name of a circuit state (the `state` column).
pub(crate) fn state_name(s: CircuitState) -> &'static str {
    match s {
        CircuitState::Off => "off",
        CircuitState::On => "on",
        CircuitState::Recovering => "recovering",
    }
}

/// The circuit state a `state` column names.
pub(crate) fn parse_state(s: &str) -> Result<CircuitState, Corrupt> {
    match s {
        "off" => Ok(CircuitState::Off),
        "on" => Ok(CircuitState::On),
        "recovering" => Ok(CircuitState::Recovering),
        other => Err(Corrupt(format!("state {other:?}"))),
    }
}

/// A value read from the database that the domain refuses: the data was edited by hand.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row in the database: {0}")]
pub(crate) struct Corrupt(pub(crate) String);
