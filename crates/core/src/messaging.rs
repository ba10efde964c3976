//! Messages (email and SMS) and one-time codes as the store keeps them.
//!
//! A message is queued in the outbox in the same transaction as the change that caused it and
//! rendered from its template only when the delivery worker sends it. Its parameters (which may
//! hold a one-time code) are sealed under the master key, bound to the message id, and wiped
//! once the message has been delivered, so no code sits readable on disk.
//!
//! A one-time code (SMS, email) is kept only as a keyed hash (HMAC under the hashing key, which
//! has its own key id), is bound to purpose + user + factor + the hash of the action it
//! confirms (SECURITY.md INV-05), and is consumed by one conditional update (INV-02).

use serde::Serialize;
use std::collections::BTreeMap;

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Sms,
    /// A signed HTTP POST of an event to an integrator's webhook; `destination` is the URL.
    Webhook,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Self::Email),
            "sms" => Some(Self::Sms),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// Which template renders a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    /// A one-time code. Parameters: `code`, `purpose` (human text), `minutes`.
    Code,
    /// An invitation to set up two-step verification. Parameters: `deadline` (optional).
    Invitation,
    /// A security notice: something about the user's 2FA changed. Parameters: `change`,
    /// `when`, `where` (the IP it came from, or "an administrator"), `factor` (masked).
    SecurityNotice,
    /// A webhook event. Parameters: `event`, `payload` (JSON), `secret` (the signing key).
    Event,
}

impl TemplateKind {
    pub const ALL: [TemplateKind; 4] = [
        Self::Code,
        Self::Invitation,
        Self::SecurityNotice,
        Self::Event,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TemplateKind::Code => "code",
            TemplateKind::Invitation => "invitation",
            TemplateKind::SecurityNotice => "security_notice",
            TemplateKind::Event => "event",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Template parameters. Always include `tenant_name`, `tenant_slug` and `sender_name`.
pub type MessageParams = BTreeMap<String, String>;

/// The associated data binding sealed parameters to their message.
pub fn params_owner(message_id: &str) -> String {
    format!("outbox:{message_id}")
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Stable and globally unique (`<random>@twofold`): the email's Message-ID and the SMS
    /// provider's idempotency key, so a message sent twice after a crash can be deduplicated.
    pub message_id: String,
    pub tenant_id: i64,
    pub user_id: Option<i64>,
    pub channel: Channel,
    /// An email address or an E.164 phone number.
    pub destination: String,
    pub template: TemplateKind,
    /// JSON of [`MessageParams`] sealed with [`params_owner`] as associated data.
    pub sealed_params: Vec<u8>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its first or next attempt.
    Pending,
    /// Claimed by a worker whose lease has not yet run out.
    Sending,
    Sent,
    /// Given up: a permanent error, or too many attempts.
    Failed,
}

impl MessageStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "sending" => Some(Self::Sending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: i64,
    pub message_id: String,
    pub tenant_id: i64,
    pub user_id: Option<i64>,
    pub channel: Channel,
    pub destination: String,
    pub template: TemplateKind,
    /// `None` once delivered (wiped) or given up.
    pub sealed_params: Option<Vec<u8>>,
    pub status: MessageStatus,
    /// Delivery attempts started so far (a claim counts as one).
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// What a worker reports after trying to deliver a claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    Sent,
    /// A transient failure: try again at `at`.
    Retry {
        at: i64,
        error: String,
    },
    /// A permanent failure (or the last allowed attempt failed).
    Failed {
        error: String,
    },
}

/// Queue depth and totals, for metrics and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    /// Creation time of the oldest message not yet sent or failed.
    pub oldest_unsent_at: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub tenant_id: Option<i64>,
    pub status: Option<MessageStatus>,
    pub user_id: Option<i64>,
    /// Newest first: return rows with id below this.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Why a one-time code was sent; part of what binds it (INV-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CodePurpose {
    /// Proves a new SMS/email factor's destination.
    Enrol,
    /// Signs in / verifies with an active SMS/email factor.
    Verify,
    /// Confirms removing a factor (the action hash names which).
    Disable,
    /// Phone change, step one: the old number agrees.
    PhoneOld,
    /// Phone change, step two: the new number is reachable.
    PhoneNew,
    /// An admin confirms a proposed change of the organisation's settings (the action hash
    /// is the proposal's).
    AdminConfirm,
    /// The user confirms a sensitive change of their own settings with a fresh second factor
    /// (the action hash names which: new recovery codes, an app password).
    Sensitive,
    /// An admin confirms exporting a vault entry's secret (the action hash names the entry
    /// and the admin).
    VaultExport,
}

impl CodePurpose {
    pub const ALL: [CodePurpose; 8] = [
        Self::Enrol,
        Self::Verify,
        Self::Disable,
        Self::PhoneOld,
        Self::PhoneNew,
        Self::AdminConfirm,
        Self::Sensitive,
        Self::VaultExport,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CodePurpose::Enrol => "enrol",
            CodePurpose::Verify => "verify",
            CodePurpose::Disable => "disable",
            CodePurpose::PhoneOld => "phone_old",
            CodePurpose::PhoneNew => "phone_new",
            CodePurpose::AdminConfirm => "admin_confirm",
            CodePurpose::Sensitive => "sensitive",
            CodePurpose::VaultExport => "vault_export",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
    /// Human text for the code message ("… to {purpose}").
    pub fn describe(&self) -> &'static str {
        match self {
            CodePurpose::Enrol => "confirm this address for two-step verification",
            CodePurpose::Verify => "sign in",
            CodePurpose::Disable => "remove a two-step verification method",
            CodePurpose::PhoneOld => "approve changing your phone number",
            CodePurpose::PhoneNew => "confirm your new phone number",
            CodePurpose::AdminConfirm => {
                "confirm a change to your organisation's two-step verification settings"
            }
            CodePurpose::Sensitive => "confirm a change to your two-step verification settings",
            CodePurpose::VaultExport => "export the secret of an authenticator vault entry",
        }
    }
}

/// A one-time code row to insert. The code itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCode {
    pub tenant_id: i64,
    pub user_id: i64,
    pub factor_id: String,
    pub purpose: CodePurpose,
    /// Hash of the action the code confirms (e.g. the factor to remove, the new phone).
    pub action_hash: Option<Vec<u8>>,
    pub code_hash: Vec<u8>,
    /// Which hashing key made `code_hash`.
    pub hash_key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One cap on sending, counted in fixed windows in the store so it holds across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimit {
    /// `dest:<address>`, `user:<id>` or `tenant:<id>`; the part before `:` names the cap in
    /// refusals and metrics.
    pub scope: String,
    pub max: u32,
    pub window_ms: i64,
}

impl SendLimit {
    pub fn kind(&self) -> &str {
        self.scope.split(':').next().unwrap_or("")
    }
}

/// The states of a phone change; see [`crate::phone_change`] for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneChangeState {
    AwaitingOld,
    AwaitingNew,
    Done,
    Cancelled,
}

