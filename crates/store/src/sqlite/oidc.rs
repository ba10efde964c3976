//! The OpenID Connect provider's rows (`twofold_core::oidc`): clients, signing keys, spent
//! hint `jti`s, authorization codes and hosted logins.

use super::rows::*;
use rusqlite::{params, Connection, Row};
use twofold_core::messaging::Effect;
use twofold_core::oidc::*;
use twofold_core::ports::StoreError;

fn client_row(r: &Row) -> rusqlite::Result<OidcClient> {
    let uris: String = r.get(3)?;
    Ok(OidcClient {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        app_id: r.get(2)?,
        redirect_uris: uris_from_json(&uris).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        sealed_secret: r.get(4)?,
        created_at: r.get(5)?,
        secret_at: r.get(6)?,
    })
}

fn key_row(r: &Row) -> rusqlite::Result<SigningKey> {
    Ok(SigningKey {
        kid: r.get(0)?,
        sealed_key: r.get(1)?,
        created_at: r.get(2)?,
    })
}

fn code_row(r: &Row) -> rusqlite::Result<AuthCode> {
    Ok(AuthCode {
        code_hash: r.get(0)?,
        tenant_id: r.get(1)?,
        client_id: r.get(2)?,
        redirect_uri: r.get(3)?,
        code_challenge: r.get(4)?,
        nonce: r.get(5)?,
        user_id: r.get(6)?,
        subject: r.get(7)?,
        amr: r.get(8)?,
        acr: r.get(9)?,
        auth_time: r.get(10)?,
        session_id: r.get(11)?,
        created_at: r.get(12)?,
        expires_at: r.get(13)?,
        used_at: r.get(14)?,
    })
}

fn hosted_row(r: &Row) -> rusqlite::Result<HostedLogin> {
    Ok(HostedLogin {
        login_id: r.get(0)?,
        tenant_id: r.get(1)?,
        client_id: r.get(2)?,
        redirect_uri: r.get(3)?,
        state: r.get(4)?,
        nonce: r.get(5)?,
        code_challenge: r.get(6)?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
    })
}

pub(super) fn client(c: &Connection, id: &str) -> Result<Option<OidcClient>, StoreError> {
    one(
        c,
        &format!("SELECT {OIDC_CLIENT_COLS} FROM oidc_clients WHERE id = ?1"),
        params![id],
        client_row,
    )
}

pub(super) fn clients(c: &Connection, tenant_id: i64) -> Result<Vec<OidcClient>, StoreError> {
    all(
        c,
        &format!("SELECT {OIDC_CLIENT_COLS} FROM oidc_clients WHERE tenant_id = ?1 ORDER BY id"),
        params![tenant_id],
        client_row,
    )
}

pub(super) fn signing_keys(c: &Connection) -> Result<Vec<SigningKey>, StoreError> {
    all(
        c,
        &format!("SELECT {SIGNING_KEY_COLS} FROM oidc_signing_keys ORDER BY created_at, kid"),
        [],
        key_row,
    )
}

pub(super) fn code(c: &Connection, hash: &[u8]) -> Result<Option<AuthCode>, StoreError> {
    one(
        c,
        &format!("SELECT {AUTH_CODE_COLS} FROM oidc_codes WHERE code_hash = ?1"),
        params![hash],
        code_row,
    )
}

pub(super) fn hosted(c: &Connection, login_id: &str) -> Result<Option<HostedLogin>, StoreError> {
    one(
        c,
        &format!("SELECT {HOSTED_LOGIN_COLS} FROM oidc_hosted_logins WHERE login_id = ?1"),
        params![login_id],
        hosted_row,
    )
}

pub(super) fn prune(c: &Connection, before: i64) -> Result<u64, StoreError> {
    let mut n = 0;
    for table in ["oidc_hint_jtis", "oidc_codes", "oidc_hosted_logins"] {
        n += exec(
            c,
            &format!("DELETE FROM {table} WHERE expires_at < ?1"),
            params![before],
        )
        .map_err(backend)? as u64;
    }
    Ok(n)
}

/// Applies one of the provider's effects; anything else is a bug in the caller.
pub(super) fn apply(c: &Connection, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertOidcClient(o) => exec(
            c,
            &format!(
                "INSERT INTO oidc_clients ({OIDC_CLIENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                o.id,
                o.tenant_id,
                o.app_id,
                uris_to_json(&o.redirect_uris),
                o.sealed_secret,
                o.created_at,
                o.secret_at
            ],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("oidc_client_exists")),
        Effect::SetOidcRedirectUris {
            id,
            tenant_id,
            redirect_uris,
        } => changed(exec(
            c,
            "UPDATE oidc_clients SET redirect_uris = ?1 WHERE id = ?2 AND tenant_id = ?3",
            params![uris_to_json(&redirect_uris), id, tenant_id],
        )),
        Effect::SetOidcSecret {
            id,
            tenant_id,
            sealed_secret,
            at,
        } => changed(exec(
            c,
            "UPDATE oidc_clients SET sealed_secret = ?1, secret_at = ?2
             WHERE id = ?3 AND tenant_id = ?4",
            params![sealed_secret, at, id, tenant_id],
        )),
        Effect::DeleteOidcClient { id, tenant_id } => changed(exec(
            c,
            "DELETE FROM oidc_clients WHERE id = ?1 AND tenant_id = ?2",
            params![id, tenant_id],
        )),
        Effect::InsertSigningKey(k) => exec(
            c,
            &format!("INSERT INTO oidc_signing_keys ({SIGNING_KEY_COLS}) VALUES (?1, ?2, ?3)"),
            params![k.kid, k.sealed_key, k.created_at],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("signing_key_exists")),
        Effect::UseHintJti {
            client_id,
            jti,
            tenant_id,
            expires_at,
        } => exec(
            c,
            "INSERT INTO oidc_hint_jtis (client_id, jti, tenant_id, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![client_id, jti, tenant_id, expires_at],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("hint_replayed")),
        Effect::InsertAuthCode(a) => exec(
            c,
            &format!(
                "INSERT INTO oidc_codes ({AUTH_CODE_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ),
            params![
                a.code_hash,
                a.tenant_id,
                a.client_id,
                a.redirect_uri,
                a.code_challenge,
                a.nonce,
                a.user_id,
                a.subject,
                a.amr,
                a.acr,
                a.auth_time,
                a.session_id,
                a.created_at,
                a.expires_at,
                a.used_at
            ],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("auth_code_exists")),
        Effect::UseAuthCode { code_hash, at } => changed(exec(
            c,
            "UPDATE oidc_codes SET used_at = ?1
             WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
            params![at, code_hash],
        )),
        Effect::InsertHostedLogin(h) => exec(
            c,
            &format!(
                "INSERT INTO oidc_hosted_logins ({HOSTED_LOGIN_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                h.login_id,
                h.tenant_id,
                h.client_id,
                h.redirect_uri,
                h.state,
                h.nonce,
                h.code_challenge,
                h.created_at,
                h.expires_at
            ],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("hosted_login_exists")),
        other => Err(StoreError::Backend(format!(
            "not an OIDC effect: {other:?}"
        ))),
    }
}
