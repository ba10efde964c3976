//! Records of the user's ways back and ways around: recovery codes, "this wasn't me" links,
//! app passwords for clients that cannot show a second step, and the login history that risk
//! rules read. Like every other token, the secret parts are random and only their keyed
//! hashes are stored.

use serde::{Deserialize, Serialize};

/// How many recovery codes a user gets at a time.
pub const RECOVERY_CODES: usize = 10;
/// Random bits per recovery code (SECURITY.md: at least 80).
pub const RECOVERY_BITS: usize = 80;
/// From how many unused codes left the user is warned to make new ones.
pub const RECOVERY_LOW: u32 = 2;
/// Wrong recovery codes allowed per user per hour (counted in the store, on every node).
pub const RECOVERY_FAILURES_PER_HOUR: u32 = 10;
/// How long a "this wasn't me" link works.
pub const REVERT_TTL_MS: i64 = 7 * 86_400_000;

/// A fresh recovery code: 80 random bits as 16 base32 letters in four groups,
/// `abcd-efgh-ijkl-mnop`. Base32 has no 0/1/8/9, so nothing reads as O, I, L or B.
pub fn new_recovery_code() -> String {
    grouped_secret(RECOVERY_BITS)
}

/// The canonical form of a typed recovery code (lower case, no separators), or `None` when it
/// cannot be one.
pub fn normalize_recovery_code(typed: &str) -> Option<String> {
    normalize_grouped(typed, RECOVERY_BITS / 5)
}

/// Random bits per app password: typed once into an old client, so readable, and long enough
/// that guessing is hopeless even online.
pub const APP_PASSWORD_BITS: usize = 100;

pub fn new_app_password() -> String {
    grouped_secret(APP_PASSWORD_BITS)
}

pub fn normalize_app_password(typed: &str) -> Option<String> {
    normalize_grouped(typed, APP_PASSWORD_BITS / 5)
}

/// `bits` (a multiple of 5) of randomness as lower-case base32 in groups of four: whole
/// random bytes, cut to `bits / 5` characters, so every character carries five random bits.
fn grouped_secret(bits: usize) -> String {
    let raw = twofold_otp::base32::encode(&twofold_crypto::random_bytes(bits.div_ceil(8)))
        .to_ascii_lowercase();
    raw.as_bytes()[..bits / 5]
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// Lower case without separators, if `typed` holds exactly `len` base32 characters. Spaces
/// and dashes are where people put them; look-alike digits are mapped to the letters they are
/// mistaken for (`0`→`o`, `1`→`l`, `8`→`b`) because secrets never contain those digits.
fn normalize_grouped(typed: &str, len: usize) -> Option<String> {
    if typed.len() > 4 * len {
        return None;
    }
    let mut out = String::with_capacity(len);
    for c in typed.chars() {
        match c {
            ' ' | '-' | '\t' => continue,
            '0' => out.push('o'),
            '1' => out.push('l'),
            '8' => out.push('b'),
            c if c.is_ascii_alphabetic() => out.push(c.to_ascii_lowercase()),
            c if ('2'..='7').contains(&c) => out.push(c),
            _ => return None,
        }
    }
    (out.len() == len).then_some(out)
}

/// What a "this wasn't me" link can undo. Stored as JSON in the link's row; the link's
/// confirmation applies it (where the state still allows) together with signing the user
/// out everywhere and freezing their 2FA settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Undo {
    /// Nothing can be put back (a lock, a used recovery code): signing out and freezing is
    /// the remedy.
    Nothing,
    /// A factor was added: remove it.
    RemoveFactor { factor_id: String },
    /// A factor was removed: put the row back as it was.
    RestoreFactor { factor: Box<StoredFactor> },
    /// A phone number was swapped: put the old one back.
    RestorePhone {
        factor_id: String,
        old_phone: String,
        new_phone: String,
    },
    /// An app password was created: revoke it.
    RevokeAppPassword { id: String },
    /// New recovery codes were made (at `since`): they go, so whoever made them holds
    /// nothing; the user gets new ones once an administrator lifts the freeze.
    DeleteRecoveryCodes { since: i64 },
}

