//! Security keys (`twofold_core::webauthn`), mirroring `sqlite/webauthn.rs`: the ceremony rows,
//! and the factor changes an answered ceremony makes.

use super::rows::*;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use twofold_core::messaging::Effect;
use twofold_core::ports::StoreError;
use twofold_core::webauthn::WebauthnChallenge;

fn challenge_row(r: &Row) -> Result<WebauthnChallenge, StoreError> {
    Ok(WebauthnChallenge {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        user_id: get(r, 2)?,
        purpose: get(r, 3)?,
        binding: get(r, 4)?,
        state: get(r, 5)?,
        created_at: get(r, 6)?,
        expires_at: get(r, 7)?,
        used_at: get(r, 8)?,
    })
}

pub(super) async fn challenge(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<WebauthnChallenge>, StoreError> {
    let sql = format!("SELECT {WEBAUTHN_CHALLENGE_COLS} FROM webauthn_challenges WHERE id = $1");
    query_opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(challenge_row)
        .transpose()
}

/// The chunked delete of expired ceremonies, for `prune_in_chunks`.
pub(super) const PRUNE: &str = "DELETE FROM webauthn_challenges WHERE id IN
   (SELECT id FROM webauthn_challenges WHERE expires_at < $1 LIMIT $2)";

/// Applies one of the security keys' effects; anything else is a bug in the caller.
pub(super) async fn apply(tx: &Tx<'_>, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertWebauthnChallenge(w) => {
            let sql = format!(
                "INSERT INTO webauthn_challenges ({WEBAUTHN_CHALLENGE_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            );
            insert(
                tx,
                &sql,
                &[
                    &w.id,
                    &w.tenant_id,
                    &w.user_id,
                    &w.purpose,
                    &w.binding,
                    &w.state,
                    &w.created_at,
                    &w.expires_at,
                    &w.used_at,
                ],
                "webauthn_challenge_exists",
            )
            .await
            .map(|_| ())
        }
        // PostgreSQL re-checks `used_at IS NULL` on the newest row version after a concurrent
        // update commits, so of two racing answers exactly one spends the ceremony.
        Effect::UseWebauthnChallenge { id, user_id, at } => {
            changed(
                tx,
                "UPDATE webauthn_challenges SET used_at = $1
                 WHERE id = $2 AND user_id = $3 AND used_at IS NULL AND expires_at > $1",
                &[&at, &id, &user_id],
            )
            .await
        }
        Effect::SetFactorSecret {
            factor_id,
            sealed_secret,
        } => {
            changed(
                tx,
                "UPDATE factors SET sealed_secret = $1, version = version + 1 WHERE id = $2",
                &[&sealed_secret, &factor_id],
            )
            .await
        }
        // Under the owner's row lock, like every other write of a factor's throttle state: a
        // failure charged in parallel (read under that lock, then written back) must not wipe
        // this lock out. The first lock's time stays: it is when the clone was first noticed.
        Effect::LockFactor { factor_id, at } => {
            lock_owners(tx, &[factor_id.as_str()]).await?;
            changed(
                tx,
                "UPDATE factors SET locked_at = COALESCE(locked_at, $1), version = version + 1
                 WHERE id = $2",
                &[&at, &factor_id],
            )
            .await
        }
        other => Err(StoreError::Backend(format!(
            "not a WebAuthn effect: {other:?}"
        ))),
    }
}
