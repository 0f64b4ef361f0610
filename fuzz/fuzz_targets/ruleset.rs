//! Ruleset JSON → decode → encode → decode (see `flagtower_fuzz_targets::ruleset`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flagtower_fuzz_targets::ruleset(data));
