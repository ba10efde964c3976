//! SMS and email factors: enrolment proved by a code, sending and checking one-time codes,
//! removing a factor with a fresh code, and changing the phone number of an SMS factor.
//!
//! Codes are six digits from the OS CSPRNG, kept only as an HMAC under the hashing key (a plain
//! hash of six digits is reversed instantly), bound to purpose + user + factor + action
//! (INV-05), valid [`MessagingConfig::code_ttl_ms`], consumed once by a conditional update
//! (INV-02), dead after [`CODE_MAX_ATTEMPTS`] wrong tries. Sending is capped per destination,
//! user and tenant in the store, so the caps hold across nodes (the SMS-pumping defence).

use super::recovery::Proof;
use super::*;
use crate::messaging::*;
use crate::phone_change::{self, PhoneChangeError, PHONE_CHANGE_TTL_MS};
use crate::security::{StoredFactor, Undo};
use rand::Rng;

/// Limits on sending codes. On by default: SMS pumping (toll fraud) costs real money.
#[derive(Debug, Clone)]
pub struct MessagingConfig {
    pub code_ttl_ms: i64,
    /// Least time between two codes for the same (user, factor, purpose).
    pub resend_cooldown_ms: i64,
    pub per_destination_per_hour: u32,
    pub per_user_per_hour: u32,
    pub per_tenant_per_hour: u32,
    /// SMS to one calling code, per tenant: bounds what pumping to one country can cost.
    pub per_country_per_hour: u32,
    /// Calling codes SMS may go to when a tenant has not chosen its own list.
    pub default_sms_countries: Vec<String>,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        Self {
            code_ttl_ms: 10 * 60 * 1000,
            resend_cooldown_ms: 30 * 1000,
            per_destination_per_hour: 5,
            per_user_per_hour: 10,
            per_tenant_per_hour: 1000,
            per_country_per_hour: 500,
            // North America, most of the EU/EEA, the UK, Switzerland, Australia, New Zealand,
            // Japan: low-fraud destinations. Tenants that need others list them explicitly.
            default_sms_countries: [
                "1", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
                "47", "48", "49", "61", "64", "81", "351", "352", "353", "354", "358", "359",
                "370", "371", "372", "385", "386", "420", "421",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Which kind of contact factor to enrol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    Sms,
    Email,
}

impl ContactKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContactKind::Sms => "sms",
            ContactKind::Email => "email",
        }
    }
    pub(crate) fn channel(&self) -> Channel {
        match self {
            ContactKind::Sms => Channel::Sms,
            ContactKind::Email => Channel::Email,
        }
    }
    pub(crate) fn of(f: &Factor) -> Option<Self> {
        match f.kind.as_str() {
            "sms" => Some(Self::Sms),
            "email" => Some(Self::Email),
            _ => None,
        }
    }
}

/// What a caller learns about a code that was sent: never the code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendReceipt {
    pub factor_id: String,
    pub channel: Channel,
    /// Masked.
    pub destination: String,
    pub expires_at: i64,
    /// When a new code may be asked for.
    pub resend_at: i64,
}

/// What clients may see of a phone change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PhoneChangeView {
    pub id: String,
    pub factor_id: String,
    pub state: PhoneChangeState,
    /// Masked.
    pub new_phone: String,
    pub expires_at: i64,
}

impl PhoneChangeView {
    fn of(c: &PhoneChange, now: i64) -> Self {
        Self {
            id: c.id.clone(),
            factor_id: c.factor_id.clone(),
            state: phone_change::effective_state(c, now),
            new_phone: notices::mask_phone(&c.new_phone),
            expires_at: c.expires_at,
        }
    }
}

/// Six digits, uniform, from the OS CSPRNG.
fn new_code() -> Zeroizing<String> {
    Zeroizing::new(format!(
        "{:06}",
        rand::rngs::OsRng.gen_range(0..1_000_000u32)
    ))
}

fn change_id() -> String {
    format!(
        "pcg_{}",
        base32::encode(&twofold_crypto::random_bytes(16)).to_ascii_lowercase()
    )
}

