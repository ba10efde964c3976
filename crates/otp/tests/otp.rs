#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! HOTP/TOTP against the RFC vectors, leading zeros, 7-digit codes, times after 2038 and the
//! verifier's window rules.

use serde_json::Value;
use twofold_otp::{
    base32, hotp, hotp_digits, is_well_formed_code, recommended_secret_len, totp_at_step,
    totp_at_time, verify_steps, Algorithm, OtpError, OtpParams,
};

/// A copy of /work/shared/vectors/otp.json (RFC 4226 Appendix D, RFC 6238 Appendix B).
const VECTORS: &str = include_str!("vectors/otp.json");

const SEED20: &[u8] = b"12345678901234567890";
const SEED32: &[u8] = b"12345678901234567890123456789012";

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[test]
fn rfc4226_appendix_d_hotp() {
    let v = vectors();
    let h = &v["hotp"];
    let secret = s(&h["secret_ascii"]).as_bytes();
    assert_eq!(base32::decode(s(&h["secret_base32"])).unwrap(), secret);
    let algorithm = Algorithm::parse(s(&h["algorithm"])).unwrap();
    let digits = u8::try_from(h["digits"].as_u64().unwrap()).unwrap();
    let codes = h["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    for c in codes {
        let counter = c["counter"].as_u64().unwrap();
        assert_eq!(
            hotp(secret, counter, algorithm, digits),
            s(&c["code"]),
            "counter {counter}"
        );
    }
}

#[test]
fn rfc6238_appendix_b_totp() {
    let v = vectors();
    let cases = v["totp"].as_array().unwrap();
    assert_eq!(cases.len(), 18);
    for c in cases {
        let time = c["time"].as_u64().unwrap();
        let algorithm = Algorithm::parse(s(&c["algorithm"])).unwrap();
        let digits = u8::try_from(c["digits"].as_u64().unwrap()).unwrap();
        let period = u32::try_from(c["period"].as_u64().unwrap()).unwrap();
        let secret = s(&c["secret_ascii"]).as_bytes();
        assert_eq!(secret.len(), recommended_secret_len(algorithm));
        assert_eq!(base32::decode(s(&c["secret_base32"])).unwrap(), secret);
        let params = OtpParams::new(algorithm, digits, period).unwrap();
        let code = s(&c["code"]);
        assert_eq!(
            totp_at_time(secret, time, &params),
            code,
            "{algorithm} at {time}"
        );
        let step = params.step_at(time);
        assert_eq!(verify_steps(secret, code, &params, &[step]), Some(step));
    }
}

#[test]
fn leading_zeros_are_kept() {
    // Checked with `oathtool -c N [-d D] 3132333435363738393031323334353637383930`.
    assert_eq!(hotp(SEED20, 36, Algorithm::Sha1, 6), "003784");
    assert_eq!(hotp(SEED20, 44, Algorithm::Sha1, 6), "000152");
    assert_eq!(hotp(SEED20, 44, Algorithm::Sha1, 8), "01000152");
    assert_eq!(hotp(SEED20, 150, Algorithm::Sha1, 7), "0072172");
    let (buf, len) = hotp_digits(SEED20, 44, Algorithm::Sha1, 6);
    assert_eq!((&buf[..len], len), (&b"000152"[..], 6));
    // RFC 6238's own leading-zero vector.
    let params = OtpParams::new(Algorithm::Sha1, 8, 30).unwrap();
    assert_eq!(totp_at_time(SEED20, 1_111_111_109, &params), "07081804");
    assert_eq!(
        verify_steps(SEED20, "000152", &OtpParams::default(), &[44]),
        Some(44)
    );
    // The same code without its zeros is a different (and malformed) code.
    assert_eq!(
        verify_steps(SEED20, "152", &OtpParams::default(), &[44]),
        None
    );
}

#[test]
fn every_code_has_exactly_digits_characters() {
    for digits in 6..=8u8 {
        for counter in 0..300 {
            let code = hotp(SEED20, counter, Algorithm::Sha256, digits);
            assert_eq!(code.len(), usize::from(digits));
            assert!(is_well_formed_code(&code));
        }
    }
}

#[test]
fn seven_digit_codes() {
    // `oathtool -c 0 -d 7 ...` and RFC 4226's 6-digit value share their low digits.
    assert_eq!(hotp(SEED20, 0, Algorithm::Sha1, 7), "4755224");
    assert_eq!(hotp(SEED20, 1, Algorithm::Sha1, 7), "4287082");
    let params = OtpParams::new(Algorithm::Sha1, 7, 30).unwrap();
    let code = totp_at_time(SEED20, 59, &params);
    assert_eq!(code, "4287082");
    assert_eq!(verify_steps(SEED20, &code, &params, &[1]), Some(1));
    // A 7-digit parameter set refuses the 6- and 8-digit spellings.
    assert_eq!(verify_steps(SEED20, "287082", &params, &[1]), None);
    assert_eq!(verify_steps(SEED20, "94287082", &params, &[1]), None);
}

