//! The Google Authenticator Key URI format, `otpauth://TYPE/LABEL?PARAMETERS`, which
//! authenticator apps read from the enrolment QR code
//! (<https://github.com/google/google-authenticator/wiki/Key-Uri-Format>).
//!
//! What [`KeyUri::parse`] accepts:
//! - the scheme `otpauth` and the type `totp` or `hotp`, in any case;
//! - a percent-encoded label `issuer:account` or `account`; the separator may be a literal `:`
//!   or `%3A`, and spaces after it (`Example: alice`) are dropped, as are leading spaces of an
//!   account without issuer. Neither part may contain a further colon or be empty;
//! - `secret` (required): base32, tolerant as [`crate::base32::decode`] is;
//! - `issuer`: when the label has an issuer prefix too, both must be equal, so a URI cannot
//!   show one issuer in the app and claim another;
//! - `algorithm` (default SHA1), `digits` (default 6, only 6, 7 or 8), `period` (TOTP only,
//!   default 30, 1 to 86400 seconds: [`crate::MAX_PERIOD`]), `counter` (required for HOTP);
//! - parameter names in any case. Unknown parameters (such as `image`) are ignored entirely; a
//!   known parameter given twice is an error, because apps disagree on which copy wins;
//! - at most [`MAX_URI_LEN`] bytes in all, with an issuer and an account of at most
//!   [`MAX_NAME_LEN`] bytes each and a secret of at most [`MAX_SECRET_LEN`] bytes once decoded.
//!   The field limits are what guarantee that `to_uri` of anything `parse` accepted fits in
//!   [`MAX_URI_LEN`] again (percent-encoding can triple a name, and the issuer is written
//!   twice), so every parsed URI survives a round trip;
//! - a `#fragment` is ignored, and `+` is a literal plus (RFC 3986), not a space: the format
//!   asks for `%20`.
//!
//! [`KeyUri::to_uri`] writes the canonical form: lower-case type, `issuer:account` label,
//! unpadded upper-case secret, and `issuer`, `algorithm`, `digits` and `period` (or `counter`)
//! always spelled out. Label parts and the issuer are percent-encoded except for the RFC 3986
//! unreserved characters, so any issuer or account that `to_uri` accepts parses back to
//! itself.

use std::fmt;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::base32::{self, Base32Error};
use crate::{Algorithm, OtpParams, MAX_DIGITS, MAX_PERIOD, MIN_DIGITS};

/// Longest URI we read or write, in bytes: far more than a real one needs, and still a QR
/// code that phones scan.
pub const MAX_URI_LEN: usize = 4096;
/// Longest issuer or account name, in UTF-8 bytes (an e-mail address is at most 254).
pub const MAX_NAME_LEN: usize = 255;
/// Longest secret, in bytes. Twice the largest recommended secret (64 bytes for SHA-512);
/// HMAC would only hash anything longer down to the hash's size.
pub const MAX_SECRET_LEN: usize = 128;

/// Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - . _ ~`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const DEFAULT_PERIOD: u32 = 30;

/// The URI type and its type-specific parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpKind {
    Totp { period: u32 },
    Hotp { counter: u64 },
}

/// A parsed `otpauth://` URI.
///
/// `Debug` prints the secret's length, not the secret, so a logged value cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyUri {
    pub kind: OtpKind,
    /// The provider shown in the app; `None` when neither the label nor a parameter names one.
    pub issuer: Option<String>,
    pub account: String,
    pub secret: Vec<u8>,
    pub algorithm: Algorithm,
    pub digits: u8,
}

impl fmt::Debug for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyUri")
            .field("kind", &self.kind)
            .field("issuer", &self.issuer)
            .field("account", &self.account)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .finish()
    }
}

