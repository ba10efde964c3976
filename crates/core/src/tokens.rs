//! The bearer tokens Twofold mints, and the one shape check each goes through before its keyed
//! hash is looked up.
//!
//! ```text
//!   tfk_<key id: 13 base32 letters>_<secret: 43 base64url>   API key (operator or tenant)
//!   tfl_<43 base64url>                                        pending login (INV-04)
//!   tfs_<43 base64url>                                        session
//!   tfd_<43 base64url>                                        remembered device
//!   tfr_<43 base64url>                                        "this wasn't me" link
//!   tfv_<43 base64url>                                        vault token
//! ```
//!
//! The 43 characters are 32 random bytes ([`twofold_crypto::random_token`]). The prefix says
//! what a token opens, and each kind is hashed under its own prefix as the hash's purpose, so
//! a pending token can never be found as a session even if someone strips or swaps prefixes
//! (INV-04). The shape check decides nothing about validity (only the hash lookup does); it
//! keeps strings this server could never have minted away from the store, and it is the
//! target of the `tokens` fuzz target: nothing panics, and a token is accepted only if it is
//! exactly the one minted.

/// What a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    ApiKey,
    PendingLogin,
    Session,
    Device,
    Revert,
    Vault,
}

/// Characters of a token's random part: 32 bytes in unpadded base64url.
pub const SECRET_CHARS: usize = 43;
/// Characters of an API key's id: 8 bytes in unpadded lower-case base32.
pub const API_KEY_ID_CHARS: usize = 13;

impl TokenKind {
    pub const ALL: [TokenKind; 6] = [
        TokenKind::ApiKey,
        TokenKind::PendingLogin,
        TokenKind::Session,
        TokenKind::Device,
        TokenKind::Revert,
        TokenKind::Vault,
    ];

    /// The token's prefix (without the `_`), also the purpose its keyed hash is taken under.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::ApiKey => "tfk",
            TokenKind::PendingLogin => "tfl",
            TokenKind::Session => "tfs",
            TokenKind::Device => "tfd",
            TokenKind::Revert => "tfr",
            TokenKind::Vault => "tfv",
        }
    }

    /// The kind whose shape `token` has, if any.
    pub fn of(token: &str) -> Option<TokenKind> {
        Self::ALL.into_iter().find(|&k| match k {
            TokenKind::ApiKey => ApiKeyToken::parse(token).is_some(),
            k => parse(k, token).is_some(),
        })
    }
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_secret(s: &str) -> bool {
    s.len() == SECRET_CHARS && is_base64url(s)
}

/// `token` if it has the shape of a `kind` token as this server mints them. API keys have
/// two parts: use [`ApiKeyToken::parse`] (this answers `None` for them).
pub fn parse(kind: TokenKind, token: &str) -> Option<&str> {
    if kind == TokenKind::ApiKey {
        return None;
    }
    let rest = token.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    is_secret(rest).then_some(token)
}

/// A fresh random token of `kind` (not for API keys, which [`ApiKeyToken`] describes).
pub fn mint(kind: TokenKind) -> String {
    format!("{}_{}", kind.prefix(), twofold_crypto::random_token(32))
}

/// An API key as presented: the id finds the key's row, the secret is checked against its
/// keyed hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyToken<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
}

impl<'a> ApiKeyToken<'a> {
    /// The two parts of `tfk_<id>_<secret>`, if the token has that shape: the id 13 lower-case
    /// base32 letters, the secret 43 base64url characters (which may themselves hold `_`).
    pub fn parse(token: &'a str) -> Option<Self> {
        let rest = token
            .strip_prefix(TokenKind::ApiKey.prefix())?
            .strip_prefix('_')?;
        let (key_id, secret) = rest.split_once('_')?;
        let id_ok = key_id.len() == API_KEY_ID_CHARS
            && key_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        (id_ok && is_secret(secret)).then_some(Self { key_id, secret })
    }

    /// A fresh key: its id, its secret and the token that joins them.
    pub fn mint() -> (String, String, String) {
        let key_id =
            twofold_otp::base32::encode(&twofold_crypto::random_bytes(8)).to_ascii_lowercase();
        let secret = twofold_crypto::random_token(32);
        let token = format!("{}_{key_id}_{secret}", TokenKind::ApiKey.prefix());
        (key_id, secret, token)
    }
}

/// No `Debug` with the secret in it: API keys must never reach a log line.
impl std::fmt::Debug for ApiKeyToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeyToken({}, redacted)", self.key_id)
    }
}

/// The token of an `Authorization` header value `Bearer <token>` (the scheme in either case,
/// spaces around the token ignored).
pub fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

/// The opaque page cursor of the list endpoints: a row id, base64url without padding.
pub fn cursor_encode(id: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_string())
}

/// The row id behind a cursor [`cursor_encode`] made, or `None` for anything else (also for
/// a number written differently, such as `+5` or `05`, so every id has one cursor).
pub fn cursor_decode(cursor: &str) -> Option<i64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let id = text.parse::<i64>().ok()?;
    (id.to_string() == text).then_some(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_have_their_kind_and_no_other() {
        for kind in TokenKind::ALL {
            if kind == TokenKind::ApiKey {
                let (id, secret, token) = ApiKeyToken::mint();
                let parsed = ApiKeyToken::parse(&token).unwrap();
                assert_eq!(
                    (parsed.key_id, parsed.secret),
                    (id.as_str(), secret.as_str())
                );
                assert_eq!(TokenKind::of(&token), Some(kind));
                assert!(!format!("{parsed:?}").contains(&secret));
                continue;
            }
            let token = mint(kind);
            assert_eq!(parse(kind, &token), Some(token.as_str()));
            assert_eq!(TokenKind::of(&token), Some(kind));
            for other in TokenKind::ALL.into_iter().filter(|&o| o != kind) {
                assert_eq!(parse(other, &token), None, "{kind:?} as {other:?}");
            }
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = mint(TokenKind::Session);
        for bad in [
            "",
            "tfs_",
            "tfs",
            "tfs_forged",
            &good[..good.len() - 1],
            &format!("{good}x"),
            &format!(" {good}"),
            &good.replace("tfs_", "tfs-"),
            &good.replace("tfs_", "TFS_"),
            &format!("tfs_{}é", &good[4..good.len() - 2]),
        ] {
            assert_eq!(parse(TokenKind::Session, bad), None, "{bad:?}");
        }
        let (_, _, key) = ApiKeyToken::mint();
        for bad in [
            "tfk_",
            "tfk_nope_nope",
            &key[..key.len() - 1],
            &key.to_uppercase(),
            &key.replacen('_', "", 1),
        ] {
            assert!(ApiKeyToken::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn bearer_and_cursors() {
        assert_eq!(bearer("Bearer  tfk_x "), Some("tfk_x"));
        assert_eq!(bearer("bearer tfk_x"), Some("tfk_x"));
        assert_eq!(bearer("Basic abc"), None);
        for id in [0, 1, 42, i64::MAX, -7] {
            assert_eq!(cursor_decode(&cursor_encode(id)), Some(id));
        }
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in ["", "!!", &enc("05"), &enc("+5"), &enc("x"), &enc(" 5")] {
            assert_eq!(cursor_decode(bad), None, "{bad:?}");
        }
    }
}
