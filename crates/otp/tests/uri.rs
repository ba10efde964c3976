#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Key URI format: the spec's examples, every error variant, and round trips.

use proptest::prelude::*;
use twofold_otp::base32::{self, Base32Error};
use twofold_otp::uri::{MAX_NAME_LEN, MAX_SECRET_LEN, MAX_URI_LEN};
use twofold_otp::{Algorithm, KeyUri, OtpKind, OtpParams, UriError};

const ALICE: &str =
    "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example";

fn parse(s: &str) -> Result<KeyUri, UriError> {
    KeyUri::parse(s)
}

fn totp(issuer: Option<&str>, account: &str) -> KeyUri {
    KeyUri {
        kind: OtpKind::Totp { period: 30 },
        issuer: issuer.map(str::to_owned),
        account: account.to_owned(),
        secret: b"12345678901234567890".to_vec(),
        algorithm: Algorithm::Sha1,
        digits: 6,
    }
}

#[test]
fn google_example_alice() {
    let uri = parse(ALICE).unwrap();
    assert_eq!(
        uri,
        KeyUri {
            kind: OtpKind::Totp { period: 30 },
            issuer: Some("Example".into()),
            account: "alice@google.com".into(),
            secret: base32::decode("JBSWY3DPEHPK3PXP").unwrap(),
            algorithm: Algorithm::Sha1,
            digits: 6,
        }
    );
    assert_eq!(uri.params(), OtpParams::default());
    assert_eq!(
        uri.to_uri().unwrap(),
        "otpauth://totp/Example:alice%40google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example\
         &algorithm=SHA1&digits=6&period=30"
    );
    assert_eq!(parse(&uri.to_uri().unwrap()).unwrap(), uri);
}

#[test]
fn google_example_acme_with_all_parameters() {
    let s = "otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ\
             &issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30";
    let uri = parse(s).unwrap();
    assert_eq!(uri.issuer.as_deref(), Some("ACME Co"));
    assert_eq!(uri.account, "john.doe@email.com");
    assert_eq!(
        uri.secret,
        base32::decode("HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ").unwrap()
    );
    assert_eq!(uri.secret.len(), 20);
    assert_eq!(uri.kind, OtpKind::Totp { period: 30 });
    // Our output differs only in encoding '@' too.
    assert_eq!(uri.to_uri().unwrap(), s.replace('@', "%40"));
}

#[test]
fn label_variants() {
    // Issuer only in the parameter, only in the label, or nowhere.
    let u = parse("otpauth://totp/alice?secret=MY&issuer=Example").unwrap();
    assert_eq!(
        (u.issuer.as_deref(), u.account.as_str()),
        (Some("Example"), "alice")
    );
    let u = parse("otpauth://totp/Example:alice?secret=MY").unwrap();
    assert_eq!(
        (u.issuer.as_deref(), u.account.as_str()),
        (Some("Example"), "alice")
    );
    let u = parse("otpauth://totp/alice?secret=MY").unwrap();
    assert_eq!((u.issuer, u.account.as_str()), (None, "alice"));
    // %3A separates like ':'; spaces after the separator are dropped.
    for label in [
        "Example%3Aalice",
        "Example%3aalice",
        "Example:%20alice",
        "Example%3A%20%20alice",
        "Example: alice",
    ] {
        let u = parse(&format!("otpauth://totp/{label}?secret=MY&issuer=Example")).unwrap();
        assert_eq!(u.account, "alice", "{label}");
        assert_eq!(u.issuer.as_deref(), Some("Example"));
    }
    // Unicode, percent-encoded or raw.
    let u = parse("otpauth://totp/B%C3%BCcher%20AG:j%C3%BCrgen?secret=MY").unwrap();
    assert_eq!(u.issuer.as_deref(), Some("Bücher AG"));
    assert_eq!(u.account, "jürgen");
    let u = parse("otpauth://totp/Bücher:jürgen?secret=MY").unwrap();
    assert_eq!(u.account, "jürgen");
    // '+' is a literal plus, not a space.
    let u = parse("otpauth://totp/a+b?secret=MY&issuer=A+B").unwrap();
    assert_eq!(
        (u.issuer.as_deref(), u.account.as_str()),
        (Some("A+B"), "a+b")
    );
}

