//! Records of the login flow as the store keeps them: the tenant's policy, admin proposals
//! awaiting their emailed code, pending logins (waiting for their second step), sessions and
//! remembered devices. Tokens are random; only their keyed hashes are stored.
//!
//! ```text
//!   decide ──allow──────────────────────────────────────────────▶ session
//!     │
//!     ├─challenge / enroll_*──▶ pending login ──right code──▶ session (+ device token)
//!     │                        (pending token: only the         (minted in the same
//!     │                         challenge and enrol-at-login     transaction that
//!     │                         endpoints of this login take it) consumes the code)
//!     └─deny
//! ```

use serde::Serialize;

/// The stored policy: JSON of [`crate::policy::Policy`], versioned so that a confirmed
/// proposal applies only over the version it was proposed against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub tenant_id: i64,
    pub json: String,
    pub version: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    Pending,
    Confirmed,
    /// Replaced by a newer proposal of the same tenant, or the policy moved on.
    Superseded,
}

impl ProposalState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Confirmed => "confirmed",
            ProposalState::Superseded => "superseded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Superseded]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A change of the tenant's 2FA settings proposed by an admin, confirmed by the code emailed
/// to that admin. The code is bound to `payload_hash` (INV-05): it confirms this exact
/// proposal and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// `prp_` and 26 base32 characters.
    pub id: String,
    pub tenant_id: i64,
    /// The admin who proposed it and receives the code.
    pub admin_user_id: i64,
    /// JSON of the proposed policy.
    pub payload: String,
    pub payload_hash: Vec<u8>,
    /// The policy version it replaces (0: none yet).
    pub base_version: i64,
    pub state: ProposalState,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A login waiting for its second step (INV-04). Found only by its token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// `lgn_` and 26 base32 characters.
    pub id: String,
    pub token_hash: Vec<u8>,
    pub tenant_id: i64,
    pub user_id: i64,
    /// The user's credential generation when the login started.
    pub generation: i64,
    /// `challenge`, `enroll_required` or `enroll_offered`.
    pub decision: String,
    pub primary: String,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once, when the second step succeeded or the user skipped.
    pub completed_at: Option<i64>,
    /// The device the login came from, as the risk rules know it (see
    /// [`crate::security::LoginRecord::device`]), recorded in the history once it succeeds.
    pub device: Option<String>,
    /// The country the integrator gave for the login (used when the geo-IP database does not
    /// know its IP), recorded with it.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `ses_` and 26 base32 characters.
    pub id: String,
    pub token_hash: Vec<u8>,
    pub tenant_id: i64,
    pub user_id: i64,
    pub generation: i64,
    /// Authentication methods used, e.g. `pwd`, `otp`, `sms`; comma-separated.
    pub amr: String,
    /// Whether a second factor was used.
    pub second_factor: bool,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// Absolute expiry; the idle timeout is applied from `last_seen_at`.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
}

/// A remembered device: lets the decision skip the challenge until it expires, the user's
/// credential generation changes, or it is revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    /// `dev_` and 26 base32 characters.
    pub id: String,
    pub token_hash: Vec<u8>,
    pub tenant_id: i64,
    pub user_id: i64,
    pub generation: i64,
    /// A label from the user agent, for lists.
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A background job that works through a tenant's users in id order, in batches, each batch
/// committed together with the job's new cursor, so a job resumed after a crash neither skips
/// nor repeats a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub tenant_id: i64,
    /// `invitations` (setup emails when 2FA becomes optional or required) or
    /// `revoke_sessions` (sessions without 2FA of users newly required to use it).
    pub kind: String,
    /// JSON of the job's parameters (scope, deadline text, cut-off time).
    pub payload: String,
    /// The last user id done; 0 before the first batch.
    pub cursor: i64,
    /// Not before this time.
    pub run_at: i64,
    pub done_at: Option<i64>,
    /// Users handled so far (messages queued or sessions revoked).
    pub processed: i64,
    pub created_at: i64,
}

/// An integrator's subscription to events, delivered through the outbox as signed POSTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `whk_` and 26 base32 characters.
    pub id: String,
    pub tenant_id: i64,
    pub url: String,
    /// The signing secret, sealed under the master key (bound to the webhook id).
    pub sealed_secret: Vec<u8>,
    /// Event names, e.g. `login.decided`, `factor.enrolled`.
    pub events: Vec<String>,
    pub created_at: i64,
}
