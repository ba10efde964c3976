//! Security keys and passkeys (WebAuthn): ceremonies started for a page, answers checked.
//!
//! A sign-in answer is judged like a code: it goes through the store's one attempt (INV-01,
//! INV-03), so a key shares the lock, the backoff and the failure budgets of every other
//! factor, and what rides on success (the session, the authorization code, a removal) is
//! written in the transaction that accepts it. The ceremony row is spent in that same
//! transaction, so one answer completes one step, however often it is posted.
//!
//! What makes another tenant's or user's credential useless here: the ceremony offers only
//! this user's keys, an answer naming any other credential is refused before its signature is
//! looked at, the stored credential opens only for its own owner row (sealed with the tenant,
//! user and factor as associated data), and a credential id can be registered once on the
//! whole server.

use super::{On, Twofold, Verdict, MAX_FACTORS_PER_USER};
use crate::error::CoreError;
use crate::messaging::Effect;
use crate::model::{Factor, FactorStatus, Tenant, User};
use crate::policy::Method;
use crate::ports::{Attempt, FactorRef, RejectReason, StepMatch, StoreError};
use crate::security::Undo;
use crate::types::{DisplayName, FactorId};
use crate::webauthn::{CeremonyPurpose, WebauthnChallenge, CEREMONY_TTL_MS};
use twofold_webauthn::{claimed_credential_id, Refusal, RelyingParty};
use zeroize::Zeroizing;

/// A ceremony for a page: `options` for `navigator.credentials`, `id` for the hidden field
/// the answer comes back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCeremony {
    pub id: String,
    pub options: String,
}

/// Why a key was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefused {
    /// The browser's answer did not verify.
    Answer(Refusal),
    /// The step-up proof (a code of the user's other method) did not hold.
    Proof,
}

/// Longest name a user may give a key.
pub const MAX_KEY_NAME_CHARS: usize = 64;

/// What a key's answer is for, and what it must be bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub purpose: CeremonyPurpose,
    /// The pending login's id, or the account session's id.
    pub to: &'a str,
}

impl<'a> Binding<'a> {
    pub fn new(purpose: CeremonyPurpose, to: &'a str) -> Self {
        Self { purpose, to }
    }
}

/// The name a user typed for a key; empty names the key after its kind.
pub fn key_name(typed: &str) -> Result<String, CoreError> {
    if typed.trim().is_empty() {
        return Ok("Security key".into());
    }
    let name = DisplayName::parse("name", typed)?;
    if name.as_str().chars().count() > MAX_KEY_NAME_CHARS {
        return Err(CoreError::Invalid {
            field: "name",
            message: format!("must be at most {MAX_KEY_NAME_CHARS} characters"),
        });
    }
    Ok(name.into_inner())
}

impl Twofold {
    /// Security keys can be used at all: the server has a relying party (its public URL is
    /// on a domain name, or one is configured).
    pub fn security_keys_available(&self) -> bool {
        self.config.webauthn.is_some()
    }

    fn relying_party(&self) -> Result<&RelyingParty, CoreError> {
        self.config.webauthn.as_deref().ok_or_else(|| {
            CoreError::conflict(
                "webauthn_unavailable",
                "security keys are not set up on this server (see [webauthn] in the config)",
            )
        })
    }

    /// The user's active keys whose method the tenant enables.
    pub(crate) async fn usable_keys(
        &self,
        tenant: &Tenant,
        user: &User,
    ) -> Result<Vec<Factor>, CoreError> {
        let (policy, _) = self.policy_of(tenant).await?;
        let allowed = policy.allowed_methods(user.profile.as_deref(), self.now());
        if !allowed.contains(&Method::Webauthn) {
            return Ok(Vec::new());
        }
        Ok(self
            .store
            .factors_of(user.id)
            .await?
            .into_iter()
            .filter(|f| f.kind == Method::Webauthn.as_str() && f.status == FactorStatus::Active)
            .collect())
    }