impl PhoneChangeState {
    pub fn as_str(&self) -> &'static str {
        match self {
            PhoneChangeState::AwaitingOld => "awaiting_old",
            PhoneChangeState::AwaitingNew => "awaiting_new",
            PhoneChangeState::Done => "done",
            PhoneChangeState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::AwaitingOld,
            Self::AwaitingNew,
            Self::Done,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

/// A phone change row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneChange {
    /// `pcg_` and 26 base32 characters.
    pub id: String,
    pub tenant_id: i64,
    pub user_id: i64,
    pub factor_id: String,
    pub new_phone: String,
    pub state: PhoneChangeState,
    pub created_at: i64,
    /// After this the change is dead whatever its state.
    pub expires_at: i64,
    pub updated_at: i64,
}

/// A change applied in the same transaction as an issued code, a consumed code or an accepted
/// TOTP attempt, and only if that succeeds. If an effect's precondition no longer holds, the
/// whole operation is rolled back (the code stays unconsumed) and the store answers
/// `StoreError::Conflict("state_changed")`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Inserts a factor unless the user already has `max_per_user`
    /// (`Conflict("too_many_factors")`).
    InsertFactor {
        factor: crate::model::Factor,
        max_per_user: usize,
    },
    /// Pending → active; stamps `confirmed_at`, bumps the version, clears failures.
    ActivateFactor {
        factor_id: String,
        at: i64,
    },
    /// Removes the factor (and its codes and phone changes).
    DeleteFactor {
        factor_id: String,
    },
    /// Swaps an SMS factor's number, bumping its version.
    SetDestination {
        factor_id: String,
        destination: String,
    },
    /// Inserts a phone change, cancelling any open one for the same factor.
    StartPhoneChange(PhoneChange),
    /// Moves a phone change that is in `from` and not expired at `at` to `to`.
    MovePhoneChange {
        id: String,
        from: PhoneChangeState,
        to: PhoneChangeState,
        at: i64,
    },
    /// Inserts a code (superseding older ones for the same user, factor and purpose) and counts
    /// it against `limits` without checking them: for a code that a right code just earned,
    /// such as the new number's code in a phone change.
    InsertCode {
        code: NewCode,
        limits: Vec<SendLimit>,
    },
    Enqueue(NewMessage),
    Audit(crate::model::AuditRecord),
    /// Inserts a proposal, marking the tenant's other pending proposals superseded.
    InsertProposal(crate::login::Proposal),
    /// Moves a proposal in `from` (and not expired at `at`) to `to`.
    SetProposalState {
        id: String,
        from: crate::login::ProposalState,
        to: crate::login::ProposalState,
        at: i64,
    },
    /// Stores the tenant's policy as version `expected_version + 1`, only if the stored
    /// version is `expected_version` (0: no policy stored yet).
    SetPolicy {
        tenant_id: i64,
        json: String,
        expected_version: i64,
        at: i64,
    },
    /// Marks a pending login completed, only if it is not completed yet, has not expired at
    /// `at`, and its user's credential generation is still the one it started with.
    CompleteLogin {
        login_id: String,
        at: i64,
    },
    InsertSession(crate::login::Session),
    /// Revokes one of the user's sessions (if not revoked yet).
    RevokeSession {
        id: String,
        user_id: i64,
        at: i64,
        reason: String,
    },
    InsertDevice(crate::login::TrustedDevice),
    /// Revokes one of the user's remembered devices (if not revoked yet).
    RevokeDevice {
        id: String,
        user_id: i64,
        at: i64,
    },
    /// Bumps the user's credential generation: every session and remembered device issued
    /// before dies (INV-06).
    BumpGeneration {
        user_id: i64,
    },
    /// Remembers a "later" at the reminder until `until`.
    SetSkip {
        user_id: i64,
        until: i64,
    },
    /// Inserts a job (its `id` is assigned by the store).
    InsertJob(crate::login::Job),
    /// Revokes the user's sessions created before `created_before` that did not use a second
    /// factor (not an error if there are none).
    RevokeSessionsWithout2fa {
        user_id: i64,
        created_before: i64,
        at: i64,
    },
    /// Sets a user's admin flag (an existing admin confirmed it, or an operator did it).
    SetAdmin {
        user_id: i64,
        is_admin: bool,
    },
    InsertWebhook(crate::login::Webhook),
    /// Removes one of the tenant's webhooks; a missing one is `state_changed`.
    DeleteWebhook {
        id: String,
        tenant_id: i64,
    },
    /// Replaces the user's recovery codes with these keyed hashes: every earlier code dies.
    ReplaceRecoveryCodes {
        tenant_id: i64,
        user_id: i64,
        hashes: Vec<Vec<u8>>,
        hash_key_id: String,
        at: i64,
    },
    /// Spends one unused recovery code of the user by a conditional update (INV-02); no
    /// unused code with this hash is `state_changed`.
    UseRecoveryCode {
        user_id: i64,
        code_hash: Vec<u8>,
        at: i64,
    },
    /// Counts one failure in the current window of each limit (no check).
    CountFailure {
        limits: Vec<SendLimit>,
        at: i64,
    },
    /// Removes every factor of the user (with their codes and phone changes) and their
    /// recovery codes. Not an error when there are none.
    DeleteAllFactors {
        user_id: i64,
    },
    InsertRevertLink(crate::security::RevertLink),
    /// Spends a "this wasn't me" link: only if unused and live at `at`.
    UseRevertLink {
        id: String,
        at: i64,
    },
    /// Freezes the user's 2FA settings (`Some(at)`) or lifts the freeze (`None`).
    SetFrozen {
        user_id: i64,
        frozen_at: Option<i64>,
    },
    /// Puts a removed factor back; `state_changed` if a factor with its id exists.
    RestoreFactor(crate::model::Factor),
    /// Sets an SMS factor's number back to `phone`, only while it is still `expected` (a
    /// later legitimate change is not undone); kills unused codes sent to the number it
    /// replaces.
    RestorePhone {
        factor_id: String,
        expected: String,
        phone: String,
    },
    InsertAppPassword(crate::security::AppPassword),
    /// Revokes one of the user's app passwords (if not revoked yet).
    RevokeAppPassword {
        id: String,
        user_id: i64,
        at: i64,
    },
    /// Records use of an app password; `state_changed` if it was revoked meanwhile.
    TouchAppPassword {
        id: String,
        at: i64,
    },
    InsertLoginRecord(crate::security::LoginRecord),
    /// Clears failures, backoff and locks of all the user's factors (a recovery code proved
    /// who they are). Not an error when nothing was locked.
    UnlockUserFactors {
        user_id: i64,
    },
    /// `state_changed` if the user's 2FA settings are frozen: the first effect of every change
    /// of them, so that a freeze committed meanwhile wins over a check read before it.
    RequireNotFrozen {
        user_id: i64,
    },
    /// Deletes the user's recovery codes made at or after `since` (a set an attacker made).
    DeleteRecoveryCodesSince {
        user_id: i64,
        since: i64,
    },
    /// Marks every unused "this wasn't me" link of the user used at `at`: an administrator
    /// acted, and an older link must not undo what they did.
    ExpireRevertLinks {
        user_id: i64,
        at: i64,
    },
    /// Counts one in the current window of each limit, only while it is below its maximum; a
    /// full one is `state_changed`. A reservation made before judging, refunded on success.
    ChargeBudgets {
        limits: Vec<SendLimit>,
        at: i64,
    },
    /// Gives back one reservation in the current window of each limit.
    RefundBudgets {
        limits: Vec<SendLimit>,
        at: i64,
    },
    /// Inserts a vault entry; a name the tenant already uses is `Conflict("vault_entry_exists")`.
    InsertVaultEntry(crate::vault::VaultEntry),
    /// Removes one of the tenant's entries with the tokens scoped to it; a missing one is
    /// `state_changed`.
    DeleteVaultEntry {
        id: String,
        tenant_id: i64,
    },
    /// Puts an entry in a group of the same tenant (or in none); a missing entry or group is
    /// `state_changed`.
    SetVaultEntryGroup {
        entry_id: String,
        tenant_id: i64,
        group_id: Option<String>,
    },
    /// Moves an HOTP entry's counter from `expected` to `expected + 1`, only if it is still at
    /// `expected` (otherwise `state_changed`): two parallel requests never get the same code.
    AdvanceVaultCounter {
        entry_id: String,
        expected: i64,
    },
    /// A name the tenant already uses is `Conflict("vault_group_exists")`.
    InsertVaultGroup(crate::vault::VaultGroup),
    InsertVaultToken(crate::vault::VaultToken),
    /// Revokes one of the tenant's unrevoked tokens; otherwise `state_changed`.
    RevokeVaultToken {
        id: String,
        tenant_id: i64,
        at: i64,
    },
    /// Registers an OIDC client; an id already registered is `Conflict("oidc_client_exists")`.
    InsertOidcClient(crate::oidc::OidcClient),
    /// Replaces one of the tenant's clients' redirect URIs; a missing client is
    /// `state_changed`.
    SetOidcRedirectUris {
        id: String,
        tenant_id: i64,
        redirect_uris: Vec<String>,
    },
    /// Replaces a client's sealed secret (rotation); a missing client is `state_changed`.
    SetOidcSecret {
        id: String,
        tenant_id: i64,
        sealed_secret: Vec<u8>,
        at: i64,
    },
    /// Removes one of the tenant's clients; a missing one is `state_changed`.
    DeleteOidcClient {
        id: String,
        tenant_id: i64,
    },
    /// Stores a signing key; a `kid` already stored is `Conflict("signing_key_exists")`.
    InsertSigningKey(crate::oidc::SigningKey),
    /// Spends a login hint's `jti` for this client: a `jti` seen before (until `expires_at`,
    /// after which the hint is dead anyway) is `Conflict("hint_replayed")`.
    UseHintJti {
        client_id: String,
        jti: String,
        tenant_id: i64,
        expires_at: i64,
    },
    InsertAuthCode(crate::oidc::AuthCode),
    /// Spends an authorization code by one conditional update: only if unused and not expired
    /// at `at`; otherwise `state_changed`.
    UseAuthCode {
        code_hash: Vec<u8>,
        at: i64,
    },
    InsertHostedLogin(crate::oidc::HostedLogin),
    /// Stores a WebAuthn ceremony's server-side state until the browser answers.
    InsertWebauthnChallenge(crate::webauthn::WebauthnChallenge),
    /// Spends a ceremony by one conditional update: only if it is the user's, unused and not
    /// expired at `at`; otherwise `state_changed`. A challenge answers exactly once.
    UseWebauthnChallenge {
        id: String,
        user_id: i64,
        at: i64,
    },
    /// Replaces a factor's sealed secret, bumping its version (a security key's credential
    /// after its signature counter moved). A missing factor is `state_changed`.
    SetFactorSecret {
        factor_id: String,
        sealed_secret: Vec<u8>,
    },
    /// Locks a factor at `at` (if not locked yet), bumping its version: a security key whose
    /// signature counter went backwards may have been cloned. A missing factor is
    /// `state_changed`.
    LockFactor {
        factor_id: String,
        at: i64,
    },
}