/// Why a string is not an acceptable `otpauth://` URI, or why a [`KeyUri`] cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("the URI is longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("not an otpauth:// URI")]
    NotOtpauthScheme,
    #[error("unknown OTP type {0:?}, expected totp or hotp")]
    UnknownType(String),
    #[error("the URI has no label")]
    MissingLabel,
    #[error("the issuer is empty")]
    EmptyIssuer,
    #[error("the issuer is longer than {MAX_NAME_LEN} bytes")]
    IssuerTooLong,
    #[error("the account name is longer than {MAX_NAME_LEN} bytes")]
    AccountTooLong,
    #[error("the account name is empty")]
    EmptyAccount,
    /// Only raised by `to_uri`: parsing drops spaces after the label's colon, so such an account
    /// would not survive a round trip.
    #[error("the account name starts with a space")]
    LeadingSpaceInAccount,
    #[error("the issuer contains a colon")]
    ColonInIssuer,
    #[error("the account name contains a colon")]
    ColonInAccount,
    #[error("the label names issuer {label:?} but the issuer parameter is {param:?}")]
    IssuerMismatch { label: String, param: String },
    #[error("the secret parameter is missing or empty")]
    MissingSecret,
    #[error("the secret is not valid base32: {0}")]
    InvalidSecret(#[source] Base32Error),
    #[error("the secret is longer than {MAX_SECRET_LEN} bytes")]
    SecretTooLong,
    #[error("unknown algorithm {0:?}, expected SHA1, SHA256 or SHA512")]
    UnknownAlgorithm(String),
    #[error("invalid digits {0:?}, expected 6, 7 or 8")]
    InvalidDigits(String),
    #[error("invalid period {0:?}, expected 1 to 86400 seconds")]
    InvalidPeriod(String),
    #[error("an hotp URI needs a counter parameter")]
    MissingCounter,
    #[error("invalid counter {0:?}")]
    InvalidCounter(String),
    #[error("the parameter {0:?} appears more than once")]
    DuplicateParameter(String),
    #[error("invalid percent-encoding")]
    InvalidPercentEncoding,
    #[error("a percent-encoded component is not UTF-8")]
    NotUtf8,
}

impl KeyUri {
    /// Parses the lenient form described in the module documentation.
    pub fn parse(s: &str) -> Result<KeyUri, UriError> {
        if s.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        let (scheme, rest) = s.split_once("://").ok_or(UriError::NotOtpauthScheme)?;
        if !scheme.eq_ignore_ascii_case("otpauth") {
            return Err(UriError::NotOtpauthScheme);
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (kind, label) = path.split_once('/').unwrap_or((path, ""));
        let is_totp = if kind.eq_ignore_ascii_case("totp") {
            true
        } else if kind.eq_ignore_ascii_case("hotp") {
            false
        } else {
            return Err(UriError::UnknownType(kind.to_owned()));
        };

        let label = decode_component(label)?;
        if label.is_empty() {
            return Err(UriError::MissingLabel);
        }
        let (label_issuer, account) = match label.split_once(':') {
            Some((issuer, account)) => (Some(issuer), account),
            None => (None, label.as_str()),
        };
        let account = account.trim_start_matches(' ');
        check_account(account)?;
        if let Some(issuer) = label_issuer {
            check_issuer(issuer)?;
        }

        let params = Params::parse(query)?;
        let secret = match params.secret {
            None => return Err(UriError::MissingSecret),
            Some(s) => base32::decode(&s).map_err(UriError::InvalidSecret)?,
        };
        check_secret(&secret)?;
        if let Some(param) = &params.issuer {
            check_issuer(param)?;
        }
        let issuer = match (label_issuer, params.issuer) {
            (Some(label), Some(param)) if label != param => {
                return Err(UriError::IssuerMismatch {
                    label: label.to_owned(),
                    param,
                })
            }
            (_, Some(param)) => Some(param),
            (Some(label), None) => Some(label.to_owned()),
            (None, None) => None,
        };
        let algorithm = match params.algorithm {
            None => Algorithm::default(),
            Some(a) => Algorithm::parse(&a).ok_or(UriError::UnknownAlgorithm(a))?,
        };
        let digits = match params.digits.as_deref() {
            None => OtpParams::default().digits,
            Some("6") => 6,
            Some("7") => 7,
            Some("8") => 8,
            Some(other) => return Err(UriError::InvalidDigits(other.to_owned())),
        };
        let kind = if is_totp {
            let period = match params.period {
                None => DEFAULT_PERIOD,
                Some(p) => parse_decimal(&p)
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| (1..=MAX_PERIOD).contains(v))
                    .ok_or(UriError::InvalidPeriod(p))?,
            };
            OtpKind::Totp { period }
        } else {
            let counter = match params.counter {
                None => return Err(UriError::MissingCounter),
                Some(c) => parse_decimal(&c).ok_or(UriError::InvalidCounter(c))?,
            };
            OtpKind::Hotp { counter }
        };

        Ok(KeyUri {
            kind,
            issuer,
            account: account.to_owned(),
            secret,
            algorithm,
            digits,
        })
    }

