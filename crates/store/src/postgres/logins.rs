//! The login flow's rows: tenant policies, proposals, pending logins (INV-04), sessions and
//! remembered devices (INV-06). Their changes are [`Effect`](twofold_core::messaging::Effect)s
//! (see `effects`); this file holds the inserts they share and the reads.
//!
//! Tokens are found by their keyed hash only. Every read returns the row as stored, dead or
//! alive: whether it is still good (expiry, revocation, generation) is for the caller to
//! decide against current data (INV-10).

use super::rows::*;
use deadpool_postgres::GenericClient;
use twofold_core::login::*;
use twofold_core::ports::StoreError;

pub(super) async fn insert_proposal(
    c: &impl GenericClient,
    p: &Proposal,
) -> Result<(), StoreError> {
    insert(
        c,
        &format!(
            "INSERT INTO proposals ({PROPOSAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ),
        &[
            &p.id,
            &p.tenant_id,
            &p.admin_user_id,
            &p.payload,
            &p.payload_hash,
            &p.base_version,
            &p.state.as_str(),
            &p.created_at,
            &p.expires_at,
        ],
        "proposal_exists",
    )
    .await
    .map(|_| ())
}

pub(super) async fn insert_login(
    c: &impl GenericClient,
    l: &PendingLogin,
) -> Result<(), StoreError> {
    insert(
        c,
        &format!(
            "INSERT INTO pending_logins ({LOGIN_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &[
            &l.id,
            &l.token_hash,
            &l.tenant_id,
            &l.user_id,
            &l.generation,
            &l.decision,
            &l.primary,
            &l.client_id,
            &l.ip,
            &l.user_agent,
            &l.created_at,
            &l.expires_at,
            &l.completed_at,
            &l.device,
            &l.country,
        ],
        "login_exists",
    )
    .await
    .map(|_| ())
}

pub(super) async fn insert_session(c: &impl GenericClient, x: &Session) -> Result<(), StoreError> {
    insert(
        c,
        &format!(
            "INSERT INTO sessions ({SESSION_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        &[
            &x.id,
            &x.token_hash,
            &x.tenant_id,
            &x.user_id,
            &x.generation,
            &x.amr,
            &x.second_factor,
            &x.client_id,
            &x.ip,
            &x.created_at,
            &x.last_seen_at,
            &x.expires_at,
            &x.revoked_at,
            &x.revoke_reason,
        ],
        "session_exists",
    )
    .await
    .map(|_| ())
}

pub(super) async fn insert_device(
    c: &impl GenericClient,
    d: &TrustedDevice,
) -> Result<(), StoreError> {
    insert(
        c,
        &format!(
            "INSERT INTO trusted_devices ({DEVICE_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &[
            &d.id,
            &d.token_hash,
            &d.tenant_id,
            &d.user_id,
            &d.generation,
            &d.label,
            &d.created_at,
            &d.expires_at,
            &d.last_used_at,
            &d.revoked_at,
        ],
        "device_exists",
    )
    .await
    .map(|_| ())
}

pub(super) async fn policy(
    c: &impl GenericClient,
    tenant_id: i64,
) -> Result<Option<StoredPolicy>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {POLICY_COLS} FROM tenant_policies WHERE tenant_id = $1"),
        &[&tenant_id],
    )
    .await?
    .as_ref()
    .map(policy_row)
    .transpose()
}

pub(super) async fn proposal(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Proposal>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {PROPOSAL_COLS} FROM proposals WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(proposal_row)
    .transpose()
}

pub(super) async fn pending_login(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<PendingLogin>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {LOGIN_COLS} FROM pending_logins WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .as_ref()
    .map(login_row)
    .transpose()
}

pub(super) async fn session(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<Session>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {SESSION_COLS} FROM sessions WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .as_ref()
    .map(session_row)
    .transpose()
}

/// Newest first; rows made in the same millisecond come out in reverse insertion order (`seq`
/// is PostgreSQL's stand-in for SQLite's rowid).
pub(super) async fn sessions_of(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<Session>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = $1
             ORDER BY created_at DESC, seq DESC"
        ),
        &[&user_id],
    )
    .await?;
    all(rows, session_row)
}

pub(super) async fn device(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<TrustedDevice>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {DEVICE_COLS} FROM trusted_devices WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .as_ref()
    .map(device_row)
    .transpose()
}

/// Newest first, like [`sessions_of`].
pub(super) async fn devices_of(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<TrustedDevice>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {DEVICE_COLS} FROM trusted_devices WHERE user_id = $1
             ORDER BY created_at DESC, seq DESC"
        ),
        &[&user_id],
    )
    .await?;
    all(rows, device_row)
}

/// Moves `last_seen_at` forward only (requests finish out of order); false when the session
/// does not exist or is revoked. One statement: PostgreSQL re-checks `revoked_at` on the
/// newest row version, so a touch racing a revocation never revives it.
pub(super) async fn touch_session(
    c: &impl GenericClient,
    id: &str,
    at: i64,
) -> Result<bool, StoreError> {
    let n = exec(
        c,
        "UPDATE sessions SET last_seen_at = GREATEST(last_seen_at, $2)
         WHERE id = $1 AND revoked_at IS NULL",
        &[&id, &at],
    )
    .await?;
    Ok(n == 1)
}
