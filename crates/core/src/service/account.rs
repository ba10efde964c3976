//! What the account pages add to the user-facing operations: a signed-in user acts on their
//! own account only (every call takes the [`SignedIn`] of their session, never an external
//! id from the browser), and the changes that end all the user's sessions keep the one they
//! were made from (see [`Twofold::carry_session_over`]). Listing, enrolling, confirming,
//! revoking and new recovery codes are the ordinary operations, called with the session's
//! actor and user; their checks and audit rows are the same as through the API.

use super::hosted_session::{Audience, SignedIn};
use super::recovery::{Proof, SENSITIVE_SIGN_OUT};
use super::security_keys::Binding;
use super::*;
use crate::messaging::{CodePurpose, PhoneChangeState};
use crate::webauthn::CeremonyPurpose;

/// How many of the user's newest audit rows are searched for a method's last use.
const LAST_USE_SCAN: u32 = 200;

/// One of the user's methods as their security settings list it. Never the seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMethod {
    pub factor: FactorView,
    /// The last accepted code of this method, if it is among the user's recent audit rows
    /// (an authenticator app's last accepted time step otherwise).
    pub last_used_at: Option<i64>,
}

fn not_account(who: &SignedIn) -> Result<(), CoreError> {
    match who.audience {
        Audience::Account => Ok(()),
        Audience::Console => Err(CoreError::Forbidden(
            "the admin console cannot change a user's own security settings",
        )),
    }
}

impl Twofold {
    /// The user's methods, active first, newest first, with when each was last used.
    pub async fn account_methods(&self, who: &SignedIn) -> Result<Vec<AccountMethod>, CoreError> {
        not_account(who)?;
        let mut factors = self.store.factors_of(who.user.id).await?;
        factors.sort_by_key(|f| (f.status != FactorStatus::Active, -f.created_at));
        let recent = self
            .store
            .list_audit(AuditQuery {
                tenant_id: Some(who.tenant.id),
                user_id: Some(who.user.id),
                action: None,
                before_id: None,
                limit: LAST_USE_SCAN,
            })
            .await?;
        Ok(factors
            .iter()
            .map(|f| {
                let audited = recent
                    .iter()
                    .find(|e| {
                        let r = &e.record;
                        r.factor_id.as_deref() == Some(f.id.as_str())
                            && r.outcome == "accepted"
                            && r.action.ends_with(".verify")
                    })
                    .map(|e| e.record.at);
                let stepped = (f.kind == "totp" && f.last_step > 0 && f.period > 0)
                    .then(|| f.last_step * i64::from(f.period) * 1000);
                AccountMethod {
                    factor: FactorView::from(f),
                    last_used_at: audited.or(stepped),
                }
            })
            .collect())
    }

    /// The ceremony that registers a new security key from the account pages.
    pub async fn account_key_ceremony(&self, who: &SignedIn) -> Result<KeyCeremony, CoreError> {
        not_account(who)?;
        let binding = Binding::new(CeremonyPurpose::Register, &who.session_id);
        self.key_registration_ceremony(&who.tenant, &who.user, binding)
            .await
    }

    /// Adds the key a browser registered from the account pages, named `name`. Registering
    /// needs no fresh code: the session itself took a second factor, and every addition is
    /// told to the user with a link that removes it ("this wasn't me"). Recovery codes come
    /// back when it is the user's only method (they had removed every other).
    pub async fn account_add_key(
        &self,
        who: &SignedIn,
        meta: &RequestMeta,
        ceremony_id: &str,
        response: &str,
        name: &str,
    ) -> Result<Result<(String, Option<RecoveryCodes>), KeyRefused>, CoreError> {
        not_account(who)?;
        let on = On {
            actor: &who.actor,
            meta,
            tenant: &who.tenant,
            user: &who.user,
        };
        let binding = Binding::new(CeremonyPurpose::Register, &who.session_id);
        self.register_key(&on, binding, ceremony_id, response, name, None, |_| {
            Vec::new()
        })
        .await
    }

    /// The ceremony that lets a security key prove a sensitive change on the account pages;
    /// `None` when the user has no usable key.
    pub async fn account_proof_ceremony(
        &self,
        who: &SignedIn,
        change: &str,
    ) -> Result<Option<KeyCeremony>, CoreError> {
        not_account(who)?;
        let bound = who.proof_binding(change);
        let binding = Binding::new(CeremonyPurpose::Proof, &bound);
        self.key_assertion_ceremony(&who.tenant, &who.user, binding)
            .await
    }

    /// Removes one of the user's methods with a fresh proof; the session it was done from
    /// carries over (every other session and remembered device ends). The new session's
    /// token comes back when the removal happened.
    pub async fn account_remove_method(
        &self,
        who: &SignedIn,
        meta: &RequestMeta,
        factor_id: &str,
        proof: Proof<'_>,
    ) -> Result<(Verdict, Option<IssuedToken>), CoreError> {
        not_account(who)?;
        let (renewed, also) = self.carry_session_over(who);
        let verdict = self
            .disable_factor_and(
                &who.actor,
                meta,
                &who.tenant.slug,
                &who.user.external_id,
                factor_id,
                Some(proof),
                also,
            )
            .await?;
        let active = self
            .store
            .session(&self.token_hash(super::hosted_session::SESSION_PREFIX, &renewed.token))
            .await?
            .is_some();
        Ok((
            verdict,
            (verdict.is_accepted() && active).then_some(renewed),
        ))
    }

    /// The current step's code of a phone change; when it swaps the numbers, the session it
    /// was done from carries over and its new token comes back.
    pub async fn account_confirm_phone_change(
        &self,
        who: &SignedIn,
        meta: &RequestMeta,
        (factor_id, change_id): (&str, &str),
        code: &str,
    ) -> Result<
        (
            Verdict,
            PhoneChangeView,
            Option<SendReceipt>,
            Option<IssuedToken>,
        ),
        CoreError,
    > {
        not_account(who)?;
        let (renewed, also) = self.carry_session_over(who);
        let (verdict, view, receipt) = self
            .confirm_phone_change_and(
                &who.actor,
                meta,
                &who.tenant.slug,
                &who.user.external_id,
                (factor_id, change_id),
                code,
                also,
            )
            .await?;
        let swapped = verdict.is_accepted() && view.state == PhoneChangeState::Done;
        Ok((verdict, view, receipt, swapped.then_some(renewed)))
    }

    /// Every session and remembered device of the user ends, the account session included,
    /// proven by a fresh code (or a recovery code): a stolen account cookie alone cannot lock
    /// the real user out of everything at once.
    pub async fn account_sign_out_everywhere(
        &self,
        who: &SignedIn,
        meta: &RequestMeta,
        proof: Proof<'_>,
    ) -> Result<Verdict, CoreError> {
        not_account(who)?;
        let (user, factors) = self
            .store
            .user_with_factors(who.tenant.id, &who.user.external_id)
            .await?
            .ok_or(CoreError::NotFound("user"))?;
        let (effects, audit) = self
            .sign_out_everywhere_effects(&who.actor, meta, &who.tenant, &user)
            .await?;
        let on = On {
            actor: &who.actor,
            meta,
            tenant: &who.tenant,
            user: &user,
        };
        let verdict = self
            .with_proof(
                &on,
                &self.provers(&on, &factors).await?,
                proof,
                None,
                (CodePurpose::Sensitive, &SENSITIVE_SIGN_OUT),
                "sign out everywhere",
                effects,
                audit,
            )
            .await?;
        self.queued();
        self.forget_user(who.tenant.id, &who.user.external_id);
        Ok(verdict)
    }
}
