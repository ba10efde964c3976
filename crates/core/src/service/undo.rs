//! "This wasn't me": every security notice carries a single-use link, valid for seven days.
//! Opening it only shows what happened (mail scanners open links by themselves); confirming
//! it, a POST, does everything in one transaction: puts back what can be put back (a removed
//! factor returns, a new phone number is dropped, a new factor or app password goes), signs
//! the user out everywhere (INV-06), freezes their 2FA settings until an admin lifts the
//! freeze, and tells the tenant's admins.

use super::*;
use crate::messaging::Effect;
use crate::security::*;

/// Prefix of the link's token (`tfr_` + 43 characters).
const REVERT_PREFIX: &str = "tfr";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RevertState {
    Usable,
    Used,
    Expired,
}

/// What the link's page shows. Never the user's identity beyond what the email said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RevertView {
    pub change: String,
    pub state: RevertState,
    pub expires_at: i64,
    /// What confirming puts back, in words; `None` when only signing out and freezing help.
    pub undo: Option<String>,
}

fn undo_words(undo: &Undo) -> Option<String> {
    match undo {
        Undo::Nothing => None,
        Undo::RemoveFactor { .. } => Some("the new sign-in method is removed".into()),
        Undo::RestoreFactor { .. } => Some("the removed sign-in method comes back".into()),
        Undo::RestorePhone { .. } => Some("your previous phone number is put back".into()),
        Undo::RevokeAppPassword { .. } => Some("the new app password is revoked".into()),
        Undo::DeleteRecoveryCodes { .. } => Some("the new recovery codes stop working".into()),
    }
}

impl Twofold {
    /// A new link for a notice about `change`, and its token (only its hash is stored).
    pub(crate) fn revert_link(
        &self,
        tenant_id: i64,
        user_id: i64,
        change: &str,
        undo: &Undo,
        now: i64,
    ) -> Result<(RevertLink, String), CoreError> {
        let (token, token_hash) = self.mint_token(REVERT_PREFIX);
        let undo = serde_json::to_string(undo)
            .map_err(|e| CoreError::Internal(format!("undo json: {e}")))?;
        let link = RevertLink {
            id: login::new_id("rvt"),
            token_hash,
            tenant_id,
            user_id,
            undo,
            change: change.chars().take(500).collect(),
            created_at: now,
            expires_at: now + REVERT_TTL_MS,
            used_at: None,
        };
        Ok((link, token))
    }

    /// The link behind a token, or `NotFound("link")` for anything that is not one.
    async fn revert_link_of(&self, token: &str) -> Result<(RevertLink, Undo), CoreError> {
        if crate::tokens::parse(crate::tokens::TokenKind::Revert, token).is_none() {
            return Err(CoreError::NotFound("link"));
        }
        let link = self
            .store
            .revert_link(&self.token_hash(REVERT_PREFIX, token))
            .await?
            .ok_or(CoreError::NotFound("link"))?;
        let undo = serde_json::from_str(&link.undo)
            .map_err(|e| CoreError::Internal(format!("revert link {}: {e}", link.id)))?;
        Ok((link, undo))
    }

    fn revert_view(&self, link: &RevertLink, undo: &Undo, now: i64) -> RevertView {
        RevertView {
            change: link.change.clone(),
            state: match (link.used_at, now < link.expires_at) {
                (Some(_), _) => RevertState::Used,
                (None, false) => RevertState::Expired,
                (None, true) => RevertState::Usable,
            },
            expires_at: link.expires_at,
            undo: undo_words(undo),
        }
    }

    /// What the link's page shows; changes nothing.
    pub async fn revert_preview(&self, token: &str) -> Result<RevertView, CoreError> {
        let (link, undo) = self.revert_link_of(token).await?;
        Ok(self.revert_view(&link, &undo, self.now()))
    }

    /// The effects that put back what `undo` names, where the user's factors still allow it:
    /// a later legitimate change is never overwritten.
    async fn undo_effects(&self, user: &User, undo: &Undo) -> Result<Vec<Effect>, CoreError> {
        let factors = self.store.factors_of(user.id).await?;
        let find = |id: &str| factors.iter().find(|f| f.id == id);
        Ok(match undo {
            Undo::Nothing => Vec::new(),
            Undo::RemoveFactor { factor_id } => find(factor_id)
                .map(|f| Effect::DeleteFactor {
                    factor_id: f.id.clone(),
                })
                .into_iter()
                .collect(),
            Undo::RestoreFactor { factor } => {
                match (find(&factor.id), factor.restore(user.tenant_id, user.id)) {
                    (None, Some(f)) => vec![Effect::RestoreFactor(f)],
                    _ => Vec::new(),
                }
            }
            Undo::RestorePhone {
                factor_id,
                old_phone,
                new_phone,
            } => find(factor_id)
                .filter(|f| f.destination.as_deref() == Some(new_phone.as_str()))
                .map(|f| Effect::RestorePhone {
                    factor_id: f.id.clone(),
                    expected: new_phone.clone(),
                    phone: old_phone.clone(),
                })
                .into_iter()
                .collect(),
            Undo::DeleteRecoveryCodes { since } => vec![Effect::DeleteRecoveryCodesSince {
                user_id: user.id,
                since: *since,
            }],
            Undo::RevokeAppPassword { id } => self
                .store
                .app_passwords_of(user.id)
                .await?
                .iter()
                .filter(|p| p.id == *id && p.revoked_at.is_none())
                .map(|p| Effect::RevokeAppPassword {
                    id: p.id.clone(),
                    user_id: user.id,
                    at: self.now(),
                })
                .collect(),
        })
    }