#[test]
fn case_insensitive_scheme_type_and_names() {
    let u = parse(
        "OTPAUTH://TOTP/Example:alice?SECRET=jbswy3dpehpk3pxp&Issuer=Example&ALGORITHM=sha256",
    )
    .unwrap();
    assert_eq!(u.algorithm, Algorithm::Sha256);
    assert_eq!(u.secret, base32::decode("JBSWY3DPEHPK3PXP").unwrap());
    let u = parse("otpauth://HoTp/alice?secret=MY&counter=7").unwrap();
    assert_eq!(u.kind, OtpKind::Hotp { counter: 7 });
}

#[test]
fn parameters_and_defaults() {
    let u = parse(
        "otpauth://totp/a?secret=MZXW6YTBOI&algorithm=SHA512&digits=8&period=60&image=https%3A%2F%2Fx",
    )
    .unwrap();
    assert_eq!(
        u.params(),
        OtpParams::new(Algorithm::Sha512, 8, 60).unwrap()
    );
    assert_eq!(u.secret, b"foobar");
    let u = parse("otpauth://totp/a?secret=MY&algorithm=SHA-256&digits=7").unwrap();
    assert_eq!((u.algorithm, u.digits), (Algorithm::Sha256, 7));
    // Padded or spaced secrets, empty pairs, unknown and repeated unknown parameters, fragment.
    let u = parse("otpauth://totp/a?&secret=MZXW6YTBOI%3D%3D%3D%3D%3D%3D&&image=x&image=y&x#frag")
        .unwrap();
    assert_eq!(u.secret, b"foobar");
    let u = parse("otpauth://totp/a?secret=MZXW6YTBOI======").unwrap();
    assert_eq!(u.secret, b"foobar");
    let u = parse("otpauth://totp/a?secret=MZXW%206YTB%20OI").unwrap();
    assert_eq!(u.secret, b"foobar");
    // HOTP: counter required, period ignored; TOTP: counter ignored.
    let u = parse("otpauth://hotp/a?secret=MY&counter=18446744073709551615&period=0").unwrap();
    assert_eq!(u.kind, OtpKind::Hotp { counter: u64::MAX });
    assert_eq!(u.params().period, 30);
    let u = parse("otpauth://totp/a?secret=MY&counter=x&period=86400").unwrap();
    assert_eq!(u.kind, OtpKind::Totp { period: 86_400 });
}

#[test]
fn hotp_output() {
    let uri = KeyUri {
        kind: OtpKind::Hotp { counter: 42 },
        issuer: None,
        account: "bob smith".into(),
        secret: b"foobar".to_vec(),
        algorithm: Algorithm::Sha256,
        digits: 8,
    };
    let s = uri.to_uri().unwrap();
    assert_eq!(
        s,
        "otpauth://hotp/bob%20smith?secret=MZXW6YTBOI&algorithm=SHA256&digits=8&counter=42"
    );
    assert_eq!(parse(&s).unwrap(), uri);
}

#[test]
fn debug_does_not_print_the_secret() {
    let uri = totp(Some("Example"), "alice");
    let debug = format!("{uri:?}");
    assert!(debug.contains("<20 bytes>"), "{debug}");
    assert!(!debug.contains("49, 50"), "{debug}");
    assert!(!debug.contains("GEZDGNBV"), "{debug}");
}

// One test per error variant, for parse and, where it applies, for to_uri.

#[test]
fn err_too_long() {
    let long = format!("otpauth://totp/{}?secret=MY", "a".repeat(MAX_URI_LEN));
    assert_eq!(parse(&long), Err(UriError::TooLong));
    // Exactly at the limit is fine as far as length goes (the name is then too long).
    let exact = "otpauth://totp/?secret=MY";
    let pad = "a".repeat(MAX_URI_LEN - exact.len());
    assert_eq!(
        parse(&format!("otpauth://totp/{pad}?secret=MY")),
        Err(UriError::AccountTooLong)
    );
    let pad = format!("alice?secret=MY&image={}", "x".repeat(MAX_URI_LEN));
    let at_limit = &format!("otpauth://totp/{pad}")[..MAX_URI_LEN];
    assert!(parse(at_limit).is_ok());
}

