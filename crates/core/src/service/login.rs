//! The login decision and what follows it: pending logins completed by a second factor (or a
//! skip), sessions the integrator can introspect and revoke, and remembered devices. Also the
//! tenant's policy, changed only through a proposal confirmed by the code emailed to the
//! proposing admin.
//!
//! Every decision reads the policy, the user and their factors fresh from the store (INV-10).
//! A session is minted only in the transaction that consumes the code or completes the login
//! (INV-02); a pending token is accepted only by the endpoints of its own login (INV-04);
//! sessions and devices carry the user's credential generation and die with it (INV-06).

use super::contact::ContactKind;
use super::risk::Whence;
use super::*;
use crate::login::*;
use crate::messaging::*;
use crate::policy::{self, Decision, LoginFacts, Method, Policy, PrimaryMethod};
use crate::security::Undo;

#[derive(Debug, Clone)]
pub struct LoginConfig {
    /// How long a pending login waits for its second step.
    pub pending_ttl_ms: i64,
    /// Absolute session lifetime.
    pub session_ttl_ms: i64,
    /// A session unused this long is dead.
    pub session_idle_ms: i64,
    /// How long a proposal's emailed code may take to arrive and be typed.
    pub proposal_ttl_ms: i64,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            pending_ttl_ms: 10 * 60 * 1000,
            session_ttl_ms: 12 * 3600 * 1000,
            session_idle_ms: 30 * 60 * 1000,
            proposal_ttl_ms: 10 * 60 * 1000,
        }
    }
}

/// What the integrator passes to the login decision.
/// No `Debug`: it may carry an app password.
#[derive(Clone, Default)]
pub struct LoginRequest {
    pub user: String,
    /// `password` or `sso`.
    pub primary: String,
    pub client_id: Option<String>,
    /// The end user's IP as the integrator saw it (its key is trusted, SECURITY.md INV-08).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device_token: Option<String>,
    /// The integrator's own stable id of the browser or device (e.g. a long-lived cookie),
    /// for the risk rules: a device seen in enough recent successful logins is familiar. Only
    /// a keyed hash of it is stored.
    pub device_id: Option<String>,
    /// The end user's country (ISO 3166-1 alpha-2) as your proxy or CDN reported it; used
    /// when the geo-IP database does not know the IP.
    pub country: Option<String>,
    /// The app password a client that cannot show a second step was given, when the
    /// integrator checks one instead of the user's password.
    pub app_password: Option<String>,
}

/// A token handed out once; only its hash is kept. No `Debug`: it holds the token.
#[derive(Clone)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    pub expires_at: i64,
}

/// The answer to a login decision. No `Debug`: it holds tokens.
#[derive(Clone)]
pub struct LoginOutcome {
    pub decision: Decision,
    /// For `challenge`, `enroll_required`, `enroll_offered`: accepted only by this login's
    /// second-step endpoints.
    pub pending: Option<IssuedToken>,
    /// For `allow`.
    pub session: Option<IssuedToken>,
    /// Where the tenant's risk rules are on: what they found, and why.
    pub risk: Option<super::risk::RiskView>,
}

/// The result of a second step. No `Debug`: it holds tokens.
#[derive(Clone)]
pub struct StepOutcome {
    pub verdict: Verdict,
    pub session: Option<IssuedToken>,
    pub device: Option<IssuedToken>,
    /// Shown once, when the login enrolled the user's first factor.
    pub recovery_codes: Option<RecoveryCodes>,
}

/// What an integrator learns about a session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SessionView {
    pub id: String,
    pub active: bool,
    pub user: String,
    pub amr: Vec<String>,
    pub second_factor: bool,
    pub client_id: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeviceView {
    pub id: String,
    pub active: bool,
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProposalView {
    pub id: String,
    pub state: ProposalState,
    pub expires_at: i64,
    pub warnings: Vec<String>,
}

impl ProposalView {
    fn of(p: &Proposal, warnings: Vec<String>) -> Self {
        Self {
            id: p.id.clone(),
            state: p.state,
            expires_at: p.expires_at,
            warnings,
        }
    }
}

/// What a proposal does once confirmed; stored as its JSON payload, which the code is bound to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProposalAction {
    Policy {
        policy: Policy,
    },
    MakeAdmin {
        user_id: i64,
        external_id: String,
    },
    /// Switch 2FA off for one user (lost phone, no recovery code): they enrol again at their
    /// next sign-in. An admin never enrols for someone else; this is the most they can do.
    ResetUser {
        user_id: i64,
        external_id: String,
    },
}

impl ProposalAction {
    fn kind(&self) -> &'static str {
        match self {
            ProposalAction::Policy { .. } => "policy",
            ProposalAction::MakeAdmin { .. } => "make_admin",
            ProposalAction::ResetUser { .. } => "reset_user",
        }
    }

    /// What the change does, in words an admin checks before typing the code.
    fn summary(&self) -> String {
        match self {
            ProposalAction::Policy { policy } => {
                let mode = match &policy.enforcement {
                    crate::policy::Enforcement::Off => "two-step verification off".to_string(),
                    crate::policy::Enforcement::Optional => "optional for everyone".to_string(),
                    crate::policy::Enforcement::RequiredForAll => "required for everyone".into(),
                    crate::policy::Enforcement::RequiredForProfiles { profiles } => {
                        format!("required for {}", profiles.join(", "))
                    }
                };
                let methods: Vec<&str> = policy.methods.iter().map(|m| m.as_str()).collect();
                let from = policy
                    .mandatory_from
                    .map(|t| format!(" from {}", notices::human_utc(t)))
                    .unwrap_or_default();
                let keys_only = if policy.phishing_resistant_profiles.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; only security keys for {}",
                        policy.phishing_resistant_profiles.join(", ")
                    )
                };
                format!("{mode}{from}, methods: {}{keys_only}", methods.join(", "))
            }
            ProposalAction::MakeAdmin { external_id, .. } => {
                format!("make {external_id} an administrator")
            }
            ProposalAction::ResetUser { external_id, .. } => format!(
                "reset two-step verification of {external_id} (every method and recovery code \
                 removed, signed out everywhere)"
            ),
        }
    }
}

const PENDING_PREFIX: &str = "tfl";
/// Wrong admin confirmation codes allowed per admin per day.
pub const ADMIN_CONFIRM_FAILURES: u32 = 20;
const SESSION_PREFIX: &str = "tfs";
const DEVICE_PREFIX: &str = "tfd";

pub(super) fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        base32::encode(&twofold_crypto::random_bytes(16)).to_ascii_lowercase()
    )
}

fn method_of(kind: &str) -> Option<Method> {
    Method::parse(kind)
}

/// A challenged login found by its token, with its tenant and user: what the second step
/// works on.
#[derive(Clone, Copy)]
pub(super) struct SecondStep<'a> {
    pub tenant: &'a Tenant,
    pub login: &'a PendingLogin,
    pub user: &'a User,
}

fn invalid_token() -> CoreError {
    CoreError::conflict(
        "invalid_login_token",
        "the login token is unknown, used or expired: start the login again",
    )
}