    /// Writes the canonical form, refusing anything that [`KeyUri::parse`] would not read back
    /// as the same value.
    pub fn to_uri(&self) -> Result<String, UriError> {
        if let Some(issuer) = &self.issuer {
            check_issuer(issuer)?;
        }
        if self.account.starts_with(' ') {
            return Err(UriError::LeadingSpaceInAccount);
        }
        check_account(&self.account)?;
        if self.secret.is_empty() {
            return Err(UriError::MissingSecret);
        }
        check_secret(&self.secret)?;
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&self.digits) {
            return Err(UriError::InvalidDigits(self.digits.to_string()));
        }

        let account = utf8_percent_encode(&self.account, COMPONENT);
        let (kind, type_param) = match self.kind {
            OtpKind::Totp { period } => {
                if !(1..=MAX_PERIOD).contains(&period) {
                    return Err(UriError::InvalidPeriod(period.to_string()));
                }
                ("totp", format!("period={period}"))
            }
            OtpKind::Hotp { counter } => ("hotp", format!("counter={counter}")),
        };
        let secret = base32::encode(&self.secret);
        let (algorithm, digits) = (self.algorithm.as_str(), self.digits);
        let uri = match &self.issuer {
            Some(issuer) => {
                let issuer = utf8_percent_encode(issuer, COMPONENT);
                format!(
                    "otpauth://{kind}/{issuer}:{account}?secret={secret}&issuer={issuer}\
                     &algorithm={algorithm}&digits={digits}&{type_param}"
                )
            }
            None => format!(
                "otpauth://{kind}/{account}?secret={secret}\
                 &algorithm={algorithm}&digits={digits}&{type_param}"
            ),
        };
        // The field limits keep this under about 2600 bytes; checking anyway means the round-trip
        // guarantee does not rest on that arithmetic alone.
        if uri.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        Ok(uri)
    }

    /// The parameters for generating and verifying codes. HOTP has no period; it gets the
    /// default 30 seconds, which HOTP code paths never read.
    pub fn params(&self) -> OtpParams {
        let period = match self.kind {
            OtpKind::Totp { period } => period,
            OtpKind::Hotp { .. } => DEFAULT_PERIOD,
        };
        OtpParams {
            algorithm: self.algorithm,
            digits: self.digits,
            period,
            t0: 0,
        }
    }
}

fn check_issuer(issuer: &str) -> Result<(), UriError> {
    if issuer.is_empty() {
        Err(UriError::EmptyIssuer)
    } else if issuer.contains(':') {
        Err(UriError::ColonInIssuer)
    } else if issuer.len() > MAX_NAME_LEN {
        Err(UriError::IssuerTooLong)
    } else {
        Ok(())
    }
}

fn check_account(account: &str) -> Result<(), UriError> {
    if account.is_empty() {
        Err(UriError::EmptyAccount)
    } else if account.contains(':') {
        Err(UriError::ColonInAccount)
    } else if account.len() > MAX_NAME_LEN {
        Err(UriError::AccountTooLong)
    } else {
        Ok(())
    }
}

fn check_secret(secret: &[u8]) -> Result<(), UriError> {
    if secret.len() > MAX_SECRET_LEN {
        Err(UriError::SecretTooLong)
    } else {
        Ok(())
    }
}

/// The known query parameters, still percent-decoded text.
#[derive(Default)]
struct Params {
    secret: Option<String>,
    issuer: Option<String>,
    algorithm: Option<String>,
    digits: Option<String>,
    period: Option<String>,
    counter: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Result<Params, UriError> {
        let mut params = Params::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode_component(name)?.to_ascii_lowercase();
            let slot = match name.as_str() {
                "secret" => &mut params.secret,
                "issuer" => &mut params.issuer,
                "algorithm" => &mut params.algorithm,
                "digits" => &mut params.digits,
                "period" => &mut params.period,
                "counter" => &mut params.counter,
                _ => continue,
            };
            if slot.is_some() {
                return Err(UriError::DuplicateParameter(name));
            }
            *slot = Some(decode_component(value)?);
        }
        if params.secret.as_deref() == Some("") {
            return Err(UriError::MissingSecret);
        }
        Ok(params)
    }
}

/// Percent-decodes strictly: every `%` must start a two-hex-digit escape, where the
/// `percent-encoding` crate would pass a malformed one through unchanged.
fn decode_component(s: &str) -> Result<String, UriError> {
    let bytes = s.as_bytes();
    for (i, _) in bytes.iter().enumerate().filter(|(_, &b)| b == b'%') {
        let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(i + 1) && hex(i + 2)) {
            return Err(UriError::InvalidPercentEncoding);
        }
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|cow| cow.into_owned())
        .map_err(|_| UriError::NotUtf8)
}

/// A non-negative decimal made of ASCII digits only (`str::parse` would also take a `+`).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
