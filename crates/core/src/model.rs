//! Records as the store keeps them. Times are Unix milliseconds (i64: good past 2038).

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    /// Shown as the sender of the tenant's emails; defaults to its name.
    pub sender_name: Option<String>,
    /// Calling codes (e.g. `44`, `1`) SMS may be sent to; `None` means the server default.
    pub sms_countries: Option<Vec<String>>,
}

/// A tenant to create, with its first API key, in one transaction (no tenant without a key).
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    /// Its `tenant_id` is filled in by the store.
    pub first_key: Option<ApiKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub tenant_id: i64,
    pub external_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub profile: Option<String>,
    pub is_admin: bool,
    pub created_at: i64,
    /// Credential generation ("security stamp", INV-06): sessions and remembered devices
    /// carry it and die when it moves.
    pub generation: i64,
    /// Until when a "later" at the 2FA reminder holds.
    pub skip_until: Option<i64>,
    /// Set when the user said "this wasn't me": their 2FA settings stay as they are until an
    /// admin or operator lifts the freeze.
    pub frozen_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant_id: i64,
    pub external_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub profile: Option<String>,
    pub is_admin: bool,
    pub created_at: i64,
}

/// An API key as stored: only its public id and the keyed hash of its secret part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    /// `None` for operator-wide keys.
    pub tenant_id: Option<i64>,
    pub label: String,
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorStatus {
    /// Enrolled but not yet proved with a code; never accepted by verify.
    Pending,
    Active,
}

impl FactorStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            FactorStatus::Pending => "pending",
            FactorStatus::Active => "active",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            _ => None,
        }
    }
}

/// A factor row: an authenticator app (TOTP), a phone (SMS), an email address or a security
/// key (WebAuthn). Secrets are only ever held sealed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub id: String,
    pub tenant_id: i64,
    pub user_id: i64,
    /// `totp`, `sms`, `email` or `webauthn`.
    pub kind: String,
    pub status: FactorStatus,
    /// The phone number (E.164) or email address of an SMS or email factor.
    pub destination: Option<String>,
    /// The name the user gave a security key ("Blue YubiKey"), so several can be told apart.
    pub label: Option<String>,
    /// A security key's WebAuthn credential id. Unique across the server: the same credential
    /// can never be registered to a second user (webauthn-rs requires the check).
    pub credential_id: Option<Vec<u8>>,
    /// TOTP: the sealed seed. WebAuthn: the sealed credential (public key, signature counter),
    /// sealed although public so that a row copied to another user fails to open. Empty for
    /// SMS and email factors, which have no secret.
    pub sealed_secret: Vec<u8>,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    /// Highest TOTP step ever accepted; the replay guard (INV-01).
    pub last_step: i64,
    /// Learned clock drift of the user's device, in steps.
    pub drift: i32,
    /// The step and direction (±1) of the last code seen just outside the window; see
    /// [`crate::totp`] for how drift is learned on use.
    pub drift_hint: Option<(i64, i32)>,
    /// Bumped whenever something a cached copy relies on changes (status, drift, secret).
    pub version: i64,
    pub failures: i32,
    pub blocked_until: Option<i64>,
    pub locked_at: Option<i64>,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

impl Factor {
    /// A new factor awaiting its first code, with clean counters. SMS and email factors keep
    /// it as is (with their destination); TOTP factors set their seed and parameters.
    pub fn pending(id: String, tenant_id: i64, user_id: i64, kind: &str, now: i64) -> Self {
        Self {
            id,
            tenant_id,
            user_id,
            kind: kind.to_string(),
            status: FactorStatus::Pending,
            destination: None,
            label: None,
            credential_id: None,
            sealed_secret: Vec::new(),
            algorithm: "SHA1".into(),
            digits: 6,
            period: 0,
            last_step: -1,
            drift: 0,
            drift_hint: None,
            version: 1,
            failures: 0,
            blocked_until: None,
            locked_at: None,
            created_at: now,
            confirmed_at: None,
        }
    }

    /// The associated data binding a sealed seed to its owner row.
    pub fn seal_owner(tenant_id: i64, user_id: i64, factor_id: &str) -> String {
        format!("totp:{tenant_id}:{user_id}:{factor_id}")
    }
}

/// An audit row as written. `action` and `outcome` are short stable strings so that the
/// verification rows, which dominate the table at full speed, stay compact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub tenant_id: Option<i64>,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub user_id: Option<i64>,
    pub factor_id: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(flatten)]
    pub record: AuditRecord,
    /// The user's external id, joined for readability.
    pub user_external_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant_id: Option<i64>,
    pub user_id: Option<i64>,
    pub action: Option<String>,
    /// Return events with id below this (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}