impl Twofold {
    /// A fresh random token and the hash under which it is stored.
    pub(super) fn mint_token(&self, prefix: &'static str) -> (String, Vec<u8>) {
        let token = format!("{prefix}_{}", twofold_crypto::random_token(32));
        let hash = self.token_hash(prefix, &token);
        (token, hash)
    }

    pub(super) fn token_hash(&self, prefix: &'static str, token: &str) -> Vec<u8> {
        self.hasher.hash(prefix, token.as_bytes()).0.to_vec()
    }

    // ------------------------------------------------------------ policy

    /// The tenant's policy as stored now (never cached: INV-10), or the default (off).
    pub async fn policy_of(&self, tenant: &Tenant) -> Result<(Policy, i64), CoreError> {
        match self.store.policy(tenant.id).await? {
            None => Ok((Policy::default(), 0)),
            // A stored policy that does not parse must not read as "off" (INV-09).
            Some(p) => serde_json::from_str(&p.json)
                .map(|policy| (policy, p.version))
                .map_err(|e| CoreError::Internal(format!("tenant {} policy: {e}", tenant.id))),
        }
    }

    pub async fn get_policy(&self, actor: &Actor, slug: &str) -> Result<(Policy, i64), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        self.policy_of(&tenant).await
    }

    fn proposal_hash(&self, tenant_id: i64, base_version: i64, json: &str) -> Vec<u8> {
        self.action_hash(&[
            "proposal",
            &tenant_id.to_string(),
            &base_version.to_string(),
            json,
        ])
    }

    /// Notices of a settings change to every admin of the tenant.
    pub(super) fn admin_notices(
        &self,
        tenant: &Tenant,
        admins: &[User],
        actor: &Actor,
        meta: &RequestMeta,
        change: &str,
    ) -> Result<Vec<Effect>, CoreError> {
        let mut effects = Vec::new();
        for admin in admins {
            let on = On {
                actor,
                meta,
                tenant,
                user: admin,
            };
            effects.extend(self.notice(&on, change, None, Undo::Nothing)?);
        }
        Ok(effects)
    }

    /// The proposing admin: an admin of this tenant with an email address for the code.
    pub(super) async fn proposing_admin(
        &self,
        tenant: &Tenant,
        admin: &str,
    ) -> Result<(User, String), CoreError> {
        let bad = || CoreError::Invalid {
            field: "admin",
            message: "must name an admin of this tenant with an email address".into(),
        };
        let admin = self.user_in(tenant, admin).await.map_err(|_| bad())?;
        match (&admin.email, admin.is_admin) {
            (Some(e), true) => {
                let email = e.clone();
                Ok((admin, email))
            }
            _ => Err(bad()),
        }
    }

    /// Records a proposal and emails its code to the proposing admin; only that code (within
    /// [`LoginConfig::proposal_ttl_ms`]) carries it out. The API key alone can propose, never
    /// complete.
    async fn propose(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        admin: &str,
        action: ProposalAction,
        base_version: i64,
    ) -> Result<(Proposal, SendReceipt), CoreError> {
        let (admin, email) = self.proposing_admin(tenant, admin).await?;
        let json = serde_json::to_string(&action)
            .map_err(|e| CoreError::Internal(format!("proposal json: {e}")))?;
        let now = self.now();
        let proposal = Proposal {
            id: new_id("prp"),
            tenant_id: tenant.id,
            admin_user_id: admin.id,
            payload_hash: self.proposal_hash(tenant.id, base_version, &json),
            payload: json,
            base_version,
            state: ProposalState::Pending,
            created_at: now,
            expires_at: now + self.config.login.proposal_ttl_ms,
        };
        let mut audit = self.audit(actor, meta, "proposal.create", Some(tenant.id));
        audit.user_id = Some(admin.id);
        audit.reason = Some(format!("{}:{}", action.kind(), proposal.id));
        // Every admin hears of a proposal when it is made, not only once it is confirmed: a
        // leaked key proposing something no admin asked for is noticed in time.
        let summary = action.summary();
        let admins = self.store.admins_of(tenant.id).await?;
        let mut effects = vec![Effect::InsertProposal(proposal.clone())];
        effects.extend(self.admin_notices(
            tenant,
            &admins,
            actor,
            meta,
            &format!(
                "a change was proposed on behalf of {}: {summary}; it takes effect only with the \
                 code emailed to them",
                admin.external_id
            ),
        )?);
        let receipt = self
            .send_code_to(
                tenant,
                &admin,
                &proposal.id,
                Channel::Email,
                &email,
                CodePurpose::AdminConfirm,
                Some(proposal.payload_hash.clone()),
                effects,
                audit,
                Some(&summary),
            )
            .await?;
        Ok((proposal, receipt))
    }

    /// Proposes new 2FA settings on behalf of an admin (see [`Self::propose`]).
    pub async fn propose_policy(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        admin: &str,
        proposed: Policy,
    ) -> Result<(ProposalView, SendReceipt), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (proposed, warnings) = proposed.validate()?;
        if proposed.methods.contains(&Method::Webauthn) && !self.security_keys_available() {
            return Err(CoreError::Invalid {
                field: "methods",
                message: "security keys are not set up on this server: give it a public_url \
                          on a domain name (or [webauthn] rp_id and origins) first"
                    .into(),
            });
        }
        let (_, base_version) = self.policy_of(&tenant).await?;
        let (p, receipt) = self
            .propose(
                actor,
                meta,
                &tenant,
                admin,
                ProposalAction::Policy { policy: proposed },
                base_version,
            )
            .await?;
        Ok((ProposalView::of(&p, warnings), receipt))
    }

    /// Proposes making a user an admin, to be confirmed by the proposing (existing) admin.
    /// Operators appoint admins directly (`user create --admin`).
    pub async fn propose_admin(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        admin: &str,
        user: &str,
    ) -> Result<(ProposalView, SendReceipt), CoreError> {
        self.propose_about(actor, meta, slug, admin, user, |target| {
            if target.is_admin {
                return Err(CoreError::conflict(
                    "already_admin",
                    "the user is an admin already",
                ));
            }
            Ok(ProposalAction::MakeAdmin {
                user_id: target.id,
                external_id: target.external_id.clone(),
            })
        })
        .await
    }

    /// Proposes resetting a user's two-step verification, to be confirmed by the code emailed
    /// to the proposing admin (operators use `user 2fa-off` directly).
    pub async fn propose_reset(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        admin: &str,
        user: &str,
    ) -> Result<(ProposalView, SendReceipt), CoreError> {
        self.propose_about(actor, meta, slug, admin, user, |target| {
            Ok(ProposalAction::ResetUser {
                user_id: target.id,
                external_id: target.external_id.clone(),
            })
        })
        .await
    }

    /// A proposal about one user of the tenant, made by `admin`.
    async fn propose_about(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        admin: &str,
        user: &str,
        action: impl FnOnce(&User) -> Result<ProposalAction, CoreError>,
    ) -> Result<(ProposalView, SendReceipt), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let target = self.user_in(&tenant, user).await?;
        let action = action(&target)?;
        let (p, receipt) = self.propose(actor, meta, &tenant, admin, action, 0).await?;
        Ok((ProposalView::of(&p, Vec::new()), receipt))
    }

    /// A pending proposal of the tenant, with what it does in words (for the page that asks
    /// for its code). Another tenant's, confirmed, superseded or expired ones are not found.
    pub async fn pending_proposal(
        &self,
        actor: &Actor,
        slug: &str,
        proposal_id: &str,
    ) -> Result<(ProposalView, String), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let now = self.now();
        let p = self
            .store
            .proposal(proposal_id)
            .await?
            .filter(|p| {
                p.tenant_id == tenant.id && p.state == ProposalState::Pending && now < p.expires_at
            })
            .ok_or(CoreError::NotFound("proposal"))?;
        let action: ProposalAction = serde_json::from_str(&p.payload)
            .map_err(|e| CoreError::Internal(format!("proposal {}: {e}", p.id)))?;
        Ok((ProposalView::of(&p, Vec::new()), action.summary()))
    }

    /// What a confirmed proposal changes, in the same transaction as its code is consumed.
    async fn proposal_effects(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        proposal: &Proposal,
        now: i64,
    ) -> Result<(Vec<Effect>, String), CoreError> {
        let action: ProposalAction = serde_json::from_str(&proposal.payload)
            .map_err(|e| CoreError::Internal(format!("proposal {}: {e}", proposal.id)))?;
        Ok(match action {
            ProposalAction::Policy { policy } => {
                let (old, _) = self.policy_of(tenant).await?;
                let json = serde_json::to_string(&policy)
                    .map_err(|e| CoreError::Internal(format!("policy json: {e}")))?;
                let mut effects = vec![Effect::SetPolicy {
                    tenant_id: tenant.id,
                    json,
                    expected_version: proposal.base_version,
                    at: now,
                }];
                let data = serde_json::json!({ "version": proposal.base_version + 1 });
                effects.extend(self.event_effects(tenant, "policy.changed", data).await?);
                effects.extend(super::jobs::rollout_jobs(
                    tenant.id,
                    &tenant.slug,
                    &old,
                    &policy,
                    now,
                )?);
                (
                    effects,
                    "the organisation's two-step verification settings were changed".into(),
                )
            }
            ProposalAction::MakeAdmin {
                user_id,
                external_id,
            } => (
                vec![Effect::SetAdmin {
                    user_id,
                    is_admin: true,
                }],
                format!("{external_id} was made an administrator of the organisation"),
            ),
            ProposalAction::ResetUser {
                user_id,
                external_id,
            } => {
                let user = self
                    .store
                    .user_by_id(user_id)
                    .await?
                    .filter(|u| u.tenant_id == tenant.id)
                    .ok_or_else(|| {
                        CoreError::conflict("proposal_outdated", "the user no longer exists")
                    })?;
                let on = On {
                    actor,
                    meta,
                    tenant,
                    user: &user,
                };
                (
                    self.user_2fa_off_effects(&on).await?,
                    format!("two-step verification of {external_id} was reset"),
                )
            }
        })
    }

    /// The per-admin failure budget of admin confirmations ([`ADMIN_CONFIRM_FAILURES`] a
    /// day), charged atomically with each attempt (see [`Self::check_admin_attempts`]).
    pub(crate) fn admin_budget(tenant_id: i64, admin_id: i64) -> SendLimit {
        SendLimit {
            scope: format!("fail-admin:{tenant_id}:{admin_id}"),
            max: ADMIN_CONFIRM_FAILURES,
            window_ms: policy::DAY_MS,
        }
    }

    /// Codes confirming admin actions have no factor whose counters could throttle them, and
    /// each new proposal brings a fresh code: so wrong confirmations are counted per admin
    /// over the last day, from the audit log, and refused beyond [`ADMIN_CONFIRM_FAILURES`]
    /// (SECURITY.md INV-03 for admin confirmations).
    pub(super) async fn check_admin_attempts(
        &self,
        tenant: &Tenant,
        admin: &User,
        action: &str,
        now: i64,
    ) -> Result<(), CoreError> {
        let recent = self
            .store
            .list_audit(AuditQuery {
                tenant_id: Some(tenant.id),
                user_id: Some(admin.id),
                action: Some(action.into()),
                before_id: None,
                limit: ADMIN_CONFIRM_FAILURES * 4,
            })
            .await?;
        let failures = recent
            .iter()
            .filter(|e| e.record.at > now - policy::DAY_MS && e.record.outcome == "denied")
            .count();
        if failures >= ADMIN_CONFIRM_FAILURES as usize {
            return Err(CoreError::TooMany {
                code: "too_many_attempts",
                message: "too many wrong confirmation codes for this admin today; try tomorrow \
                          or ask an operator"
                    .into(),
                retry_after_ms: policy::DAY_MS,
            });
        }
        Ok(())
    }

    /// Confirms a proposal with the code emailed to its admin; every admin is told.
    pub async fn confirm_proposal(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        proposal_id: &str,
        code: &str,
    ) -> Result<Verdict, CoreError> {
        let code = OtpCode::parse(code)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let not_found = CoreError::NotFound("proposal");
        if !proposal_id.starts_with("prp_") || proposal_id.len() != 30 {
            return Err(not_found);
        }
        let proposal = self
            .store
            .proposal(proposal_id)
            .await?
            .filter(|p| p.tenant_id == tenant.id)
            .ok_or(not_found)?;
        // The proposer must still be an admin when the change is made.
        let admin = self
            .store
            .user_by_id(proposal.admin_user_id)
            .await?
            .filter(|a| a.is_admin)
            .ok_or_else(|| {
                CoreError::conflict(
                    "proposal_outdated",
                    "the proposing user is no longer an admin; propose again",
                )
            })?;
        let now = self.now();
        self.check_admin_attempts(&tenant, &admin, "proposal.confirm", now)
            .await?;
        let (changes, change_text) = self
            .proposal_effects(actor, meta, &tenant, &proposal, now)
            .await?;
        let mut change = self.audit(actor, meta, "proposal.apply", Some(tenant.id));
        change.user_id = Some(admin.id);
        change.reason = Some(proposal.id.clone());
        let mut effects = vec![Effect::SetProposalState {
            id: proposal.id.clone(),
            from: ProposalState::Pending,
            to: ProposalState::Confirmed,
            at: now,
        }];
        effects.extend(changes);
        effects.push(Effect::Audit(change));
        let admins = self.store.admins_of(tenant.id).await?;
        effects.extend(self.admin_notices(
            &tenant,
            &admins,
            actor,
            meta,
            &format!("{change_text} (confirmed by {})", admin.external_id),
        )?);
        let mut audit = self.audit(actor, meta, "proposal.confirm", Some(tenant.id));
        audit.at = now;
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &admin,
        };
        // The code's subject is the proposal itself: it confirms this proposal and no other.
        let subject = Factor::pending(proposal.id.clone(), tenant.id, admin.id, "proposal", now);
        let verdict = self
            .consume(
                &on,
                &subject,
                CodePurpose::AdminConfirm,
                Some(proposal.payload_hash.clone()),
                &code,
                effects,
                audit,
            )
            .await
            .map_err(|e| match e {
                CoreError::Conflict {
                    code: "state_changed",
                    ..
                } => CoreError::conflict(
                    "proposal_outdated",
                    "the settings changed or the proposal expired meanwhile; propose again",
                ),
                e => e,
            })?;
        if verdict.is_accepted() {
            self.jobs_queued();
            if let Ok(ProposalAction::ResetUser { external_id, .. }) =
                serde_json::from_str(&proposal.payload)
            {
                self.forget_user(tenant.id, &external_id);
            }
        }
        Ok(verdict)
    }

    // ------------------------------------------------------------ the decision

    /// The id of the user's live remembered device behind `token`, if it is one.
    async fn trusted_device(
        &self,
        user: &User,
        token: &str,
        now: i64,
    ) -> Result<Option<String>, CoreError> {
        if crate::tokens::parse(crate::tokens::TokenKind::Device, token).is_none() {
            return Ok(None);
        }
        let device = self
            .store
            .device(&self.token_hash(DEVICE_PREFIX, token))
            .await?;
        Ok(device
            .filter(|d| {
                d.user_id == user.id
                    && d.tenant_id == user.tenant_id
                    && d.generation == user.generation
                    && d.revoked_at.is_none()
                    && now < d.expires_at
            })
            .map(|d| d.id))
    }

    pub(super) fn new_session(
        &self,
        user: &User,
        amr: &[&str],
        second_factor: bool,
        client_id: Option<String>,
        ip: Option<String>,
        now: i64,
    ) -> (Session, IssuedToken) {
        let (token, token_hash) = self.mint_token(SESSION_PREFIX);
        let session = Session {
            id: new_id("ses"),
            token_hash,
            tenant_id: user.tenant_id,
            user_id: user.id,
            generation: user.generation,
            amr: amr.join(","),
            second_factor,
            client_id,
            ip,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.config.login.session_ttl_ms,
            revoked_at: None,
            revoke_reason: None,
        };
        let issued = IssuedToken {
            id: session.id.clone(),
            token,
            expires_at: session.expires_at,
        };
        (session, issued)
    }

    /// The login decision, called by the integrator after the first factor.
    pub async fn decide_login(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        req: LoginRequest,
    ) -> Result<LoginOutcome, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let primary = PrimaryMethod::parse(&req.primary).ok_or(CoreError::Invalid {
            field: "primary",
            message: "must be password or sso".into(),
        })?;
        // An address that does not parse is treated like a missing one: high risk (INV-08),
        // never familiar. Integrators often pass on whatever their proxy wrote, and refusing
        // the login would lock users out for their integrator's mistake; the audit row keeps
        // the reason.
        if req.ip.as_deref().is_some_and(|ip| ip.len() > 100) {
            return Err(CoreError::Invalid {
                field: "ip",
                message: "must be an IPv4 or IPv6 address".into(),
            });
        }
        let ip_addr = req
            .ip
            .as_deref()
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
        let ip_unparsable = req.ip.is_some() && ip_addr.is_none();
        let ip = ip_addr.map(|a| a.to_string());
        if req.device_id.as_deref().is_some_and(|d| {
            d.is_empty() || d.len() > 128 || !d.bytes().all(|b| b.is_ascii_graphic())
        }) {
            return Err(CoreError::Invalid {
                field: "device_id",
                message: "must be 1 to 128 printable ASCII characters".into(),
            });
        }
        let country = req
            .country
            .as_deref()
            .map(|c| {
                (c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                    .then(|| c.to_ascii_uppercase())
                    .ok_or(CoreError::Invalid {
                        field: "country",
                        message: "must be a two-letter ISO 3166-1 country code".into(),
                    })
            })
            .transpose()?;
        let user_agent = req
            .user_agent
            .map(|ua| ua.chars().take(256).collect::<String>());
        known_shape(&req.user)?;
        let (policy, _) = self.policy_of(&tenant).await?;
        let client = match req.client_id.as_deref() {
            None => None,
            Some(id) => Some(policy.client(id).ok_or(CoreError::Invalid {
                field: "client_id",
                message: "is not a client app registered in the tenant's settings".into(),
            })?),
        };
        let app_password = match (req.app_password.as_deref(), client) {
            (None, _) => None,
            (Some(typed), Some(c)) if c.app_passwords => Some((c.id.clone(), typed)),
            (Some(_), _) => {
                return Err(CoreError::Invalid {
                    field: "app_password",
                    message: "needs the client_id of a client app for which the tenant allows \
                              app passwords"
                        .into(),
                })
            }
        };
        let (user, factors) = self
            .store
            .user_with_factors(tenant.id, &req.user)
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        let now = self.now();
        let trusted_id = match req.device_token.as_deref() {
            Some(t) => self.trusted_device(&user, t, now).await?,
            None => None,
        };
        let device = trusted_id.clone().or_else(|| {
            req.device_id
                .as_deref()
                .map(|d| self.device_key(tenant.id, d))
        });
        let whence = Whence {
            ip: ip_addr,
            country: country.as_deref(),
            device: device.as_deref(),
            device_issued: trusted_id.is_some(),
            user_agent: user_agent.as_deref(),
        };
        let risk = self.assess_login(&policy, &user, &whence, now).await?;
        // Impossible travel asks for a code even on a remembered device.
        let impossible = risk
            .as_ref()
            .is_some_and(|r| r.assessment.impossible_travel);
        let trusted = trusted_id.is_some() && !impossible;
        let facts = LoginFacts {
            profile: user.profile.as_deref(),
            factors: factors
                .iter()
                .filter(|f| f.status == FactorStatus::Active)
                .filter_map(|f| method_of(&f.kind).map(|m| (m, f.locked_at.is_some())))
                .collect(),
            primary,
            client_supports_2fa: client.map(|c| c.supports_2fa),
            trusted_device: trusted,
            familiar: risk.as_ref().is_some_and(|r| r.assessment.familiar),
            skipped_until: user.skip_until,
            now,
        };
        let mut decision = policy::decide(&policy, &facts);
        // Every factor locked: the way back is a recovery code (SECURITY.md "until recovery
        // or operator unlock"), so a user who has one is challenged for it.
        if decision
            == (Decision::Deny {
                reason: policy::DenyReason::Locked,
            })
            && self.store.recovery_codes_left(user.id).await? > 0
        {
            decision = Decision::Challenge {
                methods: Vec::new(),
            };
        }
        // An app password stands in for the second step of its own client only.
        let mut used_app_password = None;
        if let Some((client_id, typed)) = app_password {
            let keys_only = policy.keys_only(user.profile.as_deref(), now);
            decision = match self.app_password_of(&user, &client_id, typed).await? {
                Some(p) if !keys_only => {
                    used_app_password = Some(p.id);
                    Decision::Allow {
                        reason: policy::AllowReason::AppPassword,
                    }
                }
                _ => Decision::Deny {
                    reason: policy::DenyReason::AppPasswordInvalid,
                },
            };
        }
        let mut audit = self.audit(actor, meta, "login.decide", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.at = now;
        audit.ip = ip.clone().or(audit.ip);
        audit.outcome = decision.label().into();
        let risk_reasons: Option<Vec<&str>> = risk
            .as_ref()
            .map(|r| r.assessment.reasons.iter().map(|x| x.as_str()).collect());
        audit.reason = match (decision.reason(), &risk_reasons) {
            (base, None) => base,
            (base, Some(reasons)) => Some(format!(
                "{}risk: {}",
                base.map(|b| format!("{b}; ")).unwrap_or_default(),
                reasons.join(",")
            )),
        };
        if ip_unparsable {
            audit.reason = Some(format!(
                "{}ip_unparsable",
                audit.reason.map(|r| format!("{r}; ")).unwrap_or_default()
            ));
        }
        let data = serde_json::json!({
            "user": user.external_id,
            "decision": decision.label(),
            "reason": decision.reason(),
            "client_id": req.client_id,
            "risk": risk_reasons,
        });
        let events = self.event_messages(&tenant, "login.decided", data).await?;
        let mut outcome = LoginOutcome {
            decision: decision.clone(),
            pending: None,
            session: None,
            risk: risk.clone(),
        };
        if let (true, Some(view)) = (impossible, &risk) {
            let on = On {
                actor,
                meta,
                tenant: &tenant,
                user: &user,
            };
            let mut travel = self.audit(actor, meta, "risk.impossible_travel", Some(tenant.id));
            travel.user_id = Some(user.id);
            travel.ip = ip.clone().or(travel.ip);
            travel.reason = view.assessment.travel_kmh.map(|k| format!("{k} km/h"));
            self.store
                .apply(self.travel_notice(&on, view)?, travel)
                .await?;
            self.queued();
        }
        let primary_amr = match primary {
            PrimaryMethod::Password => "pwd",
            PrimaryMethod::Sso => "sso",
        };
        match decision {
            Decision::Allow { .. } => {
                let mut amr = vec![primary_amr];
                if trusted {
                    amr.push("device");
                }
                let mut effects = Vec::new();
                if let Some(id) = used_app_password {
                    amr = vec!["app"];
                    audit.reason = Some(format!("app_password:{id}"));
                    effects.push(Effect::TouchAppPassword { id, at: now });
                }
                let (session, issued) =
                    self.new_session(&user, &amr, false, req.client_id.clone(), ip, now);
                effects.push(Effect::InsertSession(session));
                self.store
                    .apply(effects, audit)
                    .await
                    .map_err(|e| match e {
                        // Revoked between the check and now.
                        StoreError::Conflict("state_changed") => {
                            CoreError::conflict("state_changed", "try again")
                        }
                        e => e.into(),
                    })?;
                outcome.session = Some(issued);
            }
            Decision::Deny { .. } => self.store.append_audit(audit).await?,
            _ => {
                let (token, token_hash) = self.mint_token(PENDING_PREFIX);
                let login = PendingLogin {
                    id: new_id("lgn"),
                    token_hash,
                    tenant_id: tenant.id,
                    user_id: user.id,
                    generation: user.generation,
                    decision: decision.label().into(),
                    primary: primary_amr.into(),
                    client_id: req.client_id.clone(),
                    ip,
                    user_agent,
                    created_at: now,
                    expires_at: now + self.config.login.pending_ttl_ms,
                    completed_at: None,
                    device,
                    country,
                };
                outcome.pending = Some(IssuedToken {
                    id: login.id.clone(),
                    token,
                    expires_at: login.expires_at,
                });
                self.store.start_login(login, audit).await?;
            }
        }
        if !events.is_empty() {
            self.store.enqueue(events, None).await?;
            self.queued();
        }
        Ok(outcome)
    }

    /// A remembered device for a second step that asked for one, when the tenant offers it
    /// and the user's settings are not frozen: its token (handed out only if the step
    /// commits) and the effect that stores it.
    pub(super) fn remembered_device(
        &self,
        policy: &Policy,
        step: SecondStep<'_>,
        asked: bool,
        device_label: Option<&str>,
        now: i64,
    ) -> Option<(IssuedToken, Effect)> {
        let SecondStep {
            tenant,
            login,
            user,
        } = step;
        let days = policy
            .remember_device_days
            .filter(|_| asked && user.frozen_at.is_none())?;
        let (token, token_hash) = self.mint_token(DEVICE_PREFIX);
        let d = TrustedDevice {
            id: new_id("dev"),
            token_hash,
            tenant_id: tenant.id,
            user_id: user.id,
            generation: user.generation,
            label: device_label
                .or(login.user_agent.as_deref())
                .unwrap_or("device")
                .chars()
                .take(64)
                .collect(),
            created_at: now,
            expires_at: now + i64::from(days) * policy::DAY_MS,
            last_used_at: None,
            revoked_at: None,
        };
        let issued = IssuedToken {
            id: d.id.clone(),
            token,
            expires_at: d.expires_at,
        };
        Some((issued, Effect::InsertDevice(d)))
    }

    /// What completing a pending login with a second factor writes, to ride in the
    /// transaction that consumes the proof: the login marked done, a fresh session (amr: the
    /// first factor, then `method`), and the login's history row (risk rules on only). Returns
    /// the effects and the session's token, handed out only if that transaction commits.
    pub(super) fn second_step_effects(
        &self,
        policy: &Policy,
        user: &User,
        login: &PendingLogin,
        method: &str,
        now: i64,
    ) -> (Vec<Effect>, IssuedToken) {
        let (session, issued) = self.new_session(
            user,
            &[login.primary.as_str(), method],
            true,
            login.client_id.clone(),
            login.ip.clone(),
            now,
        );
        let mut effects = vec![
            Effect::CompleteLogin {
                login_id: login.id.clone(),
                at: now,
            },
            Effect::InsertSession(session),
        ];
        let whence = Whence {
            ip: login.ip.as_deref().and_then(|i| i.parse().ok()),
            country: login.country.as_deref(),
            device: login.device.as_deref(),
            device_issued: false,
            user_agent: login.user_agent.as_deref(),
        };
        effects.extend(self.login_record(policy, user, &whence, now));
        (effects, issued)
    }

    /// The live pending login of this tenant behind a token, or the one generic refusal.
    pub(super) async fn pending_login_for(
        &self,
        tenant: &Tenant,
        token: &str,
    ) -> Result<(PendingLogin, User), CoreError> {
        if crate::tokens::parse(crate::tokens::TokenKind::PendingLogin, token).is_none() {
            return Err(invalid_token());
        }
        let now = self.now();
        let login = self
            .store
            .pending_login(&self.token_hash(PENDING_PREFIX, token))
            .await?
            .filter(|l| l.tenant_id == tenant.id && l.completed_at.is_none() && now < l.expires_at)
            .ok_or_else(invalid_token)?;
        let user = self
            .store
            .user_by_id(login.user_id)
            .await?
            .filter(|u| u.generation == login.generation)
            .ok_or_else(invalid_token)?;
        Ok((login, user))
    }

    /// The live pending login behind a token, if it waits for a code.
    pub(super) async fn challenged_login(
        &self,
        tenant: &Tenant,
        token: &str,
    ) -> Result<(PendingLogin, User), CoreError> {
        let (login, user) = self.pending_login_for(tenant, token).await?;
        if login.decision != "challenge" {
            return Err(CoreError::conflict(
                "not_a_challenge",
                "this login is not waiting for a code",
            ));
        }
        Ok((login, user))
    }

    /// Sends a sign-in code for this login to one of the user's SMS or email factors; the
    /// code is bound to this login (INV-05).
    pub async fn login_send_code(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        factor_id: &str,
    ) -> Result<SendReceipt, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (login, user) = self.challenged_login(&tenant, pending_token).await?;
        let factor = self.login_factor(&tenant, &user, factor_id).await?;
        let kind = ContactKind::of(&factor).ok_or_else(|| {
            CoreError::conflict(
                "not_a_code_factor",
                "this factor is an authenticator app: its codes come from the app",
            )
        })?;
        let destination = factor.destination.clone().unwrap_or_default();
        let mut audit = self.audit(actor, meta, "code.send", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        audit.reason = Some("login".into());
        self.send_code_to(
            &tenant,
            &user,
            &factor.id,
            kind.channel(),
            &destination,
            CodePurpose::Verify,
            Some(self.action_hash(&["login", &login.id])),
            Vec::new(),
            audit,
            None,
        )
        .await
    }

    /// An active factor of the user whose method the tenant's current policy enables: a
    /// method switched off must not complete a login.
    async fn login_factor(
        &self,
        tenant: &Tenant,
        user: &User,
        factor_id: &str,
    ) -> Result<Factor, CoreError> {
        let (policy, _) = self.policy_of(tenant).await?;
        Some(self.factor_of(user, factor_id).await?)
            .filter(|f| f.status == FactorStatus::Active)
            .filter(|f| {
                let allowed = policy.allowed_methods(user.profile.as_deref(), self.now());
                method_of(&f.kind).is_some_and(|m| allowed.contains(&m))
            })
            .ok_or(CoreError::NotFound("factor"))
    }

    /// Completes a challenge with a code: TOTP from any active authenticator (or the named
    /// factor), or the SMS/email code sent for this login. The session (and, if asked and
    /// allowed, a remembered device) is minted in the same transaction as the code is
    /// consumed, and only then.
    #[allow(clippy::too_many_arguments)]
    pub async fn login_verify(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        code: &str,
        factor_id: Option<&str>,
        remember_device: bool,
        device_label: Option<&str>,
    ) -> Result<StepOutcome, CoreError> {
        let code = OtpCode::parse(code)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let (login, user) = self.challenged_login(&tenant, pending_token).await?;
        let step = SecondStep {
            tenant: &tenant,
            login: &login,
            user: &user,
        };
        self.verify_step(
            actor,
            meta,
            step,
            &code,
            factor_id,
            remember_device,
            device_label,
            |_, _| Vec::new(),
        )
        .await
    }

    /// [`Self::login_verify`] for a challenged login already looked up; `extra(session_id,
    /// amr)` adds effects to the transaction that consumes the code (the hosted login's
    /// authorization code), so they happen exactly when the session is minted.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn verify_step(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        step: SecondStep<'_>,
        code: &OtpCode,
        factor_id: Option<&str>,
        remember_device: bool,
        device_label: Option<&str>,
        extra: impl FnOnce(&str, &str) -> Vec<Effect>,
    ) -> Result<StepOutcome, CoreError> {
        let SecondStep {
            tenant,
            login,
            user,
        } = step;
        // Failures count against the end user's IP as the integrator passed it (INV-08).
        let meta = &RequestMeta {
            client_ip: login.ip.clone(),
            ..meta.clone()
        };
        let named = match factor_id {
            Some(id) => Some(self.login_factor(tenant, user, id).await?),
            None => None,
        };
        let (policy, _) = self.policy_of(tenant).await?;
        let now = self.now();
        let method = named
            .as_ref()
            .map(|f| f.kind.clone())
            .unwrap_or("totp".into());
        let amr_method = if method == "totp" {
            "otp"
        } else {
            method.as_str()
        };
        let (mut effects, issued) = self.second_step_effects(&policy, user, login, amr_method, now);
        effects.extend(extra(
            &issued.id,
            &format!("{},{amr_method}", login.primary),
        ));
        let device = self.remembered_device(&policy, step, remember_device, device_label, now);
        let device = device.map(|(issued, effect)| {
            effects.push(effect);
            issued
        });
        let mut audit = self.audit(actor, meta, "login.verify", Some(tenant.id));
        audit.at = now;
        audit.ip = login.ip.clone().or(audit.ip);
        let on = On {
            actor,
            meta,
            tenant,
            user,
        };
        let verdict = match &named {
            Some(f) if f.kind != "totp" => {
                self.consume(
                    &on,
                    f,
                    CodePurpose::Verify,
                    Some(self.action_hash(&["login", &login.id])),
                    code,
                    effects,
                    audit,
                )
                .await?
            }
            _ if !policy
                .allowed_methods(user.profile.as_deref(), now)
                .contains(&Method::Totp) =>
            {
                return Err(CoreError::conflict(
                    "method_disabled",
                    "authenticator apps are not enabled for this organisation",
                ))
            }
            _ => {
                let only = named.as_ref().map(|f| f.id.clone());
                self.attempt_with(tenant, &user.external_id, meta, audit, |cached, now| {
                    let active: Vec<&CachedFactor> = cached
                        .factors
                        .iter()
                        .filter(|f| f.status == FactorStatus::Active)
                        .filter(|f| only.as_ref().is_none_or(|id| *id == f.id))
                        .collect();
                    let matched = window_match(&active, code, now);
                    Ok(Picked {
                        factors: active.iter().map(|f| f.as_ref()).collect(),
                        matched,
                        on_accept: effects.clone(),
                    })
                })
                .await?
            }
        };
        let accepted = verdict.is_accepted();
        Ok(StepOutcome {
            verdict,
            session: accepted.then_some(issued),
            device: device.filter(|_| accepted),
            recovery_codes: None,
        })
    }

    /// Completes a challenge with a recovery code (the phone is lost, or every factor is
    /// locked): the session is minted in the transaction that spends the code, which also
    /// lifts the locks of the user's factors. The user is emailed.
    pub async fn login_recover(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        recovery_code: &str,
    ) -> Result<StepOutcome, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (login, user) = self.challenged_login(&tenant, pending_token).await?;
        let step = SecondStep {
            tenant: &tenant,
            login: &login,
            user: &user,
        };
        self.recover_step(actor, meta, step, recovery_code, |_, _| Vec::new())
            .await
    }

    /// [`Self::login_recover`] for a challenged login already looked up; `extra` as in
    /// [`Self::verify_step`].
    pub(super) async fn recover_step(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        step: SecondStep<'_>,
        recovery_code: &str,
        extra: impl FnOnce(&str, &str) -> Vec<Effect>,
    ) -> Result<StepOutcome, CoreError> {
        let SecondStep {
            tenant,
            login,
            user,
        } = step;
        let meta = &RequestMeta {
            client_ip: login.ip.clone(),
            ..meta.clone()
        };
        let now = self.now();
        let (policy, _) = self.policy_of(tenant).await?;
        let (mut effects, issued) = self.second_step_effects(&policy, user, login, "rcode", now);
        effects.extend(extra(&issued.id, &format!("{},rcode", login.primary)));
        effects.push(Effect::UnlockUserFactors { user_id: user.id });
        let mut audit = self.audit(actor, meta, "login.recover", Some(tenant.id));
        audit.ip = login.ip.clone().or(audit.ip);
        let on = On {
            actor,
            meta,
            tenant,
            user,
        };
        let verdict = self
            .use_recovery_code(&on, recovery_code, "sign in", effects, audit)
            .await?;
        let accepted = verdict.is_accepted();
        Ok(StepOutcome {
            verdict,
            session: accepted.then_some(issued),
            device: None,
            recovery_codes: None,
        })
    }

    /// The pending login of an enrolment at login, for a user who has no active factor yet
    /// (only then may a factor be added from a pending login: a stolen password must not be
    /// able to add a second factor next to the user's own).
    pub(super) async fn enrolling_login(
        &self,
        tenant: &Tenant,
        pending_token: &str,
        method: Method,
    ) -> Result<(PendingLogin, User, Vec<Factor>), CoreError> {
        let (login, user) = self.pending_login_for(tenant, pending_token).await?;
        let (policy, _) = self.policy_of(tenant).await?;
        let allowed = policy.allowed_methods(user.profile.as_deref(), self.now());
        if !allowed.contains(&method) {
            return Err(CoreError::conflict(
                "method_disabled",
                "this method is not enabled for this organisation",
            ));
        }
        if !matches!(
            login.decision.as_str(),
            "enroll_required" | "enroll_offered"
        ) {
            return Err(CoreError::conflict(
                "not_an_enrolment",
                "this login is not waiting for an enrolment",
            ));
        }
        let active: Vec<Factor> = self
            .store
            .factors_of(user.id)
            .await?
            .into_iter()
            .filter(|f| f.status == FactorStatus::Active)
            .collect();
        let already = || {
            CoreError::conflict(
                "already_enrolled",
                "the user has an active factor: sign in with it instead",
            )
        };
        if active
            .iter()
            .any(|f| method_of(&f.kind).is_some_and(|m| allowed.contains(&m)))
        {
            return Err(already());
        }
        // A password alone must never add a factor beside one the user has. The one way on
        // for a user whose methods no longer count (a profile that now needs a security key)
        // is to register the key proven by one of those methods: the step-up factors.
        let step_up =
            policy.phishing_resistant_for(user.profile.as_deref()) && method.phishing_resistant();
        if !active.is_empty() && !step_up {
            return Err(already());
        }
        Ok((login, user, active))
    }

    /// Enrols an authenticator app from a pending login (enrol-at-login).
    pub async fn login_enroll_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        opts: EnrollOptions,
    ) -> Result<Enrollment, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (_, user, _) = self
            .enrolling_login(&tenant, pending_token, Method::Totp)
            .await?;
        self.enroll_totp(actor, meta, slug, &user.external_id, opts)
            .await
    }

    /// Enrols a phone or email address from a pending login; a code is sent to it.
    pub async fn login_enroll_contact(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        kind: ContactKind,
        destination: &str,
    ) -> Result<(FactorView, SendReceipt), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let method = match kind {
            ContactKind::Sms => Method::Sms,
            ContactKind::Email => Method::Email,
        };
        let (_, user, _) = self.enrolling_login(&tenant, pending_token, method).await?;
        self.enroll_contact(actor, meta, slug, &user.external_id, kind, destination)
            .await
    }

    /// The factor being enrolled at this login, still pending, with the login and its user
    /// (`enrolling_login`'s rules for the factor's method); `NotFound("factor")` otherwise.
    async fn pending_enrolment(
        &self,
        tenant: &Tenant,
        pending_token: &str,
        factor_id: &str,
    ) -> Result<(PendingLogin, User, Factor), CoreError> {
        let id = FactorId::parse(factor_id)?;
        let (_, probe) = self.pending_login_for(tenant, pending_token).await?;
        let factor = self
            .store
            .factors_of(probe.id)
            .await?
            .into_iter()
            .find(|f| f.id == id.as_str() && f.status == FactorStatus::Pending)
            .ok_or(CoreError::NotFound("factor"))?;
        let method = method_of(&factor.kind).ok_or(CoreError::NotFound("factor"))?;
        let (login, user, _) = self.enrolling_login(tenant, pending_token, method).await?;
        Ok((login, user, factor))
    }

    /// Sends the enrolment code of the phone or address being enrolled at this login again
    /// (the first one did not arrive): the cooldown and sending caps of every code apply. The
    /// API has no such call: an integrator resends through the factor's `send-code`.
    pub(super) async fn login_enroll_resend(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        factor_id: &str,
    ) -> Result<SendReceipt, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (_, user, factor) = self
            .pending_enrolment(&tenant, pending_token, factor_id)
            .await?;
        self.send_code(
            actor,
            meta,
            slug,
            &user.external_id,
            &factor.id,
            CodeFor::SignIn,
        )
        .await
    }

    /// Confirms the factor enrolled at login with its first code; the same transaction
    /// activates it, completes the login and mints the session.
    pub async fn login_enroll_confirm(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        factor_id: &str,
        code: &str,
    ) -> Result<StepOutcome, CoreError> {
        self.enroll_confirm_with(actor, meta, slug, pending_token, factor_id, code, |_, _| {
            Vec::new()
        })
        .await
    }

    /// [`Self::login_enroll_confirm`] with `extra(session_id, amr)`: effects committed in the
    /// same transaction (the hosted pages mint their authorization code there).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn enroll_confirm_with(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        factor_id: &str,
        code: &str,
        extra: impl FnOnce(&str, &str) -> Vec<Effect>,
    ) -> Result<StepOutcome, CoreError> {
        let code = OtpCode::parse(code)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let (login, user, factor) = self
            .pending_enrolment(&tenant, pending_token, factor_id)
            .await?;
        let now = self.now();
        let amr = if factor.kind == "totp" {
            "otp"
        } else {
            factor.kind.as_str()
        };
        let (policy, _) = self.policy_of(&tenant).await?;
        let (mut effects, issued) = self.second_step_effects(&policy, &user, &login, amr, now);
        effects.extend(extra(&issued.id, &format!("{},{amr}", login.primary)));
        let (verdict, recovery_codes) = self
            .confirm_with(actor, meta, &tenant, &user, &factor, &code, effects)
            .await?;
        self.forget_user(tenant.id, &user.external_id);
        let accepted = verdict.is_accepted();
        Ok(StepOutcome {
            verdict,
            session: accepted.then_some(issued),
            device: None,
            recovery_codes,
        })
    }

    /// "Later" at the reminder: refused once 2FA is mandatory for the user (checked against
    /// the policy as it is now); remembered for the tenant's `skip_hours`.
    pub async fn login_skip(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
    ) -> Result<IssuedToken, CoreError> {
        self.skip_with(actor, meta, slug, pending_token, |_, _| Vec::new())
            .await
    }

    /// [`Self::login_skip`] with `extra(session_id, amr)`: effects committed in the same
    /// transaction (the hosted pages mint their authorization code there). A refused skip
    /// leaves a denied audit row: after the deadline only a stale or forged form asks for one.
    pub(super) async fn skip_with(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        pending_token: &str,
        extra: impl FnOnce(&str, &str) -> Vec<Effect>,
    ) -> Result<IssuedToken, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (login, user) = self.pending_login_for(&tenant, pending_token).await?;
        let (policy, _) = self.policy_of(&tenant).await?;
        let now = self.now();
        let enrolled = self
            .store
            .factors_of(user.id)
            .await?
            .iter()
            .any(|f| f.status == FactorStatus::Active);
        let mut audit = self.audit(actor, meta, "login.skip", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.at = now;
        if login.decision != "enroll_offered"
            || enrolled
            || !policy::may_skip(&policy, user.profile.as_deref(), now)
        {
            audit.outcome = "denied".into();
            audit.reason = Some("skip_not_allowed".into());
            self.store.append_audit(audit).await?;
            return Err(CoreError::conflict(
                "skip_not_allowed",
                "two-step verification is mandatory now: enrol a method to sign in",
            ));
        }
        let (session, issued) = self.new_session(
            &user,
            &[login.primary.as_str()],
            false,
            login.client_id.clone(),
            login.ip.clone(),
            now,
        );
        let mut effects = vec![
            Effect::CompleteLogin {
                login_id: login.id.clone(),
                at: now,
            },
            Effect::SetSkip {
                user_id: user.id,
                until: policy::skip_until(&policy, now),
            },
            Effect::InsertSession(session),
        ];
        effects.extend(extra(&issued.id, &login.primary));
        self.store
            .apply(effects, audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => invalid_token(),
                e => e.into(),
            })?;
        Ok(issued)
    }

    // ------------------------------------------------------------ sessions and devices

    pub(super) fn session_view(&self, s: &Session, user: &User, now: i64) -> SessionView {
        let cfg = &self.config.login;
        let active = s.revoked_at.is_none()
            && now < s.expires_at
            && now < s.last_seen_at.saturating_add(cfg.session_idle_ms)
            && s.generation == user.generation;
        SessionView {
            id: s.id.clone(),
            active,
            user: user.external_id.clone(),
            amr: s
                .amr
                .split(',')
                .filter(|a| !a.is_empty())
                .map(String::from)
                .collect(),
            second_factor: s.second_factor,
            client_id: s.client_id.clone(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
        }
    }

    /// Introspection for the integrator: is this session token live, and whose is it. A live
    /// session's idle timer restarts.
    pub async fn introspect(
        &self,
        actor: &Actor,
        slug: &str,
        token: &str,
    ) -> Result<Option<SessionView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        if crate::tokens::parse(crate::tokens::TokenKind::Session, token).is_none() {
            return Ok(None);
        }
        let Some(s) = self
            .store
            .session(&self.token_hash(SESSION_PREFIX, token))
            .await?
            .filter(|s| s.tenant_id == tenant.id)
        else {
            return Ok(None);
        };
        let Some(user) = self.store.user_by_id(s.user_id).await? else {
            return Ok(None);
        };
        let now = self.now();
        let view = self.session_view(&s, &user, now);
        if view.active {
            self.store.touch_session(&s.id, now).await?;
        }
        Ok(Some(view))
    }

    pub async fn list_sessions(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<Vec<SessionView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let now = self.now();
        Ok(self
            .store
            .sessions_of(user.id)
            .await?
            .iter()
            .map(|s| self.session_view(s, &user, now))
            .collect())
    }

    /// Applies one effect to a user's own session or device, audited; a missing (or already
    /// revoked, or someone else's) one answers `NotFound(what)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn revoke_for_user(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        external_id: &str,
        action: &str,
        what: &'static str,
        id: &str,
        effects: impl FnOnce(i64, i64) -> Vec<Effect>,
    ) -> Result<(), CoreError> {
        let user = self.user_in(tenant, external_id).await?;
        let mut audit = self.audit(actor, meta, action, Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.reason = Some(id.chars().take(40).collect());
        self.store
            .apply(effects(user.id, self.now()), audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound(what),
                e => e.into(),
            })
    }

    pub async fn revoke_session(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        session_id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let data = serde_json::json!({ "user": external_id, "session_id": session_id });
        let events = self.event_effects(&tenant, "session.revoked", data).await?;
        let effects = |user_id, at| {
            let mut e = vec![Effect::RevokeSession {
                id: session_id.to_string(),
                user_id,
                at,
                reason: "revoked".into(),
            }];
            e.extend(events);
            e
        };
        self.revoke_for_user(
            actor,
            meta,
            &tenant,
            external_id,
            "session.revoke",
            "session",
            session_id,
            effects,
        )
        .await?;
        self.queued();
        Ok(())
    }

    /// Every session and remembered device of the user dies (INV-06).
    pub async fn sign_out_everywhere(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let (effects, audit) = self
            .sign_out_everywhere_effects(actor, meta, &tenant, &user)
            .await?;
        self.store.apply(effects, audit).await?;
        self.queued();
        self.forget_user(tenant.id, external_id);
        Ok(())
    }

    /// What ending every session and remembered device of `user` takes, and its audit row.
    pub(super) async fn sign_out_everywhere_effects(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: &User,
    ) -> Result<(Vec<Effect>, AuditRecord), CoreError> {
        let mut audit = self.audit(actor, meta, "user.sign_out_everywhere", Some(tenant.id));
        audit.user_id = Some(user.id);
        let data = serde_json::json!({ "user": user.external_id, "all": true });
        let mut effects = vec![Effect::BumpGeneration { user_id: user.id }];
        effects.extend(self.event_effects(tenant, "session.revoked", data).await?);
        Ok((effects, audit))
    }

    pub async fn list_devices(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<Vec<DeviceView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let now = self.now();
        Ok(self
            .store
            .devices_of(user.id)
            .await?
            .into_iter()
            .map(|d| DeviceView {
                active: d.revoked_at.is_none()
                    && now < d.expires_at
                    && d.generation == user.generation,
                id: d.id,
                label: d.label,
                created_at: d.created_at,
                expires_at: d.expires_at,
                last_used_at: d.last_used_at,
                revoked_at: d.revoked_at,
            })
            .collect())
    }

    pub async fn revoke_device(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        device_id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let effect = |user_id, at| {
            vec![Effect::RevokeDevice {
                id: device_id.to_string(),
                user_id,
                at,
            }]
        };
        self.revoke_for_user(
            actor,
            meta,
            &tenant,
            external_id,
            "device.revoke",
            "device",
            device_id,
            effect,
        )
        .await
    }
}
