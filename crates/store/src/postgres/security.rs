//! The user's ways back and ways around: recovery codes (INV-02), "this wasn't me" links, app
//! passwords and the login history the risk rules read. Their changes are
//! [`Effect`](twofold_core::messaging::Effect)s (see `effects`); this file holds the writes
//! they share and the reads.
//!
//! Secrets are found by their keyed hash only, and every read returns the row as stored, used,
//! expired or revoked: whether it is still good is for the caller to decide (INV-10).

use super::rows::*;
use deadpool_postgres::GenericClient;
use twofold_core::ports::StoreError;
use twofold_core::security::*;

/// Deletes every recovery code of the user, used or not.
pub(super) async fn delete_recovery_codes(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<(), StoreError> {
    exec(
        c,
        "DELETE FROM recovery_codes WHERE user_id = $1",
        &[&user_id],
    )
    .await
    .map(|_| ())
}

/// Replaces the user's recovery codes with `hashes`: every earlier code dies. Under the user's
/// row lock, so two parallel replacements cannot both leave their set.
pub(super) async fn replace_recovery_codes(
    tx: &Tx<'_>,
    tenant_id: i64,
    user_id: i64,
    hashes: &[Vec<u8>],
    hash_key_id: &str,
    at: i64,
) -> Result<(), StoreError> {
    lock_user(tx, user_id).await?;
    delete_recovery_codes(tx, user_id).await?;
    for hash in hashes {
        insert(
            tx,
            "INSERT INTO recovery_codes (tenant_id, user_id, code_hash, hash_key_id, created_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&tenant_id, &user_id, hash, &hash_key_id, &at],
            "recovery_code_exists",
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn recovery_codes_left(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<u32, StoreError> {
    let n: i64 = match query_opt(
        c,
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        &[&user_id],
    )
    .await?
    {
        Some(row) => get(&row, 0)?,
        None => 0,
    };
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

pub(super) async fn insert_revert_link(
    c: &impl GenericClient,
    l: &RevertLink,
) -> Result<(), StoreError> {
    insert(
        c,
        &format!(
            "INSERT INTO revert_links ({REVERT_LINK_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ),
        &[
            &l.id,
            &l.token_hash,
            &l.tenant_id,
            &l.user_id,
            &l.undo,
            &l.change,
            &l.created_at,
            &l.expires_at,
            &l.used_at,
        ],
        "revert_link_exists",
    )
    .await
    .map(|_| ())
}

pub(super) async fn revert_link(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<RevertLink>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {REVERT_LINK_COLS} FROM revert_links WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .as_ref()
    .map(revert_link_row)
    .transpose()
}

pub(super) async fn insert_app_password(
    c: &impl GenericClient,
    p: &AppPassword,
) -> Result<(), StoreError> {
    insert(
        c,
        &format!(
            "INSERT INTO app_passwords ({APP_PASSWORD_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &[
            &p.id,
            &p.token_hash,
            &p.tenant_id,
            &p.user_id,
            &p.client_id,
            &p.label,
            &p.generation,
            &p.created_at,
            &p.last_used_at,
            &p.revoked_at,
        ],
        "app_password_exists",
    )
    .await
    .map(|_| ())
}

pub(super) async fn app_password(
    c: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<AppPassword>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {APP_PASSWORD_COLS} FROM app_passwords WHERE token_hash = $1"),
        &[&token_hash],
    )
    .await?
    .as_ref()
    .map(app_password_row)
    .transpose()
}

/// Newest first, revoked ones included; rows made in the same millisecond come out by id
/// (byte order, as on SQLite).
pub(super) async fn app_passwords_of(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<AppPassword>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {APP_PASSWORD_COLS} FROM app_passwords WHERE user_id = $1
             ORDER BY created_at DESC, id COLLATE \"C\" DESC"
        ),
        &[&user_id],
    )
    .await?;
    all(rows, app_password_row)
}

pub(super) async fn insert_login_record(
    c: &impl GenericClient,
    r: &LoginRecord,
) -> Result<(), StoreError> {
    exec(
        c,
        &format!(
            "INSERT INTO login_history ({LOGIN_RECORD_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &[
            &r.tenant_id,
            &r.user_id,
            &r.at,
            &r.ip,
            &r.network,
            &r.country,
            &r.lat_e4,
            &r.lon_e4,
            &r.device,
            &r.ua_family,
            &r.generation,
        ],
    )
    .await
    .map(|_| ())
}

/// Newest first (at or after `since`, at most `limit`); logins in the same millisecond come
/// out in reverse insertion order.
pub(super) async fn login_history(
    c: &impl GenericClient,
    user_id: i64,
    since: i64,
    limit: u32,
) -> Result<Vec<LoginRecord>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {LOGIN_RECORD_COLS} FROM login_history WHERE user_id = $1 AND at >= $2
             ORDER BY at DESC, id DESC LIMIT $3"
        ),
        &[&user_id, &since, &i64::from(limit)],
    )
    .await?;
    all(rows, login_record_row)
}
