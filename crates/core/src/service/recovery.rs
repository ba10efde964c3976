//! Recovery codes and proving sensitive changes.
//!
//! A user gets [`RECOVERY_CODES`] codes of 80 random bits when their first factor is
//! confirmed, shown once; only keyed hashes are stored, bound to the user. A code is spent by
//! one conditional update in the transaction that carries what it proves (INV-02), so 30
//! parallel uses of one code give one success. Each use is emailed, with a warning when
//! [`RECOVERY_LOW`] or fewer are left. Wrong codes are counted per user in the store
//! ([`RECOVERY_FAILURES_PER_HOUR`]); at 80 bits guessing is hopeless anyway, the limit keeps
//! the attempts visible and cheap.
//!
//! Sensitive changes of the user's own settings (new recovery codes, an app password,
//! removing a factor) need a fresh proof: a code of one of their active factors, or one of
//! their recovery codes (the way back when the phone is lost).

use super::contact::ContactKind;
use super::*;
use crate::messaging::*;
use crate::security::*;

const HOUR_MS: i64 = 3_600_000;
const RECOVERY_HASH: &str = "recovery";

/// How the user proves a sensitive change.
#[derive(Debug, Clone, Copy)]
pub enum Proof<'a> {
    /// A code from one of the user's active factors: `factor_id` names it, or the change's
    /// own factor is meant.
    Code {
        code: &'a str,
        factor_id: Option<&'a str>,
    },
    Recovery(&'a str),
    /// A security key's answer to the ceremony `ceremony` that the page asking for the proof
    /// started, bound to one change in one account session
    /// ([`super::hosted_session::SignedIn::proof_binding`]).
    Key {
        ceremony: &'a str,
        response: &'a str,
        binding: &'a str,
    },
}

/// New recovery codes as shown to the user, once. No `Debug`: it holds the codes.
#[derive(Clone)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecoveryStatus {
    pub remaining: u32,
}

impl Twofold {
    fn recovery_hash(&self, user_id: i64, normalized: &str) -> Vec<u8> {
        self.hasher
            .hash(RECOVERY_HASH, format!("{user_id}:{normalized}").as_bytes())
            .0
            .to_vec()
    }

    /// A fresh set for the user and the effect that stores it (replacing any earlier set).
    pub(crate) fn new_recovery_codes(&self, user: &User, now: i64) -> (RecoveryCodes, Effect) {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let hashes = codes
            .iter()
            .filter_map(|c| normalize_recovery_code(c))
            .map(|n| self.recovery_hash(user.id, &n))
            .collect();
        let effect = Effect::ReplaceRecoveryCodes {
            tenant_id: user.tenant_id,
            user_id: user.id,
            hashes,
            hash_key_id: self.hasher.key_id().to_string(),
            at: now,
        };
        (RecoveryCodes { codes }, effect)
    }

    fn recovery_budget(user_id: i64) -> SendLimit {
        SendLimit {
            scope: format!("fail-recovery:{user_id}"),
            max: RECOVERY_FAILURES_PER_HOUR,
            window_ms: HOUR_MS,
        }
    }