    fn credential_of(&self, f: &Factor) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        let owner = Factor::seal_owner(f.tenant_id, f.user_id, &f.id);
        Ok(Zeroizing::new(
            self.keyring.unseal(&f.sealed_secret, &owner)?,
        ))
    }

    async fn store_ceremony(
        &self,
        user: &User,
        binding: Binding<'_>,
        c: twofold_webauthn::Ceremony,
    ) -> Result<KeyCeremony, CoreError> {
        let now = self.now();
        let row = WebauthnChallenge {
            id: super::login::new_id("wac"),
            tenant_id: user.tenant_id,
            user_id: user.id,
            purpose: binding.purpose.as_str().into(),
            binding: binding.to.into(),
            state: c.state,
            created_at: now,
            expires_at: now + CEREMONY_TTL_MS,
            used_at: None,
        };
        let id = row.id.clone();
        let mut audit = self.audit(
            &super::Actor::System,
            &Default::default(),
            "webauthn.challenge",
            Some(user.tenant_id),
        );
        audit.user_id = Some(user.id);
        audit.reason = Some(binding.purpose.as_str().into());
        self.store
            .apply(vec![Effect::InsertWebauthnChallenge(row)], audit)
            .await?;
        Ok(KeyCeremony {
            id,
            options: c.options,
        })
    }

    /// A ceremony asking for one of the user's keys, or `None` when they have none usable.
    pub(crate) async fn key_assertion_ceremony(
        &self,
        tenant: &Tenant,
        user: &User,
        binding: Binding<'_>,
    ) -> Result<Option<KeyCeremony>, CoreError> {
        let Ok(rp) = self.relying_party() else {
            return Ok(None);
        };
        let keys = self.usable_keys(tenant, user).await?;
        let mut credentials = Vec::with_capacity(keys.len());
        for k in &keys {
            credentials.push(String::from_utf8_lossy(&self.credential_of(k)?).into_owned());
        }
        if credentials.is_empty() {
            return Ok(None);
        }
        let c = rp
            .start_authentication(&credentials)
            .map_err(|r| CoreError::Internal(format!("webauthn: {r}")))?;
        Ok(Some(self.store_ceremony(user, binding, c).await?))
    }

    /// A ceremony registering a new key for the user; their keys already registered are
    /// excluded, so the same key is not added twice.
    pub(crate) async fn key_registration_ceremony(
        &self,
        tenant: &Tenant,
        user: &User,
        binding: Binding<'_>,
    ) -> Result<KeyCeremony, CoreError> {
        let rp = self.relying_party()?;
        let (policy, _) = self.policy_of(tenant).await?;
        if !policy.methods.contains(&Method::Webauthn) {
            return Err(method_disabled());
        }
        let exclude = self
            .store
            .factors_of(user.id)
            .await?
            .into_iter()
            .filter_map(|f| f.credential_id)
            .collect();
        let handle = self.action_hash(&[
            "webauthn-user",
            &user.tenant_id.to_string(),
            &user.id.to_string(),
        ]);
        let mut user_handle = [0u8; 16];
        user_handle.copy_from_slice(&handle[..16]);
        let display = user.email.as_deref().unwrap_or(&user.external_id);
        let c = rp
            .start_registration(user_handle, &user.external_id, display, exclude)
            .map_err(|r| CoreError::Internal(format!("webauthn: {r}")))?;
        self.store_ceremony(user, binding, c).await
    }

    /// The ceremony an answer names, if it is this user's, for this purpose and binding,
    /// unused and live. The store spends it again conditionally when the step commits.
    async fn live_ceremony(
        &self,
        user: &User,
        binding: Binding<'_>,
        id: &str,
    ) -> Result<Option<WebauthnChallenge>, CoreError> {
        if !id.starts_with("wac_") || id.len() > 64 {
            return Ok(None);
        }
        let now = self.now();
        Ok(self.store.webauthn_challenge(id).await?.filter(|c| {
            c.user_id == user.id
                && c.tenant_id == user.tenant_id
                && c.purpose == binding.purpose.as_str()
                && c.binding == binding.to
                && c.used_at.is_none()
                && now < c.expires_at
        }))
    }

    /// Judges a browser's answer to a ceremony from [`Self::key_assertion_ceremony`]. On
    /// success `on_accept(amr)` rides in the transaction that accepts it; a failure is charged
    /// to the user's keys like a wrong code, and a signature counter that went backwards
    /// locks the key (it may have been cloned) and tells the user.
    pub(crate) async fn check_key(
        &self,
        on: &On<'_>,
        binding: Binding<'_>,
        ceremony_id: &str,
        response: &str,
        mut audit: crate::model::AuditRecord,
        on_accept: impl FnOnce(&str) -> Vec<Effect>,
    ) -> Result<(Verdict, &'static str), CoreError> {
        let rp = self.relying_party()?;
        let (tenant, user) = (on.tenant, on.user);
        audit.user_id = Some(user.id);
        let Some(ceremony) = self.live_ceremony(user, binding, ceremony_id).await? else {
            audit.outcome = "denied".into();
            audit.reason = Some("no_challenge".into());
            self.store.append_audit(audit).await?;
            return Ok((Verdict::Rejected(RejectReason::NoCode), "hwk"));
        };
        let keys = self.usable_keys(tenant, user).await?;
        if keys.is_empty() {
            return Err(CoreError::NotFound("factor"));
        }
        let claimed = claimed_credential_id(response);
        let key = claimed
            .as_deref()
            .and_then(|id| keys.iter().find(|f| f.credential_id.as_deref() == Some(id)));
        let judged = key
            .ok_or(Refusal::UnknownCredential)
            .and_then(|k| Ok((rp.finish_authentication(response, &ceremony.state)?, k)));
        let now = self.now();
        audit.at = now;
        let spend = Effect::UseWebauthnChallenge {
            id: ceremony.id.clone(),
            user_id: user.id,
            at: now,
        };
        let (assertion, key) = match (judged, key) {
            (Ok(judged), _) => judged,
            (Err(Refusal::PossibleClone), Some(k)) => {
                return self.lock_cloned_key(on, k, spend, audit).await;
            }
            (Err(refusal), _) => {
                let mut why = audit.clone();
                why.action = "webauthn.refused".into();
                why.outcome = "denied".into();
                why.reason = Some(refusal.as_str().into());
                why.factor_id = key.map(|k| k.id.clone());
                self.store.append_audit(why).await?;
                let (on_backoff, on_lock) = self.failure_notices(on, None)?;
                let outcome = self
                    .store
                    .attempt(Attempt {
                        factors: keys.iter().map(factor_ref).collect(),
                        matched: None,
                        now,
                        audit,
                        on_accept: Vec::new(),
                        on_lock,
                        on_backoff,
                        budgets: self.budgets(tenant, on.meta),
                    })
                    .await?;
                self.queued();
                return Ok((verdict_of(outcome), "hwk"));
            }
        };
        let amr = assertion.amr();
        let stored = self.credential_of(key)?;
        if assertion.counter_regressed(&String::from_utf8_lossy(&stored)) {
            return self.lock_cloned_key(on, key, spend, audit).await;
        }
        let mut effects = vec![spend];
        if let Some(updated) = assertion.updated(&String::from_utf8_lossy(&stored)) {
            let owner = Factor::seal_owner(key.tenant_id, key.user_id, &key.id);
            effects.push(Effect::SetFactorSecret {
                factor_id: key.id.clone(),
                sealed_secret: self.keyring.seal(updated.as_bytes(), &owner)?,
            });
        }
        effects.extend(on_accept(amr));
        audit.factor_id = Some(key.id.clone());
        let outcome = self
            .store
            .attempt(Attempt {
                factors: vec![factor_ref(key)],
                matched: Some(StepMatch {
                    factor_id: key.id.clone(),
                    expected_version: key.version,
                    expected_status: FactorStatus::Active,
                    step: key.last_step + 1,
                    new_drift: key.drift,
                    new_version: key.version + 1,
                    hint_dir: None,
                }),
                now,
                audit,
                on_accept: effects,
                on_lock: Vec::new(),
                on_backoff: Vec::new(),
                budgets: self.budgets(tenant, on.meta),
            })
            .await;
        self.queued();
        match outcome {
            Ok(o) => Ok((verdict_of(o), amr)),
            // The ceremony was spent meanwhile (the same answer posted twice at once).
            Err(StoreError::Conflict("state_changed")) => {
                Ok((Verdict::Rejected(RejectReason::Replayed), amr))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A key whose signature counter went backwards: locked (only an admin or a recovery code
    /// opens it again), the user told, the audit row says why.
    async fn lock_cloned_key(
        &self,
        on: &On<'_>,
        key: &Factor,
        spend: Effect,
        mut audit: crate::model::AuditRecord,
    ) -> Result<(Verdict, &'static str), CoreError> {
        let mut effects = vec![
            spend,
            Effect::LockFactor {
                factor_id: key.id.clone(),
                at: audit.at,
            },
        ];
        effects.extend(self.notice(
            on,
            "a security key was locked: it answered with a signature counter that went \
             backwards, which happens when a key has been copied",
            Some(key),
            Undo::Nothing,
        )?);
        audit.outcome = "denied".into();
        audit.reason = Some(Refusal::PossibleClone.as_str().into());
        audit.factor_id = Some(key.id.clone());
        self.store.apply(effects, audit).await?;
        self.queued();
        self.forget_user(on.tenant.id, &on.user.external_id);
        Ok((Verdict::Rejected(RejectReason::Locked), "hwk"))
    }

    /// Registers the key a browser answered a registration ceremony with: active at once (the
    /// answer is the proof of possession), named `name`. With it, in one transaction: the
    /// ceremony spent, the "method added" notice and event, recovery codes if this is the
    /// user's first factor, and `extra(amr)` (completing a login). With `step_up`, all of it
    /// happens only with that proof from one of the given factors, in the same transaction
    /// (a user whose methods no longer count adds the key that does). Returns the new
    /// factor's id and the recovery codes, or the refusal (audited).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn register_key(
        &self,
        on: &On<'_>,
        binding: Binding<'_>,
        ceremony_id: &str,
        response: &str,
        name: &str,
        step_up: Option<(&[Factor], super::Proof<'_>)>,
        extra: impl FnOnce(&str) -> Vec<Effect>,
    ) -> Result<Result<(String, Option<super::RecoveryCodes>), KeyRefused>, CoreError> {
        let rp = self.relying_party()?;
        let (tenant, user) = (on.tenant, on.user);
        super::undo::ensure_not_frozen(user)?;
        let name = key_name(name)?;
        let mut audit = self.audit(on.actor, on.meta, "factor.enrol", Some(tenant.id));
        audit.user_id = Some(user.id);
        let (policy, _) = self.policy_of(tenant).await?;
        if !policy.methods.contains(&Method::Webauthn) {
            return Err(method_disabled());
        }
        let refuse = |mut audit: crate::model::AuditRecord, r: Refusal| {
            audit.outcome = "denied".into();
            audit.reason = Some(r.as_str().into());
            audit
        };
        let Some(ceremony) = self.live_ceremony(user, binding, ceremony_id).await? else {
            let audit = refuse(audit, Refusal::ChallengeMismatch);
            self.store.append_audit(audit).await?;
            return Ok(Err(KeyRefused::Answer(Refusal::ChallengeMismatch)));
        };
        let key = match rp.finish_registration(response, &ceremony.state) {
            Ok(k) => k,
            Err(r) => {
                self.store.append_audit(refuse(audit, r)).await?;
                return Ok(Err(KeyRefused::Answer(r)));
            }
        };
        let now = self.now();
        let id = FactorId::generate().into_inner();
        let owner = Factor::seal_owner(tenant.id, user.id, &id);
        let factor = Factor {
            status: FactorStatus::Active,
            label: Some(name),
            credential_id: Some(key.credential_id.clone()),
            sealed_secret: self.keyring.seal(key.credential.as_bytes(), &owner)?,
            confirmed_at: Some(now),
            ..Factor::pending(
                id.clone(),
                tenant.id,
                user.id,
                Method::Webauthn.as_str(),
                now,
            )
        };
        audit.factor_id = Some(id.clone());
        let mut effects = vec![
            Effect::RequireNotFrozen { user_id: user.id },
            Effect::UseWebauthnChallenge {
                id: ceremony.id,
                user_id: user.id,
                at: now,
            },
        ];
        let first = !self
            .store
            .factors_of(user.id)
            .await?
            .iter()
            .any(|f| f.status == FactorStatus::Active);
        effects.push(Effect::InsertFactor {
            factor: factor.clone(),
            max_per_user: MAX_FACTORS_PER_USER,
        });
        effects.extend(self.notice(
            on,
            "a security key was added as a two-step verification method",
            Some(&factor),
            Undo::RemoveFactor {
                factor_id: id.clone(),
            },
        )?);
        let data = serde_json::json!({
            "user": user.external_id, "factor_id": id, "kind": factor.kind,
        });
        effects.extend(self.event_effects(tenant, "factor.enrolled", data).await?);
        let mut codes = None;
        if first {
            let (new, effect) = self.new_recovery_codes(user, now);
            effects.push(effect);
            codes = Some(new);
        }
        let amr = if key.backup_eligible { "swk" } else { "hwk" };
        effects.extend(extra(amr));
        if let Some((factors, proof)) = step_up {
            let action = ["enrol-key", binding.to];
            let verdict = self
                .with_proof(
                    on,
                    factors,
                    proof,
                    None,
                    (crate::messaging::CodePurpose::Verify, &action),
                    "register a security key",
                    effects,
                    audit,
                )
                .await?;
            self.forget_user(tenant.id, &user.external_id);
            return Ok(match verdict.is_accepted() {
                true => Ok((id, codes)),
                false => Err(KeyRefused::Proof),
            });
        }
        match self.store.apply(effects, audit.clone()).await {
            Ok(()) => {}
            Err(StoreError::Conflict("credential_registered")) => {
                let audit = refuse(audit, Refusal::Invalid);
                self.store
                    .append_audit(crate::model::AuditRecord {
                        reason: Some("credential_registered".into()),
                        ..audit
                    })
                    .await?;
                return Err(StoreError::Conflict("credential_registered").into());
            }
            Err(StoreError::Conflict("state_changed")) => {
                self.store
                    .append_audit(refuse(audit, Refusal::ChallengeMismatch))
                    .await?;
                return Ok(Err(KeyRefused::Answer(Refusal::ChallengeMismatch)));
            }
            Err(e) => return Err(e.into()),
        }
        self.queued();
        self.forget_user(tenant.id, &user.external_id);
        Ok(Ok((id, codes)))
    }
}

fn factor_ref(f: &Factor) -> FactorRef {
    FactorRef {
        id: f.id.clone(),
        version: f.version,
    }
}

fn verdict_of(o: crate::ports::AttemptOutcome) -> Verdict {
    match o {
        crate::ports::AttemptOutcome::Accepted { .. } => Verdict::Accepted,
        crate::ports::AttemptOutcome::Rejected { reason } => Verdict::Rejected(reason),
        // The key changed while it was judged (another answer counted): ask again.
        crate::ports::AttemptOutcome::Stale => Verdict::Rejected(RejectReason::WrongCode),
    }
}

fn method_disabled() -> CoreError {
    CoreError::conflict(
        "method_disabled",
        "security keys are not enabled for this organisation",
    )
}
