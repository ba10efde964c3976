//! The application service: every use case the API and CLI offer, with access checks and
//! audit records. Handlers call one method each and map the result.

use crate::cache::TtlCache;
use crate::error::CoreError;
use crate::messaging::Effect;
use crate::model::*;
use crate::ports::*;
use crate::rollout::{self, MethodSet, RolloutReport, RolloutStatus};
use crate::security::{StoredFactor, Undo};
use crate::totp;
use crate::types::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use twofold_crypto::{Hasher, SharedKeyring};
use twofold_otp::{base32, qr, uri::KeyUri, uri::OtpKind, Algorithm, OtpParams};
use zeroize::Zeroizing;

mod account;
mod app_passwords;
mod contact;
mod guard;
mod hosted_keys;
pub mod hosted_session;
mod jobs;
pub mod keys;
mod login;
pub mod notices;
pub mod oidc;
mod operator;
mod outbox;
mod recovery;
mod risk;
mod security_keys;
mod undo;
pub mod vault;
mod webhooks;

pub use account::AccountMethod;
pub use app_passwords::{AppPasswordView, IssuedAppPassword, MAX_APP_PASSWORDS};
pub use contact::{CodeFor, ContactKind, MessagingConfig, PhoneChangeView, SendReceipt};
pub use guard::ThrottleConfig;
pub use jobs::JOB_BATCH;
pub use login::{
    DeviceView, IssuedToken, LoginConfig, LoginOutcome, LoginRequest, ProposalView, SessionView,
    StepOutcome, ADMIN_CONFIRM_FAILURES,
};
pub use outbox::{parse_countries, MessageView, RefusalCounts};
pub use recovery::{Proof, RecoveryCodes, RecoveryStatus};
pub use risk::RiskView;
pub use security_keys::{key_name, KeyCeremony, KeyRefused, MAX_KEY_NAME_CHARS};
pub use undo::{RevertState, RevertView};
pub use webhooks::{WebhookView, EVENTS};

/// Who is acting. Everything an API key does is audited as done by that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An operator-wide API key: may manage every tenant.
    Operator { key_id: String },
    /// A tenant-scoped API key: sees only its own tenant (others answer 404).
    Tenant { key_id: String, tenant_id: i64 },
    /// The local CLI, which holds the data directory and so has operator rights.
    Cli,
    /// Background jobs.
    System,
    /// A user's browser on the hosted pages, sent by this OIDC client of the tenant with a
    /// login hint the client signed: it may act only on its own pending login.
    Hosted { tenant_id: i64, client_id: String },
    /// A user signed in to their own security settings (the account pages, always with a
    /// second factor): acts only on their own account, with the checks of the user-facing API
    /// (fresh codes for sensitive changes).
    User {
        tenant_id: i64,
        user_id: i64,
        external_id: String,
    },
    /// An org admin signed in to the console (always with a second factor): what a tenant
    /// key may do, and what needs an admin's emailed code is confirmed by this one.
    Admin {
        tenant_id: i64,
        user_id: i64,
        external_id: String,
    },
}

impl Actor {
    pub fn name(&self) -> String {
        match self {
            Actor::Operator { key_id } | Actor::Tenant { key_id, .. } => format!("apikey:{key_id}"),
            Actor::Cli => "cli".into(),
            Actor::System => "system".into(),
            Actor::Hosted { client_id, .. } => format!("oidc:{client_id}"),
            Actor::Admin { external_id, .. } => format!("admin:{external_id}"),
            Actor::User { external_id, .. } => format!("user:{external_id}"),
        }
    }

    fn is_operator(&self) -> bool {
        !matches!(
            self,
            Actor::Tenant { .. } | Actor::Hosted { .. } | Actor::Admin { .. } | Actor::User { .. }
        )
    }

    fn sees_tenant(&self, tenant_id: i64) -> bool {
        match self {
            Actor::Tenant { tenant_id: t, .. }
            | Actor::Hosted { tenant_id: t, .. }
            | Actor::Admin { tenant_id: t, .. }
            | Actor::User { tenant_id: t, .. } => *t == tenant_id,
            _ => true,
        }
    }
}

/// Who acts on which user: what every code check and security notice needs.
#[derive(Clone, Copy)]
pub(crate) struct On<'a> {
    pub actor: &'a Actor,
    pub meta: &'a RequestMeta,
    pub tenant: &'a Tenant,
    pub user: &'a User,
}

/// Request context recorded in audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The caller's socket address: for the API, the integrator's back end.
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// The end user's IP where it is known and vouched for (passed by the integrator for a
    /// login, or from the socket / trusted proxies on the hosted pages, INV-08): what the
    /// per-IP failure budget counts.
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TwofoldConfig {
    /// Audit rows older than this are pruned by the background job.
    pub audit_retention_days: u32,
    /// How long cached factors, tenants and API keys are trusted before re-reading.
    pub cache_ttl_ms: i64,
    pub cache_max_entries: usize,
    pub messaging: MessagingConfig,
    pub login: LoginConfig,
    /// Where users reach this server's pages (the "this wasn't me" links in notices).
    pub public_url: String,
    pub throttle: ThrottleConfig,
    pub vault: vault::VaultConfig,
    /// The WebAuthn relying party; `None` when the server cannot offer security keys (no
    /// domain name to scope them to).
    pub webauthn: Option<Arc<twofold_webauthn::RelyingParty>>,
}

