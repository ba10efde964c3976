//! One-time password maths for Twofold, with no I/O, no clock and no RNG.
//!
//! This crate owns:
//! - HOTP ([RFC 4226]) and TOTP ([RFC 6238]) with HMAC-SHA-1, -SHA-256 and -SHA-512, and a
//!   constant-time verifier over a caller-chosen window of time steps;
//! - base32 ([RFC 4648] section 6) as authenticator apps write secrets ([`base32`]);
//! - the Google Authenticator Key URI format, `otpauth://` ([`uri`]);
//! - QR codes of those URIs as SVG and PNG ([`qr`]).
//!
//! The time is always a parameter (`unix_secs` or a step) and secrets are always supplied by
//! the caller, so every rule here is reproducible in a test and the RFC vectors live beside it
//! (`tests/vectors/otp.json`, checked against `oathtool`).
//!
//! [RFC 4226]: https://www.rfc-editor.org/rfc/rfc4226
//! [RFC 6238]: https://www.rfc-editor.org/rfc/rfc6238
//! [RFC 4648]: https://www.rfc-editor.org/rfc/rfc4648

pub mod base32;
pub mod qr;
pub mod uri;

pub use base32::Base32Error;
pub use qr::QrError;
pub use uri::{KeyUri, OtpKind, UriError};

use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::Digest;
use hmac::{Mac, SimpleHmac};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeGreater};

/// Shortest code we issue or accept. RFC 4226 section 5.3 requires at least six digits.
pub const MIN_DIGITS: u8 = 6;
/// Longest code. Eight digits is what authenticator apps support, and it keeps every code inside
/// the fixed `[u8; 8]` buffer the verifier compares in constant time.
pub const MAX_DIGITS: u8 = 8;
/// Longest TOTP period we accept (one day). Longer periods turn a one-time password into a
/// long-lived one, and no authenticator app offers them.
pub const MAX_PERIOD: u32 = 86_400;

/// The HMAC hash. RFC 6238 section 1.2 allows SHA-256 and SHA-512 besides RFC 4226's SHA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// The default, because it is the only one every authenticator app supports.
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The spelling used by the Key URI format and `oathtool --totp=`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Lenient on case and on the hyphen (`sha-256`) because URIs in the wild spell it both ways.
    pub fn parse(s: &str) -> Option<Algorithm> {
        let upper = s.to_ascii_uppercase();
        match upper.as_str() {
            "SHA1" | "SHA-1" => Some(Algorithm::Sha1),
            "SHA256" | "SHA-256" => Some(Algorithm::Sha256),
            "SHA512" | "SHA-512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TOTP/HOTP parameters. `digits` is in `6..=8`, `period` in `1..=86400` seconds.
///
/// The fields are public so that stored parameters can be rebuilt cheaply, but values that did
/// not come through [`OtpParams::new`] are clamped rather than trusted: digits into `6..=8`
/// (see [`hotp_digits`]) and a zero period to one second (see [`OtpParams::step_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpParams {
    pub algorithm: Algorithm,
    pub digits: u8,
    /// Length of one time step in seconds (RFC 6238 "X").
    pub period: u32,
    /// Unix time at which step 0 starts (RFC 6238 "T0").
    pub t0: u64,
}

impl Default for OtpParams {
    /// The Key URI format's defaults, which are also what an app assumes when a URI omits them.
    fn default() -> Self {
        OtpParams {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            t0: 0,
        }
    }
}

impl OtpParams {
    /// Rejects parameters that no authenticator app could reproduce.
    pub fn new(algorithm: Algorithm, digits: u8, period: u32) -> Result<Self, OtpError> {
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits) {
            return Err(OtpError::InvalidDigits(digits));
        }
        if !(1..=MAX_PERIOD).contains(&period) {
            return Err(OtpError::InvalidPeriod(period));
        }
        Ok(OtpParams {
            algorithm,
            digits,
            period,
            t0: 0,
        })
    }

    /// RFC 6238 section 4.2: `T = floor((now - T0) / X)`. Times before `T0` map to step 0
    /// instead of wrapping, and a zero period counts as one second instead of dividing by zero.
    pub fn step_at(&self, unix_secs: u64) -> u64 {
        unix_secs.saturating_sub(self.t0) / u64::from(self.period.max(1))
    }
}