    /// Spends one of the user's recovery codes and applies `effects` in the same transaction;
    /// `used_for` says in the notice what it was used for. A wrong, used or malformed code,
    /// and a full failure budget, are all the same rejection to the caller (INV-11).
    pub(crate) async fn use_recovery_code(
        &self,
        on: &On<'_>,
        typed: &str,
        used_for: &str,
        mut effects: Vec<Effect>,
        mut audit: AuditRecord,
    ) -> Result<Verdict, CoreError> {
        let On {
            tenant, user, meta, ..
        } = *on;
        let now = self.now();
        audit.at = now;
        audit.user_id = Some(user.id);
        let mut budgets = self.budgets(tenant, meta);
        budgets.push(Self::recovery_budget(user.id));
        let Some(normalized) = normalize_recovery_code(typed) else {
            return self.reject_recovery(audit, budgets).await;
        };
        let left = self.store.recovery_codes_left(user.id).await?;
        let after = left.saturating_sub(1);
        let warning = if after <= RECOVERY_LOW {
            format!("; only {after} recovery codes are left: make new ones")
        } else {
            String::new()
        };
        // A full budget refuses even a right code: reserving one failure in each and giving it
        // back in the same transaction is that check, made where no parallel attempt can slip
        // past it.
        effects.insert(
            0,
            Effect::UseRecoveryCode {
                user_id: user.id,
                code_hash: self.recovery_hash(user.id, &normalized),
                at: now,
            },
        );
        effects.insert(
            0,
            Effect::ChargeBudgets {
                limits: budgets.clone(),
                at: now,
            },
        );
        effects.push(Effect::RefundBudgets {
            limits: budgets.clone(),
            at: now,
        });
        effects.extend(self.notice(
            on,
            &format!("a recovery code was used to {used_for}{warning}"),
            None,
            Undo::Nothing,
        )?);
        audit.reason = Some(format!("recovery:{after}_left"));
        match self.store.apply(effects, audit.clone()).await {
            Ok(()) => {
                self.queued();
                self.forget_user(tenant.id, &user.external_id);
                Ok(Verdict::Accepted)
            }
            // No unused code with this hash, a full budget, or what the code carries no longer
            // applies: a failure either way.
            Err(StoreError::Conflict("state_changed")) => {
                self.reject_recovery(audit, budgets).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records a failed recovery code: one failure in each budget, counted only while the
    /// budget has room (exact on every node); a full one makes it `throttled`. The caller
    /// sees the same rejection either way (INV-11).
    async fn reject_recovery(
        &self,
        mut audit: AuditRecord,
        budgets: Vec<SendLimit>,
    ) -> Result<Verdict, CoreError> {
        audit.outcome = "denied".into();
        audit.reason = Some(format!("recovery:{}", RejectReason::WrongCode.as_str()));
        let count = vec![Effect::ChargeBudgets {
            limits: budgets,
            at: audit.at,
        }];
        match self.store.apply(count, audit.clone()).await {
            Ok(()) => Ok(Verdict::Rejected(RejectReason::WrongCode)),
            Err(StoreError::Conflict("state_changed")) => {
                audit.reason = Some(format!("recovery:{}", RejectReason::Throttled.as_str()));
                self.store.append_audit(audit).await?;
                Ok(Verdict::Rejected(RejectReason::Throttled))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The user's factors that may prove a sensitive change: all of them, except for a
    /// profile that signs in with a security key only, whose codes no longer prove anything
    /// (a phished code must not remove the key or mint recovery codes).
    pub(crate) async fn provers(
        &self,
        on: &On<'_>,
        factors: &[Factor],
    ) -> Result<Vec<Factor>, CoreError> {
        let (policy, _) = self.policy_of(on.tenant).await?;
        let keys_only = policy.keys_only(on.user.profile.as_deref(), self.now());
        Ok(factors
            .iter()
            .filter(|f| !keys_only || f.kind == crate::policy::Method::Webauthn.as_str())
            .cloned()
            .collect())
    }

    /// Runs `effects` only with a valid `proof`, in the same transaction. `own` is the
    /// factor the change is about, the default prover for [`Proof::Code`]; `action` names the
    /// change, and a code sent for it is bound to it (INV-05).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn with_proof(
        &self,
        on: &On<'_>,
        factors: &[Factor],
        proof: Proof<'_>,
        own: Option<&str>,
        (purpose, action): (CodePurpose, &[&str]),
        used_for: &str,
        effects: Vec<Effect>,
        audit: AuditRecord,
    ) -> Result<Verdict, CoreError> {
        let (code, factor_id) = match proof {
            Proof::Recovery(typed) => {
                return self
                    .use_recovery_code(on, typed, used_for, effects, audit)
                    .await
            }
            Proof::Code { code, factor_id } => (OtpCode::parse(code)?, factor_id.or(own)),
            Proof::Key {
                ceremony,
                response,
                binding,
            } => {
                let binding = super::security_keys::Binding::new(
                    crate::webauthn::CeremonyPurpose::Proof,
                    binding,
                );
                let checked = self.check_key(on, binding, ceremony, response, audit, |_| effects);
                return Ok(checked.await?.0);
            }
        };
        let bad_prover = || CoreError::Invalid {
            field: "code_factor_id",
            message: "must name an active factor of this user".into(),
        };
        let prover_id =
            FactorId::parse(factor_id.ok_or_else(bad_prover)?).map_err(|_| bad_prover())?;
        let prover = factors
            .iter()
            .find(|f| f.id == prover_id.as_str() && f.status == FactorStatus::Active)
            .ok_or_else(bad_prover)?;
        if ContactKind::of(prover).is_some() {
            return self
                .consume(
                    on,
                    prover,
                    purpose,
                    Some(self.action_hash(action)),
                    &code,
                    effects,
                    audit,
                )
                .await;
        }
        self.attempt_with(
            on.tenant,
            &on.user.external_id,
            on.meta,
            audit,
            |user, now| {
                let f = user.factor(&prover_id)?;
                let matched = totp::verify_use(&f.secret, code.as_str(), &f.params, f.drift, now)
                    .map(|step| f.step_match(step, f.drift, false));
                Ok(Picked {
                    factors: vec![f.as_ref()],
                    matched,
                    on_accept: effects.clone(),
                })
            },
        )
        .await
    }

    pub async fn recovery_status(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<RecoveryStatus, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        Ok(RecoveryStatus {
            remaining: self.store.recovery_codes_left(user.id).await?,
        })
    }

    /// New recovery codes (the old ones die), proven by a fresh second factor or one of the
    /// current recovery codes. The codes are returned only when the proof held.
    pub async fn regenerate_recovery_codes(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        proof: Proof<'_>,
    ) -> Result<(Verdict, Option<RecoveryCodes>), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        known_shape(external_id)?;
        let (user, factors) = self
            .store
            .user_with_factors(tenant.id, external_id)
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        undo::ensure_not_frozen(&user)?;
        if !factors.iter().any(|f| f.status == FactorStatus::Active) {
            return Err(CoreError::conflict(
                "no_active_factor",
                "recovery codes back up a sign-in method: enrol one first",
            ));
        }
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let now = self.now();
        let (codes, replace) = self.new_recovery_codes(&user, now);
        let mut effects = vec![Effect::RequireNotFrozen { user_id: user.id }, replace];
        effects.extend(self.notice(
            &on,
            "new recovery codes were made; the old ones no longer work",
            None,
            Undo::DeleteRecoveryCodes { since: now },
        )?);
        let audit = self.audit(actor, meta, "recovery.regenerate", Some(tenant.id));
        let verdict = self
            .with_proof(
                &on,
                &self.provers(&on, &factors).await?,
                proof,
                None,
                (CodePurpose::Sensitive, &SENSITIVE_RECOVERY),
                "make new recovery codes",
                effects,
                audit,
            )
            .await?;
        self.queued();
        Ok((verdict, verdict.is_accepted().then_some(codes)))
    }
}

/// The action a code sent "for new recovery codes" is bound to.
pub(crate) const SENSITIVE_RECOVERY: [&str; 2] = ["sensitive", "recovery_codes"];
/// The action a code sent "for an app password" is bound to.
pub(crate) const SENSITIVE_APP_PASSWORD: [&str; 2] = ["sensitive", "app_password"];
/// The action a code sent "to sign out everywhere" is bound to.
pub(crate) const SENSITIVE_SIGN_OUT: [&str; 2] = ["sensitive", "sign_out_everywhere"];
