//! [`Effect`]s: the changes that ride on an issued code, a consumed code or an accepted TOTP
//! attempt. Each is applied inside the caller's transaction; a precondition that no longer
//! holds is an error, so the whole transaction rolls back (the code stays unconsumed, no
//! message is queued).

use super::codes::{count_sends, insert_code};
use super::factors::{delete_factor_rows, insert_factor_row};
use super::rows::*;
use twofold_core::messaging::*;
use twofold_core::ports::StoreError;

const STATE_CHANGED: StoreError = StoreError::Conflict("state_changed");

/// Applies `effects` in order; the first failure stops (and, through the transaction, undoes)
/// the whole operation.
pub(super) async fn apply_effects(tx: &Tx<'_>, effects: Vec<Effect>) -> Result<(), StoreError> {
    for effect in effects {
        apply(tx, effect).await?;
    }
    Ok(())
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
            // Codes already sent to the old number must not outlive the swap.
            exec(
                tx,
                "DELETE FROM otp_codes WHERE factor_id = $1 AND used_at IS NULL",
                &[&factor_id],
            )
            .await
            .map(|_| ())
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
    }
}
