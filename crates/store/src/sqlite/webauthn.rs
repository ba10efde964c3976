//! Security keys (`twofold_core::webauthn`): the ceremony rows, and the factor changes an
//! answered ceremony makes (a moved signature counter, a lock on a key that may be cloned).

use super::rows::*;
use rusqlite::{params, Connection, Row};
use twofold_core::messaging::Effect;
use twofold_core::ports::StoreError;
use twofold_core::webauthn::WebauthnChallenge;

fn challenge_row(r: &Row) -> rusqlite::Result<WebauthnChallenge> {
    Ok(WebauthnChallenge {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        user_id: r.get(2)?,
        purpose: r.get(3)?,
        binding: r.get(4)?,
        state: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        used_at: r.get(8)?,
    })
}

pub(super) fn challenge(c: &Connection, id: &str) -> Result<Option<WebauthnChallenge>, StoreError> {
    one(
        c,
        &format!("SELECT {WEBAUTHN_CHALLENGE_COLS} FROM webauthn_challenges WHERE id = ?1"),
        params![id],
        challenge_row,
    )
}

/// The chunked delete of expired ceremonies, for `prune_in_chunks`.
pub(super) const PRUNE: &str = "DELETE FROM webauthn_challenges WHERE id IN
   (SELECT id FROM webauthn_challenges WHERE expires_at < ?1 LIMIT ?2)";

/// Applies one of the security keys' effects; anything else is a bug in the caller.
pub(super) fn apply(c: &Connection, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertWebauthnChallenge(w) => exec(
            c,
            &format!(
                "INSERT INTO webauthn_challenges ({WEBAUTHN_CHALLENGE_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                w.id,
                w.tenant_id,
                w.user_id,
                w.purpose,
                w.binding,
                w.state,
                w.created_at,
                w.expires_at,
                w.used_at
            ],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("webauthn_challenge_exists")),
        // The one statement that spends a ceremony: its user's, unused and live.
        Effect::UseWebauthnChallenge { id, user_id, at } => changed(exec(
            c,
            "UPDATE webauthn_challenges SET used_at = ?1
             WHERE id = ?2 AND user_id = ?3 AND used_at IS NULL AND expires_at > ?1",
            params![at, id, user_id],
        )),
        Effect::SetFactorSecret {
            factor_id,
            sealed_secret,
        } => changed(exec(
            c,
            "UPDATE factors SET sealed_secret = ?1, version = version + 1 WHERE id = ?2",
            params![sealed_secret, factor_id],
        )),
        // The first lock's time stays: it is when the clone was first noticed.
        Effect::LockFactor { factor_id, at } => changed(exec(
            c,
            "UPDATE factors SET locked_at = COALESCE(locked_at, ?1), version = version + 1
             WHERE id = ?2",
            params![at, factor_id],
        )),
        other => Err(StoreError::Backend(format!(
            "not a WebAuthn effect: {other:?}"
        ))),
    }
}
