//! The login flow's rows: tenant policies, proposals, pending logins (INV-04), sessions and
//! remembered devices (INV-06). Their changes are [`Effect`](twofold_core::messaging::Effect)s
//! (see `effects`); this file holds the inserts they share and the reads.
//!
//! Tokens are found by their keyed hash only. Every read returns the row as stored, dead or
//! alive: whether it is still good (expiry, revocation, generation) is for the caller to
//! decide against current data (INV-10).

use super::rows::*;
use rusqlite::{params, Connection};
use twofold_core::login::*;
use twofold_core::ports::StoreError;

pub(super) fn insert_proposal(c: &Connection, p: &Proposal) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO proposals ({PROPOSAL_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            p.id,
            p.tenant_id,
            p.admin_user_id,
            p.payload,
            p.payload_hash,
            p.base_version,
            p.state.as_str(),
            p.created_at,
            p.expires_at
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("proposal_exists"))
}

pub(super) fn insert_login(c: &Connection, l: &PendingLogin) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO pending_logins ({LOGIN_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            l.id,
            l.token_hash,
            l.tenant_id,
            l.user_id,
            l.generation,
            l.decision,
            l.primary,
            l.client_id,
            l.ip,
            l.user_agent,
            l.created_at,
            l.expires_at,
            l.completed_at,
            l.device,
            l.country
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("login_exists"))
}

pub(super) fn insert_session(c: &Connection, x: &Session) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO sessions ({SESSION_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            x.id,
            x.token_hash,
            x.tenant_id,
            x.user_id,
            x.generation,
            x.amr,
            x.second_factor,
            x.client_id,
            x.ip,
            x.created_at,
            x.last_seen_at,
            x.expires_at,
            x.revoked_at,
            x.revoke_reason
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("session_exists"))
}

pub(super) fn insert_device(c: &Connection, d: &TrustedDevice) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO trusted_devices ({DEVICE_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            d.id,
            d.token_hash,
            d.tenant_id,
            d.user_id,
            d.generation,
            d.label,
            d.created_at,
            d.expires_at,
            d.last_used_at,
            d.revoked_at
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("device_exists"))
}

pub(super) fn policy(c: &Connection, tenant_id: i64) -> Result<Option<StoredPolicy>, StoreError> {
    one(
        c,
        &format!("SELECT {POLICY_COLS} FROM tenant_policies WHERE tenant_id = ?1"),
        params![tenant_id],
        policy_row,
    )
}

pub(super) fn proposal(c: &Connection, id: &str) -> Result<Option<Proposal>, StoreError> {
    one(
        c,
        &format!("SELECT {PROPOSAL_COLS} FROM proposals WHERE id = ?1"),
        params![id],
        proposal_row,
    )
}

pub(super) fn pending_login(
    c: &Connection,
    token_hash: &[u8],
) -> Result<Option<PendingLogin>, StoreError> {
    one(
        c,
        &format!("SELECT {LOGIN_COLS} FROM pending_logins WHERE token_hash = ?1"),
        params![token_hash],
        login_row,
    )
}

pub(super) fn session(c: &Connection, token_hash: &[u8]) -> Result<Option<Session>, StoreError> {
    one(
        c,
        &format!("SELECT {SESSION_COLS} FROM sessions WHERE token_hash = ?1"),
        params![token_hash],
        session_row,
    )
}

/// Newest first; rows made in the same millisecond come out in reverse insertion order.
pub(super) fn sessions_of(c: &Connection, user_id: i64) -> Result<Vec<Session>, StoreError> {
    all(
        c,
        &format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE user_id = ?1
             ORDER BY created_at DESC, rowid DESC"
        ),
        params![user_id],
        session_row,
    )
}

pub(super) fn device(
    c: &Connection,
    token_hash: &[u8],
) -> Result<Option<TrustedDevice>, StoreError> {
    one(
        c,
        &format!("SELECT {DEVICE_COLS} FROM trusted_devices WHERE token_hash = ?1"),
        params![token_hash],
        device_row,
    )
}

/// Newest first, like [`sessions_of`].
pub(super) fn devices_of(c: &Connection, user_id: i64) -> Result<Vec<TrustedDevice>, StoreError> {
    all(
        c,
        &format!(
            "SELECT {DEVICE_COLS} FROM trusted_devices WHERE user_id = ?1
             ORDER BY created_at DESC, rowid DESC"
        ),
        params![user_id],
        device_row,
    )
}

/// Moves `last_seen_at` forward only (requests finish out of order); false when the session
/// does not exist or is revoked.
pub(super) fn touch_session(c: &Connection, id: &str, at: i64) -> Result<bool, StoreError> {
    c.prepare_cached(
        "UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?2)
         WHERE id = ?1 AND revoked_at IS NULL",
    )
    .and_then(|mut s| s.execute(params![id, at]))
    .map(|n| n == 1)
    .map_err(backend)
}
