//! Arbitrary secret, parameters, window and typed code: `verify_steps` must never panic, and
//! must accept the code exactly when it equals the code computed for one of the steps (the
//! highest such step).
#![no_main]

use libfuzzer_sys::fuzz_target;
use twofold_otp::{totp_at_step, verify_steps, Algorithm, OtpParams};

// (secret, algorithm, digits, steps, pick, code): `pick` set means "type the code of one of the
// steps" so that matches are exercised too, not only random strings that never match.
type Input<'a> = (&'a [u8], u8, u8, Vec<u64>, Option<u8>, &'a str);

fuzz_target!(|input: Input<'_>| {
    let (secret, algorithm, digits, steps, pick, code) = input;
    let algorithm = match algorithm % 3 {
        0 => Algorithm::Sha1,
        1 => Algorithm::Sha256,
        _ => Algorithm::Sha512,
    };
    let params = OtpParams {
        algorithm,
        digits: 6 + digits % 3,
        ..OtpParams::default()
    };
    let steps = &steps[..steps.len().min(8)];
    let computed: Vec<String> = steps
        .iter()
        .map(|&s| totp_at_step(secret, s, &params))
        .collect();
    let code = match pick {
        Some(i) if !computed.is_empty() => computed[usize::from(i) % computed.len()].clone(),
        _ => code.to_owned(),
    };
    let expected = steps
        .iter()
        .zip(&computed)
        .filter(|(_, c)| **c == code)
        .map(|(s, _)| *s)
        .max();
    assert_eq!(verify_steps(secret, &code, &params, steps), expected);
});
