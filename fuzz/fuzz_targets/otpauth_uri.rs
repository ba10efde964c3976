//! Any string: `KeyUri::parse` must never panic, and whatever it accepts must be written back
//! by `to_uri` and parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twofold_otp::KeyUri;

fuzz_target!(|data: &str| {
    if let Ok(uri) = KeyUri::parse(data) {
        let written = match uri.to_uri() {
            Ok(s) => s,
            Err(e) => panic!("parsed {uri:?} from {data:?} but cannot write it: {e}"),
        };
        assert_eq!(KeyUri::parse(&written), Ok(uri), "{written:?}");
    }
});
