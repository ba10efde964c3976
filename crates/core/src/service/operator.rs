//! Operator controls: switching 2FA off for one user or for a whole tenant. Only operator keys
//! and the CLI may; each is audited, the users are emailed, and every session, remembered
//! device and app password of an affected user dies with their credential generation (INV-06).

use super::jobs::disable_job;
use super::*;
use crate::messaging::Effect;
use crate::policy::Enforcement;
use crate::security::Undo;

fn operators_only(actor: &Actor) -> Result<(), CoreError> {
    if actor.is_operator() {
        Ok(())
    } else {
        Err(CoreError::Forbidden(
            "only an operator key or the CLI may switch two-step verification off for users",
        ))
    }
}

impl Twofold {
    /// The effects that switch 2FA off for one user: factors and recovery codes go, the
    /// generation moves, a frozen user is unfrozen (an administrator has acted), the user is
    /// emailed and the integrator told.
    pub(crate) async fn user_2fa_off_effects(&self, on: &On<'_>) -> Result<Vec<Effect>, CoreError> {
        let user = on.user;
        // Older "this wasn't me" links must not bring back what an administrator removed.
        let mut effects = vec![
            Effect::DeleteAllFactors { user_id: user.id },
            Effect::BumpGeneration { user_id: user.id },
            Effect::ExpireRevertLinks {
                user_id: user.id,
                at: self.now(),
            },
        ];
        if user.frozen_at.is_some() {
            effects.push(Effect::SetFrozen {
                user_id: user.id,
                frozen_at: None,
            });
        }
        effects.extend(self.notice(
            on,
            "two-step verification was switched off for your account by an administrator; \
             every sign-in method and recovery code was removed and you were signed out \
             everywhere",
            None,
            Undo::Nothing,
        )?);
        let data = serde_json::json!({ "user": user.external_id });
        effects.extend(
            self.event_effects(on.tenant, "user.2fa_disabled", data)
                .await?,
        );
        Ok(effects)
    }

    /// Switches 2FA off for one user (a lost phone and no recovery code, a compromised
    /// account being cleaned up).
    pub async fn disable_user_2fa(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
    ) -> Result<(), CoreError> {
        operators_only(actor)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let effects = self.user_2fa_off_effects(&on).await?;
        let mut audit = self.audit(actor, meta, "user.2fa_disable", Some(tenant.id));
        audit.user_id = Some(user.id);
        self.store.apply(effects, audit).await?;
        self.queued();
        self.forget_user(tenant.id, external_id);
        Ok(())
    }

    /// Switches 2FA off for the whole tenant: the policy goes to `off` at once, and a job
    /// removes every user's factors in batches (durably, resumable, once per user).
    pub async fn disable_tenant_2fa(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
    ) -> Result<(), CoreError> {
        operators_only(actor)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let (policy, version) = self.policy_of(&tenant).await?;
        let now = self.now();
        let off = crate::policy::Policy {
            enforcement: Enforcement::Off,
            ..policy
        };
        let json = serde_json::to_string(&off)
            .map_err(|e| CoreError::Internal(format!("policy json: {e}")))?;
        let mut effects = vec![
            Effect::SetPolicy {
                tenant_id: tenant.id,
                json,
                expected_version: version,
                at: now,
            },
            Effect::InsertJob(disable_job(tenant.id, &tenant.slug, now)?),
        ];
        let admins = self.store.admins_of(tenant.id).await?;
        effects.extend(self.admin_notices(
            &tenant,
            &admins,
            actor,
            meta,
            "an administrator of this service switched two-step verification off for the \
             whole organisation; every user's sign-in methods are being removed",
        )?);
        let data = serde_json::json!({ "version": version + 1 });
        effects.extend(self.event_effects(&tenant, "policy.changed", data).await?);
        let audit = self.audit(actor, meta, "tenant.2fa_disable", Some(tenant.id));
        self.store
            .apply(effects, audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::conflict(
                    "state_changed",
                    "the tenant's settings changed meanwhile; run the command again",
                ),
                e => e.into(),
            })?;
        self.queued();
        self.jobs_queued();
        Ok(())
    }
}