/// Invalid OTP parameters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OtpError {
    #[error("a code must have 6, 7 or 8 digits, not {0}")]
    InvalidDigits(u8),
    #[error("the period must be between 1 and 86400 seconds, not {0}")]
    InvalidPeriod(u32),
    #[error("the secret is empty")]
    EmptySecret,
}

/// Rejects the one secret that makes every code predictable; use [`recommended_secret_len`]
/// random bytes for new secrets.
pub fn check_secret(secret: &[u8]) -> Result<(), OtpError> {
    if secret.is_empty() {
        Err(OtpError::EmptySecret)
    } else {
        Ok(())
    }
}

/// RFC 4226 HOTP value for counter, as a zero-padded decimal string of `digits` length.
///
/// `digits` outside `6..=8` is clamped into that range, so the output never has fewer digits
/// than RFC 4226 allows.
pub fn hotp(secret: &[u8], counter: u64, algorithm: Algorithm, digits: u8) -> String {
    let (buf, len) = hotp_digits(secret, counter, algorithm, digits);
    buf.iter().take(len).map(|&b| char::from(b)).collect()
}

/// Same as [`hotp`] but writes ASCII digits into a fixed `[u8; 8]` buffer and returns
/// `(buf, len)`, so the verifier compares equal-sized buffers without allocating. Bytes after
/// `len` are zero.
pub fn hotp_digits(
    secret: &[u8],
    counter: u64,
    algorithm: Algorithm,
    digits: u8,
) -> ([u8; 8], usize) {
    let digits = digits.clamp(MIN_DIGITS, MAX_DIGITS);
    let msg = counter.to_be_bytes();
    let binary = match algorithm {
        Algorithm::Sha1 => truncate::<sha1::Sha1>(secret, &msg),
        Algorithm::Sha256 => truncate::<sha2::Sha256>(secret, &msg),
        Algorithm::Sha512 => truncate::<sha2::Sha512>(secret, &msg),
    };
    let mut value = binary % 10u32.pow(u32::from(digits));
    let len = usize::from(digits);
    let mut buf = [0u8; 8];
    for slot in buf.iter_mut().take(len).rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    (buf, len)
}

/// HMAC (RFC 2104) followed by RFC 4226 section 5.3 dynamic truncation to 31 bits.
///
/// The key is hashed or zero-padded to the hash's block size here, exactly as RFC 2104
/// section 2 defines, so the MAC is built with the infallible fixed-size constructor instead of
/// a `Result` that cannot fail but would still need an `unwrap`.
fn truncate<D>(secret: &[u8], msg: &[u8]) -> u32
where
    D: Digest + BlockSizeUser,
{
    let mut key = hmac::digest::Key::<SimpleHmac<D>>::default();
    if secret.len() > key.len() {
        let hashed = D::digest(secret);
        key.iter_mut().zip(hashed.iter()).for_each(|(k, h)| *k = *h);
    } else {
        key.iter_mut().zip(secret.iter()).for_each(|(k, s)| *k = *s);
    }
    let mut mac = <SimpleHmac<D> as hmac::digest::KeyInit>::new(&key);
    mac.update(msg);
    let hs = mac.finalize().into_bytes();
    // Every supported digest is at least 20 bytes and the offset at most 15, so the four bytes
    // at `offset` are always in range.
    let offset = usize::from(hs[hs.len() - 1] & 0x0f);
    let bytes = [hs[offset], hs[offset + 1], hs[offset + 2], hs[offset + 3]];
    u32::from_be_bytes(bytes) & 0x7fff_ffff
}

/// TOTP code at a time step (RFC 6238: HOTP with the step as the counter).
pub fn totp_at_step(secret: &[u8], step: u64, params: &OtpParams) -> String {
    hotp(secret, step, params.algorithm, params.digits)
}

/// TOTP code at unix time. The time is 64-bit, so codes stay correct after 2038.
pub fn totp_at_time(secret: &[u8], unix_secs: u64, params: &OtpParams) -> String {
    totp_at_step(secret, params.step_at(unix_secs), params)
}