fn parse_change_id(s: &str) -> Result<&str, CoreError> {
    let ok = s.len() == 30
        && s.starts_with("pcg_")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    ok.then_some(s).ok_or(CoreError::NotFound("phone_change"))
}

fn refusal(reason: &SendRefusal, retry_after_ms: i64) -> CoreError {
    let (code, message) = match reason {
        SendRefusal::Cooldown => (
            "resend_too_soon",
            "a code was sent moments ago; wait before asking for another".to_string(),
        ),
        SendRefusal::Exhausted => (
            "code_exhausted",
            "the last code took too many wrong tries; a new one can be sent when it expires"
                .to_string(),
        ),
        SendRefusal::Locked => {
            return CoreError::conflict(
                "factor_locked",
                "the factor is locked after too many wrong codes; an operator must unlock it",
            )
        }
        // Which cap was hit stays in the audit log and metrics: naming it here would tell
        // one tenant that another has been sending to the same number.
        SendRefusal::Limit(_) => (
            "send_limit_reached",
            "too many codes were sent; try again later".to_string(),
        ),
    };
    CoreError::TooMany {
        code,
        message,
        retry_after_ms: retry_after_ms.max(1000),
    }
}

/// What a code sent to an active SMS or email factor will confirm; the code is bound to it
/// (INV-05).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFor<'a> {
    SignIn,
    /// Removing this factor (by id).
    Disable(&'a str),
    RecoveryCodes,
    AppPassword,
    /// Ending every session of the user (the account pages).
    SignOutEverywhere,
}

impl Twofold {
    pub(crate) fn code_hash(&self, code: &str) -> Vec<u8> {
        self.hasher.hash("otp-code", code.as_bytes()).0.to_vec()
    }

    /// Binds a code to the exact action it confirms.
    pub(crate) fn action_hash(&self, parts: &[&str]) -> Vec<u8> {
        self.hasher
            .hash("otp-action", parts.join("\u{1f}").as_bytes())
            .0
            .to_vec()
    }

    /// The caps a code to `destination` counts against. Every scope names the tenant, so one
    /// tenant can neither use up nor observe another's budget for the same number.
    fn send_limits(
        &self,
        tenant: &Tenant,
        user_id: i64,
        channel: Channel,
        destination: &str,
    ) -> Result<Vec<SendLimit>, CoreError> {
        let m = &self.config.messaging;
        let limit = |scope: String, max| SendLimit {
            scope,
            max,
            window_ms: HOUR_MS,
        };
        // Addresses differing only in case reach the same mailbox.
        let dest = destination.to_ascii_lowercase();
        let mut limits = vec![
            limit(
                format!("dest:{}:{dest}", tenant.id),
                m.per_destination_per_hour,
            ),
            limit(format!("user:{user_id}"), m.per_user_per_hour),
            limit(format!("tenant:{}", tenant.id), m.per_tenant_per_hour),
        ];
        if channel == Channel::Sms {
            let country = self.sms_country(tenant, destination)?;
            limits.push(limit(
                format!("country:{}:{country}", tenant.id),
                m.per_country_per_hour,
            ));
        }
        Ok(limits)
    }

    /// The allowed calling-code prefix a number falls under; SMS only goes to the prefixes the
    /// tenant (or the server default) allows, checked at every send.
    fn sms_country(&self, tenant: &Tenant, phone: &str) -> Result<String, CoreError> {
        let digits = phone.strip_prefix('+').unwrap_or(phone);
        self.effective_sms_countries(tenant)
            .iter()
            .filter(|cc| !cc.is_empty() && digits.starts_with(cc.as_str()))
            .max_by_key(|cc| cc.len())
            .cloned()
            .ok_or_else(|| CoreError::Invalid {
                field: "phone",
                message: "text messages to this country are not enabled for this organisation; \
                          an operator can allow its calling code in the tenant's messaging \
                          settings"
                    .into(),
            })
    }

