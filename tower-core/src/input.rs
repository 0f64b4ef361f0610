//! Request bodies, from parsed JSON to validated inputs, with errors that name the field.
//!
//! Every API that takes JSON (the REST server, an embedder's own endpoint) goes through these,
//! so validation is written once.

use serde_json::{Map, Value};

use crate::command::{FlagPatch, NewFlag};
use crate::model::{
    Counts, Description, IntervalMs, InvalidValue, Percent, RecoveryProfile, Title, UserList,
    Webhooks,
};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The body is JSON but not an object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// A field has a wrong type or value, or a required field is missing.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong, for the sender.
        message: String,
    },
    /// A field this body does not take.
    #[error("{field}: unknown field")]
    UnknownField {
        /// The field.
        field: String,
    },
}

impl InputError {
    fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.to_owned(), message: message.into() }
    }

    /// The field it is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::NotAnObject => None,
            Self::Invalid { field, .. } | Self::UnknownField { field } => Some(field),
        }
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, InputError> {
    body.as_object().ok_or(InputError::NotAnObject)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string<'a>(field: &str, v: &'a Value) -> Result<&'a str, InputError> {
    v.as_str().ok_or_else(|| {
        InputError::invalid(field, format!("must be a string, not {}", type_name(v)))
    })
}

fn boolean(field: &str, v: &Value) -> Result<bool, InputError> {
    v.as_bool().ok_or_else(|| {
        InputError::invalid(field, format!("must be a boolean, not {}", type_name(v)))
    })
}

fn percent(field: &str, v: &Value) -> Result<Percent, InputError> {
    let n = v.as_f64().filter(|_| v.is_number()).ok_or_else(|| {
        InputError::invalid(field, format!("must be a number, not {}", type_name(v)))
    })?;
    Percent::from_f64(n).map_err(|e| checked(field, e))
}

/// A whole non-negative number: `347`, or `347.0` (JSON does not tell them apart, nor does JSON
/// Schema's `integer`, and some encoders write every number with a fraction).
fn whole(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        // Below 2^64, so the cast is exact.
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(f))
            .map(|f| f as u64)
    })
}

fn interval(field: &str, v: &Value) -> Result<IntervalMs, InputError> {
    let ms = match v {
        Value::Number(n) => whole(v).ok_or_else(|| {
            InputError::invalid(field, format!("must be a whole number of milliseconds (got {n})"))
        })?,
        other => {
            return Err(InputError::invalid(
                field,
                format!("must be a number, not {}", type_name(other)),
            ));
        }
    };
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    IntervalMs::new(ms).map_err(|e| checked(field, e))
}

fn checked(field: &str, e: InvalidValue) -> InputError {
    InputError::invalid(field, e.0)
}

/// Fields of a flag's representation that a body may carry and that are ignored: ids,
/// timestamps, the circuit state (changed through `is_active`) and the logs of `GET`.
const IGNORED_FLAG_FIELDS: [&str; 6] =
    ["id", "app_id", "created_at", "updated_at", "circuit_status", "logs"];

/// The body of `POST /api/apps` and `PATCH /api/apps/:id`: `{"title": …}`.
pub fn parse_app(body: &Value) -> Result<Title, InputError> {
    let obj = object(body)?;
    let mut title = None;
    for (k, v) in obj {
        match k.as_str() {
            "title" => title = Some(Title::parse(string(k, v)?).map_err(|e| checked(k, e))?),
            "id" | "created_at" | "updated_at" => {}
            _ => return Err(InputError::UnknownField { field: k.clone() }),
        }
    }
    title.ok_or_else(|| InputError::invalid("title", "is required"))
}

