//! Parsed domain values. Handlers turn raw strings into these at the edge, so the core never
//! sees an unchecked slug, id, email or phone ("parse, don't validate").

use crate::error::CoreError;
use std::fmt;

fn invalid(field: &'static str, message: impl Into<String>) -> CoreError {
    CoreError::Invalid {
        field,
        message: message.into(),
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// A tenant's slug: lowercase ASCII letters, digits and inner hyphens, 2 to 63 characters, so
/// it is safe in URLs, logs and DNS-like contexts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantSlug(String);
string_newtype!(TenantSlug);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(2..=63).contains(&s.len()) {
            return Err(invalid("slug", "must be 2 to 63 characters"));
        }
        if !ok_chars || s.starts_with('-') || s.ends_with('-') {
            return Err(invalid(
                "slug",
                "may contain only a-z, 0-9 and inner hyphens",
            ));
        }
        Ok(Self(s.to_string()))
    }
}

/// The integrator's own id for a user, unique within a tenant. Printable ASCII without
/// slashes or whitespace, so it can sit in a URL path segment unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId(String);
string_newtype!(ExternalId);

impl ExternalId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(invalid("external_id", "must be 1 to 128 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-=:".contains(&b))
        {
            return Err(invalid(
                "external_id",
                "may contain only A-Z a-z 0-9 and . _ @ + - = :",
            ));
        }
        Ok(Self(s.to_string()))
    }
}

/// A display name (tenant name, API key label): non-empty, at most 200 characters, no control
/// characters (they corrupt logs and terminals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);
string_newtype!(DisplayName);

impl DisplayName {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, CoreError> {
        let t = s.trim();
        if t.is_empty() || t.chars().count() > 200 {
            return Err(invalid(field, "must be 1 to 200 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(invalid(field, "must not contain control characters"));
        }
        Ok(Self(t.to_string()))
    }
}

/// An email address, checked for shape only (one `@`, a dotted domain, no spaces, at most 254
/// characters per RFC 5321); deliverability is proved later by sending a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);
string_newtype!(EmailAddress);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let s = s.trim();
        let bad = || invalid("email", "must be an address like name@example.com");
        if s.len() > 254 || !s.is_ascii() || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || local.len() > 64
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(bad());
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }
}

/// A phone number in E.164 form: `+`, then 8 to 15 digits, the first not zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct E164Phone(String);
string_newtype!(E164Phone);

impl E164Phone {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let digits = s.strip_prefix('+').unwrap_or("");
        if !(8..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(invalid(
                "phone",
                "must be in E.164 form: + then 8 to 15 digits, e.g. +14155550123",
            ));
        }
        Ok(Self(s.to_string()))
    }
}

/// A user profile name, used later by policies (`required_for_profiles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile(String);
string_newtype!(Profile);

impl Profile {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if s.is_empty()
            || s.len() > 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "profile",
                "must be 1 to 64 characters of A-Z a-z 0-9 - _",
            ));
        }
        Ok(Self(s.to_string()))
    }
}

/// A code as typed by a user: 6 to 8 ASCII digits. Anything else (Unicode digits, spaces,
/// letters) is a format error, answered before any factor is touched.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(String);

impl OtpCode {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if !twofold_otp::is_well_formed_code(s) {
            return Err(invalid("code", "must be 6 to 8 digits 0-9"));
        }
        Ok(Self(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(redacted)")
    }
}

/// A factor's public id: `fac_` and 26 base32 characters of randomness. Unguessable, so ids
/// leak nothing about how many factors exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FactorId(String);
string_newtype!(FactorId);

impl FactorId {
    pub fn generate() -> Self {
        Self(format!(
            "fac_{}",
            twofold_otp::base32::encode(&twofold_crypto::random_bytes(16)).to_ascii_lowercase()
        ))
    }
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let ok = s.len() == 30
            && s.starts_with("fac_")
            && s[4..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if !ok {
            return Err(CoreError::NotFound("factor"));
        }
        Ok(Self(s.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(TenantSlug::parse("acme").is_ok());
        assert!(TenantSlug::parse("acme-2").is_ok());
        for bad in [
            "",
            "a",
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "açme",
            &"a".repeat(64),
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_ids() {
        assert!(ExternalId::parse("user-42@example.com").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(ExternalId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_and_phones() {
        assert_eq!(
            EmailAddress::parse("Bob@Example.COM").unwrap().as_str(),
            "Bob@example.com"
        );
        for bad in [
            "", "bob", "bob@", "@x.io", "a@b", "a b@c.io", "a@@b.io", "a@b..io",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        assert!(E164Phone::parse("+14155550123").is_ok());
        for bad in [
            "14155550123",
            "+0123456789",
            "+1234",
            "+1415555012x",
            "+1234567890123456",
        ] {
            assert!(E164Phone::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn codes() {
        assert!(OtpCode::parse("012345").is_ok());
        assert!(OtpCode::parse("01234567").is_ok());
        for bad in [
            "",
            "12345",
            "123456789",
            "12345a",
            "١٢٣٤٥٦",
            "１２３４５６",
            " 123456",
        ] {
            assert!(OtpCode::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{:?}", OtpCode::parse("123456").unwrap()).contains("123456"));
    }

    #[test]
    fn factor_ids() {
        let id = FactorId::generate();
        assert_eq!(FactorId::parse(id.as_str()).unwrap(), id);
        assert!(FactorId::parse("fac_../../etc").is_err());
        assert!(FactorId::parse("").is_err());
    }
}