impl Default for TwofoldConfig {
    fn default() -> Self {
        Self {
            audit_retention_days: 90,
            cache_ttl_ms: 30_000,
            cache_max_entries: 500_000,
            messaging: MessagingConfig::default(),
            login: LoginConfig::default(),
            public_url: "http://localhost:8080".into(),
            throttle: ThrottleConfig::default(),
            vault: vault::VaultConfig::default(),
            webauthn: None,
        }
    }
}

/// An API key as handed out once; only its hash is kept. No `Debug`: it holds the token.
#[derive(Clone)]
pub struct IssuedApiKey {
    pub key_id: String,
    pub tenant: Option<String>,
    pub label: String,
    /// The full bearer token. Shown once, never stored.
    pub token: String,
}

#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u32,
    /// Shown by authenticator apps; defaults to the tenant's name.
    pub issuer: Option<String>,
    /// Defaults to the user's email, else their external id.
    pub account_name: Option<String>,
}

impl Default for EnrollOptions {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Sha1,
            digits: 6,
            period: 30,
            issuer: None,
            account_name: None,
        }
    }
}

/// No `Debug`: it holds the seed.
#[derive(Clone)]
pub struct Enrollment {
    pub factor: FactorView,
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// What clients may see of a factor: never the seed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FactorView {
    pub id: String,
    pub kind: String,
    pub status: FactorStatus,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    pub drift_steps: i32,
    /// The masked number or address of an SMS or email factor.
    pub destination: Option<String>,
    /// A security key's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub locked: bool,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

impl From<&Factor> for FactorView {
    fn from(f: &Factor) -> Self {
        Self {
            id: f.id.clone(),
            kind: f.kind.clone(),
            status: f.status,
            algorithm: f.algorithm.clone(),
            digits: f.digits,
            period: f.period,
            drift_steps: f.drift,
            destination: f
                .destination
                .as_deref()
                .map(|d| notices::mask_destination(&f.kind, d)),
            label: f.label.clone(),
            locked: f.locked_at.is_some(),
            created_at: f.created_at,
            confirmed_at: f.confirmed_at,
        }
    }
}

pub struct NewUserInput {
    pub external_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub profile: Option<String>,
    pub is_admin: bool,
}

/// A factor ready for the hot path: seed unsealed once, wiped on drop.
struct CachedFactor {
    id: String,
    status: FactorStatus,
    version: i64,
    drift: i32,
    params: OtpParams,
    secret: Zeroizing<Vec<u8>>,
}

impl CachedFactor {
    fn as_ref(&self) -> FactorRef {
        FactorRef {
            id: self.id.clone(),
            version: self.version,
        }
    }

    /// A match at `step` that stores `new_drift`; the version moves when anything a cached
    /// copy relies on (status, drift) changes.
    fn step_match(&self, step: i64, new_drift: i32, activates: bool) -> StepMatch {
        let changed = activates || new_drift != self.drift;
        StepMatch {
            factor_id: self.id.clone(),
            expected_version: self.version,
            expected_status: self.status,
            step,
            new_drift,
            new_version: self.version + i64::from(changed),
            hint_dir: None,
        }
    }
}

/// The step a code matches in the usual window of any of `active`. Every candidate is
/// evaluated, with no early exit (INV-07); the last match wins.
fn window_match(active: &[&CachedFactor], code: &OtpCode, now: i64) -> Option<StepMatch> {
    let mut matched = None;
    for f in active {
        if let Some(step) = totp::verify_use(&f.secret, code.as_str(), &f.params, f.drift, now) {
            matched = Some(f.step_match(step, f.drift, false));
        }
    }
    matched
}

impl CachedUser {
    fn factor(&self, id: &FactorId) -> Result<&CachedFactor, CoreError> {
        self.factors
            .iter()
            .find(|f| f.id == id.as_str())
            .ok_or(CoreError::NotFound("factor"))
    }
}

struct CachedUser {
    user: User,
    /// TOTP factors only: SMS and email codes are checked in the store.
    factors: Vec<CachedFactor>,
}

/// What a code attempt is about: the candidate factors, the match if any, and what to do in
/// the same transaction if it is accepted.
struct Picked {
    factors: Vec<FactorRef>,
    matched: Option<StepMatch>,
    on_accept: Vec<Effect>,
}

impl Picked {
    fn plain(factors: Vec<FactorRef>, matched: Option<StepMatch>) -> Self {
        Self {
            factors,
            matched,
            on_accept: Vec::new(),
        }
    }
}

/// The result of a code attempt. Callers show clients only [`Verdict::is_accepted`]; the
/// reason is for audit and metrics (INV-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected(RejectReason),
}

impl Verdict {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted)
    }
    /// A label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected(r) => r.as_str(),
        }
    }
}

pub const MAX_FACTORS_PER_USER: usize = 10;
/// Longest issuer or account name put in an otpauth:// URI: keeps the QR code scannable.
pub const MAX_LABEL_CHARS: usize = 64;

pub struct Twofold {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Shared with the delivery worker and the node's key watcher, which swaps in a reloaded
    /// keyring or a new active key while requests keep using it.
    keyring: SharedKeyring,
    hasher: Hasher,
    config: TwofoldConfig,
    tenants: TtlCache<String, Tenant>,
    users: TtlCache<(i64, String), CachedUser>,
    api_keys: TtlCache<String, ApiKey>,
    /// Bumped by every cache invalidation; see `cached_user`.
    epoch: AtomicU64,
    /// Called after something was queued in the outbox, to wake the delivery worker.
    on_queued: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Called after a rollout job was created, to wake the job runner.
    on_jobs: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    refusals: RefusalCounts,
    /// Geo-IP lookups for the risk rules, when a database is configured.
    geo: std::sync::OnceLock<Arc<dyn GeoLookup>>,
}

