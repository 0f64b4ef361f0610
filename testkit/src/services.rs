//! Whether a missing service fails the test or skips it, decided in one place.

/// Whether tests must fail rather than skip when a service is missing: `TOWER_REQUIRE_SERVICES`
/// set to `1` or `true` (CI sets it).
pub fn services_required() -> bool {
    std::env::var("TOWER_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// Says loudly that a test cannot run because `msg`, and fails it when services are required
/// ([`services_required`]); otherwise the caller skips.
#[track_caller]
pub fn missing(msg: &str) {
    if services_required() {
        panic!("TOWER_REQUIRE_SERVICES=1: {msg}");
    }
    eprintln!("\n!!!!! SKIPPED: {msg}\n");
}

/// The program named by the variable `var`, or `None` (said loudly; a failure under
/// `TOWER_REQUIRE_SERVICES=1`) when it is unset.
pub fn program_from(var: &str, what: &str) -> Option<std::ffi::OsString> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => Some(p),
        None => {
            missing(&format!("{var} is not set to {what}; ./scripts/test provides it"));
            None
        }
    }
}