#[test]
fn err_issuer_too_long() {
    let name = "é".repeat(128); // 256 bytes
    assert_eq!(
        parse(&format!("otpauth://totp/{name}:alice?secret=MY")),
        Err(UriError::IssuerTooLong)
    );
    assert_eq!(
        parse(&format!("otpauth://totp/alice?secret=MY&issuer={name}")),
        Err(UriError::IssuerTooLong)
    );
    assert_eq!(
        totp(Some(&name), "alice").to_uri(),
        Err(UriError::IssuerTooLong)
    );
    let max = "a".repeat(MAX_NAME_LEN);
    assert!(totp(Some(&max), &max).to_uri().is_ok());
}

#[test]
fn err_account_too_long() {
    let name = "a".repeat(MAX_NAME_LEN + 1);
    assert_eq!(
        parse(&format!("otpauth://totp/Example:{name}?secret=MY")),
        Err(UriError::AccountTooLong)
    );
    assert_eq!(totp(None, &name).to_uri(), Err(UriError::AccountTooLong));
}

#[test]
fn err_secret_too_long() {
    let secret = base32::encode(&[7u8; MAX_SECRET_LEN + 1]);
    assert_eq!(
        parse(&format!("otpauth://totp/alice?secret={secret}")),
        Err(UriError::SecretTooLong)
    );
    let mut uri = totp(None, "alice");
    uri.secret = vec![7u8; MAX_SECRET_LEN + 1];
    assert_eq!(uri.to_uri(), Err(UriError::SecretTooLong));
    uri.secret.pop();
    assert!(uri.to_uri().is_ok());
}

/// The largest URI `to_uri` can write (all limits at their maximum, every character of the
/// names tripled by percent-encoding) still fits in what `parse` reads.
#[test]
fn largest_output_fits_the_input_limit() {
    let name = "\u{1}".repeat(MAX_NAME_LEN);
    let uri = KeyUri {
        kind: OtpKind::Hotp { counter: u64::MAX },
        issuer: Some(name.clone()),
        account: name,
        secret: vec![0xff; MAX_SECRET_LEN],
        algorithm: Algorithm::Sha512,
        digits: 8,
    };
    let s = uri.to_uri().unwrap();
    assert!(s.len() <= MAX_URI_LEN, "{}", s.len());
    assert_eq!(parse(&s).unwrap(), uri);
}

#[test]
fn err_not_otpauth_scheme() {
    for s in [
        "",
        "otpauth:/totp/a?secret=MY",
        "https://totp/a?secret=MY",
        "otpauth-x://totp/a?secret=MY",
        "totp/a?secret=MY",
    ] {
        assert_eq!(parse(s), Err(UriError::NotOtpauthScheme), "{s}");
    }
}

#[test]
fn err_unknown_type() {
    assert_eq!(
        parse("otpauth://motp/a?secret=MY"),
        Err(UriError::UnknownType("motp".into()))
    );
    assert_eq!(
        parse("otpauth://?secret=MY"),
        Err(UriError::UnknownType(String::new()))
    );
}

#[test]
fn err_missing_label() {
    assert_eq!(
        parse("otpauth://totp?secret=MY"),
        Err(UriError::MissingLabel)
    );
    assert_eq!(
        parse("otpauth://totp/?secret=MY"),
        Err(UriError::MissingLabel)
    );
    assert_eq!(parse("otpauth://totp"), Err(UriError::MissingLabel));
}

#[test]
fn err_empty_issuer() {
    assert_eq!(
        parse("otpauth://totp/:alice?secret=MY"),
        Err(UriError::EmptyIssuer)
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY&issuer="),
        Err(UriError::EmptyIssuer)
    );
    assert_eq!(totp(Some(""), "alice").to_uri(), Err(UriError::EmptyIssuer));
}

#[test]
fn err_empty_account() {
    assert_eq!(
        parse("otpauth://totp/Example:?secret=MY"),
        Err(UriError::EmptyAccount)
    );
    assert_eq!(
        parse("otpauth://totp/Example:%20%20?secret=MY"),
        Err(UriError::EmptyAccount)
    );
    assert_eq!(
        parse("otpauth://totp/%20?secret=MY"),
        Err(UriError::EmptyAccount)
    );
    assert_eq!(
        totp(Some("Example"), "").to_uri(),
        Err(UriError::EmptyAccount)
    );
}