/// An issuer or account name for an otpauth:// URI.
fn label(field: &'static str, s: &str) -> Result<String, CoreError> {
    let name = DisplayName::parse(field, s)?;
    if name.as_str().chars().count() > MAX_LABEL_CHARS {
        return Err(CoreError::Invalid {
            field,
            message: format!("must be at most {MAX_LABEL_CHARS} characters"),
        });
    }
    Ok(name.into_inner())
}

/// An id that cannot be an external user id names no user: answer 404 without a lookup.
fn known_shape(external_id: &str) -> Result<(), CoreError> {
    ExternalId::parse(external_id)
        .map(|_| ())
        .map_err(|_| CoreError::NotFound("user"))
}

/// Store pages one filtered user listing reads at most (see [`Twofold::list_users`]).
pub const USER_SCAN_PAGES: usize = 20;

/// A user and where they stand in the org's 2FA rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserStatus {
    pub user: User,
    /// The methods of the user's active factors.
    pub methods: MethodSet,
    pub status: RolloutStatus,
}

fn cursor_encode(id: i64) -> String {
    crate::tokens::cursor_encode(id)
}

fn cursor_decode(s: &str) -> Result<i64, CoreError> {
    crate::tokens::cursor_decode(s).ok_or(CoreError::Invalid {
        field: "cursor",
        message: "is not a cursor this server issued".into(),
    })
}

