//! See `flagtower_fuzz_targets::credentials`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flagtower_fuzz_targets::credentials(data));
