//! See `flagtower_fuzz_targets::request_target`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flagtower_fuzz_targets::request_target(data));