#[test]
fn times_after_2038() {
    // Checked with `oathtool --totp[=sha256] -d D [-s 60] -N @T`.
    let sha1 = OtpParams::new(Algorithm::Sha1, 8, 30).unwrap();
    let sha256 = OtpParams::new(Algorithm::Sha256, 6, 60).unwrap();
    let beyond_u32 = 1u64 << 32;
    assert_eq!(totp_at_time(SEED20, beyond_u32, &sha1), "59791428");
    assert_eq!(totp_at_time(SEED32, beyond_u32, &sha256), "493486");
    assert_eq!(totp_at_time(SEED20, 5_000_000_000, &sha1), "62949740");
    assert_eq!(totp_at_time(SEED32, 5_000_000_000, &sha256), "783571");
    // 9999-12-31T23:59:59Z.
    assert_eq!(totp_at_time(SEED20, 253_402_300_799, &sha1), "60099568");
    assert_eq!(totp_at_time(SEED32, 253_402_300_799, &sha256), "571743");
    // Steps beyond u32 are fed to HMAC as the full 64-bit counter.
    assert_eq!(sha1.step_at(20_000_000_000), 666_666_666);
    assert_eq!(sha1.step_at(u64::MAX), u64::MAX / 30);
    let _ = totp_at_time(SEED20, u64::MAX, &sha1);
}

#[test]
fn params_validation_and_steps() {
    assert_eq!(
        OtpParams::default(),
        OtpParams {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            t0: 0
        }
    );
    assert_eq!(
        OtpParams::new(Algorithm::Sha1, 5, 30),
        Err(OtpError::InvalidDigits(5))
    );
    assert_eq!(
        OtpParams::new(Algorithm::Sha1, 9, 30),
        Err(OtpError::InvalidDigits(9))
    );
    assert_eq!(
        OtpParams::new(Algorithm::Sha1, 6, 0),
        Err(OtpError::InvalidPeriod(0))
    );
    assert_eq!(
        OtpParams::new(Algorithm::Sha1, 6, 86_401),
        Err(OtpError::InvalidPeriod(86_401))
    );
    assert!(OtpParams::new(Algorithm::Sha512, 8, 86_400).is_ok());
    assert!(OtpParams::new(Algorithm::Sha256, 7, 1).is_ok());
    assert_eq!(twofold_otp::check_secret(b""), Err(OtpError::EmptySecret));
    assert_eq!(twofold_otp::check_secret(b"x"), Ok(()));

    let p = OtpParams {
        t0: 100,
        ..OtpParams::default()
    };
    assert_eq!(p.step_at(0), 0);
    assert_eq!(p.step_at(99), 0);
    assert_eq!(p.step_at(129), 0);
    assert_eq!(p.step_at(130), 1);
    assert_eq!(OtpParams::default().step_at(59), 1);
    assert_eq!(OtpParams::default().step_at(60), 2);
}

#[test]
fn totp_at_step_is_hotp_of_the_step() {
    let params = OtpParams::new(Algorithm::Sha512, 8, 60).unwrap();
    for step in [0, 1, 12_345, u64::MAX] {
        assert_eq!(
            totp_at_step(SEED20, step, &params),
            hotp(SEED20, step, Algorithm::Sha512, 8)
        );
    }
    assert_eq!(
        totp_at_time(SEED20, 3_600, &params),
        totp_at_step(SEED20, 60, &params)
    );
}

#[test]
fn algorithm_names() {
    for (a, name) in [
        (Algorithm::Sha1, "SHA1"),
        (Algorithm::Sha256, "SHA256"),
        (Algorithm::Sha512, "SHA512"),
    ] {
        assert_eq!(a.as_str(), name);
        assert_eq!(Algorithm::parse(name), Some(a));
        assert_eq!(Algorithm::parse(&name.to_lowercase()), Some(a));
        assert_eq!(a.to_string(), name);
    }
    assert_eq!(Algorithm::parse("SHA-1"), Some(Algorithm::Sha1));
    assert_eq!(Algorithm::parse("sha-256"), Some(Algorithm::Sha256));
    assert_eq!(Algorithm::parse("Sha-512"), Some(Algorithm::Sha512));
    assert_eq!(Algorithm::parse("MD5"), None);
    assert_eq!(Algorithm::parse(""), None);
    assert_eq!(Algorithm::parse("SHA 1"), None);
    assert_eq!(Algorithm::default(), Algorithm::Sha1);
    assert_eq!(recommended_secret_len(Algorithm::Sha1), 20);
    assert_eq!(recommended_secret_len(Algorithm::Sha256), 32);
    assert_eq!(recommended_secret_len(Algorithm::Sha512), 64);
}

mod verify {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn setup() -> (OtpParams, u64) {
        let params = OtpParams::default();
        (params, params.step_at(NOW))
    }