/// The body of `PATCH /api/flags/:id`: any subset of the settings.
pub fn parse_flag_patch(body: &Value) -> Result<FlagPatch, InputError> {
    let obj = object(body)?;
    let mut p = FlagPatch::default();
    for (k, v) in obj {
        let f = k.as_str();
        match f {
            "title" => p.title = Some(Title::parse(string(f, v)?).map_err(|e| checked(f, e))?),
            "description" => {
                p.description = Some(Description::parse(string(f, v)?).map_err(|e| checked(f, e))?)
            }
            "is_active" => p.is_active = Some(boolean(f, v)?),
            "rollout_percentage" => p.rollout_percentage = Some(percent(f, v)?),
            "white_listed_users" => {
                p.white_listed_users =
                    Some(UserList::parse(string(f, v)?).map_err(|e| checked(f, e))?)
            }
            "error_threshold_percentage" => p.error_threshold_percentage = Some(percent(f, v)?),
            "is_recoverable" => p.is_recoverable = Some(boolean(f, v)?),
            "circuit_recovery_percentage" => p.circuit_recovery_percentage = Some(percent(f, v)?),
            "circuit_recovery_delay" => p.circuit_recovery_delay = Some(interval(f, v)?),
            "circuit_initial_recovery_percentage" => {
                p.circuit_initial_recovery_percentage = Some(percent(f, v)?)
            }
            "circuit_recovery_rate" => p.circuit_recovery_rate = Some(interval(f, v)?),
            "circuit_recovery_increment_percentage" => {
                let inc = percent(f, v)?;
                if inc == Percent::ZERO {
                    return Err(InputError::invalid(f, "must be from 0.1 to 100"));
                }
                p.circuit_recovery_increment_percentage = Some(inc);
            }
            "circuit_recovery_profile" => {
                p.circuit_recovery_profile =
                    Some(RecoveryProfile::parse(string(f, v)?).map_err(|e| checked(f, e))?)
            }
            "webhooks" => {
                p.webhooks = Some(Webhooks::parse(string(f, v)?).map_err(|e| checked(f, e))?)
            }
            _ if IGNORED_FLAG_FIELDS.contains(&f) => {}
            _ => return Err(InputError::UnknownField { field: k.clone() }),
        }
    }
    Ok(p)
}

/// The body of `POST /api/apps/:id/flags`: a title and any settings.
pub fn parse_new_flag(body: &Value) -> Result<NewFlag, InputError> {
    let mut settings = parse_flag_patch(body)?;
    let title = settings.title.take().ok_or_else(|| InputError::invalid("title", "is required"))?;
    Ok(NewFlag { title, settings })
}

/// The body of `PATCH /api/flags/:id/toggle`: `{"is_active": b}` sets it, no body or `{}` flips
/// it.
pub fn parse_toggle(body: Option<&Value>) -> Result<Option<bool>, InputError> {
    let Some(body) = body else { return Ok(None) };
    let obj = object(body)?;
    let mut target = None;
    for (k, v) in obj {
        match k.as_str() {
            "is_active" => target = Some(boolean(k, v)?),
            f if IGNORED_FLAG_FIELDS.contains(&f) => {}
            _ => return Err(InputError::UnknownField { field: k.clone() }),
        }
    }
    Ok(target)
}

/// The largest count one report may carry.
pub const MAX_EVENT_COUNT: u64 = 1_000_000_000;

