//! Request bodies → validation → a flag (see `flagtower_fuzz_targets::input`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flagtower_fuzz_targets::input(data));
