//! Any bytes as a ruleset: decoding never panics, and whatever decodes re-encodes to a ruleset
//! that decodes to the same flags.
#![no_main]

use flagtower_core::ruleset::{decode_flags, encode_flags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut flags) = decode_flags(data) {
        flags.sort_by_key(|f| f.id);
        let again = decode_flags(&encode_flags(&flags)).expect("re-encoded ruleset decodes");
        assert_eq!(again, flags);
    }
});