    #[test]
    fn accepts_current_and_previous_step() {
        let (p, step) = setup();
        let window = [step, step - 1];
        let current = totp_at_step(SEED20, step, &p);
        let previous = totp_at_step(SEED20, step - 1, &p);
        assert_eq!(verify_steps(SEED20, &current, &p, &window), Some(step));
        assert_eq!(verify_steps(SEED20, &previous, &p, &window), Some(step - 1));
    }

    #[test]
    fn rejects_steps_outside_the_window() {
        let (p, step) = setup();
        let window = [step, step - 1];
        let two_back = totp_at_step(SEED20, step - 2, &p);
        let next = totp_at_step(SEED20, step + 1, &p);
        // Make sure the codes differ from the window's, or the test would prove nothing.
        for code in [&two_back, &next] {
            assert_ne!(code, &totp_at_step(SEED20, step, &p));
            assert_ne!(code, &totp_at_step(SEED20, step - 1, &p));
        }
        assert_eq!(verify_steps(SEED20, &two_back, &p, &window), None);
        assert_eq!(verify_steps(SEED20, &next, &p, &window), None);
        assert_eq!(verify_steps(SEED20, &next, &p, &[]), None);
    }

    #[test]
    fn rejects_another_secret() {
        let (p, step) = setup();
        let code = totp_at_step(SEED20, step, &p);
        assert_eq!(verify_steps(SEED32, &code, &p, &[step]), None);
    }

    #[test]
    fn rejects_wrong_length_and_non_ascii_digits() {
        let (p, step) = setup();
        let code = totp_at_step(SEED20, step, &p);
        let window = [step];
        assert_eq!(verify_steps(SEED20, &code, &p, &window), Some(step));
        let eight = OtpParams { digits: 8, ..p };
        let long = totp_at_step(SEED20, step, &eight);
        assert!(long.ends_with(&code));
        assert_eq!(verify_steps(SEED20, &long, &p, &window), None);
        assert_eq!(verify_steps(SEED20, &code, &eight, &window), None);
        assert_eq!(verify_steps(SEED20, &code[1..], &p, &window), None);
        assert_eq!(verify_steps(SEED20, &format!("{code} "), &p, &window), None);
        assert_eq!(verify_steps(SEED20, &format!(" {code}"), &p, &window), None);
        assert_eq!(verify_steps(SEED20, "", &p, &window), None);
        // Arabic-Indic and fullwidth spellings of the right digits.
        let arabic: String = code
            .chars()
            .map(|c| char::from_u32(0x0660 + c.to_digit(10).unwrap()).unwrap())
            .collect();
        let fullwidth: String = code
            .chars()
            .map(|c| char::from_u32(0xFF10 + c.to_digit(10).unwrap()).unwrap())
            .collect();
        assert_eq!(verify_steps(SEED20, &arabic, &p, &window), None);
        assert_eq!(verify_steps(SEED20, &fullwidth, &p, &window), None);
        // A 6-byte string that is not 6 digits.
        let mut mangled = code.clone().into_bytes();
        mangled[5] = b'a';
        let mangled = String::from_utf8(mangled).unwrap();
        assert_eq!(verify_steps(SEED20, &mangled, &p, &window), None);
    }

    #[test]
    fn returns_the_highest_matching_step() {
        let (p, step) = setup();
        // Find two steps with the same 6-digit code (a birthday collision among ~3000 steps).
        let mut seen = std::collections::HashMap::new();
        let (low, high) = (0..200_000u64)
            .find_map(|s| {
                let code = hotp(SEED20, s, Algorithm::Sha1, 6);
                seen.insert(code, s).map(|earlier| (earlier, s))
            })
            .unwrap();
        let code = hotp(SEED20, low, Algorithm::Sha1, 6);
        assert_eq!(verify_steps(SEED20, &code, &p, &[low, high]), Some(high));
        assert_eq!(verify_steps(SEED20, &code, &p, &[high, low]), Some(high));
        assert_eq!(
            verify_steps(SEED20, &code, &p, &[low, step, high, low]),
            Some(high)
        );
        // Step 0 can be the match.
        let zero = hotp(SEED20, 0, Algorithm::Sha1, 6);
        assert_eq!(verify_steps(SEED20, &zero, &p, &[0]), Some(0));
        assert_eq!(verify_steps(SEED20, &zero, &p, &[5, 0, 3]), Some(0));
    }

    #[test]
    fn well_formed_codes() {
        for ok in ["000000", "1234567", "99999999"] {
            assert!(is_well_formed_code(ok), "{ok}");
        }
        for bad in [
            "",
            "12345",
            "123456789",
            "12345a",
            "12 456",
            "+12345",
            "-12345",
            "١٢٣٤٥٦",
            "１２３４５６",
            "123456\n",
            "12345\u{0}",
        ] {
            assert!(!is_well_formed_code(bad), "{bad:?}");
        }
    }
}
