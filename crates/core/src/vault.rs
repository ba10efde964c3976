//! The authenticator vault as the store keeps it: third-party TOTP/HOTP secrets held for
//! automation, the groups that share them and the tokens that may read their codes.
//!
//! An entry belongs to a tenant and an owner: one of the tenant's users, or a *service
//! account*, a name that is not a user at all (it has no factors and no login, so it cannot
//! sign in by construction). Its secret is sealed under the master key bound to
//! [`VaultEntry::seal_owner`] (`vault:{tenant}:{entry}`), so a sealed blob copied onto another
//! row does not open. Tokens are stored only as keyed hashes and are scoped to exactly one
//! entry or one group.

use serde::Serialize;

/// Who owns an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    /// One of the tenant's users (by external id).
    User,
    /// A service account: a named robot owner that is not a user and cannot sign in.
    Service,
}

impl OwnerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            OwnerKind::User => "user",
            OwnerKind::Service => "service",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

/// TOTP (time-based) or HOTP (counter-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Totp,
    Hotp,
}

impl EntryKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EntryKind::Totp => "totp",
            EntryKind::Hotp => "hotp",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "totp" => Some(Self::Totp),
            "hotp" => Some(Self::Hotp),
            _ => None,
        }
    }
}

/// A vault entry row. The secret is only ever held sealed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEntry {
    /// `vte_` and 26 base32 characters.
    pub id: String,
    pub tenant_id: i64,
    /// Unique in the tenant; what callers name the entry by.
    pub name: String,
    pub owner_kind: OwnerKind,
    /// The user's external id, or the service account's name.
    pub owner: String,
    pub group_id: Option<String>,
    pub kind: EntryKind,
    pub sealed_secret: Vec<u8>,
    /// `SHA1`, `SHA256` or `SHA512`.
    pub algorithm: String,
    pub digits: u8,
    /// Seconds per step (TOTP); 0 for HOTP.
    pub period: u32,
    /// The next HOTP counter to hand out; advanced by one conditional update per code.
    pub counter: i64,
    pub issuer: Option<String>,
    pub account: Option<String>,
    pub created_at: i64,
}

impl VaultEntry {
    /// The associated data binding a sealed secret to its entry row.
    pub fn seal_owner(tenant_id: i64, entry_id: &str) -> String {
        format!("vault:{tenant_id}:{entry_id}")
    }
}

/// A named set of entries with its own tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VaultGroup {
    /// `vtg_` and 26 base32 characters.
    pub id: String,
    pub tenant_id: i64,
    pub name: String,
    pub created_at: i64,
}

/// A vault token as stored: the keyed hash of the bearer token, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultToken {
    /// `vtk_` and 26 base32 characters; what audit rows name as the caller.
    pub id: String,
    pub tenant_id: i64,
    pub label: String,
    pub token_hash: Vec<u8>,
    /// Exactly one of `entry_id` and `group_id` is set.
    pub entry_id: Option<String>,
    pub group_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}
