//! Security keys on the hosted pages: the challenge step signs in with one, the enrolment
//! step registers the first. Each ceremony is bound to the pending login it was made for, and
//! the authorization code is minted in the transaction that accepts the key's answer, exactly
//! like a typed code's.

use super::login::SecondStep;
use super::oidc::HostedStep;
use super::security_keys::Binding;
use super::*;
use crate::oidc::ENROLL_CODE_TTL_MS;
use crate::policy::Method;
use crate::webauthn::CeremonyPurpose;

impl Twofold {
    /// The ceremony the challenge page runs when the user has a usable security key.
    pub async fn hosted_key_ceremony(&self, token: &str) -> Result<Option<KeyCeremony>, CoreError> {
        let (tenant, login, user, _) = self.hosted_of(token).await?;
        let binding = Binding::new(CeremonyPurpose::SignIn, &login.id);
        self.key_assertion_ceremony(&tenant, &user, binding).await
    }

    /// A security key's answer on the hosted challenge: completes the login (amr `hwk` or
    /// `swk`) and mints the authorization code in one transaction. Anything that does not
    /// verify is [`HostedStep::Rejected`], like a wrong code.
    pub async fn hosted_key_verify(
        &self,
        meta: &RequestMeta,
        token: &str,
        ceremony_id: &str,
        response: &str,
        remember_device: bool,
    ) -> Result<HostedStep, CoreError> {
        let (tenant, login, user, hosted) = self.hosted_of(token).await?;
        let remember_device =
            remember_device && super::hosted_session::Audience::of_login(&hosted).is_none();
        // Failures count against the end user's IP as the login recorded it (INV-08).
        let meta = &RequestMeta {
            client_ip: login.ip.clone(),
            ..meta.clone()
        };
        let (policy, _) = self.policy_of(&tenant).await?;
        let now = self.now();
        let step = SecondStep {
            tenant: &tenant,
            login: &login,
            user: &user,
        };
        let device = self.remembered_device(&policy, step, remember_device, None, now);
        let mut auth_code = String::new();
        let mut minter = Some(self.code_minter(&hosted, &user, now, &mut auth_code));
        let actor = Self::hosted_actor(&hosted);
        let on = On {
            actor: &actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let binding = Binding::new(CeremonyPurpose::SignIn, &login.id);
        let audit = self.audit(&actor, meta, "login.verify", Some(tenant.id));
        let judged = self
            .check_key(&on, binding, ceremony_id, response, audit, |amr| {
                let (mut effects, issued) =
                    self.second_step_effects(&policy, &user, &login, amr, now);
                let minted = minter
                    .take()
                    .map(|m| m(&issued.id, &format!("{},{amr}", login.primary)));
                effects.extend(minted.unwrap_or_default());
                effects.extend(device.as_ref().map(|(_, e)| e.clone()));
                effects
            })
            .await;
        drop(minter);
        match judged {
            Ok((verdict, _)) => Ok(self.hosted_done(
                &hosted,
                &auth_code,
                StepOutcome {
                    verdict,
                    session: None,
                    device: device.map(|(d, _)| d).filter(|_| verdict.is_accepted()),
                    recovery_codes: None,
                },
            )),
            Err(CoreError::NotFound(_)) | Err(CoreError::Invalid { .. }) => {
                Ok(HostedStep::Rejected)
            }
            Err(e) => Err(e),
        }
    }

    /// The registration ceremony of the hosted enrolment page, for a login that waits for an
    /// enrolment and may enrol a security key.
    pub async fn hosted_enroll_key_ceremony(&self, token: &str) -> Result<KeyCeremony, CoreError> {
        let (tenant, _) = self.hosted_login_of(token).await?;
        let (login, user, _) = self
            .enrolling_login(&tenant, token, Method::Webauthn)
            .await?;
        let binding = Binding::new(CeremonyPurpose::Register, &login.id);
        self.key_registration_ceremony(&tenant, &user, binding)
            .await
    }

    /// The new key's answer on the hosted enrolment page: one transaction registers it,
    /// completes the login, mints the session, the recovery codes and the authorization code.
    /// A user who has methods that no longer count (a profile that now needs a key) proves
    /// it is them with one of those, or a recovery code (`step_up`), in that transaction too:
    /// a password alone never adds a factor beside another. A refusal comes back with why
    /// (the page says what to try).
    pub async fn hosted_enroll_key(
        &self,
        meta: &RequestMeta,
        token: &str,
        (ceremony_id, response, name): (&str, &str, &str),
        step_up: Option<Proof<'_>>,
    ) -> Result<(Result<HostedStep, KeyRefused>, Option<RecoveryCodes>), CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (login, user, others) = self
            .enrolling_login(&tenant, token, Method::Webauthn)
            .await?;
        let step_up = match (others.is_empty(), step_up) {
            (true, _) => None,
            (false, Some(proof)) => Some((others.as_slice(), proof)),
            (false, None) => {
                return Err(CoreError::Invalid {
                    field: "code",
                    message: "first confirm it is you with a code from your current method, \
                              or a recovery code"
                        .into(),
                })
            }
        };
        let (policy, _) = self.policy_of(&tenant).await?;
        let now = self.now();
        let actor = Self::hosted_actor(&hosted);
        let on = On {
            actor: &actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let binding = Binding::new(CeremonyPurpose::Register, &login.id);
        let mut auth_code = String::new();
        let registered = self
            .register_key(&on, binding, ceremony_id, response, name, step_up, |amr| {
                let (mut effects, session) =
                    self.second_step_effects(&policy, &user, &login, amr, now);
                let (code, effect) = self.auth_code_effect(
                    &hosted,
                    &user,
                    &format!("{},{amr}", login.primary),
                    true,
                    Some(&session.id),
                    now,
                    ENROLL_CODE_TTL_MS,
                );
                auth_code = code;
                effects.push(effect);
                effects
            })
            .await?;
        Ok(match registered {
            Ok((_, codes)) => {
                let done = StepOutcome {
                    verdict: Verdict::Accepted,
                    session: None,
                    device: None,
                    recovery_codes: None,
                };
                (Ok(self.hosted_done(&hosted, &auth_code, done)), codes)
            }
            Err(r) => (Err(r), None),
        })
    }

    /// "Send me a code" for the step-up of a key registration: a code to one of the user's
    /// text-message or email methods, bound to this login's key registration (INV-05).
    pub async fn hosted_enroll_step_up_send(
        &self,
        meta: &RequestMeta,
        token: &str,
        factor_id: &str,
    ) -> Result<SendReceipt, CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (login, user, others) = self
            .enrolling_login(&tenant, token, Method::Webauthn)
            .await?;
        let factor = others
            .iter()
            .find(|f| f.id == factor_id)
            .ok_or(CoreError::NotFound("factor"))?;
        let kind = super::ContactKind::of(factor).ok_or(CoreError::NotFound("factor"))?;
        let mut audit = self.audit(
            &Self::hosted_actor(&hosted),
            meta,
            "code.send",
            Some(tenant.id),
        );
        audit.user_id = Some(user.id);
        audit.factor_id = Some(factor.id.clone());
        audit.reason = Some("enrol-key".into());
        self.send_code_to(
            &tenant,
            &user,
            &factor.id,
            kind.channel(),
            factor.destination.as_deref().unwrap_or_default(),
            crate::messaging::CodePurpose::Verify,
            Some(self.action_hash(&["enrol-key", &login.id])),
            Vec::new(),
            audit,
            None,
        )
        .await
    }
}