impl Undo {
    pub fn kind(&self) -> &'static str {
        match self {
            Undo::Nothing => "nothing",
            Undo::RemoveFactor { .. } => "remove_factor",
            Undo::RestoreFactor { .. } => "restore_factor",
            Undo::RestorePhone { .. } => "restore_phone",
            Undo::RevokeAppPassword { .. } => "revoke_app_password",
            Undo::DeleteRecoveryCodes { .. } => "delete_recovery_codes",
        }
    }
}

/// A factor row kept inside an [`Undo`], with its seed still sealed to its owner row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFactor {
    pub id: String,
    pub kind: String,
    pub destination: Option<String>,
    /// A security key's name and credential id (base64), so a restored key is the same key.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub credential_id: Option<String>,
    /// Base64 of the sealed seed or credential (empty for SMS and email factors).
    pub sealed_secret: String,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    pub last_step: i64,
    pub drift: i32,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

impl StoredFactor {
    pub fn of(f: &crate::model::Factor) -> Self {
        use base64::Engine;
        Self {
            id: f.id.clone(),
            kind: f.kind.clone(),
            destination: f.destination.clone(),
            label: f.label.clone(),
            credential_id: f
                .credential_id
                .as_ref()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c)),
            sealed_secret: base64::engine::general_purpose::STANDARD.encode(&f.sealed_secret),
            algorithm: f.algorithm.clone(),
            digits: f.digits,
            period: f.period,
            last_step: f.last_step,
            drift: f.drift,
            created_at: f.created_at,
            confirmed_at: f.confirmed_at,
        }
    }

    /// The factor as it comes back: active, with clean counters and a fresh version, and its
    /// replay guard where it was (a code used before the removal stays used).
    pub fn restore(&self, tenant_id: i64, user_id: i64) -> Option<crate::model::Factor> {
        use base64::Engine;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&self.sealed_secret)
            .ok()?;
        let mut f = crate::model::Factor::pending(
            self.id.clone(),
            tenant_id,
            user_id,
            &self.kind,
            self.created_at,
        );
        f.status = crate::model::FactorStatus::Active;
        f.destination = self.destination.clone();
        f.label = self.label.clone();
        f.credential_id = match &self.credential_id {
            Some(c) => Some(base64::engine::general_purpose::STANDARD.decode(c).ok()?),
            None => None,
        };
        f.sealed_secret = sealed;
        f.algorithm = self.algorithm.clone();
        f.digits = self.digits;
        f.period = self.period;
        f.last_step = self.last_step;
        f.drift = self.drift;
        f.confirmed_at = self.confirmed_at;
        Some(f)
    }
}

/// A "this wasn't me" link sent in a security notice. Single use (`used_at` is set by a
/// conditional update in the transaction that applies it) and valid for [`REVERT_TTL_MS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevertLink {
    /// `rvt_` and 26 base32 characters.
    pub id: String,
    pub token_hash: Vec<u8>,
    pub tenant_id: i64,
    pub user_id: i64,
    /// JSON of [`Undo`].
    pub undo: String,
    /// What the notice said happened, shown again on the confirmation page.
    pub change: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A per-user password for one named client app that cannot show a second step. It is a
/// credential on its own, so it is random, shown once, stored hashed, scoped to one client
/// and dies with the user's credential generation (INV-06) like sessions do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    /// `apw_` and 26 base32 characters.
    pub id: String,
    pub token_hash: Vec<u8>,
    pub tenant_id: i64,
    pub user_id: i64,
    pub client_id: String,
    pub label: String,
    pub generation: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// One successful login, as the risk rules remember it. The IP itself is kept for the user's
