//! App passwords: for client apps that cannot show a second step (IMAP, old desktop apps),
//! where the tenant allows it, a user may create a random password scoped to one client. It
//! is shown once, stored only as a keyed hash, listed and revoked by the user, proven by a
//! fresh second factor when created, audited on every use, and dies with the user's credential
//! generation (INV-06) like a session.

use super::recovery::{Proof, SENSITIVE_APP_PASSWORD};
use super::*;
use crate::messaging::{CodePurpose, Effect};
use crate::security::*;

const APP_PASSWORD_HASH: &str = "app_password";
/// Live app passwords per user.
pub const MAX_APP_PASSWORDS: usize = 20;

/// An app password as handed out once. No `Debug`: it holds the password.
#[derive(Clone)]
pub struct IssuedAppPassword {
    pub id: String,
    pub client_id: String,
    pub label: String,
    pub password: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppPasswordView {
    pub id: String,
    pub client_id: String,
    pub label: String,
    pub active: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Twofold {
    fn app_password_hash(&self, tenant_id: i64, normalized: &str) -> Vec<u8> {
        self.hasher
            .hash(
                APP_PASSWORD_HASH,
                format!("{tenant_id}:{normalized}").as_bytes(),
            )
            .0
            .to_vec()
    }

    fn live(p: &AppPassword, user: &User) -> bool {
        p.revoked_at.is_none() && p.generation == user.generation && p.user_id == user.id
    }

    /// Creates an app password for `client_id`, proven by a fresh second factor. Returns the
    /// password only when the proof held.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_app_password(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        client_id: &str,
        label: Option<&str>,
        proof: Proof<'_>,
    ) -> Result<(Verdict, Option<IssuedAppPassword>), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let (policy, _) = self.policy_of(&tenant).await?;
        if !policy.client(client_id).is_some_and(|c| c.app_passwords) {
            return Err(CoreError::Invalid {
                field: "client_id",
                message: "is not a client app for which the tenant allows app passwords".into(),
            });
        }
        let label = match label {
            Some(l) => DisplayName::parse("label", l)?.into_inner(),
            None => client_id.to_string(),
        };
        if label.chars().count() > MAX_LABEL_CHARS {
            return Err(CoreError::Invalid {
                field: "label",
                message: format!("must be at most {MAX_LABEL_CHARS} characters"),
            });
        }
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
                "an app password stands in for two-step verification: enrol a method first",
            ));
        }
        if policy.keys_only(user.profile.as_deref(), self.now()) {
            return Err(CoreError::conflict(
                "keys_only",
                "this user signs in with a security key only; an app password cannot stand in \
                 for it",
            ));
        }
        let live = self
            .store
            .app_passwords_of(user.id)
            .await?
            .iter()
            .filter(|p| Self::live(p, &user))
            .count();
        if live >= MAX_APP_PASSWORDS {
            return Err(CoreError::conflict(
                "too_many_app_passwords",
                format!("at most {MAX_APP_PASSWORDS} app passwords; revoke one first"),
            ));
        }
        let now = self.now();
        let password = new_app_password();
        let normalized = normalize_app_password(&password)
            .ok_or_else(|| CoreError::Internal("fresh app password does not parse".into()))?;
        let record = AppPassword {
            id: login::new_id("apw"),
            token_hash: self.app_password_hash(tenant.id, &normalized),
            tenant_id: tenant.id,
            user_id: user.id,
            client_id: client_id.to_string(),
            label: label.clone(),
            generation: user.generation,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        let issued = IssuedAppPassword {
            id: record.id.clone(),
            client_id: client_id.to_string(),
            label,
            password,
            created_at: now,
        };
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        let mut effects = vec![
            Effect::RequireNotFrozen { user_id: user.id },
            Effect::InsertAppPassword(record),
        ];
        effects.extend(self.notice(
            &on,
            &format!("an app password was created for {client_id}"),
            None,
            Undo::RevokeAppPassword {
                id: issued.id.clone(),
            },
        )?);
        let mut audit = self.audit(actor, meta, "app_password.create", Some(tenant.id));
        audit.reason = Some(format!("{}:{client_id}", issued.id));
        let verdict = self
            .with_proof(
                &on,
                &self.provers(&on, &factors).await?,
                proof,
                None,
                (CodePurpose::Sensitive, &SENSITIVE_APP_PASSWORD),
                "create an app password",
                effects,
                audit,
            )
            .await?;
        self.queued();
        Ok((verdict, verdict.is_accepted().then_some(issued)))
    }

    pub async fn list_app_passwords(
        &self,
        actor: &Actor,
        slug: &str,
        external_id: &str,
    ) -> Result<Vec<AppPasswordView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        Ok(self
            .store
            .app_passwords_of(user.id)
            .await?
            .iter()
            .map(|p| AppPasswordView {
                id: p.id.clone(),
                client_id: p.client_id.clone(),
                label: p.label.clone(),
                active: Self::live(p, &user),
                created_at: p.created_at,
                last_used_at: p.last_used_at,
                revoked_at: p.revoked_at,
            })
            .collect())
    }

    pub async fn revoke_app_password(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        self.revoke_for_user(
            actor,
            meta,
            &tenant,
            external_id,
            "app_password.revoke",
            "app_password",
            id,
            |user_id, at| {
                vec![Effect::RevokeAppPassword {
                    id: id.to_string(),
                    user_id,
                    at,
                }]
            },
        )
        .await
    }

    /// The live app password of `user` for `client_id` behind `typed`, if any.
    pub(crate) async fn app_password_of(
        &self,
        user: &User,
        client_id: &str,
        typed: &str,
    ) -> Result<Option<AppPassword>, CoreError> {
        let Some(normalized) = normalize_app_password(typed) else {
            return Ok(None);
        };
        let found = self
            .store
            .app_password(&self.app_password_hash(user.tenant_id, &normalized))
            .await?;
        Ok(found.filter(|p| {
            Self::live(p, user) && p.tenant_id == user.tenant_id && p.client_id == client_id
        }))
    }
}
