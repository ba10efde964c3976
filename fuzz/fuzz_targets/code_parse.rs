//! Every way a typed code becomes something the core accepts: `OtpCode::parse` and the TOTP
//! windows of `twofold_core::totp` (verify and login, enrolment confirmation, drift on use,
//! resync), SMS and email codes (an `OtpCode` compared by keyed hash), recovery codes and app
//! passwords (`normalize_*`, then a keyed hash), and factor ids.
//!
//! Properties: nothing panics; a code is accepted only when it is the true code of a step the
//! window allows (computed here independently of the window code), and the true code of the
//! current step always is; a recovery code or app password is accepted only when it is the
//! issued one as a person may type it (any case, spaces, dashes, `0`/`1`/`8` for `o`/`l`/`b`),
//! and every such spelling of it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twofold_core::security::{normalize_app_password, normalize_recovery_code};
use twofold_core::totp::{resync, verify_confirmation, verify_neighbour, verify_use, MAX_DRIFT};
use twofold_core::types::{FactorId, OtpCode};
use twofold_crypto::{Hasher, KeyMaterial};
use twofold_otp::{base32, totp_at_step, Algorithm, OtpParams};

/// (typed, second typed code, seed, parameters, now in ms, drift, what to type, spelling
/// choices): `pick` makes the typed code a true one often enough to exercise acceptance.
type Input<'a> = (&'a str, &'a str, [u8; 20], u8, i64, i8, u8, Vec<u8>);

fn params_of(sel: u8) -> OtpParams {
    OtpParams {
        algorithm: match sel % 3 {
            0 => Algorithm::Sha1,
            1 => Algorithm::Sha256,
            _ => Algorithm::Sha512,
        },
        digits: 6 + (sel / 3) % 3,
        period: [30, 15, 60, 300][usize::from(sel / 9) % 4],
        t0: 0,
    }
}

/// The spec of a well-formed code, written apart from the parser: 6 to 8 ASCII digits.
fn is_code(s: &str) -> bool {
    (6..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// The highest step of `steps` (negative ones do not exist) whose true code is `typed`.
fn true_step(seed: &[u8], typed: &str, p: &OtpParams, steps: &[i64]) -> Option<i64> {
    steps
        .iter()
        .copied()
        .filter(|&s| s >= 0 && totp_at_step(seed, s as u64, p) == typed)
        .max()
}

/// What a person may type for a grouped secret, written apart from `normalize_grouped`: the
/// letters and digits without separators, lower case, with look-alike digits read as letters.
fn skeleton(typed: &str) -> Option<String> {
    typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\t'))
        .map(|c| match c.to_ascii_lowercase() {
            '0' => Some('o'),
            '1' => Some('l'),
            '8' => Some('b'),
            c @ ('a'..='z' | '2'..='7') => Some(c),
            _ => None,
        })
        .collect()
}

/// `secret` spelled as a person might: case, separators and look-alikes chosen by `edits`.
fn respell(secret: &str, edits: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in secret.chars().enumerate() {
        let e = edits.get(i).copied().unwrap_or(0);
        if i > 0 && e & 0x30 != 0 {
            out.push([' ', '-', '\t'][usize::from(e >> 4 & 3) % 3]);
        }
        out.push(match (c, e & 3) {
            ('o', 1) => '0',
            ('l', 1) => '1',
            ('b', 1) => '8',
            (c, 2) => c.to_ascii_uppercase(),
            (c, _) => c,
        });
    }
    out
}

fn check_grouped(
    name: &str,
    normalize: fn(&str) -> Option<String>,
    len: usize,
    issued: &str,
    typed: &str,
    edits: &[u8],
) {
    let Some(issued_n) = normalize(issued) else {
        panic!("{name}: the issued {issued:?} does not normalize");
    };
    // Every spelling of the issued one is accepted, as the issued one.
    let spelled = respell(issued, edits);
    if spelled.len() <= 4 * len {
        assert_eq!(
            normalize(&spelled).as_ref(),
            Some(&issued_n),
            "{name}: {spelled:?}"
        );
    }
    // Anything accepted is `len` base32 letters, and is the issued one only if it spells it.
    if let Some(n) = normalize(typed) {
        assert_eq!(n.len(), len, "{name}: {typed:?}");
        assert!(n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)));
        assert_eq!(
            skeleton(typed).as_deref(),
            Some(n.as_str()),
            "{name}: {typed:?}"
        );
        assert!(typed.len() <= 4 * len);
    }
}