    /// Confirms "this wasn't me" (the page's POST). Used and expired links are refused with
    /// their own codes: the person holding the email deserves to know which.
    pub async fn revert_confirm(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> Result<RevertView, CoreError> {
        let (link, undo) = self.revert_link_of(token).await?;
        let now = self.now();
        match self.revert_view(&link, &undo, now).state {
            RevertState::Used => {
                return Err(CoreError::conflict(
                    "link_used",
                    "this link was used already; your account was secured then. Contact your \
                     administrator if something still looks wrong",
                ))
            }
            RevertState::Expired => {
                return Err(CoreError::conflict(
                    "link_expired",
                    "this link expired (links work for 7 days); contact your administrator",
                ))
            }
            RevertState::Usable => {}
        }
        let user = self
            .store
            .user_by_id(link.user_id)
            .await?
            .ok_or(CoreError::NotFound("link"))?;
        let tenant = self
            .store
            .tenant_by_id(link.tenant_id)
            .await?
            .ok_or(CoreError::NotFound("link"))?;
        let mut effects = vec![Effect::UseRevertLink {
            id: link.id.clone(),
            at: now,
        }];
        let undoing = self.undo_effects(&user, &undo).await?;
        // Enrolments in progress go too: the freeze must not meet a factor someone else is
        // about to confirm.
        let removed: Vec<&str> = undoing
            .iter()
            .filter_map(|e| match e {
                Effect::DeleteFactor { factor_id } => Some(factor_id.as_str()),
                _ => None,
            })
            .collect();
        let pending: Vec<Effect> = self
            .store
            .factors_of(user.id)
            .await?
            .into_iter()
            .filter(|f| f.status == FactorStatus::Pending && !removed.contains(&f.id.as_str()))
            .map(|f| Effect::DeleteFactor { factor_id: f.id })
            .collect();
        effects.extend(undoing);
        effects.extend(pending);
        effects.push(Effect::BumpGeneration { user_id: user.id });
        if user.frozen_at.is_none() {
            effects.push(Effect::SetFrozen {
                user_id: user.id,
                frozen_at: Some(now),
            });
        }
        let admins = self.store.admins_of(tenant.id).await?;
        let admins: Vec<User> = admins.into_iter().filter(|a| a.id != user.id).collect();
        effects.extend(self.admin_notices(
            &tenant,
            &admins,
            &Actor::System,
            meta,
            &format!(
                "{} reported a change to their two-step verification as not made by them \
                 (\"{}\"); they were signed out everywhere and their settings are frozen until \
                 an administrator reviews and lifts the freeze",
                user.external_id, link.change
            ),
        )?);
        let data = serde_json::json!({
            "user": user.external_id, "change": link.change, "undo": undo.kind(),
        });
        effects.extend(self.event_effects(&tenant, "user.reported", data).await?);
        let mut audit = self.audit(&Actor::System, meta, "user.wasnt_me", Some(tenant.id));
        audit.actor = format!(
            "user:{}",
            user.external_id.chars().take(64).collect::<String>()
        );
        audit.user_id = Some(user.id);
        audit.at = now;
        audit.reason = Some(undo.kind().into());
        self.store
            .apply(effects, audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::conflict(
                    "state_changed",
                    "your settings changed while this was being done; open the link again",
                ),
                e => e.into(),
            })?;
        self.queued();
        self.forget_user(tenant.id, &user.external_id);
        let mut done = link;
        done.used_at = Some(now);
        Ok(self.revert_view(&done, &undo, now))
    }

    /// Lifts a user's freeze (an admin reviewed the report), audited and notified.
    pub async fn unfreeze_user(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        if user.frozen_at.is_none() {
            return Err(CoreError::conflict("not_frozen", "the user is not frozen"));
        }
        let mut audit = self.audit(actor, meta, "user.unfreeze", Some(tenant.id));
        audit.user_id = Some(user.id);
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &user,
        };
        // The admin has looked: links from before the freeze must not undo what they decided.
        let mut effects = vec![
            Effect::SetFrozen {
                user_id: user.id,
                frozen_at: None,
            },
            Effect::ExpireRevertLinks {
                user_id: user.id,
                at: self.now(),
            },
        ];
        effects.extend(self.notice(
            &on,
            "your two-step verification settings can be changed again (an administrator lifted \
             the freeze)",
            None,
            Undo::Nothing,
        )?);
        self.store.apply(effects, audit).await?;
        self.queued();
        self.forget_user(tenant.id, external_id);
        Ok(())
    }
}

/// Refuses a change of a frozen user's 2FA settings (after "this wasn't me").
pub(crate) fn ensure_not_frozen(user: &User) -> Result<(), CoreError> {
    match user.frozen_at {
        None => Ok(()),
        Some(_) => Err(CoreError::conflict(
            "account_frozen",
            "this user's two-step verification settings are frozen after a \"this wasn't me\" \
             report; an administrator must lift the freeze first",
        )),
    }
}
