//! [`Effect`]s: the changes that ride on an issued code, a consumed code, an accepted TOTP
//! attempt, a job's batch or a plain [`Store::apply`](twofold_core::ports::Store::apply). Each
//! is applied inside the caller's transaction; a precondition that no longer holds is an error,
//! so the whole transaction rolls back (the code stays unconsumed, no message is queued).
//!
//! Where SQLite's single writer makes a read-then-write safe, a row lock does it here: the
//! user's row before completing a login (its generation must not move until COMMIT), before
//! replacing recovery codes (two parallel replacements must not both leave their set) and
//! before putting back or removing all factors, the tenant's row before inserting a proposal
//! (only one may stay pending).

use super::codes::{count_sends, count_sends_checked, insert_code};
use super::factors::{delete_all_factors, delete_factor_rows, insert_factor_row, write_factor_row};
use super::jobs::insert_job;
use super::logins::{insert_device, insert_proposal, insert_session};
use super::rows::*;
use super::security::*;
use super::webhooks::insert_webhook;
use twofold_core::messaging::*;
use twofold_core::ports::StoreError;

const STATE_CHANGED: StoreError = StoreError::Conflict("state_changed");

/// Applies `effects` in order; the first failure stops (and, through the transaction, undoes)
/// the whole operation.
///
/// The rows of the users that any effect will lock are locked first, in id order: requests
/// that lock a user row up front (a TOTP attempt, [`lock_user`]) and then charge shared
/// counters (tenant and IP failure budgets, sending caps) must not meet one that charges
/// those counters first and reaches the user row later (a recovery code's budget charge, then
/// `RequireNotFrozen`), or PostgreSQL aborts one of them as a deadlock and the caller gets a
/// 503 under nothing but ordinary parallel traffic (found by tests/faults.rs).
pub(super) async fn apply_effects(tx: &Tx<'_>, effects: Vec<Effect>) -> Result<(), StoreError> {
    let mut users: Vec<i64> = effects.iter().filter_map(user_row_locked_by).collect();
    users.sort_unstable();
    users.dedup();
    for user_id in users {
        lock_user(tx, user_id).await?;
    }
    for effect in effects {
        apply(tx, effect).await?;
    }
    Ok(())
}

/// The user whose row `effect` locks when applied (an `UPDATE users` or [`lock_user`]).
fn user_row_locked_by(effect: &Effect) -> Option<i64> {
    match effect {
        Effect::BumpGeneration { user_id }
        | Effect::SetSkip { user_id, .. }
        | Effect::SetAdmin { user_id, .. }
        | Effect::ReplaceRecoveryCodes { user_id, .. }
        | Effect::DeleteAllFactors { user_id }
        | Effect::SetFrozen { user_id, .. }
        | Effect::RequireNotFrozen { user_id } => Some(*user_id),
        _ => None,
    }
}

