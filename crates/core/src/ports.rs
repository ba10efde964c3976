//! The ports the domain needs from the outside world. Every implementation must pass the
//! conformance suite in `twofold-store`.

use crate::keys::*;
use crate::login::*;
use crate::messaging::*;
use crate::model::*;
use crate::oidc::*;
use crate::rollout::{MethodGroup, MethodSet};
use crate::security::*;
use crate::vault::*;
use crate::webauthn::WebauthnChallenge;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness constraint; the payload is a stable code such as `user_exists`.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database is overloaded or restarting; retrying later may succeed.
    #[error("store busy")]
    Busy,
    #[error("store: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Wall-clock time, injected so tests control it.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Where an IP address is: country (ISO 3166-1 alpha-2, upper case) and coordinates, from a
/// geo-IP database. Lookups are in memory and must not fail: unknown is `(None, None)`.
pub trait GeoLookup: Send + Sync + 'static {
    fn locate(&self, ip: std::net::IpAddr) -> (Option<String>, Option<(f64, f64)>);
}

/// A settable clock for tests.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(ms))
    }
    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One code attempt against a user's factors, carried out atomically by the store.
///
/// If `matched` is set, the store consumes that step with one conditional update
/// (INV-01: `… WHERE last_step < step AND version = expected AND status = expected AND not
/// locked AND not blocked`). If no row changes, or nothing matched, every factor in
/// `factors` that is not already blocked or locked gets one failure, computed by
/// [`crate::throttle::after_failure`]. Either way one audit row is written in the same
/// transaction, with the real reason.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The candidate factors with the versions the caller evaluated. If any stored version
    /// differs, the outcome is `Stale` and nothing is counted: a failure must never be charged
    /// because a cached copy was behind.
    pub factors: Vec<FactorRef>,
    pub matched: Option<StepMatch>,
    pub now: i64,
    pub audit: AuditRecord,
    /// Applied in the same transaction when the attempt is accepted (e.g. the "factor added"
    /// notice when confirming, or removing a factor confirmed by this code).
    pub on_accept: Vec<Effect>,
    /// Applied if this attempt locks a factor that was not locked before.
    pub on_lock: Vec<Effect>,
    /// See [`ConsumeCode::on_backoff`].
    pub on_backoff: Vec<Effect>,
    /// See [`ConsumeCode::budgets`].
    pub budgets: Vec<SendLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorRef {
    pub id: String,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct StepMatch {
    pub factor_id: String,
    pub expected_version: i64,
    pub expected_status: FactorStatus,
    pub step: i64,
    /// Drift to store on success (learned at confirmation / resync).
    pub new_drift: i32,
    /// Version to store on success: bumped when status or drift change, so other nodes'
    /// cached copies are detected as stale.
    pub new_version: i64,
    /// Set when the code matched one step outside the window in this direction (±1). The
    /// store accepts it only if the factor's drift hint has the same direction and an earlier
    /// step no more than [`crate::totp::HINT_HORIZON`] steps back; otherwise it records this
    /// step as the new hint and rejects.
    pub hint_dir: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Accepted {
        factor_id: String,
    },
    /// The matched factor changed under a cached copy; reload and try again.
    Stale,
    Rejected {
        reason: RejectReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    WrongCode,
    Replayed,
    Throttled,
    Locked,
    /// A one-time code past its expiry.
    Expired,
    /// No code was sent for this purpose, or it was superseded or took too many wrong tries.
    NoCode,
}

impl RejectReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::WrongCode => "wrong_code",
            RejectReason::Replayed => "replayed",
            RejectReason::Throttled => "throttled",
            RejectReason::Locked => "locked",
            RejectReason::Expired => "expired",
            RejectReason::NoCode => "no_code",
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates the tenant and its first key atomically; audits both (`tenant.create`, and
    /// `apikey.create` derived from the same record).
    async fn create_tenant(&self, tenant: NewTenant, audit: AuditRecord) -> StoreResult<Tenant>;
    async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>>;
    async fn tenant_by_id(&self, id: i64) -> StoreResult<Option<Tenant>>;

    async fn insert_api_key(&self, key: ApiKey, audit: AuditRecord) -> StoreResult<()>;
    async fn api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, tenant_id: Option<i64>) -> StoreResult<Vec<ApiKey>>;
    /// Returns false when there is no such unrevoked key.
    async fn revoke_api_key(&self, key_id: &str, now: i64, audit: AuditRecord)
        -> StoreResult<bool>;

    async fn create_user(&self, user: NewUser, audit: AuditRecord) -> StoreResult<User>;
    async fn user(&self, tenant_id: i64, external_id: &str) -> StoreResult<Option<User>>;
    /// Users ordered by id, after the cursor `after_id`.
    async fn list_users(
        &self,
        tenant_id: i64,
        after_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<User>>;
    /// The tenant's users counted by profile and by the methods of their active factors: the
    /// rollout report in one aggregate query, whatever the tenant's size.
    async fn rollout_groups(&self, tenant_id: i64) -> StoreResult<Vec<MethodGroup>>;
    /// The methods of the active factors of these users (users with none are left out).
    async fn active_methods(
        &self,
        tenant_id: i64,
        user_ids: &[i64],
    ) -> StoreResult<Vec<(i64, MethodSet)>>;

    /// Inserts a factor unless the user already has `max_per_user` (then
    /// `Conflict("too_many_factors")`), checked in the same transaction.
    /// A user and their factors in one round trip (the verify path on a cache miss).
    async fn user_with_factors(
        &self,
        tenant_id: i64,
        external_id: &str,
    ) -> StoreResult<Option<(User, Vec<Factor>)>>;
    async fn insert_factor(
        &self,
        factor: Factor,
        max_per_user: usize,
        audit: AuditRecord,
    ) -> StoreResult<()>;
    async fn factors_of(&self, user_id: i64) -> StoreResult<Vec<Factor>>;
    /// Removes a factor (with its codes and phone changes) and queues `notice` in the same
    /// transaction. With `only_if`, only a factor in that status is removed (a pending factor
    /// confirmed meanwhile stays). Returns false when no factor was removed.
    async fn delete_factor(
        &self,
        factor_id: &str,
        only_if: Option<FactorStatus>,
        audit: AuditRecord,
        notice: Option<NewMessage>,
    ) -> StoreResult<bool>;
    async fn attempt(&self, attempt: Attempt) -> StoreResult<AttemptOutcome>;
    /// Clears failures, backoff and lock. Returns false when the factor does not exist.
    /// Applies `notice` (the notice and its undo link) in the same transaction.
    async fn unlock_factor(
        &self,
        factor_id: &str,
        audit: AuditRecord,
        notice: Vec<Effect>,
    ) -> StoreResult<bool>;

    /// Sets the tenant's sender name and allowed SMS calling codes (`None`: the server default).
    async fn update_tenant_messaging(
        &self,
        tenant_id: i64,
        sender_name: Option<String>,
        sms_countries: Option<Vec<String>>,
        audit: AuditRecord,
    ) -> StoreResult<()>;

    // ------------------------------------------------------------ one-time codes

    /// See [`IssueCode`].
    async fn issue_code(&self, issue: IssueCode) -> StoreResult<IssueOutcome>;
    /// See [`ConsumeCode`]. Returns `Accepted { factor_id }` or `Rejected`, never `Stale`.
    async fn consume_code(&self, consume: ConsumeCode) -> StoreResult<AttemptOutcome>;
    async fn phone_change(&self, id: &str) -> StoreResult<Option<PhoneChange>>;

    // ------------------------------------------------------------ outbox

    /// Queues messages (e.g. invitations) with an optional audit row, in one transaction.
    async fn enqueue(
        &self,
        messages: Vec<NewMessage>,
        audit: Option<AuditRecord>,
    ) -> StoreResult<()>;
    /// Claims up to `limit` messages due at `now`: pending ones whose `next_attempt_at` has
    /// come, and `sending` ones whose lease ran out (their worker died). Each claimed row gets
    /// status `sending`, `lease_owner = owner`, `lease_until = now + lease_ms` and one more
    /// attempt, by a conditional update, so two workers never hold the same row. Oldest first.
    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Records the result of delivering a claimed message, only if `owner` still holds its
    /// lease (returns false otherwise). `Sent` wipes the sealed parameters.
    async fn finish_message(
        &self,
        id: i64,
        owner: &str,
        result: DeliveryResult,
        now: i64,
    ) -> StoreResult<bool>;
    async fn outbox_stats(&self, tenant_id: Option<i64>) -> StoreResult<OutboxStats>;
    async fn list_messages(&self, query: MessageQuery) -> StoreResult<Vec<OutboxMessage>>;
    /// Puts a failed message back in the queue, due at `now`. False if it is not failed.
    async fn retry_message(&self, id: i64, now: i64, audit: AuditRecord) -> StoreResult<bool>;
    /// Deletes sent and failed messages created before `before`, codes expired before `now`,
    /// finished or expired phone changes, send counters of past windows (failure budgets
    /// included) and "this wasn't me" links expired more than a day before `now`; returns how
    /// many rows went.
    async fn prune_messaging(&self, before: i64, now: i64) -> StoreResult<u64>;

    // ------------------------------------------------------------ policy and logins

    /// Applies effects and writes `audit`, all in one transaction; a failed precondition
    /// rolls everything back (`Conflict("state_changed")`).
    async fn apply(&self, effects: Vec<Effect>, audit: AuditRecord) -> StoreResult<()>;
    async fn policy(&self, tenant_id: i64) -> StoreResult<Option<StoredPolicy>>;
    async fn user_by_id(&self, user_id: i64) -> StoreResult<Option<User>>;
    /// The tenant's users with the admin flag, by id (they receive change notices).
    async fn admins_of(&self, tenant_id: i64) -> StoreResult<Vec<User>>;
    async fn proposal(&self, id: &str) -> StoreResult<Option<Proposal>>;
    async fn start_login(&self, login: PendingLogin, audit: AuditRecord) -> StoreResult<()>;
    async fn pending_login(&self, token_hash: &[u8]) -> StoreResult<Option<PendingLogin>>;
    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>>;
    /// A user's sessions, newest first, revoked ones included.
    async fn sessions_of(&self, user_id: i64) -> StoreResult<Vec<Session>>;
    /// Records use of a session at `at` (for the idle timeout); false if it is revoked.
    async fn touch_session(&self, id: &str, at: i64) -> StoreResult<bool>;
    async fn device(&self, token_hash: &[u8]) -> StoreResult<Option<TrustedDevice>>;
    /// A user's remembered devices, newest first, revoked ones included.
    async fn devices_of(&self, user_id: i64) -> StoreResult<Vec<TrustedDevice>>;

    /// Unfinished jobs whose `run_at` has come, oldest first.
    async fn due_jobs(&self, now: i64, limit: u32) -> StoreResult<Vec<Job>>;
    /// Moves a job from `from_cursor` to `to_cursor`, adds `processed`, marks it done if
    /// `done`, and applies `effects`, all in one transaction, only if the job is unfinished
    /// and still at `from_cursor` (so two runners never do a batch twice). Returns false when
    /// the job had moved on; then nothing was applied.
    #[allow(clippy::too_many_arguments)]
    async fn advance_job(
        &self,
        job_id: i64,
        from_cursor: i64,
        to_cursor: i64,
        processed: i64,
        done: bool,
        effects: Vec<Effect>,
        now: i64,
    ) -> StoreResult<bool>;
    async fn job(&self, job_id: i64) -> StoreResult<Option<Job>>;
    /// The tenant's webhooks, oldest first.
    async fn webhooks_of(&self, tenant_id: i64) -> StoreResult<Vec<Webhook>>;

    // ------------------------------------------------------------ recovery, undo, app passwords

    /// How many unused recovery codes the user has.
    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<u32>;
    /// The counts in the current window (at `now`) of each limit, in order.
    async fn counts(&self, limits: Vec<SendLimit>, now: i64) -> StoreResult<Vec<i64>>;
    async fn revert_link(&self, token_hash: &[u8]) -> StoreResult<Option<RevertLink>>;
    async fn app_password(&self, token_hash: &[u8]) -> StoreResult<Option<AppPassword>>;
    /// A user's app passwords, newest first, revoked ones included.
    async fn app_passwords_of(&self, user_id: i64) -> StoreResult<Vec<AppPassword>>;
    /// A user's successful logins at or after `since`, newest first, at most `limit`.
    async fn login_history(
        &self,
        user_id: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<LoginRecord>>;
    /// Deletes login records older than `before`; returns how many.
    async fn prune_login_history(&self, before: i64) -> StoreResult<u64>;

    // ------------------------------------------------------------ master key rotation

    /// The cluster's sealing-key state ([`KeyState::default`] before the first change).
    async fn key_state(&self) -> StoreResult<KeyState>;
    /// Applies `change` (bumping the version) only if the state is still at its expected
    /// version, with `audit` in the same transaction. False, with nothing written, when
    /// another change came first.
    async fn set_key_state(&self, change: KeyChange, audit: AuditRecord) -> StoreResult<bool>;
    /// Records a node's heartbeat (insert or replace by `node_id`).
    async fn report_node_keys(&self, node: NodeKeys) -> StoreResult<()>;
    /// Nodes whose last report is at or after `since`, by node id.
    async fn node_keys(&self, since: i64) -> StoreResult<Vec<NodeKeys>>;
    /// Forgets nodes not seen since `before` (stopped processes); returns how many.
    async fn prune_node_keys(&self, before: i64) -> StoreResult<u64>;
    /// Up to `limit` non-empty values of `column` whose row key sorts (bytewise) after
    /// `after`, in that order. Outbox rows whose parameters were wiped are skipped.
    async fn sealed_rows(
        &self,
        column: SealedColumn,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<SealedRow>>;
    /// Applies each [`Reseal`] by one conditional update, all in one transaction; returns,
    /// in order, whether each row changed (a row that no longer holds `from` is left alone).
    async fn reseal(&self, changes: Vec<Reseal>) -> StoreResult<Vec<bool>>;

    // ------------------------------------------------------------ the authenticator vault

    /// The tenant's vault entries, by name.
    async fn vault_entries(&self, tenant_id: i64) -> StoreResult<Vec<VaultEntry>>;
    async fn vault_entry(&self, tenant_id: i64, name: &str) -> StoreResult<Option<VaultEntry>>;
    /// The tenant's vault groups, by name.
    async fn vault_groups(&self, tenant_id: i64) -> StoreResult<Vec<VaultGroup>>;
    /// The tenant's vault tokens, oldest first, revoked ones included.
    async fn vault_tokens(&self, tenant_id: i64) -> StoreResult<Vec<VaultToken>>;
    /// The token with this keyed hash, revoked or not.
    async fn vault_token(&self, token_hash: &[u8]) -> StoreResult<Option<VaultToken>>;

    // ------------------------------------------------------------ OpenID Connect

    async fn oidc_client(&self, client_id: &str) -> StoreResult<Option<OidcClient>>;
    /// The tenant's OIDC clients, by id.
    async fn oidc_clients(&self, tenant_id: i64) -> StoreResult<Vec<OidcClient>>;
    /// Every signing key, oldest first (the oldest signs; all are published).
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// The authorization code with this keyed hash, used or not.
    async fn auth_code(&self, code_hash: &[u8]) -> StoreResult<Option<AuthCode>>;
    async fn hosted_login(&self, login_id: &str) -> StoreResult<Option<HostedLogin>>;
    /// Deletes hint `jti`s, authorization codes and hosted logins that expired before
    /// `before`; returns how many rows went.
    async fn prune_oidc(&self, before: i64) -> StoreResult<u64>;
    async fn webauthn_challenge(&self, id: &str) -> StoreResult<Option<WebauthnChallenge>>;
    /// Deletes WebAuthn ceremonies that expired before `before`; returns how many went.
    async fn prune_webauthn_challenges(&self, before: i64) -> StoreResult<u64>;

    async fn append_audit(&self, audit: AuditRecord) -> StoreResult<()>;
    async fn list_audit(&self, query: AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Succeeds when the store can commit a write: used by readiness checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Deletes audit rows older than `before`; returns how many.
    async fn prune_audit(&self, before: i64) -> StoreResult<u64>;
}