/// Issue a one-time code: refuse if the newest code for the same (user, factor, purpose) was
/// sent less than `cooldown_ms` ago, or is still live but dead from wrong tries, or if any
/// limit is reached; otherwise count it against every limit, supersede older codes for the
/// same (user, factor, purpose) (only the newest is valid), insert it, queue its message,
/// apply `effects` and write `audit`; all in one transaction. A refusal writes `audit` with
/// outcome `denied` and the refusal as reason, and changes nothing else.
#[derive(Debug, Clone)]
pub struct IssueCode {
    pub code: NewCode,
    pub message: NewMessage,
    pub cooldown_ms: i64,
    pub limits: Vec<SendLimit>,
    pub effects: Vec<Effect>,
    pub audit: crate::model::AuditRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOutcome {
    Issued,
    Refused {
        reason: SendRefusal,
        /// When asking again can succeed.
        retry_at: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendRefusal {
    /// The previous code was sent too recently.
    Cooldown,
    /// The live code took too many wrong tries; a new one only after it expires.
    Exhausted,
    /// The factor is locked; only an operator unlock helps.
    Locked,
    /// A sending cap; the payload is the limit's kind (`dest`, `user`, `tenant`).
    Limit(String),
}

impl SendRefusal {
    pub fn label(&self) -> String {
        match self {
            SendRefusal::Cooldown => "cooldown".into(),
            SendRefusal::Exhausted => "exhausted".into(),
            SendRefusal::Locked => "locked".into(),
            SendRefusal::Limit(kind) => format!("limit_{kind}"),
        }
    }
}

/// Most wrong tries one code survives.
pub const CODE_MAX_ATTEMPTS: i32 = 5;

/// Check a presented code against the newest code for (user, factor, purpose). The factor's
/// attempt limits ([`crate::throttle`]) are checked first: a blocked or locked factor is
/// rejected without looking. The code must be unused, unexpired, under
/// [`CODE_MAX_ATTEMPTS`] wrong tries, bound to the same `action_hash`, and its hash equal (in
/// constant time) to `presented_hash`. On success it is marked used by one conditional update
/// (`… WHERE used_at IS NULL`), the factor's failures are cleared, and `on_success` is applied,
/// all in one transaction; if no row changed, it is a replay. On failure the code's tries and
/// the factor's failures each grow by one; if the factor becomes locked, `on_lock` is queued.
/// Either way `audit` is written with the real reason.
///
/// `factor_id` is the code's subject and need not name a factor of this user (e.g. a proposal
/// id `prp_…`, see [`crate::login::Proposal`]): the code is then checked exactly the same way,
/// with [`CODE_MAX_ATTEMPTS`] as its only try limit, and there are no factor limits to check
/// and no factor failures to charge or clear. [`IssueCode`] takes such subjects likewise (no
/// factor, so no lock refusal).
#[derive(Debug, Clone)]
pub struct ConsumeCode {
    pub tenant_id: i64,
    pub user_id: i64,
    pub factor_id: String,
    pub purpose: CodePurpose,
    pub action_hash: Option<Vec<u8>>,
    pub presented_hash: Vec<u8>,
    pub now: i64,
    pub on_success: Vec<Effect>,
    /// Applied if this attempt locks a factor that was not locked before.
    pub on_lock: Vec<Effect>,
    /// Applied if this attempt is the one that starts the factor's backoff (the
    /// [`crate::throttle::BACKOFF_AFTER`]th failure in a row): the user hears of repeated
    /// failures before the lock.
    pub on_backoff: Vec<Effect>,
    /// Limits on failures beyond the factor's own (per IP, per tenant): if any window is full
    /// the attempt is refused as `Throttled` without being judged or counted; a failure
    /// counts one in each.
    pub budgets: Vec<SendLimit>,
    pub audit: crate::model::AuditRecord,
}