/// Runs a conditional write; no row changed means the precondition failed.
async fn changed_one(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> Result<(), StoreError> {
    if exec(tx, sql, params).await? == 1 {
        Ok(())
    } else {
        Err(STATE_CHANGED)
    }
}

async fn apply(tx: &Tx<'_>, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertFactor {
            factor,
            max_per_user,
        } => insert_factor_row(tx, &factor, max_per_user).await,
        Effect::ActivateFactor { factor_id, at } => {
            changed_one(
                tx,
                "UPDATE factors
                 SET status = 'active', confirmed_at = $1, version = version + 1, failures = 0,
                     blocked_until = NULL
                 WHERE id = $2 AND status = 'pending'",
                &[&at, &factor_id],
            )
            .await
        }
        Effect::DeleteFactor { factor_id } => {
            if delete_factor_rows(tx, &factor_id, None).await? {
                Ok(())
            } else {
                Err(STATE_CHANGED)
            }
        }
        Effect::SetDestination {
            factor_id,
            destination,
        } => {
            changed_one(
                tx,
                "UPDATE factors SET destination = $1, version = version + 1 WHERE id = $2",
                &[&destination, &factor_id],
            )
            .await?;
            kill_unused_codes(tx, &factor_id).await
        }
        Effect::InsertCode { code, limits } => {
            count_sends(tx, &limits, code.created_at).await?;
            insert_code(tx, &code).await
        }
        Effect::StartPhoneChange(pc) => {
            exec(
                tx,
                "UPDATE phone_changes SET state = 'cancelled', updated_at = $1
                 WHERE factor_id = $2 AND state IN ('awaiting_old', 'awaiting_new')",
                &[&pc.created_at, &pc.factor_id],
            )
            .await?;
            insert(
                tx,
                &format!(
                    "INSERT INTO phone_changes ({PHONE_CHANGE_COLS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ),
                &[
                    &pc.id,
                    &pc.tenant_id,
                    &pc.user_id,
                    &pc.factor_id,
                    &pc.new_phone,
                    &pc.state.as_str(),
                    &pc.created_at,
                    &pc.expires_at,
                    &pc.updated_at,
                ],
                "phone_change_exists",
            )
            .await
            .map(|_| ())
        }
        Effect::MovePhoneChange { id, from, to, at } => {
            changed_one(
                tx,
                "UPDATE phone_changes SET state = $1, updated_at = $2
                 WHERE id = $3 AND state = $4 AND expires_at > $2",
                &[&to.as_str(), &at, &id, &from.as_str()],
            )
            .await
        }
        Effect::Enqueue(message) => insert_message(tx, &message).await,
        Effect::Audit(audit) => insert_audit(tx, &audit).await,
        Effect::InsertProposal(p) => {
            // Only the newest proposal can be confirmed: an older code must not apply a
            // payload the admin has since replaced. The tenant's row lock makes "supersede the
            // others, then insert" one step across nodes, so two parallel proposals cannot
            // both stay pending. (`FOR NO KEY UPDATE` does not block the foreign-key checks
            // of rows that merely reference the tenant.)
            exec(
                tx,
                "SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
                &[&p.tenant_id],
            )
            .await?;
            exec(
                tx,
                "UPDATE proposals SET state = 'superseded'
                 WHERE tenant_id = $1 AND state = 'pending' AND id <> $2",
                &[&p.tenant_id, &p.id],
            )
            .await?;
            insert_proposal(tx, &p).await
        }
        Effect::SetProposalState { id, from, to, at } => {
            changed_one(
                tx,
                "UPDATE proposals SET state = $1 WHERE id = $2 AND state = $3 AND expires_at > $4",
                &[&to.as_str(), &id, &from.as_str(), &at],
            )
            .await
        }
        Effect::SetPolicy {
            tenant_id,
            json,
            expected_version,
            at,
        } => {
            let version = expected_version.checked_add(1).ok_or(STATE_CHANGED)?;
            if expected_version == 0 {
                // "No policy yet": a row stored meanwhile (by a parallel first write, which
                // this insert waits for) wins.
                changed_one(
                    tx,
                    "INSERT INTO tenant_policies (tenant_id, json, version, updated_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO NOTHING",
                    &[&tenant_id, &json, &version, &at],
                )
                .await
            } else {
                changed_one(
                    tx,
                    "UPDATE tenant_policies SET json = $1, version = $2, updated_at = $3
                     WHERE tenant_id = $4 AND version = $5",
                    &[&json, &version, &at, &tenant_id, &expected_version],
                )
                .await
            }
        }
        // INV-02/04/06: the one statement that spends a pending token. Single use, live, and
        // of the user's current generation, or no session is minted in this transaction. The
        // user's row lock comes first: a generation bump on another node then either
        // committed before (and this update sees it) or waits until this transaction ends, so
        // a login can never complete under a generation that is already gone.
        Effect::CompleteLogin { login_id, at } => {
            exec(
                tx,
                "SELECT id FROM users
                 WHERE id = (SELECT user_id FROM pending_logins WHERE id = $1)
                 FOR NO KEY UPDATE",
                &[&login_id],
            )
            .await?;
            changed_one(
                tx,
                "UPDATE pending_logins SET completed_at = $1
                 WHERE id = $2 AND completed_at IS NULL AND expires_at > $1
                   AND generation =
                       (SELECT generation FROM users WHERE id = pending_logins.user_id)",
                &[&at, &login_id],
            )
            .await
        }
        Effect::InsertSession(session) => insert_session(tx, &session).await,
        Effect::RevokeSession {
            id,
            user_id,
            at,
            reason,
        } => {
            changed_one(
                tx,
                "UPDATE sessions SET revoked_at = $1, revoke_reason = $2
                 WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
                &[&at, &reason, &id, &user_id],
            )
            .await
        }
        Effect::InsertDevice(device) => insert_device(tx, &device).await,
        Effect::RevokeDevice { id, user_id, at } => {
            changed_one(
                tx,
                "UPDATE trusted_devices SET revoked_at = $1
                 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                &[&at, &id, &user_id],
            )
            .await
        }
        Effect::BumpGeneration { user_id } => {
            changed_one(
                tx,
                "UPDATE users SET generation = generation + 1 WHERE id = $1",
                &[&user_id],
            )
            .await
        }
        // A missing user is a failed precondition like any other.
        Effect::SetSkip { user_id, until } => {
            changed_one(
                tx,
                "UPDATE users SET skip_until = $1 WHERE id = $2",
                &[&until, &user_id],
            )
            .await
        }
        // The id is the database's to assign, like any other row id.
        Effect::InsertJob(job) => insert_job(tx, &job).await,
        // A batch step of the `revoke_sessions` job: the user may have no such session (or
        // none left), which is not a failed precondition.
        Effect::RevokeSessionsWithout2fa {
            user_id,
            created_before,
            at,
        } => exec(
            tx,
            "UPDATE sessions SET revoked_at = $1, revoke_reason = '2fa_required'
             WHERE user_id = $2 AND NOT second_factor AND revoked_at IS NULL
               AND created_at < $3",
            &[&at, &user_id, &created_before],
        )
        .await
        .map(|_| ()),
        // Setting the flag it already has still matches the row (PostgreSQL counts matched
        // rows), so only a missing user fails.
        Effect::SetAdmin { user_id, is_admin } => {
            changed_one(
                tx,
                "UPDATE users SET is_admin = $1 WHERE id = $2",
                &[&is_admin, &user_id],
            )
            .await
        }
        Effect::InsertWebhook(w) => insert_webhook(tx, &w).await,
        Effect::DeleteWebhook { id, tenant_id } => {
            changed_one(
                tx,
                "DELETE FROM webhooks WHERE id = $1 AND tenant_id = $2",
                &[&id, &tenant_id],
            )
            .await
        }
        Effect::ReplaceRecoveryCodes {
            tenant_id,
            user_id,
            hashes,
            hash_key_id,
            at,
        } => replace_recovery_codes(tx, tenant_id, user_id, &hashes, &hash_key_id, at).await,
        // INV-02: the one statement that spends a recovery code. PostgreSQL re-checks
        // `used_at IS NULL` on the newest row version, so parallel uses succeed once.
        Effect::UseRecoveryCode {
            user_id,
            code_hash,
            at,
        } => {
            changed_one(
                tx,
                "UPDATE recovery_codes SET used_at = $1
                 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
                &[&at, &user_id, &code_hash],
            )
            .await
        }
        Effect::CountFailure { limits, at } => count_sends(tx, &limits, at).await,
        Effect::DeleteAllFactors { user_id } => delete_all_factors(tx, user_id).await,
        Effect::InsertRevertLink(link) => insert_revert_link(tx, &link).await,
        Effect::UseRevertLink { id, at } => {
            changed_one(
                tx,
                "UPDATE revert_links SET used_at = $1
                 WHERE id = $2 AND used_at IS NULL AND expires_at > $1",
                &[&at, &id],
            )
            .await
        }
        Effect::SetFrozen { user_id, frozen_at } => {
            changed_one(
                tx,
                "UPDATE users SET frozen_at = $1 WHERE id = $2",
                &[&frozen_at, &user_id],
            )
            .await
        }
        // Without the per-user cap: the factor counted when it was enrolled.
        Effect::RestoreFactor(factor) => write_factor_row(tx, &factor).await.map_err(|e| match e {
            StoreError::Conflict("factor_exists") => STATE_CHANGED,
            other => other,
        }),
        Effect::RestorePhone {
            factor_id,
            expected,
            phone,
        } => {
            changed_one(
                tx,
                "UPDATE factors SET destination = $1, version = version + 1
                 WHERE id = $2 AND destination = $3",
                &[&phone, &factor_id, &expected],
            )
            .await?;
            kill_unused_codes(tx, &factor_id).await
        }
        Effect::InsertAppPassword(p) => insert_app_password(tx, &p).await,
        Effect::RevokeAppPassword { id, user_id, at } => {
            changed_one(
                tx,
                "UPDATE app_passwords SET revoked_at = $1
                 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                &[&at, &id, &user_id],
            )
            .await
        }
        // Forward only (requests finish out of order), like a session's last_seen_at; the
        // condition is re-checked on the newest row version, so a touch racing a revocation
        // fails.
        Effect::TouchAppPassword { id, at } => {
            changed_one(
                tx,
                "UPDATE app_passwords SET last_used_at = GREATEST(last_used_at, $1)
                 WHERE id = $2 AND revoked_at IS NULL",
                &[&at, &id],
            )
            .await
        }
        Effect::InsertLoginRecord(record) => insert_login_record(tx, &record).await,
        // A write that changes nothing: it takes the user's row lock, so a freeze committed
        // meanwhile is seen.
        Effect::RequireNotFrozen { user_id } => {
            changed_one(
                tx,
                "UPDATE users SET frozen_at = NULL WHERE id = $1 AND frozen_at IS NULL",
                &[&user_id],
            )
            .await
        }
        Effect::DeleteRecoveryCodesSince { user_id, since } => exec(
            tx,
            "DELETE FROM recovery_codes WHERE user_id = $1 AND created_at >= $2",
            &[&user_id, &since],
        )
        .await
        .map(|_| ()),
        Effect::ExpireRevertLinks { user_id, at } => exec(
            tx,
            "UPDATE revert_links SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            &[&at, &user_id],
        )
        .await
        .map(|_| ()),
        e @ (Effect::InsertVaultEntry(_)
        | Effect::DeleteVaultEntry { .. }
        | Effect::SetVaultEntryGroup { .. }
        | Effect::AdvanceVaultCounter { .. }
        | Effect::InsertVaultGroup(_)
        | Effect::InsertVaultToken(_)
        | Effect::RevokeVaultToken { .. }) => super::vault::apply(tx, e).await,
        e @ (Effect::InsertOidcClient(_)
        | Effect::SetOidcRedirectUris { .. }
        | Effect::SetOidcSecret { .. }
        | Effect::DeleteOidcClient { .. }
        | Effect::InsertSigningKey(_)
        | Effect::UseHintJti { .. }
        | Effect::InsertAuthCode(_)
        | Effect::UseAuthCode { .. }
        | Effect::InsertHostedLogin(_)) => super::oidc::apply(tx, e).await,
        e @ (Effect::InsertWebauthnChallenge(_)
        | Effect::UseWebauthnChallenge { .. }
        | Effect::SetFactorSecret { .. }
        | Effect::LockFactor { .. }) => super::webauthn::apply(tx, e).await,
        Effect::ChargeBudgets { limits, at } => {
            match count_sends_checked(tx, &limits, at, true).await? {
                None => Ok(()),
                Some(_) => Err(STATE_CHANGED),
            }
        }
        Effect::RefundBudgets { limits, at } => {
            for l in &limits {
                exec(
                    tx,
                    "UPDATE send_counters SET count = count - 1
                     WHERE scope = $1 AND window_ms = $2 AND window_start = $3 AND count > 0",
                    &[&l.scope, &l.window_ms, &window_start(at, l.window_ms)?],
                )
                .await?;
            }
            Ok(())
        }
        Effect::UnlockUserFactors { user_id } => exec(
            tx,
            "UPDATE factors SET failures = 0, blocked_until = NULL, locked_at = NULL
             WHERE user_id = $1 AND (failures <> 0 OR locked_at IS NOT NULL)",
            &[&user_id],
        )
        .await
        .map(|_| ()),
    }
}

/// Codes already sent to a factor's old number must not outlive a swap of the number.
async fn kill_unused_codes(tx: &Tx<'_>, factor_id: &str) -> Result<(), StoreError> {
    exec(
        tx,
        "DELETE FROM otp_codes WHERE factor_id = $1 AND used_at IS NULL",
        &[&factor_id],
    )
    .await
    .map(|_| ())
}