fuzz_target!(|input: Input<'_>| {
    let (typed_raw, second_raw, seed, sel, now_ms, drift, pick, edits) = input;
    let p = params_of(sel);
    let drift = i32::from(drift).clamp(-MAX_DRIFT, MAX_DRIFT);
    let t = ((now_ms.max(0) / 1000) as u64 / u64::from(p.period)) as i64;
    let o = t + i64::from(drift);
    let code_at = |s: i64| {
        if s < 0 {
            String::new()
        } else {
            totp_at_step(&seed, s as u64, &p)
        }
    };
    // Type the true code of a step near now, or whatever the fuzzer chose.
    let typed = match pick % 8 {
        0..=4 => code_at(o + i64::from(pick % 8) - 2),
        _ => typed_raw.to_owned(),
    };
    let second = match pick / 8 % 4 {
        0 => code_at(o + 1),
        1 => code_at(o - 1 + i64::from(pick / 32 % 3)),
        _ => second_raw.to_owned(),
    };

    // The parse constructor: exactly the spec.
    assert_eq!(OtpCode::parse(&typed).is_ok(), is_code(&typed), "{typed:?}");

    // Use (API verify, login): the current and previous step of the drifted clock.
    let used = verify_use(&seed, &typed, &p, drift, now_ms);
    assert_eq!(used, true_step(&seed, &typed, &p, &[o, o - 1]), "{typed:?}");
    if o >= 0 {
        assert_eq!(verify_use(&seed, &code_at(o), &p, drift, now_ms), Some(o));
    }

    // A neighbour just outside the window only ever with its true code, in its direction.
    if let Some((s, dir)) = verify_neighbour(&seed, &typed, &p, drift, now_ms) {
        assert_eq!(code_at(s), typed);
        assert!(
            (dir == 1 && s == o + 1) || (dir == -1 && s == o - 2),
            "{s} {dir}"
        );
        assert!((drift + dir).abs() <= 1);
    }

    // Confirmation: T-2 ..= T+1, the drift it teaches explains the step.
    let confirmed = verify_confirmation(&seed, &typed, &p, now_ms);
    let expected = true_step(&seed, &typed, &p, &[t - 2, t - 1, t, t + 1]);
    assert_eq!(confirmed.map(|c| c.0), expected, "{typed:?}");
    if let Some((s, d)) = confirmed {
        assert!((-1..=1).contains(&d) && (s == t + i64::from(d) || s == t + i64::from(d) - 1));
    }

    // Resync: two consecutive true codes within ±MAX_DRIFT steps, nothing else.
    if let Some((s2, d)) = resync(&seed, &typed, &second, &p, now_ms) {
        assert_eq!(code_at(s2 - 1), typed);
        assert_eq!(code_at(s2), second);
        assert!((s2 - t).abs() <= i64::from(MAX_DRIFT) && i64::from(d) == s2 - t);
    }

    // SMS and email codes: parsed, then compared by keyed hash with the code that was sent.
    let hasher = Hasher::new(KeyMaterial::from_bytes([7; 32]));
    let sent = format!(
        "{:06}",
        u32::from_le_bytes([seed[0], seed[1], seed[2], 0]) % 1_000_000
    );
    let accepted = OtpCode::parse(&typed).is_ok_and(|c| {
        hasher
            .hash("otp-code", c.as_str().as_bytes())
            .ct_eq(&hasher.hash("otp-code", sent.as_bytes()).0)
    });
    assert_eq!(accepted, typed == sent);

    // Recovery codes (10 bytes) and app passwords (12 bytes, as `new_app_password` draws them),
    // issued from the seed's bytes.
    let grouped = |bytes: &[u8]| {
        let raw = base32::encode(bytes).to_ascii_lowercase();
        raw.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    };
    let recovery = grouped(&seed[..10]);
    check_grouped(
        "recovery",
        normalize_recovery_code,
        16,
        &recovery,
        typed_raw,
        &edits,
    );
    let app_password = grouped(&seed[4..16]);
    check_grouped(
        "app password",
        normalize_app_password,
        20,
        &app_password,
        typed_raw,
        &edits,
    );

    // Factor ids: `fac_` and 26 lower-case base32 letters, nothing else reaches the store.
    let id_ok = typed_raw.len() == 30
        && typed_raw.starts_with("fac_")
        && typed_raw[4..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    assert_eq!(FactorId::parse(typed_raw).is_ok(), id_ok, "{typed_raw:?}");
});