#[test]
fn err_leading_space_in_account() {
    assert_eq!(
        totp(Some("Example"), " alice").to_uri(),
        Err(UriError::LeadingSpaceInAccount)
    );
    assert_eq!(
        totp(None, " alice").to_uri(),
        Err(UriError::LeadingSpaceInAccount)
    );
    // Parsing drops the spaces instead.
    assert_eq!(
        parse("otpauth://totp/%20alice?secret=MY").unwrap().account,
        "alice"
    );
}

#[test]
fn err_colon_in_issuer() {
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY&issuer=Ex%3Aample"),
        Err(UriError::ColonInIssuer)
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY&issuer=Ex:ample"),
        Err(UriError::ColonInIssuer)
    );
    assert_eq!(
        totp(Some("Ex:ample"), "alice").to_uri(),
        Err(UriError::ColonInIssuer)
    );
}

#[test]
fn err_colon_in_account() {
    assert_eq!(
        parse("otpauth://totp/Example:ali:ce?secret=MY"),
        Err(UriError::ColonInAccount)
    );
    assert_eq!(
        parse("otpauth://totp/Example%3Aali%3Ace?secret=MY"),
        Err(UriError::ColonInAccount)
    );
    assert_eq!(
        totp(Some("Example"), "ali:ce").to_uri(),
        Err(UriError::ColonInAccount)
    );
    assert_eq!(
        totp(None, "Example:alice").to_uri(),
        Err(UriError::ColonInAccount)
    );
}

#[test]
fn err_issuer_mismatch() {
    assert_eq!(
        parse("otpauth://totp/Example:alice?secret=MY&issuer=Evil"),
        Err(UriError::IssuerMismatch {
            label: "Example".into(),
            param: "Evil".into()
        })
    );
    // Comparison is exact: case and spaces matter.
    assert!(matches!(
        parse("otpauth://totp/Example:alice?secret=MY&issuer=example"),
        Err(UriError::IssuerMismatch { .. })
    ));
}

#[test]
fn err_missing_secret() {
    assert_eq!(parse("otpauth://totp/alice"), Err(UriError::MissingSecret));
    assert_eq!(
        parse("otpauth://totp/alice?issuer=X"),
        Err(UriError::MissingSecret)
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret="),
        Err(UriError::MissingSecret)
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret"),
        Err(UriError::MissingSecret)
    );
    let mut uri = totp(None, "alice");
    uri.secret.clear();
    assert_eq!(uri.to_uri(), Err(UriError::MissingSecret));
}

#[test]
fn err_invalid_secret() {
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY1"),
        Err(UriError::InvalidSecret(Base32Error::InvalidChar {
            ch: '1',
            pos: 2
        }))
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=MZX"),
        Err(UriError::InvalidSecret(Base32Error::InvalidLength(3)))
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=%20"),
        Err(UriError::InvalidSecret(Base32Error::Empty))
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY="),
        Err(UriError::InvalidSecret(Base32Error::InvalidPadding))
    );
}

#[test]
fn err_unknown_algorithm() {
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY&algorithm=MD5"),
        Err(UriError::UnknownAlgorithm("MD5".into()))
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY&algorithm="),
        Err(UriError::UnknownAlgorithm(String::new()))
    );
}

#[test]
fn err_invalid_digits() {
    for d in ["5", "9", "06", "+6", " 6", "", "six", "10"] {
        assert_eq!(
            parse(&format!("otpauth://totp/alice?secret=MY&digits={d}")),
            Err(UriError::InvalidDigits(d.into())),
            "{d:?}"
        );
    }
    let mut uri = totp(None, "alice");
    uri.digits = 9;
    assert_eq!(uri.to_uri(), Err(UriError::InvalidDigits("9".into())));
}

#[test]
fn err_invalid_period() {
    for p in [
        "0",
        "86401",
        "-30",
        "+30",
        "",
        "30s",
        "99999999999999999999999",
    ] {
        assert_eq!(
            parse(&format!("otpauth://totp/alice?secret=MY&period={p}")),
            Err(UriError::InvalidPeriod(p.into())),
            "{p:?}"
        );
    }
    let mut uri = totp(None, "alice");
    uri.kind = OtpKind::Totp { period: 0 };
    assert_eq!(uri.to_uri(), Err(UriError::InvalidPeriod("0".into())));
}

#[test]
fn err_missing_counter() {
    assert_eq!(
        parse("otpauth://hotp/alice?secret=MY"),
        Err(UriError::MissingCounter)
    );
}

