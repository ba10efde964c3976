//! [`Effect`]s: the changes that ride on an issued code, a consumed code, an accepted TOTP
//! attempt or a plain [`Store::apply`](twofold_core::ports::Store::apply). Each is applied inside the caller's job; a precondition that no longer holds is an
//! error, so the job's savepoint rolls back everything it did (the code stays unconsumed, no
//! message is queued).

use super::codes::{charge_budgets, count_sends, refund_budgets};
use super::factors::{delete_all_factors, delete_factor_rows, insert_factor_row, write_factor_row};
use super::jobs::insert_job;
use super::logins::{insert_device, insert_proposal, insert_session};
use super::rows::*;
use super::security::*;
use rusqlite::{params, Connection};
use twofold_core::messaging::*;
use twofold_core::ports::StoreError;

const STATE_CHANGED: StoreError = StoreError::Conflict("state_changed");

/// Applies `effects` in order; the first failure stops (and, through the savepoint, undoes)
/// the whole operation.
pub(super) fn apply_effects(c: &Connection, effects: Vec<Effect>) -> Result<(), StoreError> {
    effects.into_iter().try_for_each(|e| apply(c, e))
}

/// Runs a conditional write; no row changed means the precondition failed.
fn changed_one(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<(), StoreError> {
    let n = c
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(p))
        .map_err(backend)?;
    if n == 1 {
        Ok(())
    } else {
        Err(STATE_CHANGED)
    }
}