    fn check_sms_country(&self, tenant: &Tenant, phone: &E164Phone) -> Result<(), CoreError> {
        self.sms_country(tenant, phone.as_str()).map(|_| ())
    }

    /// A code and its message, ready for the store.
    #[allow(clippy::too_many_arguments)]
    fn prepare_code(
        &self,
        tenant: &Tenant,
        user: &User,
        factor_id: &str,
        channel: Channel,
        destination: &str,
        purpose: CodePurpose,
        action_hash: Option<Vec<u8>>,
        now: i64,
        detail: Option<&str>,
    ) -> Result<(NewCode, NewMessage), CoreError> {
        let ttl = self.config.messaging.code_ttl_ms;
        let code = new_code();
        let mut params = MessageParams::new();
        params.insert("code".into(), code.to_string());
        // An admin must see what exactly the code would confirm.
        let what = match detail {
            Some(d) => format!("{}: {d}", purpose.describe()),
            None => purpose.describe().to_string(),
        };
        params.insert("purpose".into(), what);
        params.insert("minutes".into(), (ttl / 60_000).to_string());
        let message = self.message(
            tenant,
            Some(user.id),
            channel,
            destination,
            TemplateKind::Code,
            params,
        )?;
        let row = NewCode {
            tenant_id: tenant.id,
            user_id: user.id,
            factor_id: factor_id.to_string(),
            purpose,
            action_hash,
            code_hash: self.code_hash(&code),
            hash_key_id: self.hasher.key_id().to_string(),
            created_at: now,
            expires_at: now + ttl,
        };
        Ok((row, message))
    }

    fn receipt(
        &self,
        factor_id: &str,
        channel: Channel,
        destination: &str,
        now: i64,
    ) -> SendReceipt {
        let m = &self.config.messaging;
        SendReceipt {
            factor_id: factor_id.to_string(),
            channel,
            destination: notices::mask_destination(channel.as_str(), destination),
            expires_at: now + m.code_ttl_ms,
            resend_at: now + m.resend_cooldown_ms,
        }
    }