/// The body of `POST /api/flags/:id/events`: `{"success": n, "failure": m}`, non-negative
/// integers, at least one above zero.
pub fn parse_events(body: &Value) -> Result<Counts, InputError> {
    let obj = object(body)?;
    let mut counts = Counts::default();
    for (k, v) in obj {
        let slot = match k.as_str() {
            "success" => &mut counts.success,
            "failure" => &mut counts.failure,
            _ => return Err(InputError::UnknownField { field: k.clone() }),
        };
        *slot = whole(v).filter(|n| *n <= MAX_EVENT_COUNT).ok_or_else(|| {
            InputError::invalid(k, format!("must be an integer from 0 to {MAX_EVENT_COUNT}"))
        })?;
    }
    if counts.total() == 0 {
        return Err(InputError::invalid("success", "success or failure must be above 0"));
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_bodies() {
        assert_eq!(parse_app(&json!({"title": " A "})).unwrap().as_str(), "A");
        assert_eq!(parse_app(&json!({})).unwrap_err().field(), Some("title"));
        assert_eq!(parse_app(&json!({"title": 5})).unwrap_err().field(), Some("title"));
        assert_eq!(parse_app(&json!({"title": "a", "x": 1})).unwrap_err().field(), Some("x"));
        assert_eq!(parse_app(&json!([1])).unwrap_err(), InputError::NotAnObject);
        assert!(parse_app(&json!({"title": "a", "id": 9})).is_ok());
    }

    #[test]
    fn the_seed_flag_bodies_parse() {
        let create = json!({"title": "App 1 Flag 1", "rollout_percentage": 100,
            "circuit_recovery_percentage": 100, "error_threshold_percentage": 50});
        let nf = parse_new_flag(&create).unwrap();
        assert_eq!(nf.title.as_str(), "App 1 Flag 1");
        let patch = json!({"title": "App 1 Flag 1", "rollout_percentage": 50,
            "circuit_status": "close", "is_active": false, "is_recoverable": true,
            "circuit_initial_recovery_percentage": 10, "circuit_recovery_increment_percentage": 10,
            "circuit_recovery_percentage": 10, "error_threshold_percentage": 40,
            "circuit_recovery_rate": 400, "circuit_recovery_profile": "linear",
            "circuit_recovery_delay": 8000,
            "webhooks": "https://hooks.slack.com/services/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"});
        let p = parse_flag_patch(&patch).unwrap();
        assert_eq!(p.circuit_recovery_delay.unwrap().get(), 8000);
        assert_eq!(p.is_active, Some(false));
        let p = parse_flag_patch(&json!({"circuit_recovery_rate": 400.0})).unwrap();
        assert_eq!(p.circuit_recovery_rate.unwrap().get(), 400, "400.0 is 400");
    }

    #[test]
    fn flag_fields_are_checked_and_named() {
        let cases = [
            (json!({"rollout_percentage": 101}), "rollout_percentage"),
            (json!({"rollout_percentage": "50"}), "rollout_percentage"),
            (json!({"rollout_percentage": null}), "rollout_percentage"),
            (json!({"is_active": "true"}), "is_active"),
            (json!({"circuit_recovery_delay": 99}), "circuit_recovery_delay"),
            (json!({"circuit_recovery_delay": 150.5}), "circuit_recovery_delay"),
            (json!({"circuit_recovery_rate": -100}), "circuit_recovery_rate"),
            (json!({"circuit_recovery_rate": 1e300}), "circuit_recovery_rate"),
            (
                json!({"circuit_recovery_increment_percentage": 0}),
                "circuit_recovery_increment_percentage",
            ),
            (json!({"circuit_recovery_profile": "cubic"}), "circuit_recovery_profile"),
            (json!({"webhooks": "not a url"}), "webhooks"),
            (json!({"title": ""}), "title"),
            (json!({"description": "x".repeat(10_001)}), "description"),
            (json!({"bogus": 1}), "bogus"),
        ];
        for (body, field) in cases {
            assert_eq!(parse_flag_patch(&body).unwrap_err().field(), Some(field), "{body}");
        }
        assert_eq!(parse_new_flag(&json!({"is_active": true})).unwrap_err().field(), Some("title"));
    }

    #[test]
    fn toggle_and_event_bodies() {
        assert_eq!(parse_toggle(None).unwrap(), None);
        assert_eq!(parse_toggle(Some(&json!({}))).unwrap(), None);
        assert_eq!(parse_toggle(Some(&json!({"is_active": true}))).unwrap(), Some(true));
        assert!(parse_toggle(Some(&json!({"is_active": 1}))).is_err());
        assert_eq!(
            parse_events(&json!({"success": 3})).unwrap(),
            Counts { success: 3, failure: 0 }
        );
        assert!(parse_events(&json!({"success": 0, "failure": 0})).is_err());
        assert!(parse_events(&json!({"success": -1})).is_err());
        assert!(parse_events(&json!({"success": 1.5})).is_err());
        assert_eq!(
            parse_events(&json!({"success": 3.0, "failure": 0.0})).unwrap(),
            Counts { success: 3, failure: 0 },
            "a whole number written with a fraction is that number"
        );
        assert!(parse_events(&json!({"success": -1.0})).is_err());
        assert!(parse_events(&json!({"success": 1e10})).is_err());
        assert!(parse_events(&json!({"successes": 1})).is_err());
    }
}
