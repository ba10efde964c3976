//! The user's ways back and ways around: recovery codes (INV-02), "this wasn't me" links, app
//! passwords and the login history the risk rules read. Their changes are
//! [`Effect`](twofold_core::messaging::Effect)s (see `effects`); this file holds the writes
//! they share and the reads.
//!
//! Secrets are found by their keyed hash only, and every read returns the row as stored, used,
//! expired or revoked: whether it is still good is for the caller to decide (INV-10).

use super::rows::*;
use rusqlite::{params, Connection};
use twofold_core::ports::StoreError;
use twofold_core::security::*;

/// Deletes every recovery code of the user, used or not.
pub(super) fn delete_recovery_codes(c: &Connection, user_id: i64) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?1")
        .and_then(|mut s| s.execute(params![user_id]))
        .map(|_| ())
        .map_err(backend)
}

/// Replaces the user's recovery codes with `hashes`: every earlier code dies.
pub(super) fn replace_recovery_codes(
    c: &Connection,
    tenant_id: i64,
    user_id: i64,
    hashes: &[Vec<u8>],
    hash_key_id: &str,
    at: i64,
) -> Result<(), StoreError> {
    delete_recovery_codes(c, user_id)?;
    let mut s = c
        .prepare_cached(
            "INSERT INTO recovery_codes (tenant_id, user_id, code_hash, hash_key_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(backend)?;
    for hash in hashes {
        s.execute(params![tenant_id, user_id, hash, hash_key_id, at])
            .map_err(conflict_on_duplicate("recovery_code_exists"))?;
    }
    Ok(())
}

pub(super) fn recovery_codes_left(c: &Connection, user_id: i64) -> Result<u32, StoreError> {
    let n: Option<i64> = one(
        c,
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
        params![user_id],
        |r| r.get(0),
    )?;
    Ok(u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX))
}

pub(super) fn insert_revert_link(c: &Connection, l: &RevertLink) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO revert_links ({REVERT_LINK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            l.id,
            l.token_hash,
            l.tenant_id,
            l.user_id,
            l.undo,
            l.change,
            l.created_at,
            l.expires_at,
            l.used_at
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("revert_link_exists"))
}

pub(super) fn revert_link(
    c: &Connection,
    token_hash: &[u8],
) -> Result<Option<RevertLink>, StoreError> {
    one(
        c,
        &format!("SELECT {REVERT_LINK_COLS} FROM revert_links WHERE token_hash = ?1"),
        params![token_hash],
        revert_link_row,
    )
}

pub(super) fn insert_app_password(c: &Connection, p: &AppPassword) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO app_passwords ({APP_PASSWORD_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            p.id,
            p.token_hash,
            p.tenant_id,
            p.user_id,
            p.client_id,
            p.label,
            p.generation,
            p.created_at,
            p.last_used_at,
            p.revoked_at
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("app_password_exists"))
}

pub(super) fn app_password(
    c: &Connection,
    token_hash: &[u8],
) -> Result<Option<AppPassword>, StoreError> {
    one(
        c,
        &format!("SELECT {APP_PASSWORD_COLS} FROM app_passwords WHERE token_hash = ?1"),
        params![token_hash],
        app_password_row,
    )
}

/// Newest first, revoked ones included; rows made in the same millisecond come out by id,
/// as on PostgreSQL.
pub(super) fn app_passwords_of(
    c: &Connection,
    user_id: i64,
) -> Result<Vec<AppPassword>, StoreError> {
    all(
        c,
        &format!(
            "SELECT {APP_PASSWORD_COLS} FROM app_passwords WHERE user_id = ?1
             ORDER BY created_at DESC, id DESC"
        ),
        params![user_id],
        app_password_row,
    )
}

pub(super) fn insert_login_record(c: &Connection, r: &LoginRecord) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO login_history ({LOGIN_RECORD_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            r.tenant_id,
            r.user_id,
            r.at,
            r.ip,
            r.network,
            r.country,
            r.lat_e4,
            r.lon_e4,
            r.device,
            r.ua_family,
            r.generation
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

/// Newest first (at or after `since`, at most `limit`); logins in the same millisecond come
/// out in reverse insertion order.
pub(super) fn login_history(
    c: &Connection,
    user_id: i64,
    since: i64,
    limit: u32,
) -> Result<Vec<LoginRecord>, StoreError> {
    all(
        c,
        &format!(
            "SELECT {LOGIN_RECORD_COLS} FROM login_history WHERE user_id = ?1 AND at >= ?2
             ORDER BY at DESC, id DESC LIMIT ?3"
        ),
        params![user_id, since, limit],
        login_record_row,
    )
}