#[test]
fn err_invalid_counter() {
    for c in ["", "-1", "+1", "x", "18446744073709551616"] {
        assert_eq!(
            parse(&format!("otpauth://hotp/alice?secret=MY&counter={c}")),
            Err(UriError::InvalidCounter(c.into())),
            "{c:?}"
        );
    }
}

#[test]
fn err_duplicate_parameter() {
    for (query, name) in [
        ("secret=MY&secret=MY", "secret"),
        ("secret=MY&issuer=A&issuer=A", "issuer"),
        ("secret=MY&algorithm=SHA1&Algorithm=SHA1", "algorithm"),
        ("secret=MY&digits=6&digits=6", "digits"),
        ("secret=MY&period=30&period=30", "period"),
        ("secret=MY&counter=1&COUNTER=1", "counter"),
    ] {
        assert_eq!(
            parse(&format!("otpauth://totp/alice?{query}")),
            Err(UriError::DuplicateParameter(name.into())),
            "{query}"
        );
    }
}

#[test]
fn err_invalid_percent_encoding() {
    for s in [
        "otpauth://totp/ali%cx?secret=MY",
        "otpauth://totp/alice%?secret=MY",
        "otpauth://totp/alice%4?secret=MY",
        "otpauth://totp/alice?secret=MY&issuer=%zz",
        "otpauth://totp/alice?secret=M%Y",
        "otpauth://totp/alice?secret=MY&di%gits=6",
    ] {
        assert_eq!(parse(s), Err(UriError::InvalidPercentEncoding), "{s}");
    }
}

#[test]
fn err_not_utf8() {
    assert_eq!(
        parse("otpauth://totp/%FF?secret=MY"),
        Err(UriError::NotUtf8)
    );
    assert_eq!(
        parse("otpauth://totp/alice?secret=MY&issuer=%C3%28"),
        Err(UriError::NotUtf8)
    );
}

#[test]
fn errors_have_messages() {
    let e = UriError::IssuerMismatch {
        label: "A".into(),
        param: "B".into(),
    };
    assert_eq!(
        e.to_string(),
        "the label names issuer \"A\" but the issuer parameter is \"B\""
    );
    let e = UriError::InvalidSecret(Base32Error::Empty);
    assert!(std::error::Error::source(&e).is_some());
}

fn label_text() -> impl Strategy<Value = String> {
    // No ':' anywhere; no leading space (parsing drops it); otherwise anything, including the
    // URI's own delimiters and non-ASCII text.
    let chars = prop_oneof![
        prop::sample::select(vec![
            ' ', '&', '?', '%', '#', '/', '=', '+', '@', '.', '~', '-', '_', '\t', 'é', 'ß', '中',
            '😀', '\u{a0}', ';', ',', '"', '<', '\'', 'A', 'z', '0',
        ]),
        any::<char>().prop_filter("no colon", |c| *c != ':'),
    ];
    proptest::collection::vec(chars, 1..24)
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("no leading space", |s| !s.starts_with(' '))
}

fn key_uri() -> impl Strategy<Value = KeyUri> {
    (
        prop_oneof![
            (1u32..=86_400).prop_map(|period| OtpKind::Totp { period }),
            any::<u64>().prop_map(|counter| OtpKind::Hotp { counter }),
        ],
        proptest::option::of(label_text()),
        label_text(),
        proptest::collection::vec(any::<u8>(), 1..70),
        prop::sample::select(vec![Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]),
        6u8..=8,
    )
        .prop_map(
            |(kind, issuer, account, secret, algorithm, digits)| KeyUri {
                kind,
                issuer,
                account,
                secret,
                algorithm,
                digits,
            },
        )
}

proptest! {
    #[test]
    fn round_trip(uri in key_uri()) {
        let s = uri.to_uri().unwrap();
        prop_assert!(s.is_ascii());
        prop_assert!(s.starts_with("otpauth://"));
        prop_assert_eq!(KeyUri::parse(&s).unwrap(), uri);
    }

    #[test]
    fn parse_never_panics_and_output_reparses(s in "otpauth://(totp|hotp)/\\PC{0,30}(\\?\\PC{0,60})?") {
        if let Ok(uri) = KeyUri::parse(&s) {
            let out = uri.to_uri().unwrap();
            prop_assert_eq!(KeyUri::parse(&out).unwrap(), uri);
        }
    }
}
