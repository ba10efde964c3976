//! Every token decoder: the shapes of `twofold_core::tokens` (API keys, pending-login,
//! session, remembered-device, "this wasn't me" and vault tokens) with the keyed-hash check
//! that follows them, the `Authorization: Bearer` header, the list endpoints' page cursors,
//! and the client IP behind `X-Forwarded-For` (`twofold_geo`).
//!
//! Properties: nothing panics; a token is accepted (shape, then keyed hash under its kind's
//! purpose) only when it is exactly the token that was minted, for that kind only; every
//! accepted shape is the canonical one (`tfX_` and 43 base64url characters; API keys
//! `tfk_<13 base32>_<43 base64url>`), and no string has two kinds; a cursor decodes only if
//! it is the one encoding of its id; a client IP is never one the client chose unless a
//! trusted proxy wrote it.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use twofold_core::tokens::{self, ApiKeyToken, TokenKind, API_KEY_ID_CHARS, SECRET_CHARS};
use twofold_crypto::{Hasher, KeyMaterial};
use twofold_geo::{resolve_client_ip, ClientIp, TrustedProxies};

/// (typed, random bytes of the minted token, which kind, what to type, peer address, trusted
/// proxies, X-Forwarded-For values, a cursor id).
type Input<'a> = (
    &'a str,
    [u8; 32],
    u8,
    u8,
    [u8; 16],
    Vec<&'a str>,
    Vec<&'a str>,
    i64,
);

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Every address written in the header, read leniently (with or without port or brackets).
fn hops(xff: &[&str]) -> Vec<IpAddr> {
    xff.iter()
        .flat_map(|v| v.split(','))
        .filter_map(|e| {
            let e = e.trim_matches([' ', '\t']);
            e.parse::<IpAddr>()
                .ok()
                .or_else(|| e.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
                .or_else(|| e.trim_start_matches('[').trim_end_matches(']').parse().ok())
        })
        .map(|ip: IpAddr| ip.to_canonical())
        .collect()
}

fuzz_target!(|input: Input<'_>| {
    let (typed_raw, random, kind_sel, pick, peer, proxies, xff, cursor_id) = input;
    let kind = TokenKind::ALL[usize::from(kind_sel) % TokenKind::ALL.len()];
    let hasher = Hasher::new(KeyMaterial::from_bytes([9; 32]));
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    let key_id = twofold_otp::base32::encode(&random[..8]).to_ascii_lowercase();
    let minted = match kind {
        TokenKind::ApiKey => format!("tfk_{key_id}_{secret}"),
        k => format!("{}_{secret}", k.prefix()),
    };
    // Type the minted token, a one-character change of it, or whatever the fuzzer chose.
    let typed = match pick % 4 {
        0 => minted.clone(),
        1 if !minted.is_empty() => {
            let mut b = minted.clone().into_bytes();
            let i = usize::from(pick / 4) % b.len();
            b[i] = b[i].wrapping_add(pick | 1);
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => typed_raw.to_owned(),
    };

    // Shapes: canonical, and at most one kind per string.
    let kinds: Vec<TokenKind> = TokenKind::ALL
        .into_iter()
        .filter(|&k| match k {
            TokenKind::ApiKey => ApiKeyToken::parse(&typed).is_some(),
            k => tokens::parse(k, &typed).is_some(),
        })
        .collect();
    assert!(kinds.len() <= 1, "{typed:?} has kinds {kinds:?}");
    assert_eq!(TokenKind::of(&typed), kinds.first().copied());
    for k in TokenKind::ALL {
        if let Some(t) = tokens::parse(k, &typed) {
            assert_eq!(t, typed);
            let rest = &typed[k.prefix().len() + 1..];
            assert!(typed.starts_with(&format!("{}_", k.prefix())));
            assert!(rest.len() == SECRET_CHARS && is_b64url(rest), "{typed:?}");
        }
    }
    if let Some(k) = ApiKeyToken::parse(&typed) {
        assert_eq!(format!("tfk_{}_{}", k.key_id, k.secret), typed);
        assert_eq!(k.key_id.len(), API_KEY_ID_CHARS);
        assert!(k.secret.len() == SECRET_CHARS && is_b64url(k.secret));
    }

    // Acceptance: the shape check, then the keyed hash under the kind's purpose, as the
    // service does; true only for the minted token itself.
    let accepted = match kind {
        TokenKind::ApiKey => ApiKeyToken::parse(&typed).is_some_and(|k| {
            k.key_id == key_id
                && hasher
                    .hash("apikey", k.secret.as_bytes())
                    .ct_eq(&hasher.hash("apikey", secret.as_bytes()).0)
        }),
        k => tokens::parse(k, &typed).is_some_and(|t| {
            hasher
                .hash(k.prefix(), t.as_bytes())
                .ct_eq(&hasher.hash(k.prefix(), minted.as_bytes()).0)
        }),
    };
    assert_eq!(accepted, typed == minted, "{kind:?}: {typed:?}");
    // A token of one kind never passes as another.
    for other in TokenKind::ALL.into_iter().filter(|&o| o != kind) {
        let passes = match other {
            TokenKind::ApiKey => ApiKeyToken::parse(&minted).is_some(),
            o => tokens::parse(o, &minted).is_some(),
        };
        assert!(!passes, "{kind:?} token passes as {other:?}");
    }

    // The Authorization header.
    if let Some(t) = tokens::bearer(typed_raw) {
        let rest = typed_raw
            .strip_prefix("Bearer ")
            .or_else(|| typed_raw.strip_prefix("bearer "));
        assert_eq!(rest.map(str::trim), Some(t));
    }

    // Cursors: one encoding per id, and only ids come out.
    assert_eq!(
        tokens::cursor_decode(&tokens::cursor_encode(cursor_id)),
        Some(cursor_id)
    );
    if let Some(id) = tokens::cursor_decode(typed_raw) {
        assert_eq!(tokens::cursor_encode(id), typed_raw);
    }

    // The client IP: the peer unless it is a trusted proxy; otherwise an address that a
    // trusted proxy wrote (it appears in the header), or unknown via a trusted hop.
    let peer = IpAddr::from(peer).to_canonical();
    if let Ok(trusted) = TrustedProxies::parse(&proxies) {
        match resolve_client_ip(peer, &xff, &trusted) {
            ClientIp::Direct(ip) => assert!(ip == peer && !trusted.contains(peer)),
            ClientIp::Forwarded(ip) => {
                assert!(trusted.contains(peer));
                assert!(hops(&xff).contains(&ip), "{ip} not in {xff:?}");
            }
            ClientIp::Unknown { via } => assert!(trusted.contains(via), "{via}"),
        }
    }
});
