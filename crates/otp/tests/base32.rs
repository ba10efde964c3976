#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Base32: RFC 4648 section 10 vectors, the tolerant decoder's accepted spellings, and what it
//! must refuse.

use proptest::prelude::*;
use twofold_otp::base32::{decode, encode, Base32Error};

/// RFC 4648 section 10, with the padding removed from the expected encodings.
const RFC4648: [(&str, &str); 7] = [
    ("", ""),
    ("f", "MY"),
    ("fo", "MZXQ"),
    ("foo", "MZXW6"),
    ("foob", "MZXW6YQ"),
    ("fooba", "MZXW6YTB"),
    ("foobar", "MZXW6YTBOI"),
];

#[test]
fn rfc4648_section_10_encode() {
    for (plain, encoded) in RFC4648 {
        assert_eq!(encode(plain.as_bytes()), encoded, "{plain:?}");
    }
}

#[test]
fn rfc4648_section_10_decode_padded_and_unpadded() {
    let padded = [
        ("f", "MY======"),
        ("fo", "MZXQ===="),
        ("foo", "MZXW6==="),
        ("foob", "MZXW6YQ="),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI======"),
    ];
    for (plain, encoded) in padded {
        assert_eq!(decode(encoded).unwrap(), plain.as_bytes(), "{encoded}");
        assert_eq!(
            decode(encoded.trim_end_matches('=')).unwrap(),
            plain.as_bytes()
        );
    }
}

#[test]
fn empty_is_an_error() {
    assert_eq!(decode(""), Err(Base32Error::Empty));
    assert_eq!(decode("   "), Err(Base32Error::Empty));
    assert_eq!(decode("- -"), Err(Base32Error::Empty));
    assert_eq!(decode("========"), Err(Base32Error::Empty));
}

#[test]
fn tolerates_case_spaces_hyphens_and_padding() {
    let secret = b"12345678901234567890";
    let canonical = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    assert_eq!(encode(secret), canonical);
    for spelling in [
        canonical,
        "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
        "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ",
        "gezd-gnbv-gy3t-qojq-gezd-gnbv-gy3t-qojq",
        "  GezD gnBV\tGY3T\nQOJQ GEZDGNBVGY3TQOJQ  ",
    ] {
        assert_eq!(decode(spelling).unwrap(), secret, "{spelling:?}");
    }
    assert_eq!(decode("my======").unwrap(), b"f");
    assert_eq!(decode("MY ====== ").unwrap(), b"f");
    assert_eq!(decode("MZXW6-YQ=").unwrap(), b"foob");
}

#[test]
fn rejects_characters_outside_the_alphabet() {
    for (input, ch, pos) in [
        ("MZXW0", '0', 4),
        ("MZXW1", '1', 4),
        ("MZ8Q", '8', 2),
        ("MZ9Q", '9', 2),
        ("MY!", '!', 2),
        ("M_Y", '_', 1),
        ("MZ.Q", '.', 2),
        ("éMY", 'é', 0),
        ("MYé", 'é', 2),
        // Positions count characters, not bytes.
        ("é é MZ+Q", 'é', 0),
        ("MZ XQ+", '+', 5),
        ("ＭＹ", 'Ｍ', 0),
    ] {
        assert_eq!(
            decode(input),
            Err(Base32Error::InvalidChar { ch, pos }),
            "{input:?}"
        );
    }
}

#[test]
fn rejects_data_after_padding() {
    assert_eq!(
        decode("MY======MY"),
        Err(Base32Error::InvalidChar { ch: 'M', pos: 8 })
    );
    assert_eq!(
        decode("MY=Y"),
        Err(Base32Error::InvalidChar { ch: 'Y', pos: 3 })
    );
}

#[test]
fn rejects_impossible_lengths() {
    assert_eq!(decode("M"), Err(Base32Error::InvalidLength(1)));
    assert_eq!(decode("MZX"), Err(Base32Error::InvalidLength(3)));
    assert_eq!(decode("MZXW6Y"), Err(Base32Error::InvalidLength(6)));
    assert_eq!(decode("MZXW6YTBM"), Err(Base32Error::InvalidLength(9)));
    assert_eq!(decode("MZXW6YTBMZX"), Err(Base32Error::InvalidLength(11)));
    assert_eq!(
        decode("MZXW6YTBMZXW6Y"),
        Err(Base32Error::InvalidLength(14))
    );
    assert_eq!(decode("M======="), Err(Base32Error::InvalidLength(1)));
    // Separators and padding do not count as symbols.
    assert_eq!(decode("M Z-X"), Err(Base32Error::InvalidLength(3)));
}

#[test]
fn rejects_wrong_padding() {
    assert_eq!(decode("MY="), Err(Base32Error::InvalidPadding));
    assert_eq!(decode("MY======="), Err(Base32Error::InvalidPadding));
    assert_eq!(decode("MZXW6YTB========"), Err(Base32Error::InvalidPadding));
    assert_eq!(decode("MZXQ=="), Err(Base32Error::InvalidPadding));
}

/// Unused bits of the last symbol are ignored (as authenticator apps do): `MZ` is `MY` with a
/// trailing one bit.
#[test]
fn ignores_non_zero_trailing_bits_consistently() {
    assert_eq!(decode("MZ").unwrap(), b"f");
    assert_eq!(decode("MZ======").unwrap(), b"f");
    assert_eq!(decode("MZXR").unwrap(), b"fo");
    assert_eq!(encode(&decode("MZ").unwrap()), "MY");
}

#[test]
fn errors_have_messages() {
    assert_eq!(
        Base32Error::InvalidChar { ch: '1', pos: 3 }.to_string(),
        "invalid base32 character '1' at position 3"
    );
    assert!(Base32Error::InvalidLength(3).to_string().contains('3'));
}

proptest! {
    #[test]
    fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..100)) {
        let encoded = encode(&bytes);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        prop_assert_eq!(encoded.len(), (bytes.len() * 8).div_ceil(5));
        prop_assert_eq!(decode(&encoded).unwrap(), bytes.clone());
        prop_assert_eq!(decode(&encoded.to_lowercase()).unwrap(), bytes.clone());
        let padded = format!("{encoded}{}", "=".repeat((8 - encoded.len() % 8) % 8));
        prop_assert_eq!(decode(&padded).unwrap(), bytes);
    }

    #[test]
    fn decode_never_panics_and_canonicalises(s in "\\PC{0,40}|[A-Za-z2-7= -]{0,40}") {
        if let Ok(bytes) = decode(&s) {
            prop_assert!(!bytes.is_empty());
            prop_assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }
}