fn apply(c: &Connection, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertFactor {
            factor,
            max_per_user,
        } => insert_factor_row(c, &factor, max_per_user),
        Effect::ActivateFactor { factor_id, at } => changed_one(
            c,
            "UPDATE factors
             SET status = 'active', confirmed_at = ?1, version = version + 1, failures = 0,
                 blocked_until = NULL
             WHERE id = ?2 AND status = 'pending'",
            params![at, factor_id],
        ),
        Effect::DeleteFactor { factor_id } => {
            if delete_factor_rows(c, &factor_id, None)? {
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
                c,
                "UPDATE factors SET destination = ?1, version = version + 1 WHERE id = ?2",
                params![destination, factor_id],
            )?;
            kill_unused_codes(c, &factor_id)
        }
        Effect::InsertCode { code, limits } => {
            count_sends(c, &limits, code.created_at)?;
            super::codes::insert_code(c, &code)
        }
        Effect::StartPhoneChange(pc) => {
            c.prepare_cached(
                "UPDATE phone_changes SET state = 'cancelled', updated_at = ?1
                 WHERE factor_id = ?2 AND state IN ('awaiting_old', 'awaiting_new')",
            )
            .and_then(|mut s| s.execute(params![pc.created_at, pc.factor_id]))
            .map_err(backend)?;
            c.prepare_cached(&format!(
                "INSERT INTO phone_changes ({PHONE_CHANGE_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    pc.id,
                    pc.tenant_id,
                    pc.user_id,
                    pc.factor_id,
                    pc.new_phone,
                    pc.state.as_str(),
                    pc.created_at,
                    pc.expires_at,
                    pc.updated_at
                ])
            })
            .map(|_| ())
            .map_err(conflict_on_duplicate("phone_change_exists"))
        }
        Effect::MovePhoneChange { id, from, to, at } => changed_one(
            c,
            "UPDATE phone_changes SET state = ?1, updated_at = ?2
             WHERE id = ?3 AND state = ?4 AND expires_at > ?2",
            params![to.as_str(), at, id, from.as_str()],
        ),
        Effect::Enqueue(message) => insert_message(c, &message),
        Effect::Audit(audit) => insert_audit(c, &audit),
        Effect::InsertProposal(p) => {
            // Only the newest proposal can be confirmed: an older code must not apply a
            // payload the admin has since replaced.
            c.prepare_cached(
                "UPDATE proposals SET state = 'superseded'
                 WHERE tenant_id = ?1 AND state = 'pending' AND id <> ?2",
            )
            .and_then(|mut s| s.execute(params![p.tenant_id, p.id]))
            .map_err(backend)?;
            insert_proposal(c, &p)
        }
        Effect::SetProposalState { id, from, to, at } => changed_one(
            c,
            "UPDATE proposals SET state = ?1 WHERE id = ?2 AND state = ?3 AND expires_at > ?4",
            params![to.as_str(), id, from.as_str(), at],
        ),
        Effect::SetPolicy {
            tenant_id,
            json,
            expected_version,
            at,
        } => {
            let version = expected_version.checked_add(1).ok_or(STATE_CHANGED)?;
            if expected_version == 0 {
                // "No policy yet": a row stored meanwhile (by a parallel first write) wins.
                changed_one(
                    c,
                    "INSERT INTO tenant_policies (tenant_id, json, version, updated_at)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id) DO NOTHING",
                    params![tenant_id, json, version, at],
                )
            } else {
                changed_one(
                    c,
                    "UPDATE tenant_policies SET json = ?1, version = ?2, updated_at = ?3
                     WHERE tenant_id = ?4 AND version = ?5",
                    params![json, version, at, tenant_id, expected_version],
                )
            }
        }
        // INV-02/04/06: the one statement that spends a pending token. Single use, live, and
        // of the user's current generation, or no session is minted in this transaction.
        Effect::CompleteLogin { login_id, at } => changed_one(
            c,
            "UPDATE pending_logins SET completed_at = ?1
             WHERE id = ?2 AND completed_at IS NULL AND expires_at > ?1
               AND generation = (SELECT generation FROM users WHERE id = pending_logins.user_id)",
            params![at, login_id],
        ),
        Effect::InsertSession(session) => insert_session(c, &session),
        Effect::RevokeSession {
            id,
            user_id,
            at,
            reason,
        } => changed_one(
            c,
            "UPDATE sessions SET revoked_at = ?1, revoke_reason = ?2
             WHERE id = ?3 AND user_id = ?4 AND revoked_at IS NULL",
            params![at, reason, id, user_id],
        ),
        Effect::InsertDevice(device) => insert_device(c, &device),
        Effect::RevokeDevice { id, user_id, at } => changed_one(
            c,
            "UPDATE trusted_devices SET revoked_at = ?1
             WHERE id = ?2 AND user_id = ?3 AND revoked_at IS NULL",
            params![at, id, user_id],
        ),
        Effect::BumpGeneration { user_id } => changed_one(
            c,
            "UPDATE users SET generation = generation + 1 WHERE id = ?1",
            params![user_id],
        ),
        // A missing user is a failed precondition like any other.
        Effect::SetSkip { user_id, until } => changed_one(
            c,
            "UPDATE users SET skip_until = ?1 WHERE id = ?2",
            params![until, user_id],
        ),
        // The id is the database's to assign, like any other row id.
        Effect::InsertJob(job) => insert_job(c, &job),
        // A batch step of the `revoke_sessions` job: the user may have no such session (or
        // none left), which is not a failed precondition.
        Effect::RevokeSessionsWithout2fa {
            user_id,
            created_before,
            at,
        } => c
            .prepare_cached(
                "UPDATE sessions SET revoked_at = ?1, revoke_reason = '2fa_required'
                 WHERE user_id = ?2 AND second_factor = 0 AND revoked_at IS NULL
                   AND created_at < ?3",
            )
            .and_then(|mut s| s.execute(params![at, user_id, created_before]))
            .map(|_| ())
            .map_err(backend),
        // Setting the flag it already has still matches the row, so only a missing user fails.
        Effect::SetAdmin { user_id, is_admin } => changed_one(
            c,
            "UPDATE users SET is_admin = ?1 WHERE id = ?2",
            params![is_admin, user_id],
        ),
        Effect::InsertWebhook(w) => super::webhooks::insert(c, &w),
        Effect::DeleteWebhook { id, tenant_id } => changed_one(
            c,
            "DELETE FROM webhooks WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant_id],
        ),
        Effect::ReplaceRecoveryCodes {
            tenant_id,
            user_id,
            hashes,
            hash_key_id,
            at,
        } => replace_recovery_codes(c, tenant_id, user_id, &hashes, &hash_key_id, at),
        // INV-02: the one statement that spends a recovery code.
        Effect::UseRecoveryCode {
            user_id,
            code_hash,
            at,
        } => changed_one(
            c,
            "UPDATE recovery_codes SET used_at = ?1
             WHERE user_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
            params![at, user_id, code_hash],
        ),
        Effect::CountFailure { limits, at } => count_sends(c, &limits, at),
        Effect::DeleteAllFactors { user_id } => delete_all_factors(c, user_id),
        Effect::InsertRevertLink(link) => insert_revert_link(c, &link),
        Effect::UseRevertLink { id, at } => changed_one(
            c,
            "UPDATE revert_links SET used_at = ?1
             WHERE id = ?2 AND used_at IS NULL AND expires_at > ?1",
            params![at, id],
        ),
        Effect::SetFrozen { user_id, frozen_at } => changed_one(
            c,
            "UPDATE users SET frozen_at = ?1 WHERE id = ?2",
            params![frozen_at, user_id],
        ),
        // Without the per-user cap: the factor counted when it was enrolled.
        Effect::RestoreFactor(factor) => write_factor_row(c, &factor).map_err(|e| match e {
            StoreError::Conflict("factor_exists") => STATE_CHANGED,
            other => other,
        }),
        Effect::RestorePhone {
            factor_id,
            expected,
            phone,
        } => {
            changed_one(
                c,
                "UPDATE factors SET destination = ?1, version = version + 1
                 WHERE id = ?2 AND destination = ?3",
                params![phone, factor_id, expected],
            )?;
            kill_unused_codes(c, &factor_id)
        }
        Effect::InsertAppPassword(p) => insert_app_password(c, &p),
        Effect::RevokeAppPassword { id, user_id, at } => changed_one(
            c,
            "UPDATE app_passwords SET revoked_at = ?1
             WHERE id = ?2 AND user_id = ?3 AND revoked_at IS NULL",
            params![at, id, user_id],
        ),
        // Forward only (requests finish out of order), like a session's last_seen_at.
        Effect::TouchAppPassword { id, at } => changed_one(
            c,
            "UPDATE app_passwords SET last_used_at = MAX(COALESCE(last_used_at, ?1), ?1)
             WHERE id = ?2 AND revoked_at IS NULL",
            params![at, id],
        ),
        Effect::InsertLoginRecord(record) => insert_login_record(c, &record),
        Effect::RequireNotFrozen { user_id } => changed_one(
            c,
            // A write that changes nothing, so it also orders itself after a freeze.
            "UPDATE users SET frozen_at = NULL WHERE id = ?1 AND frozen_at IS NULL",
            params![user_id],
        ),
        Effect::DeleteRecoveryCodesSince { user_id, since } => c
            .prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1 AND created_at >= ?2")
            .and_then(|mut s| s.execute(params![user_id, since]))
            .map(|_| ())
            .map_err(backend),
        Effect::ExpireRevertLinks { user_id, at } => c
            .prepare_cached(
                "UPDATE revert_links SET used_at = ?1 WHERE user_id = ?2 AND used_at IS NULL",
            )
            .and_then(|mut s| s.execute(params![at, user_id]))
            .map(|_| ())
            .map_err(backend),
        Effect::ChargeBudgets { limits, at } => charge_budgets(c, &limits, at),
        Effect::RefundBudgets { limits, at } => refund_budgets(c, &limits, at),
        e @ (Effect::InsertVaultEntry(_)
        | Effect::DeleteVaultEntry { .. }
        | Effect::SetVaultEntryGroup { .. }
        | Effect::AdvanceVaultCounter { .. }
        | Effect::InsertVaultGroup(_)
        | Effect::InsertVaultToken(_)
        | Effect::RevokeVaultToken { .. }) => super::vault::apply(c, e),
        e @ (Effect::InsertOidcClient(_)
        | Effect::SetOidcRedirectUris { .. }
        | Effect::SetOidcSecret { .. }
        | Effect::DeleteOidcClient { .. }
        | Effect::InsertSigningKey(_)
        | Effect::UseHintJti { .. }
        | Effect::InsertAuthCode(_)
        | Effect::UseAuthCode { .. }
        | Effect::InsertHostedLogin(_)) => super::oidc::apply(c, e),
        e @ (Effect::InsertWebauthnChallenge(_)
        | Effect::UseWebauthnChallenge { .. }
        | Effect::SetFactorSecret { .. }
        | Effect::LockFactor { .. }) => super::webauthn::apply(c, e),
        Effect::UnlockUserFactors { user_id } => c
            .prepare_cached(
                "UPDATE factors SET failures = 0, blocked_until = NULL, locked_at = NULL
                 WHERE user_id = ?1 AND (failures <> 0 OR locked_at IS NOT NULL)",
            )
            .and_then(|mut s| s.execute(params![user_id]))
            .map(|_| ())
            .map_err(backend),
    }
}

/// Codes already sent to a factor's old number must not outlive a swap of the number.
fn kill_unused_codes(c: &Connection, factor_id: &str) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM otp_codes WHERE factor_id = ?1 AND used_at IS NULL")
        .and_then(|mut s| s.execute(params![factor_id]))
        .map(|_| ())
        .map_err(backend)
}
