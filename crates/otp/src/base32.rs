//! Base32 with the RFC 4648 section 6 alphabet (`A`-`Z`, `2`-`7`), the encoding authenticator
//! apps use for TOTP secrets.
//!
//! [`encode`] writes the canonical form the Key URI format asks for: upper case, no padding.
//! [`decode`] accepts what people actually type or paste: lower case, spaces and hyphens
//! between groups, with or without `=` padding. It is strict about everything that would make
//! the secret ambiguous: characters outside the alphabet, `=` anywhere but at the end,
//! padding of the wrong length, and symbol counts that no byte string encodes to (1, 3 or 6
//! modulo 8).
//!
//! Unused low bits in the last symbol are ignored rather than rejected, as authenticator apps
//! do, so a hand-made secret of any valid length still decodes. Consequently `decode` is not
//! injective (`MY` and `MZ` both decode to `f`), but `decode(encode(bytes)) == bytes` always,
//! and `encode(decode(s))` is the canonical spelling of `s`.

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why a string is not a base32 secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Base32Error {
    /// Empty input, or only separators and padding: an empty secret is never valid.
    #[error("the base32 string is empty")]
    Empty,
    /// `pos` counts characters (not bytes) from the start of the input, separators included.
    #[error("invalid base32 character {ch:?} at position {pos}")]
    InvalidChar { ch: char, pos: usize },
    /// The number of base32 symbols (separators and padding excluded) is 1, 3 or 6 modulo 8,
    /// which no byte string encodes to.
    #[error("{0} base32 symbols cannot encode whole bytes")]
    InvalidLength(usize),
    /// `=` padding is present but is not the one to seven `=` that bring the length to a
    /// multiple of eight.
    #[error("wrong base32 padding")]
    InvalidPadding,
}

/// Canonical base32: upper case, no `=` padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        acc = (acc << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol((acc >> bits) as u8));
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol((acc << (5 - bits)) as u8));
    }
    out
}

fn symbol(index: u8) -> char {
    char::from(ALPHABET[usize::from(index & 0x1f)])
}

fn value(c: char) -> Option<u8> {
    match c {
        'A'..='Z' => Some(c as u8 - b'A'),
        'a'..='z' => Some(c as u8 - b'a'),
        '2'..='7' => Some(c as u8 - b'2' + 26),
        _ => None,
    }
}

/// Separators people put between groups of a secret; they carry no data.
fn is_separator(c: char) -> bool {
    c == '-' || c.is_ascii_whitespace()
}

/// Decodes the tolerant form described in the module documentation.
pub fn decode(s: &str) -> Result<Vec<u8>, Base32Error> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u16 = 0;
    let mut bits = 0u32;
    let mut symbols = 0usize;
    let mut padding = 0usize;
    for (pos, ch) in s.chars().enumerate() {
        if is_separator(ch) {
            continue;
        }
        if ch == '=' {
            padding += 1;
            continue;
        }
        let v = match value(ch) {
            Some(v) if padding == 0 => v,
            // Data after padding, or a character outside the alphabet.
            _ => return Err(Base32Error::InvalidChar { ch, pos }),
        };
        symbols += 1;
        acc = (acc << 5) | u16::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if symbols == 0 {
        return Err(Base32Error::Empty);
    }
    if matches!(symbols % 8, 1 | 3 | 6) {
        return Err(Base32Error::InvalidLength(symbols));
    }
    if padding > 0 && (padding >= 8 || (symbols + padding) % 8 != 0) {
        return Err(Base32Error::InvalidPadding);
    }
    Ok(out)
}
