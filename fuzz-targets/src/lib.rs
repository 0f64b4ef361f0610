//! The fuzz targets' bodies: each takes any bytes and panics only when an invariant breaks.
//!
//! `fuzz/` wraps each in `libfuzzer_sys::fuzz_target!` for coverage-guided runs on nightly;
//! `tests/replay.rs` runs each over its corpus (`fuzz/corpus/<name>/`) and any crash artifacts
//! (`fuzz/artifacts/<name>/`) on stable, so every CI run covers what fuzzing found.
#![warn(missing_docs)]

use flagtower_core::command::FlagCommand;
use flagtower_core::ruleset::{decode_flags, encode_flags};
use flagtower_core::{AppId, CircuitState, Flag, Percent, Timestamp, Title, input};

/// A target: any bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("input", input),
    ("ruleset", ruleset),
    ("request_target", request_target),
    ("credentials", credentials),
];

/// Any bytes as a request body: parsing and validation never panic, and what validates applies
/// to a flag without breaking its invariants (an active flag is at 100 % recovery; the result
/// survives the ruleset codec, all but the breaker's clock, which is not on the wire).
pub fn input(data: &[u8]) {
    // The session's and OFREP's bodies are read by the server crate.
    flagtower_http::fuzzing::bodies(data);
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = input::parse_app(&body);
    let _ = input::parse_toggle(Some(&body));
    let _ = input::parse_events(&body);
    let _ = input::parse_new_flag(&body);
    if let Ok(patch) = input::parse_flag_patch(&body) {
        let flag = Flag::new(AppId::new(1), Title::parse("f").unwrap(), Timestamp::from_millis(0));
        if let Some((next, _)) = FlagCommand::Update(patch).apply(&flag, Timestamp::from_millis(1))
        {
            if next.state == CircuitState::On {
                assert_eq!(next.circuit_recovery_percentage, Percent::HUNDRED);
            }
            // The breaker's clock is Tower's own and not on the wire: everything else round-trips.
            let body = encode_flags(std::slice::from_ref(&next));
            let mut decoded = decode_flags(&body).unwrap();
            assert_eq!(decoded.len(), 1);
            decoded[0].breaker = next.breaker;
            assert_eq!(decoded, vec![next]);
        }
    }
}

/// Any bytes as a ruleset: decoding never panics, and whatever decodes re-encodes to a ruleset
/// that decodes to the same flags.
pub fn ruleset(data: &[u8]) {
    if let Ok(mut flags) = decode_flags(data) {
        flags.sort_by_key(|f| f.id);
        let again = decode_flags(&encode_flags(&flags)).expect("re-encoded ruleset decodes");
        assert_eq!(again, flags);
    }
}

/// Any bytes as a request target (`/path?query`): routing (REST and OFREP) and every query
/// parser never panic, and what they accept is in range.
pub fn request_target(data: &[u8]) {
    flagtower_http::fuzzing::request_target(&String::from_utf8_lossy(data));
}

/// Any bytes as an `Authorization` and a `Cookie` header: only the admin secret, the SDK key on
/// an SDK route, or a session the server signed ever authenticate.
pub fn credentials(data: &[u8]) {
    flagtower_http::fuzzing::credentials(data);
}