/// own "recent activity"; the rules read the network prefix, country and coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRecord {
    pub tenant_id: i64,
    pub user_id: i64,
    pub at: i64,
    pub ip: Option<String>,
    /// `203.0.113.0/24` or an IPv6 `/48`.
    pub network: Option<String>,
    pub country: Option<String>,
    /// Coordinates in 1/10,000 degree (see [`to_e4`]).
    pub lat_e4: Option<i32>,
    pub lon_e4: Option<i32>,
    /// The remembered-device id (`dev_…`) the login presented, if any.
    pub device: Option<String>,
    pub ua_family: Option<String>,
    /// The user's credential generation at the login (INV-06): history from before a reset
    /// or "this wasn't me" vouches for nothing.
    pub generation: i64,
}

/// Degrees to the stored 1/10,000 degree; `None` for values that are no coordinate.
pub fn to_e4(degrees: f64) -> Option<i32> {
    (degrees.is_finite() && degrees.abs() <= 180.0).then(|| (degrees * 10_000.0).round() as i32)
}

pub fn from_e4(e4: i32) -> f64 {
    f64::from(e4) / 10_000.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn app_passwords_carry_100_random_bits() {
        let samples: Vec<String> = (0..2000).map(|_| new_app_password()).collect();
        for p in &samples {
            assert_eq!(normalize_app_password(p).map(|n| n.len()), Some(20), "{p}");
        }
        // The last character is as random as the others (with 96 random bits it could only
        // be one of two letters).
        let last: std::collections::HashSet<char> =
            samples.iter().map(|p| p.chars().last().unwrap()).collect();
        assert!(last.len() > 16, "{last:?}");
    }
    use super::*;

    #[test]
    fn recovery_codes_have_80_bits_in_four_groups_and_normalize_back() {
        let a = new_recovery_code();
        assert_eq!(a.len(), 19);
        assert_eq!(a.split('-').count(), 4);
        let n = normalize_recovery_code(&a).unwrap();
        assert_eq!(n.len(), 16);
        assert_eq!(n, a.replace('-', ""));
        assert_eq!(
            normalize_recovery_code(&format!(" {} ", a.to_uppercase().replace('-', " "))),
            Some(n)
        );
        assert_ne!(new_recovery_code(), a);
        let p = new_app_password();
        assert_eq!(p.len(), 24);
        assert_eq!(normalize_app_password(&p).unwrap().len(), 20);
        assert_eq!(normalize_app_password(&a), None);
    }

    #[test]
    fn look_alikes_map_and_garbage_is_refused() {
        assert_eq!(
            normalize_recovery_code("0000-1111-8888-2345").as_deref(),
            Some("oooollllbbbb2345")
        );
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mno"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mnop-q"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mn9p"), None);
        assert_eq!(normalize_recovery_code("abcd-efgh-ijkl-mnöp"), None);
        assert_eq!(normalize_recovery_code(&"-".repeat(100)), None);
        assert_eq!(normalize_recovery_code(""), None);
    }

    #[test]
    fn a_removed_factor_comes_back_active_with_its_replay_guard() {
        let mut f = crate::model::Factor::pending("fac_x".into(), 1, 2, "totp", 5);
        f.status = crate::model::FactorStatus::Active;
        f.sealed_secret = vec![1, 2, 3];
        f.last_step = 99;
        f.failures = 7;
        f.locked_at = Some(3);
        let back = StoredFactor::of(&f).restore(1, 2).unwrap();
        assert_eq!(back.sealed_secret, vec![1, 2, 3]);
        assert_eq!(back.last_step, 99);
        assert_eq!(back.failures, 0);
        assert_eq!(back.locked_at, None);
        assert_eq!(back.status, crate::model::FactorStatus::Active);
        let json = serde_json::to_string(&Undo::RestoreFactor {
            factor: Box::new(StoredFactor::of(&f)),
        })
        .unwrap();
        let undo: Undo = serde_json::from_str(&json).unwrap();
        assert_eq!(undo.kind(), "restore_factor");
    }
}
