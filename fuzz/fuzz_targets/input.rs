//! Any bytes as a request body: parsing and validation never panic, and what validates applies
//! to a flag without breaking its invariants.
#![no_main]

use flagtower_core::command::FlagCommand;
use flagtower_core::{AppId, CircuitState, Flag, Percent, Timestamp, Title, input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let _ = input::parse_app(&body);
    let _ = input::parse_toggle(Some(&body));
    let _ = input::parse_events(&body);
    let _ = input::parse_new_flag(&body);
    if let Ok(patch) = input::parse_flag_patch(&body) {
        let flag = Flag::new(AppId::new(1), Title::parse("f").unwrap(), Timestamp::from_millis(0));
        if let Some((next, _)) = FlagCommand::Update(patch).apply(&flag, Timestamp::from_millis(1)) {
            if next.state == CircuitState::On {
                assert_eq!(next.circuit_recovery_percentage, Percent::HUNDRED);
            }
            let body = flagtower_core::ruleset::encode_flags(std::slice::from_ref(&next));
            assert_eq!(flagtower_core::ruleset::decode_flags(&body).unwrap(), vec![next]);
        }
    }
});