impl Twofold {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        keyring: impl Into<SharedKeyring>,
        hasher: Hasher,
        config: TwofoldConfig,
    ) -> Self {
        let ttl = config.cache_ttl_ms;
        let max = config.cache_max_entries;
        Self {
            store,
            clock,
            keyring: keyring.into(),
            hasher,
            tenants: TtlCache::new(ttl, 100_000),
            users: TtlCache::new(ttl, max),
            api_keys: TtlCache::new(ttl.min(10_000), 100_000),
            epoch: AtomicU64::new(0),
            on_queued: std::sync::OnceLock::new(),
            on_jobs: std::sync::OnceLock::new(),
            refusals: RefusalCounts::default(),
            geo: std::sync::OnceLock::new(),
            config,
        }
    }

    /// Registers what wakes the delivery worker after a message is queued (set once).
    pub fn set_on_queued(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_queued.set(hook);
    }

    fn queued(&self) {
        if let Some(hook) = self.on_queued.get() {
            hook();
        }
    }

    /// Codes refused by cooldown or sending caps, by reason, for metrics.
    pub fn refusals(&self) -> &RefusalCounts {
        &self.refusals
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The sealing keyring, as this process holds it now.
    pub fn keyring(&self) -> &SharedKeyring {
        &self.keyring
    }

    fn audit(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        tenant_id: Option<i64>,
    ) -> AuditRecord {
        AuditRecord {
            tenant_id,
            at: self.now(),
            actor: actor.name(),
            action: action.to_string(),
            user_id: None,
            factor_id: None,
            outcome: "ok".into(),
            reason: None,
            ip: meta.ip.clone(),
            request_id: meta.request_id.clone(),
        }
    }

    // ---------------------------------------------------------------- API keys

    fn mint_api_key(&self, tenant_id: Option<i64>, label: &str) -> (ApiKey, String) {
        let (key_id, secret, token) = crate::tokens::ApiKeyToken::mint();
        let record = ApiKey {
            key_id,
            tenant_id,
            label: label.to_string(),
            secret_hash: self.hasher.hash("apikey", secret.as_bytes()).0.to_vec(),
            created_at: self.now(),
            revoked_at: None,
        };
        (record, token)
    }

    /// Resolves a bearer token to an actor. Unknown, malformed and revoked keys all answer the
    /// same, and the hash is computed either way so timing does not tell them apart.
    pub async fn authenticate(&self, token: &str) -> Result<Actor, CoreError> {
        let parsed = crate::tokens::ApiKeyToken::parse(token);
        // Hash even a malformed key, so timing does not tell the two apart.
        let presented = self
            .hasher
            .hash("apikey", parsed.map_or(&b""[..], |t| t.secret.as_bytes()));
        // Only ids this server could have minted reach the store.
        let Some(crate::tokens::ApiKeyToken { key_id, .. }) = parsed else {
            return Err(CoreError::Unauthenticated);
        };
        let now = self.now();
        let key = match self.api_keys.get(&key_id.to_string(), now) {
            Some(k) => k,
            None => {
                let Some(k) = self.store.api_key(key_id).await? else {
                    return Err(CoreError::Unauthenticated);
                };
                let k = Arc::new(k);
                self.api_keys.insert(key_id.to_string(), k.clone(), now);
                k
            }
        };
        if !presented.ct_eq(&key.secret_hash) || key.revoked_at.is_some() {
            return Err(CoreError::Unauthenticated);
        }
        Ok(match key.tenant_id {
            None => Actor::Operator {
                key_id: key.key_id.clone(),
            },
            Some(tenant_id) => Actor::Tenant {
                key_id: key.key_id.clone(),
                tenant_id,
            },
        })
    }

    /// Creates an API key for a tenant (`Some(slug)`) or, for operators only, an operator key.
    pub async fn create_api_key(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: Option<&str>,
        label: &str,
    ) -> Result<IssuedApiKey, CoreError> {
        let label = DisplayName::parse("label", label)?;
        let tenant = match tenant {
            Some(slug) => Some(self.tenant_for(actor, slug).await?),
            None if actor.is_operator() => None,
            None => {
                return Err(CoreError::Forbidden(
                    "only operators may create operator keys",
                ))
            }
        };
        let tenant_id = tenant.as_ref().map(|t| t.id);
        let (record, token) = self.mint_api_key(tenant_id, label.as_str());
        let key_id = record.key_id.clone();
        self.store
            .insert_api_key(record, self.audit(actor, meta, "apikey.create", tenant_id))
            .await?;
        Ok(IssuedApiKey {
            key_id,
            tenant: tenant.map(|t| t.slug.clone()),
            label: label.into_inner(),
            token,
        })
    }

    pub async fn list_api_keys(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
    ) -> Result<Vec<ApiKey>, CoreError> {
        let tenant_id = match tenant {
            Some(slug) => Some(self.tenant_for(actor, slug).await?.id),
            None if actor.is_operator() => None,
            None => {
                return Err(CoreError::Forbidden(
                    "only operators may list operator keys",
                ))
            }
        };
        Ok(self.store.list_api_keys(tenant_id).await?)
    }

    pub async fn revoke_api_key(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        key_id: &str,
    ) -> Result<(), CoreError> {
        let key = self
            .store
            .api_key(key_id)
            .await?
            .filter(|k| match k.tenant_id {
                Some(t) => actor.sees_tenant(t),
                None => actor.is_operator(),
            })
            .ok_or(CoreError::NotFound("api_key"))?;
        let audit = self.audit(actor, meta, "apikey.revoke", key.tenant_id);
        if !self.store.revoke_api_key(key_id, self.now(), audit).await? {
            return Err(CoreError::NotFound("api_key"));
        }
        self.api_keys.remove(&key_id.to_string());
        Ok(())
    }

    // ---------------------------------------------------------------- tenants

    /// Creates a tenant and its first tenant-scoped API key (operators only).
    pub async fn create_tenant(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
    ) -> Result<(Tenant, IssuedApiKey), CoreError> {
        if !actor.is_operator() {
            return Err(CoreError::Forbidden("only operators may create tenants"));
        }
        let slug = TenantSlug::parse(slug)?;
        let name = DisplayName::parse("name", name)?;
        let (record, token) = self.mint_api_key(None, "default");
        let key_id = record.key_id.clone();
        let tenant = self
            .store
            .create_tenant(
                NewTenant {
                    slug: slug.into_inner(),
                    name: name.into_inner(),
                    created_at: self.now(),
                    first_key: Some(record),
                },
                self.audit(actor, meta, "tenant.create", None),
            )
            .await?;
        let key = IssuedApiKey {
            key_id,
            tenant: Some(tenant.slug.clone()),
            label: "default".into(),
            token,
        };
        Ok((tenant, key))
    }

    /// The tenant, if this actor may see it; otherwise the same 404 as a missing one.
    pub async fn tenant_for(&self, actor: &Actor, slug: &str) -> Result<Arc<Tenant>, CoreError> {
        let not_found = CoreError::NotFound("tenant");
        if TenantSlug::parse(slug).is_err() {
            return Err(not_found);
        }
        let now = self.now();
        let tenant = match self.tenants.get(&slug.to_string(), now) {
            Some(t) => t,
            None => {
                let t = Arc::new(self.store.tenant_by_slug(slug).await?.ok_or(not_found)?);
                self.tenants.insert(slug.to_string(), t.clone(), now);
                t
            }
        };
        if !actor.sees_tenant(tenant.id) {
            return Err(CoreError::NotFound("tenant"));
        }
        Ok(tenant)
    }

    // ---------------------------------------------------------------- users

    pub async fn create_user(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        input: NewUserInput,
    ) -> Result<User, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        // An admin confirms the organisation's 2FA changes: the integrator's key alone must
        // not be able to create one (and with it, a mailbox that receives those codes).
        if input.is_admin && !actor.is_operator() {
            return Err(CoreError::Forbidden(
                "admins are appointed by an operator, or confirmed by an existing admin: \
                 POST /v1/tenants/{tenant}/users/{user}/admin-proposals",
            ));
        }
        let external_id = ExternalId::parse(&input.external_id)?;
        let email = input
            .email
            .as_deref()
            .map(EmailAddress::parse)
            .transpose()?;
        let phone = input.phone.as_deref().map(E164Phone::parse).transpose()?;
        let profile = input.profile.as_deref().map(Profile::parse).transpose()?;
        let new = NewUser {
            tenant_id: tenant.id,
            external_id: external_id.into_inner(),
            email: email.map(EmailAddress::into_inner),
            phone: phone.map(E164Phone::into_inner),
            profile: profile.map(Profile::into_inner),
            is_admin: input.is_admin,
            created_at: self.now(),
        };
        let audit = self.audit(actor, meta, "user.create", Some(tenant.id));
        Ok(self.store.create_user(new, audit).await?)
    }

    async fn user_in(&self, tenant: &Tenant, external_id: &str) -> Result<User, CoreError> {
        known_shape(external_id)?;
        self.store
            .user(tenant.id, external_id)
            .await?
            .ok_or(CoreError::NotFound("user"))
    }

    pub async fn user(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<User, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        self.user_in(&tenant, external_id).await
    }

    /// A page of users with where each stands in the rollout, optionally only those with one
    /// status. Filtering reads up to [`USER_SCAN_PAGES`] store pages per call, so a rare
    /// status in a large tenant gives short (even empty) pages with a `next_cursor`: follow it
    /// until it is `None`.
    pub async fn list_users(
        &self,
        actor: &Actor,
        slug: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
        only: Option<RolloutStatus>,
    ) -> Result<(Vec<UserStatus>, Option<String>), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (policy, _) = self.policy_of(&tenant).await?;
        let mut after = cursor.map(cursor_decode).transpose()?;
        let limit = limit.unwrap_or(50).clamp(1, 500);
        let now = self.now();
        let mut out = Vec::new();
        for _ in 0..USER_SCAN_PAGES {
            let users = self.store.list_users(tenant.id, after, limit).await?;
            let full = users.len() as u32 == limit;
            let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
            let methods: HashMap<i64, MethodSet> = self
                .store
                .active_methods(tenant.id, &ids)
                .await?
                .into_iter()
                .collect();
            for user in users {
                after = Some(user.id);
                let methods = methods.get(&user.id).copied().unwrap_or_default();
                let status = rollout::status(&policy, user.profile.as_deref(), methods, now);
                if only.is_some_and(|o| o != status) {
                    continue;
                }
                out.push(UserStatus {
                    user,
                    methods,
                    status,
                });
                if out.len() as u32 == limit {
                    return Ok((out, after.map(cursor_encode)));
                }
            }
            if !full {
                return Ok((out, None));
            }
        }
        Ok((out, after.map(cursor_encode)))
    }

    /// One user with where they stand in the rollout.
    pub async fn user_status(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<UserStatus, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let (policy, _) = self.policy_of(&tenant).await?;
        let methods = self
            .store
            .active_methods(tenant.id, &[user.id])
            .await?
            .first()
            .map(|(_, m)| *m)
            .unwrap_or_default();
        let status = rollout::status(&policy, user.profile.as_deref(), methods, self.now());
        Ok(UserStatus {
            user,
            methods,
            status,
        })
    }

    /// The tenant's rollout at a glance: counts per status and method, deadline, progress.
    pub async fn rollout_report(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<RolloutReport, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (policy, _) = self.policy_of(&tenant).await?;
        let groups = self.store.rollout_groups(tenant.id).await?;
        Ok(rollout::summarize(&policy, &groups, self.now()))
    }

    // ---------------------------------------------------------------- factors

    fn unseal(&self, f: &Factor) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        let owner = Factor::seal_owner(f.tenant_id, f.user_id, &f.id);
        Ok(Zeroizing::new(
            self.keyring.unseal(&f.sealed_secret, &owner)?,
        ))
    }

    fn params_of(f: &Factor) -> Result<OtpParams, CoreError> {
        let alg = Algorithm::parse(&f.algorithm)
            .ok_or_else(|| CoreError::Internal(format!("factor {} has bad algorithm", f.id)))?;
        OtpParams::new(alg, f.digits, f.period)
            .map_err(|e| CoreError::Internal(format!("factor {}: {e}", f.id)))
    }

    /// The user's factors for the hot path, from cache or store.
    async fn cached_user(
        &self,
        tenant: &Tenant,
        external_id: &str,
        reload: bool,
    ) -> Result<Arc<CachedUser>, CoreError> {
        let key = (tenant.id, external_id.to_string());
        let now = self.now();
        if !reload {
            if let Some(u) = self.users.get(&key, now) {
                return Ok(u);
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        known_shape(external_id)?;
        let (user, factors) = self
            .store
            .user_with_factors(tenant.id, external_id)
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        let mut cached = Vec::with_capacity(factors.len());
        for f in factors.iter().filter(|f| f.kind == "totp") {
            // One damaged factor must not lock the user out of their others.
            match Self::params_of(f).and_then(|p| Ok((p, self.unseal(f)?))) {
                Ok((params, secret)) => cached.push(CachedFactor {
                    id: f.id.clone(),
                    status: f.status,
                    version: f.version,
                    drift: f.drift,
                    params,
                    secret,
                }),
                Err(e) => tracing::error!(factor = %f.id, error = %e, "factor unusable; skipped"),
            }
        }
        let entry = Arc::new(CachedUser {
            user,
            factors: cached,
        });
        // A change that raced with this load must not be hidden behind the old copy.
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.users.insert(key, entry.clone(), now);
        }
        Ok(entry)
    }

    fn forget_user(&self, tenant_id: i64, external_id: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.users.remove(&(tenant_id, external_id.to_string()));
    }

    pub async fn enroll_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        opts: EnrollOptions,
    ) -> Result<Enrollment, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        undo::ensure_not_frozen(&user)?;
        let params = OtpParams::new(opts.algorithm, opts.digits, opts.period).map_err(|e| {
            CoreError::Invalid {
                field: "digits/period",
                message: e.to_string(),
            }
        })?;
        if !(15..=300).contains(&opts.period) {
            return Err(CoreError::Invalid {
                field: "period",
                message: "must be between 15 and 300 seconds".into(),
            });
        }
        // Authenticator apps split the label on ':', so neither part may contain one.
        let issuer = match opts.issuer {
            Some(i) => label("issuer", &i)?,
            None => tenant.name.chars().take(MAX_LABEL_CHARS).collect(),
        }
        .replace(':', " ");
        let account = match opts.account_name {
            Some(a) => label("account_name", &a)?,
            None => user
                .email
                .clone()
                .unwrap_or_else(|| user.external_id.clone()),
        }
        .replace(':', " ");
        let secret = Zeroizing::new(twofold_crypto::random_bytes(
            twofold_otp::recommended_secret_len(opts.algorithm),
        ));
        let key_uri = KeyUri {
            kind: OtpKind::Totp {
                period: params.period,
            },
            issuer: Some(issuer),
            account,
            secret: secret.to_vec(),
            algorithm: params.algorithm,
            digits: params.digits,
        };
        let otpauth_uri = key_uri.to_uri().map_err(|e| CoreError::Invalid {
            field: "issuer/account_name",
            message: e.to_string(),
        })?;
        let qr_svg = qr::svg(&otpauth_uri).map_err(|e| CoreError::Invalid {
            field: "issuer/account_name",
            message: format!("too long for a QR code: {e}"),
        })?;
        let id = FactorId::generate().into_inner();
        let owner = Factor::seal_owner(tenant.id, user.id, &id);
        let now = self.now();
        let factor = Factor {
            sealed_secret: self.keyring.seal(&secret, &owner)?,
            algorithm: params.algorithm.as_str().into(),
            digits: params.digits,
            period: params.period,
            ..Factor::pending(id.clone(), tenant.id, user.id, "totp", now)
        };
        let view = FactorView::from(&factor);
        let mut audit = self.audit(actor, meta, "factor.enrol", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(id);
        self.store
            .insert_factor(factor, MAX_FACTORS_PER_USER, audit)
            .await?;
        self.forget_user(tenant.id, external_id);
        Ok(Enrollment {
            factor: view,
            secret: base32::encode(&secret),
            otpauth_uri,
            qr_svg,
        })
    }

    pub async fn list_factors(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<Vec<FactorView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let factors = self.store.factors_of(user.id).await?;
        Ok(factors.iter().map(FactorView::from).collect())
    }

    async fn factor_of(&self, user: &User, factor_id: &str) -> Result<Factor, CoreError> {
        let id = FactorId::parse(factor_id)?;
        self.store
            .factors_of(user.id)
            .await?
            .into_iter()
            .find(|f| f.id == id.as_str())
            .ok_or(CoreError::NotFound("factor"))
    }

    pub async fn delete_factor(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let factor = self.factor_of(&user, factor_id).await?;
        // The integrator's key alone may withdraw a pending enrolment; removing an active
        // factor needs a fresh code (see `disable_factor`), or an operator (a reset).
        if factor.status == FactorStatus::Active && !actor.is_operator() {
            return Err(CoreError::conflict(
                "fresh_code_required",
                "removing an active factor needs a fresh code: use POST …/factors/{id}/disable",
            ));
        }
        let mut audit = self.audit(actor, meta, "factor.delete", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        let notice = if factor.status == FactorStatus::Active {
            self.notice(
                &On {
                    actor,
                    meta,
                    tenant: &tenant,
                    user: &user,
                },
                "a two-step verification method was removed by an administrator",
                Some(&factor),
                Undo::RestoreFactor {
                    factor: Box::new(StoredFactor::of(&factor)),
                },
            )?
        } else {
            Vec::new()
        };
        let deleted = if actor.is_operator() {
            // A reset kills the user's sessions and remembered devices (INV-06); older "this
            // wasn't me" links must not undo it.
            let mut effects = vec![
                Effect::DeleteFactor {
                    factor_id: factor.id.clone(),
                },
                Effect::BumpGeneration { user_id: user.id },
                Effect::ExpireRevertLinks {
                    user_id: user.id,
                    at: self.now(),
                },
            ];
            effects.extend(notice);
            let data = serde_json::json!({
                "user": user.external_id, "factor_id": factor.id, "kind": factor.kind,
                "by": "operator",
            });
            effects.extend(self.event_effects(&tenant, "factor.removed", data).await?);
            match self.store.apply(effects, audit).await {
                Ok(()) => true,
                Err(StoreError::Conflict("state_changed")) => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            // A tenant key withdraws only a pending factor, even if it was confirmed
            // meanwhile.
            self.store
                .delete_factor(&factor.id, Some(FactorStatus::Pending), audit, None)
                .await?
        };
        self.queued();
        self.forget_user(tenant.id, external_id);
        if !deleted {
            return Err(CoreError::NotFound("factor"));
        }
        Ok(())
    }

    pub async fn unlock_factor(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
    ) -> Result<FactorView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let factor = self.factor_of(&user, factor_id).await?;
        let mut audit = self.audit(actor, meta, "factor.unlock", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        let notice = self.notice(
            &On {
                actor,
                meta,
                tenant: &tenant,
                user: &user,
            },
            "a locked two-step verification method was unlocked",
            Some(&factor),
            Undo::Nothing,
        )?;
        if !self.store.unlock_factor(&factor.id, audit, notice).await? {
            return Err(CoreError::NotFound("factor"));
        }
        self.queued();
        let factor = self.factor_of(&user, factor_id).await?;
        Ok(FactorView::from(&factor))
    }

    /// Runs one code attempt through the store's atomic consume (INV-01), reloading once if a
    /// cached factor turned out stale. `pick` chooses the candidate factors and computes the
    /// match for each; every candidate is evaluated, with no early exit.
    async fn attempt_with<F>(
        &self,
        tenant: &Tenant,
        external_id: &str,
        meta: &RequestMeta,
        mut audit: AuditRecord,
        mut pick: F,
    ) -> Result<Verdict, CoreError>
    where
        F: FnMut(&CachedUser, i64) -> Result<Picked, CoreError>,
    {
        for reload in [false, true] {
            let user = self.cached_user(tenant, external_id, reload).await?;
            let now = self.now();
            let Picked {
                factors,
                matched,
                on_accept,
            } = match pick(&user, now) {
                Ok(picked) => picked,
                // A cached copy may be behind (e.g. confirmed on another node): look again.
                Err(_) if !reload => {
                    self.forget_user(tenant.id, external_id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let learned_drift = matched.as_ref().is_some_and(|m| m.hint_dir.is_some());
            // Confirming a pending factor is not charged to the shared budgets (see `budgets`).
            let enrolling = !factors.is_empty()
                && factors.iter().all(|r| {
                    user.factors
                        .iter()
                        .any(|f| f.id == r.id && f.status == FactorStatus::Pending)
                });
            audit.user_id = Some(user.user.id);
            // Only a failed attempt can start a backoff or lock a factor; the notices are
            // built just for those.
            let (on_backoff, on_lock) = if matched.is_none() {
                let on = On {
                    actor: &Actor::System,
                    meta,
                    tenant,
                    user: &user.user,
                };
                self.failure_notices(&on, None)?
            } else {
                (Vec::new(), Vec::new())
            };
            audit.factor_id = matched
                .as_ref()
                .map(|m| m.factor_id.clone())
                .or_else(|| factors.first().map(|f| f.id.clone()));
            audit.reason = learned_drift.then(|| "drift_learned".to_string());
            audit.at = now;
            let outcome = self
                .store
                .attempt(Attempt {
                    factors,
                    matched,
                    now,
                    audit: audit.clone(),
                    on_accept,
                    on_lock,
                    on_backoff,
                    budgets: if enrolling {
                        Vec::new()
                    } else {
                        self.budgets(tenant, meta)
                    },
                })
                .await?;
            self.queued();
            match outcome {
                AttemptOutcome::Accepted { .. } => {
                    if learned_drift {
                        self.forget_user(tenant.id, external_id);
                    }
                    return Ok(Verdict::Accepted);
                }
                AttemptOutcome::Rejected { reason } => return Ok(Verdict::Rejected(reason)),
                AttemptOutcome::Stale => self.forget_user(tenant.id, external_id),
            }
        }
        // Stale twice in a row: the factor keeps changing under us. Fail closed (INV-09),
        // and leave a trace.
        audit.outcome = "denied".into();
        audit.reason = Some("stale".into());
        self.store.append_audit(audit).await?;
        Ok(Verdict::Rejected(RejectReason::WrongCode))
    }

    /// Verifies a code against the user's active TOTP factors (or one named factor).
    /// Wrong, replayed, throttled and locked all answer `false`; the audit row has the reason.
    pub async fn verify(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        code: &str,
        factor_id: Option<&str>,
    ) -> Result<Verdict, CoreError> {
        let code = OtpCode::parse(code)?;
        let factor_id = factor_id.map(FactorId::parse).transpose()?;
        let tenant = self.tenant_for(actor, slug).await?;
        if let Some(id) = &factor_id {
            // A named factor that is not a cached TOTP factor may be an SMS or email factor.
            let cached = self.cached_user(&tenant, external_id, false).await?;
            if !cached.factors.iter().any(|f| f.id == id.as_str()) {
                let (user, factor) = self
                    .user_and_factor(&tenant, external_id, id.as_str())
                    .await?;
                if factor.kind != "totp" {
                    return self
                        .verify_contact(actor, meta, &tenant, &user, &factor, &code)
                        .await;
                }
            }
        }
        let audit = self.audit(actor, meta, "totp.verify", Some(tenant.id));
        self.attempt_with(&tenant, external_id, meta, audit, |user, now| {
            let active: Vec<&CachedFactor> = user
                .factors
                .iter()
                .filter(|f| f.status == FactorStatus::Active)
                .filter(|f| factor_id.as_ref().is_none_or(|id| id.as_str() == f.id))
                .collect();
            if active.is_empty() {
                return Err(match factor_id {
                    Some(_) => CoreError::NotFound("factor"),
                    None => CoreError::conflict(
                        "no_active_factor",
                        "the user has no confirmed TOTP factor; enrol and confirm one first",
                    ),
                });
            }
            let matched = window_match(&active, &code, now);
            // Neighbours only matter when the window did not match; skipping them then tells
            // nothing the answer itself does not.
            let mut neighbour = None;
            if matched.is_none() {
                for f in &active {
                    if let Some((step, dir)) =
                        totp::verify_neighbour(&f.secret, code.as_str(), &f.params, f.drift, now)
                    {
                        neighbour = Some(StepMatch {
                            hint_dir: Some(dir),
                            ..f.step_match(step, f.drift + dir, false)
                        });
                    }
                }
            }
            let ids = active.iter().map(|f| f.as_ref()).collect();
            Ok(Picked::plain(ids, matched.or(neighbour)))
        })
        .await
    }

    /// Confirms a pending factor with its first code; a wrong code leaves it pending (and
    /// counts against its attempt limit). The drift that explains the code is learned.
    pub async fn confirm_factor(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        code: &str,
    ) -> Result<(Verdict, Option<RecoveryCodes>), CoreError> {
        let code = OtpCode::parse(code)?;
        let factor_id = FactorId::parse(factor_id)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let (user, factor) = self
            .user_and_factor(&tenant, external_id, factor_id.as_str())
            .await?;
        self.confirm_with(actor, meta, &tenant, &user, &factor, &code, Vec::new())
            .await
    }

    /// Confirms `factor` with `code`; `extra` effects ride along only when a pending factor
    /// is activated (e.g. completing the login it was enrolled in). Activating the user's
    /// first factor also gives them recovery codes, stored in the same transaction and
    /// returned only if the code was accepted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn confirm_with(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: &User,
        factor: &Factor,
        code: &OtpCode,
        mut extra: Vec<Effect>,
    ) -> Result<(Verdict, Option<RecoveryCodes>), CoreError> {
        let mut codes = None;
        if factor.status == FactorStatus::Pending {
            undo::ensure_not_frozen(user)?;
            extra.insert(0, Effect::RequireNotFrozen { user_id: user.id });
            let data = serde_json::json!({
                "user": user.external_id, "factor_id": factor.id, "kind": factor.kind,
            });
            extra.extend(self.event_effects(tenant, "factor.enrolled", data).await?);
            let first = !self
                .store
                .factors_of(user.id)
                .await?
                .iter()
                .any(|f| f.status == FactorStatus::Active && f.id != factor.id);
            if first {
                let (new, effect) = self.new_recovery_codes(user, self.now());
                extra.push(effect);
                codes = Some(new);
            }
        }
        let verdict = self
            .confirm_activation(actor, meta, tenant, user, factor, code, extra)
            .await?;
        Ok((verdict, codes.filter(|_| verdict.is_accepted())))
    }

    #[allow(clippy::too_many_arguments)]
    async fn confirm_activation(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: &User,
        factor: &Factor,
        code: &OtpCode,
        extra: Vec<Effect>,
    ) -> Result<Verdict, CoreError> {
        if factor.kind != "totp" {
            return self
                .confirm_contact(actor, meta, tenant, user, factor, code, extra)
                .await;
        }
        let external_id = user.external_id.as_str();
        let factor_id = FactorId::parse(&factor.id)?;
        let added = self.notice(
            &On {
                actor,
                meta,
                tenant,
                user,
            },
            "a two-step verification method was added",
            Some(factor),
            Undo::RemoveFactor {
                factor_id: factor.id.clone(),
            },
        )?;
        let audit = self.audit(actor, meta, "factor.confirm", Some(tenant.id));
        let ok = self
            .attempt_with(tenant, external_id, meta, audit, |user, now| {
                let f = user.factor(&factor_id)?;
                // Confirming an active factor again is judged like a verification, so a
                // replayed confirmation code answers exactly like a wrong one (INV-11).
                // What rides on an activation (completing a login) must not be answered as
                // done when the factor turned out to be active already.
                if f.status == FactorStatus::Active && !extra.is_empty() {
                    return Err(CoreError::conflict(
                        "already_enrolled",
                        "the factor was confirmed meanwhile: sign in with it",
                    ));
                }
                let (matched, on_accept) = if f.status == FactorStatus::Active {
                    let m = totp::verify_use(&f.secret, code.as_str(), &f.params, f.drift, now)
                        .map(|step| f.step_match(step, f.drift, false));
                    (m, Vec::new())
                } else {
                    let m = totp::verify_confirmation(&f.secret, code.as_str(), &f.params, now)
                        .map(|(step, drift)| f.step_match(step, drift, true));
                    let mut effects: Vec<Effect> = added.clone();
                    effects.extend(extra.iter().cloned());
                    (m, effects)
                };
                Ok(Picked {
                    factors: vec![f.as_ref()],
                    matched,
                    on_accept,
                })
            })
            .await?;
        self.forget_user(tenant.id, external_id);
        Ok(ok)
    }

    /// Re-learns a large clock drift (up to ±10 steps) from two consecutive codes.
    #[allow(clippy::too_many_arguments)]
    pub async fn resync_factor(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        first: &str,
        second: &str,
    ) -> Result<Verdict, CoreError> {
        let first = OtpCode::parse(first)?;
        let second = OtpCode::parse(second)?;
        let factor_id = FactorId::parse(factor_id)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let audit = self.audit(actor, meta, "totp.resync", Some(tenant.id));
        let ok = self
            .attempt_with(&tenant, external_id, meta, audit, |user, now| {
                let f = user
                    .factor(&factor_id)
                    .ok()
                    .filter(|f| f.status == FactorStatus::Active)
                    .ok_or(CoreError::NotFound("factor"))?;
                // A resync changes the factor's settings: not while they are frozen.
                undo::ensure_not_frozen(&user.user)?;
                let matched =
                    totp::resync(&f.secret, first.as_str(), second.as_str(), &f.params, now)
                        .map(|(step, drift)| f.step_match(step, drift, false));
                Ok(Picked {
                    factors: vec![f.as_ref()],
                    matched,
                    on_accept: vec![Effect::RequireNotFrozen {
                        user_id: user.user.id,
                    }],
                })
            })
            .await?;
        self.forget_user(tenant.id, external_id);
        Ok(ok)
    }

    // ---------------------------------------------------------------- audit

    pub async fn list_audit(
        &self,
        actor: &Actor,
        slug: &str,
        user: Option<&str>,
        action: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<AuditEvent>, Option<String>), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user_id = match user {
            Some(ext) => Some(self.user_in(&tenant, ext).await?.id),
            None => None,
        };
        if let Some(a) = action {
            if a.is_empty() || a.len() > 64 {
                return Err(CoreError::Invalid {
                    field: "action",
                    message: "must be 1 to 64 characters".into(),
                });
            }
        }
        let limit = limit.unwrap_or(50).clamp(1, 500);
        let events = self
            .store
            .list_audit(AuditQuery {
                tenant_id: Some(tenant.id),
                user_id,
                action: action.map(str::to_string),
                before_id: cursor.map(cursor_decode).transpose()?,
                limit,
            })
            .await?;
        let next = if events.len() as u32 == limit {
            events.last().map(|e| cursor_encode(e.id))
        } else {
            None
        };
        Ok((events, next))
    }

    /// Deletes audit rows past the retention period; run by a background job.
    pub async fn prune_audit(&self) -> Result<u64, CoreError> {
        let cutoff = self.now() - i64::from(self.config.audit_retention_days) * 86_400_000;
        Ok(self.store.prune_audit(cutoff).await?)
    }
}