    /// Sends a code: one store transaction checks cooldown and caps, supersedes older codes,
    /// stores the code's hash, queues the message and applies `effects`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_code_to(
        &self,
        tenant: &Tenant,
        user: &User,
        factor_id: &str,
        channel: Channel,
        destination: &str,
        purpose: CodePurpose,
        action_hash: Option<Vec<u8>>,
        effects: Vec<Effect>,
        audit: AuditRecord,
        detail: Option<&str>,
    ) -> Result<SendReceipt, CoreError> {
        let now = self.now();
        let limits = self.send_limits(tenant, user.id, channel, destination)?;
        let (code, message) = self.prepare_code(
            tenant,
            user,
            factor_id,
            channel,
            destination,
            purpose,
            action_hash,
            now,
            detail,
        )?;
        let issue = IssueCode {
            code,
            message,
            cooldown_ms: self.config.messaging.resend_cooldown_ms,
            limits,
            effects,
            audit,
        };
        match self.store.issue_code(issue).await? {
            IssueOutcome::Issued => {
                self.queued();
                Ok(self.receipt(factor_id, channel, destination, now))
            }
            IssueOutcome::Refused { reason, retry_at } => {
                self.refusals.record(&reason);
                Err(refusal(&reason, retry_at - now))
            }
        }
    }

    /// Checks a code in one store transaction (INV-02); `on_success` happens only with it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn consume(
        &self,
        on: &On<'_>,
        factor: &Factor,
        purpose: CodePurpose,
        action_hash: Option<Vec<u8>>,
        code: &OtpCode,
        on_success: Vec<Effect>,
        mut audit: AuditRecord,
    ) -> Result<Verdict, CoreError> {
        let On {
            tenant, user, meta, ..
        } = *on;
        // The time the effects were computed for is the time the code is judged at.
        let now = audit.at;
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        let (on_backoff, on_lock) = self.failure_notices(on, Some(factor))?;
        let outcome = self
            .store
            .consume_code(ConsumeCode {
                tenant_id: tenant.id,
                user_id: user.id,
                factor_id: factor.id.clone(),
                purpose,
                action_hash,
                presented_hash: self.code_hash(code.as_str()),
                now,
                on_success,
                on_lock,
                on_backoff,
                budgets: match purpose {
                    CodePurpose::Enrol => Vec::new(),
                    // The per-admin daily limit as a budget too: the audit-log count that
                    // answers 429 is read before the attempt, so a burst of parallel wrong
                    // codes one short of it would all get past it (each new code then allowed
                    // its own five tries); the budget is charged in the attempt's transaction.
                    CodePurpose::AdminConfirm => {
                        let mut b = self.budgets(tenant, meta);
                        b.push(Self::admin_budget(tenant.id, user.id));
                        b
                    }
                    _ => self.budgets(tenant, meta),
                },
                audit,
            })
            .await;
        self.forget_user(tenant.id, &user.external_id);
        self.queued();
        Ok(match outcome? {
            AttemptOutcome::Accepted { .. } => Verdict::Accepted,
            AttemptOutcome::Rejected { reason } => Verdict::Rejected(reason),
            // The store never answers Stale for codes; treat it as a failure (INV-09).
            AttemptOutcome::Stale => Verdict::Rejected(RejectReason::WrongCode),
        })
    }

    /// The user and one of their factors, read fresh from the store.
    pub(crate) async fn user_and_factor(
        &self,
        tenant: &Tenant,
        external_id: &str,
        factor_id: &str,
    ) -> Result<(User, Factor), CoreError> {
        let id = FactorId::parse(factor_id)?;
        known_shape(external_id)?;
        let (user, factors) = self
            .store
            .user_with_factors(tenant.id, external_id)
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        let factor = factors
            .into_iter()
            .find(|f| f.id == id.as_str())
            .ok_or(CoreError::NotFound("factor"))?;
        Ok((user, factor))
    }

    /// Enrols an SMS or email factor: it is created pending, and a code goes to the number or
    /// address in the same transaction; confirming that code activates it.
    pub async fn enroll_contact(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        kind: ContactKind,
        destination: &str,
    ) -> Result<(FactorView, SendReceipt), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let destination = match kind {
            ContactKind::Sms => {
                let phone = E164Phone::parse(destination)?;
                self.check_sms_country(&tenant, &phone)?;
                phone.into_inner()
            }
            ContactKind::Email => EmailAddress::parse(destination)?.into_inner(),
        };
        let user = self.user_in(&tenant, external_id).await?;
        super::undo::ensure_not_frozen(&user)?;
        let now = self.now();
        let id = FactorId::generate().into_inner();
        let factor = Factor {
            destination: Some(destination.clone()),
            ..Factor::pending(id.clone(), tenant.id, user.id, kind.as_str(), now)
        };
        let view = FactorView::from(&factor);
        let mut audit = self.audit(actor, meta, "factor.enrol", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(id.clone());
        let receipt = self
            .send_code_to(
                &tenant,
                &user,
                &id,
                kind.channel(),
                &destination,
                CodePurpose::Enrol,
                None,
                vec![Effect::InsertFactor {
                    factor,
                    max_per_user: MAX_FACTORS_PER_USER,
                }],
                audit,
                None,
            )
            .await?;
        self.forget_user(tenant.id, external_id);
        Ok((view, receipt))
    }

    /// Sends a code for an SMS or email factor: the enrolment code again while it is pending,
    /// else a sign-in code, or (with `disable`) a code that can only remove the named factor.
    pub async fn send_code(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        code_for: CodeFor<'_>,
    ) -> Result<SendReceipt, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (user, factor) = self
            .user_and_factor(&tenant, external_id, factor_id)
            .await?;
        let kind = ContactKind::of(&factor).ok_or_else(|| {
            CoreError::conflict(
                "not_a_code_factor",
                "this factor is an authenticator app: its codes come from the app, nothing is sent",
            )
        })?;
        let destination = factor.destination.clone().ok_or_else(|| {
            CoreError::Internal(format!("factor {} has no destination", factor.id))
        })?;
        let (purpose, action_hash) = match (factor.status, code_for) {
            (FactorStatus::Pending, CodeFor::SignIn) => (CodePurpose::Enrol, None),
            (FactorStatus::Pending, _) => {
                return Err(CoreError::conflict(
                    "factor_pending",
                    "a pending factor cannot confirm anything; confirm it first",
                ))
            }
            (FactorStatus::Active, CodeFor::SignIn) => (CodePurpose::Verify, None),
            (FactorStatus::Active, CodeFor::Disable(target)) => {
                let target = FactorId::parse(target).map_err(|_| CoreError::Invalid {
                    field: "disable_factor_id",
                    message: "is not a factor id".into(),
                })?;
                (
                    CodePurpose::Disable,
                    Some(self.action_hash(&["disable", target.as_str()])),
                )
            }
            (FactorStatus::Active, CodeFor::RecoveryCodes) => (
                CodePurpose::Sensitive,
                Some(self.action_hash(&super::recovery::SENSITIVE_RECOVERY)),
            ),
            (FactorStatus::Active, CodeFor::AppPassword) => (
                CodePurpose::Sensitive,
                Some(self.action_hash(&super::recovery::SENSITIVE_APP_PASSWORD)),
            ),
            (FactorStatus::Active, CodeFor::SignOutEverywhere) => (
                CodePurpose::Sensitive,
                Some(self.action_hash(&super::recovery::SENSITIVE_SIGN_OUT)),
            ),
        };
        let mut audit = self.audit(actor, meta, "code.send", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        audit.reason = Some(purpose.as_str().into());
        self.send_code_to(
            &tenant,
            &user,
            &factor.id,
            kind.channel(),
            &destination,
            purpose,
            action_hash,
            Vec::new(),
            audit,
            None,
        )
        .await
    }

    /// Confirms a pending SMS or email factor with its enrolment code; `extra` effects ride
    /// along with the activation.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn confirm_contact(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: &User,
        factor: &Factor,
        code: &OtpCode,
        extra: Vec<Effect>,
    ) -> Result<Verdict, CoreError> {
        let on = On {
            actor,
            meta,
            tenant,
            user,
        };
        let audit = self.audit(actor, meta, "factor.confirm", Some(tenant.id));
        if factor.status == FactorStatus::Active {
            // Confirming again is judged like a verification, so a replayed confirmation code
            // answers exactly like a wrong one (INV-11).
            return self
                .consume(
                    &on,
                    factor,
                    CodePurpose::Verify,
                    None,
                    code,
                    Vec::new(),
                    audit,
                )
                .await;
        }
        let mut effects = vec![Effect::ActivateFactor {
            factor_id: factor.id.clone(),
            at: self.now(),
        }];
        effects.extend(self.notice(
            &on,
            "a two-step verification method was added",
            Some(factor),
            Undo::RemoveFactor {
                factor_id: factor.id.clone(),
            },
        )?);
        effects.extend(extra);
        self.consume(&on, factor, CodePurpose::Enrol, None, code, effects, audit)
            .await
    }

    /// Verifies a sign-in code sent to an active SMS or email factor.
    pub(crate) async fn verify_contact(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: &User,
        factor: &Factor,
        code: &OtpCode,
    ) -> Result<Verdict, CoreError> {
        // Per channel: email codes are the weaker kind and audits must say which was used.
        let action = format!("{}.verify", factor.kind);
        let audit = self.audit(actor, meta, &action, Some(tenant.id));
        let on = On {
            actor,
            meta,
            tenant,
            user,
        };
        // A pending factor has no sign-in codes: charge and answer like a wrong code.
        self.consume(
            &on,
            factor,
            CodePurpose::Verify,
            None,
            code,
            Vec::new(),
            audit,
        )
        .await
    }

    /// Removes a factor, proved by a fresh code from that factor or from another active one
    /// (a TOTP code, or an SMS/email code sent for this removal), or by a recovery code: the
    /// way back when the phone is lost. A pending factor proves nothing and needs no proof to
    /// be withdrawn.
    pub async fn disable_factor(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        proof: Option<Proof<'_>>,
    ) -> Result<Verdict, CoreError> {
        self.disable_factor_and(actor, meta, slug, external_id, factor_id, proof, Vec::new())
            .await
    }

    /// [`Self::disable_factor`]; `also` rides along when an active factor is removed (the
    /// account pages keep the session the removal was made from).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn disable_factor_and(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        proof: Option<Proof<'_>>,
        also: Vec<Effect>,
    ) -> Result<Verdict, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        known_shape(external_id)?;
        let (user, factors) = self
            .store
            .user_with_factors(tenant.id, external_id)
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        let target_id = FactorId::parse(factor_id)?;
        let target = factors
            .iter()
            .find(|f| f.id == target_id.as_str())
            .ok_or(CoreError::NotFound("factor"))?;
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let mut removal = self.audit(actor, meta, "factor.delete", Some(tenant.id));
        removal.user_id = Some(user.id);
        removal.factor_id = Some(target.id.clone());
        if target.status == FactorStatus::Pending {
            let deleted = self
                .store
                .delete_factor(&target.id, Some(FactorStatus::Pending), removal, None)
                .await?;
            self.forget_user(tenant.id, external_id);
            return if deleted {
                Ok(Verdict::Accepted)
            } else {
                Err(CoreError::NotFound("factor"))
            };
        }
        super::undo::ensure_not_frozen(&user)?;
        let proof = proof.ok_or(CoreError::Invalid {
            field: "code",
            message: "removing an active factor needs a fresh code from it or another active \
                      one, or a recovery code"
                .into(),
        })?;
        // While 2FA is required for the user, their last usable factor stays.
        let (policy, _) = self.policy_of(&tenant).await?;
        let allowed = policy.allowed_methods(user.profile.as_deref(), self.now());
        let usable_left = factors
            .iter()
            .filter(|f| f.id != target.id && f.status == FactorStatus::Active)
            .filter(|f| crate::policy::Method::parse(&f.kind).is_some_and(|m| allowed.contains(&m)))
            .count();
        if usable_left == 0
            && policy.enforcement != crate::policy::Enforcement::Off
            && policy.required_for(user.profile.as_deref())
        {
            return Err(CoreError::conflict(
                "last_factor",
                "two-step verification is required for this user: enrol another method before \
                 removing this one",
            ));
        }
        // Removing a factor kills the user's sessions and remembered devices (INV-06).
        let mut effects = vec![
            Effect::RequireNotFrozen { user_id: user.id },
            Effect::DeleteFactor {
                factor_id: target.id.clone(),
            },
            Effect::BumpGeneration { user_id: user.id },
            Effect::Audit(removal),
        ];
        effects.extend(also);
        let data = serde_json::json!({
            "user": user.external_id, "factor_id": target.id, "kind": target.kind, "by": "user",
        });
        effects.extend(self.event_effects(&tenant, "factor.removed", data).await?);
        effects.extend(self.notice(
            &on,
            "a two-step verification method was removed",
            Some(target),
            Undo::RestoreFactor {
                factor: Box::new(StoredFactor::of(target)),
            },
        )?);
        let audit = self.audit(actor, meta, "factor.disable", Some(tenant.id));
        let verdict = self
            .with_proof(
                &on,
                &self.provers(&on, &factors).await?,
                proof,
                Some(target.id.as_str()),
                (CodePurpose::Disable, &["disable", target.id.as_str()]),
                "remove a two-step verification method",
                effects,
                audit,
            )
            .await?;
        self.forget_user(tenant.id, external_id);
        Ok(verdict)
    }

    // ------------------------------------------------------------ phone change

    /// Starts changing an SMS factor's number: a code goes to the old number first.
    pub async fn start_phone_change(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        new_phone: &str,
    ) -> Result<(PhoneChangeView, SendReceipt), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let new_phone = E164Phone::parse(new_phone)?;
        self.check_sms_country(&tenant, &new_phone)?;
        let (user, factor) = self
            .user_and_factor(&tenant, external_id, factor_id)
            .await?;
        super::undo::ensure_not_frozen(&user)?;
        let old = match (factor.kind.as_str(), factor.status, &factor.destination) {
            ("sms", FactorStatus::Active, Some(old)) => old.clone(),
            _ => {
                return Err(CoreError::conflict(
                    "not_an_active_sms_factor",
                    "only an active SMS factor has a number to change",
                ))
            }
        };
        if old == new_phone.as_str() {
            return Err(CoreError::Invalid {
                field: "new_phone",
                message: "is the number the factor already has".into(),
            });
        }
        let now = self.now();
        let change = PhoneChange {
            id: change_id(),
            tenant_id: tenant.id,
            user_id: user.id,
            factor_id: factor.id.clone(),
            new_phone: new_phone.into_inner(),
            state: PhoneChangeState::AwaitingOld,
            created_at: now,
            expires_at: now + PHONE_CHANGE_TTL_MS,
            updated_at: now,
        };
        let mut audit = self.audit(actor, meta, "phone_change.start", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        let receipt = self
            .send_code_to(
                &tenant,
                &user,
                &factor.id,
                Channel::Sms,
                &old,
                CodePurpose::PhoneOld,
                Some(self.phone_change_hash(&change)),
                vec![Effect::StartPhoneChange(change.clone())],
                audit,
                None,
            )
            .await?;
        Ok((PhoneChangeView::of(&change, now), receipt))
    }

    /// Binds the change's codes to this change and this new number.
    fn phone_change_hash(&self, c: &PhoneChange) -> Vec<u8> {
        self.action_hash(&["phone_change", &c.id, &c.new_phone])
    }

    async fn load_phone_change(
        &self,
        tenant: &Tenant,
        external_id: &str,
        factor_id: &str,
        change_id: &str,
    ) -> Result<(User, Factor, PhoneChange), CoreError> {
        let change_id = parse_change_id(change_id)?;
        let (user, factor) = self.user_and_factor(tenant, external_id, factor_id).await?;
        let change = self
            .store
            .phone_change(change_id)
            .await?
            .filter(|c| {
                c.tenant_id == tenant.id && c.user_id == user.id && c.factor_id == factor.id
            })
            .ok_or(CoreError::NotFound("phone_change"))?;
        Ok((user, factor, change))
    }

    pub async fn phone_change(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        change_id: &str,
    ) -> Result<PhoneChangeView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (_, _, change) = self
            .load_phone_change(&tenant, external_id, factor_id, change_id)
            .await?;
        Ok(PhoneChangeView::of(&change, self.now()))
    }

    fn step_error(e: PhoneChangeError) -> CoreError {
        match e {
            PhoneChangeError::Expired => CoreError::conflict(
                "phone_change_expired",
                "this phone change expired; start again",
            ),
            PhoneChangeError::Finished => CoreError::conflict(
                "phone_change_finished",
                "this phone change is already finished or cancelled",
            ),
        }
    }

    /// Checks the code of the current step. A right code from the old number sends a code to
    /// the new one; a right code from the new number swaps the numbers and notifies the user.
    /// Returns the verdict and the change as it is now (with the new code's receipt, if any).
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm_phone_change(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        change_id: &str,
        code: &str,
    ) -> Result<(Verdict, PhoneChangeView, Option<SendReceipt>), CoreError> {
        let ids = (factor_id, change_id);
        self.confirm_phone_change_and(actor, meta, slug, external_id, ids, code, Vec::new())
            .await
    }

    /// [`Self::confirm_phone_change`]; `also` rides along when the numbers are swapped (the
    /// account pages keep the session the change was made from). `ids`: factor, change.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn confirm_phone_change_and(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        (factor_id, change_id): (&str, &str),
        code: &str,
        also: Vec<Effect>,
    ) -> Result<(Verdict, PhoneChangeView, Option<SendReceipt>), CoreError> {
        let code = OtpCode::parse(code)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let (user, factor, change) = self
            .load_phone_change(&tenant, external_id, factor_id, change_id)
            .await?;
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let now = self.now();
        let step = phone_change::next_step(&change, now).map_err(Self::step_error)?;
        let mut effects = vec![Effect::MovePhoneChange {
            id: change.id.clone(),
            from: change.state,
            to: step.to,
            at: now,
        }];
        if step.swaps {
            super::undo::ensure_not_frozen(&user)?;
            effects.insert(0, Effect::RequireNotFrozen { user_id: user.id });
            effects.push(Effect::SetDestination {
                factor_id: factor.id.clone(),
                destination: change.new_phone.clone(),
            });
            effects.push(Effect::BumpGeneration { user_id: user.id });
            effects.extend(also);
            let mut done = self.audit(actor, meta, "factor.phone_change", Some(tenant.id));
            done.user_id = Some(user.id);
            done.factor_id = Some(factor.id.clone());
            effects.push(Effect::Audit(done));
            let change_text = format!(
                "the phone number for text-message codes was changed to {}",
                notices::mask_phone(&change.new_phone)
            );
            effects.extend(self.notice(
                &on,
                &change_text,
                Some(&factor),
                Undo::RestorePhone {
                    factor_id: factor.id.clone(),
                    old_phone: factor.destination.clone().unwrap_or_default(),
                    new_phone: change.new_phone.clone(),
                },
            )?);
        }
        // The old number agreeing earns the new number its code, stored and queued in the
        // same transaction as the move: a crash cannot leave the change waiting for a code
        // that was never sent.
        let next_code = if step.swaps {
            None
        } else {
            let (code, sms) = self.prepare_code(
                &tenant,
                &user,
                &factor.id,
                Channel::Sms,
                &change.new_phone,
                CodePurpose::PhoneNew,
                Some(self.phone_change_hash(&change)),
                now,
                None,
            )?;
            effects.push(Effect::InsertCode {
                code,
                limits: self.send_limits(&tenant, user.id, Channel::Sms, &change.new_phone)?,
            });
            effects.push(Effect::Enqueue(sms));
            Some(self.receipt(&factor.id, Channel::Sms, &change.new_phone, now))
        };
        let mut audit = self.audit(actor, meta, "phone_change.confirm", Some(tenant.id));
        audit.at = now;
        let verdict = self
            .consume(
                &on,
                &factor,
                step.purpose,
                Some(self.phone_change_hash(&change)),
                &code,
                effects,
                audit,
            )
            .await?;
        let moved = PhoneChange {
            state: if verdict.is_accepted() {
                step.to
            } else {
                change.state
            },
            updated_at: now,
            ..change
        };
        let receipt = next_code.filter(|_| verdict.is_accepted());
        Ok((verdict, PhoneChangeView::of(&moved, now), receipt))
    }

    async fn send_phone_change_code(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: &User,
        factor: &Factor,
        change: &PhoneChange,
    ) -> Result<SendReceipt, CoreError> {
        let step = phone_change::next_step(change, self.now()).map_err(Self::step_error)?;
        let old = factor.destination.as_deref().unwrap_or_default();
        let destination = phone_change::code_destination(change, old).to_string();
        let mut audit = self.audit(actor, meta, "code.send", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        audit.reason = Some(step.purpose.as_str().into());
        self.send_code_to(
            tenant,
            user,
            &factor.id,
            Channel::Sms,
            &destination,
            step.purpose,
            Some(self.phone_change_hash(change)),
            Vec::new(),
            audit,
            None,
        )
        .await
    }

    /// Sends the current step's code again (cooldown and caps apply; failures carry over).
    pub async fn resend_phone_change_code(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        factor_id: &str,
        change_id: &str,
    ) -> Result<SendReceipt, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (user, factor, change) = self
            .load_phone_change(&tenant, external_id, factor_id, change_id)
            .await?;
        self.send_phone_change_code(actor, meta, &tenant, &user, &factor, &change)
            .await
    }
}