/// Verifies `code` against every step in `steps` (e.g. `[current, current - 1]`) and returns
/// the matched step, the highest one if several match.
///
/// Every candidate is computed and compared in constant time on fixed 8-byte buffers with no
/// early exit, so the response time reveals neither which step matched nor how many leading
/// digits were right. A code whose length differs from `params.digits`, or that contains
/// anything but ASCII `0`-`9`, never matches, but the candidates are still computed so the
/// format check does not show up in the timing either. Which steps to try (and refusing a
/// replayed step) is the caller's policy.
pub fn verify_steps(secret: &[u8], code: &str, params: &OtpParams, steps: &[u64]) -> Option<u64> {
    let well_formed = is_well_formed_code(code) && code.len() == usize::from(params.digits);
    let mut typed = [0u8; 8];
    if well_formed {
        typed.iter_mut().zip(code.bytes()).for_each(|(t, c)| *t = c);
    }
    let well_formed = Choice::from(u8::from(well_formed));

    let mut found = Choice::from(0);
    let mut best = 0u64;
    for &step in steps {
        let (expected, _) = hotp_digits(secret, step, params.algorithm, params.digits);
        let matched = expected.ct_eq(&typed) & well_formed;
        let better = step.ct_gt(&best) | !found;
        best = u64::conditional_select(&best, &step, matched & better);
        found |= matched;
    }
    if bool::from(found) {
        Some(best)
    } else {
        None
    }
}

/// Syntactic check for a user-typed code: 6 to 8 ASCII digits `0`-`9` and nothing else.
///
/// Unicode digits such as `١` or fullwidth `１` are rejected rather than normalised: they would
/// be a second spelling of the same code for no user benefit.
pub fn is_well_formed_code(code: &str) -> bool {
    (usize::from(MIN_DIGITS)..=usize::from(MAX_DIGITS)).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
}

/// How many random bytes a new secret should have: the hash's output length, which RFC 4226
/// section 4 (R6) recommends and RFC 6238's reference vectors use (20, 32 and 64 bytes). The
/// caller draws them from its RNG; this crate has none.
pub fn recommended_secret_len(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::Sha1 => 20,
        Algorithm::Sha256 => 32,
        Algorithm::Sha512 => 64,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hmac::Hmac;

    fn reference_hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    }

    fn reference_truncate(hs: &[u8]) -> u32 {
        let offset = usize::from(hs[hs.len() - 1] & 0x0f);
        u32::from_be_bytes(hs[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff
    }

    /// The padded-key construction must equal the hmac crate's own key handling for short,
    /// block-sized and over-long keys (SHA-512 has a 128-byte block).
    #[test]
    fn padded_key_matches_hmac_crate_for_every_key_length() {
        let msg = 42u64.to_be_bytes();
        for len in 0..=200usize {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            assert_eq!(
                truncate::<sha1::Sha1>(&key, &msg),
                reference_truncate(&reference_hmac::<Hmac<sha1::Sha1>>(&key, &msg)),
                "sha1 len {len}"
            );
            assert_eq!(
                truncate::<sha2::Sha256>(&key, &msg),
                reference_truncate(&reference_hmac::<Hmac<sha2::Sha256>>(&key, &msg)),
                "sha256 len {len}"
            );
            assert_eq!(
                truncate::<sha2::Sha512>(&key, &msg),
                reference_truncate(&reference_hmac::<Hmac<sha2::Sha512>>(&key, &msg)),
                "sha512 len {len}"
            );
        }
    }

    #[test]
    fn digits_outside_range_are_clamped() {
        let secret = b"12345678901234567890";
        assert_eq!(hotp(secret, 0, Algorithm::Sha1, 0).len(), 6);
        assert_eq!(
            hotp(secret, 0, Algorithm::Sha1, 5),
            hotp(secret, 0, Algorithm::Sha1, 6)
        );
        assert_eq!(
            hotp(secret, 0, Algorithm::Sha1, 200),
            hotp(secret, 0, Algorithm::Sha1, 8)
        );
        let (buf, len) = hotp_digits(secret, 0, Algorithm::Sha1, 6);
        assert_eq!(len, 6);
        assert_eq!(&buf[6..], &[0, 0]);
    }

    #[test]
    fn zero_period_does_not_divide_by_zero() {
        let params = OtpParams {
            period: 0,
            ..OtpParams::default()
        };
        assert_eq!(params.step_at(90), 90);
    }
}
