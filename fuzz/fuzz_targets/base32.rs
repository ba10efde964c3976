//! Any string: `decode` must never panic, and the canonical encoding of whatever it accepts
//! must decode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twofold_otp::base32::{decode, encode};

fuzz_target!(|data: &str| {
    if let Ok(bytes) = decode(data) {
        assert!(!bytes.is_empty());
        let canonical = encode(&bytes);
        assert_eq!(decode(&canonical), Ok(bytes));
        assert_eq!(
            encode(&decode(&canonical.to_lowercase()).unwrap_or_default()),
            canonical
        );
    }
});
