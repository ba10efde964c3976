//! The OpenID Connect provider's rows (`twofold_core::oidc`), mirroring `sqlite/oidc.rs`.

use super::rows::*;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use twofold_core::messaging::Effect;
use twofold_core::oidc::*;
use twofold_core::ports::StoreError;

fn client_row(r: &Row) -> Result<OidcClient, StoreError> {
    let uris: String = get(r, 3)?;
    Ok(OidcClient {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        app_id: get(r, 2)?,
        redirect_uris: uris_from_json(&uris).map_err(StoreError::Backend)?,
        sealed_secret: get(r, 4)?,
        created_at: get(r, 5)?,
        secret_at: get(r, 6)?,
    })
}

fn key_row(r: &Row) -> Result<SigningKey, StoreError> {
    Ok(SigningKey {
        kid: get(r, 0)?,
        sealed_key: get(r, 1)?,
        created_at: get(r, 2)?,
    })
}

fn code_row(r: &Row) -> Result<AuthCode, StoreError> {
    Ok(AuthCode {
        code_hash: get(r, 0)?,
        tenant_id: get(r, 1)?,
        client_id: get(r, 2)?,
        redirect_uri: get(r, 3)?,
        code_challenge: get(r, 4)?,
        nonce: get(r, 5)?,
        user_id: get(r, 6)?,
        subject: get(r, 7)?,
        amr: get(r, 8)?,
        acr: get(r, 9)?,
        auth_time: get(r, 10)?,
        session_id: get(r, 11)?,
        created_at: get(r, 12)?,
        expires_at: get(r, 13)?,
        used_at: get(r, 14)?,
    })
}

fn hosted_row(r: &Row) -> Result<HostedLogin, StoreError> {
    Ok(HostedLogin {
        login_id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        client_id: get(r, 2)?,
        redirect_uri: get(r, 3)?,
        state: get(r, 4)?,
        nonce: get(r, 5)?,
        code_challenge: get(r, 6)?,
        created_at: get(r, 7)?,
        expires_at: get(r, 8)?,
    })
}

pub(super) async fn client(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<OidcClient>, StoreError> {
    let sql = format!("SELECT {OIDC_CLIENT_COLS} FROM oidc_clients WHERE id = $1");
    query_opt(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(client_row)
        .transpose()
}

pub(super) async fn clients(
    c: &impl GenericClient,
    tenant_id: i64,
) -> Result<Vec<OidcClient>, StoreError> {
    let sql = format!(
        "SELECT {OIDC_CLIENT_COLS} FROM oidc_clients WHERE tenant_id = $1
         ORDER BY id COLLATE \"C\""
    );
    all(query(c, &sql, &[&tenant_id]).await?, client_row)
}

pub(super) async fn signing_keys(c: &impl GenericClient) -> Result<Vec<SigningKey>, StoreError> {
    let sql = format!(
        "SELECT {SIGNING_KEY_COLS} FROM oidc_signing_keys ORDER BY created_at, kid COLLATE \"C\""
    );
    all(query(c, &sql, &[]).await?, key_row)
}

pub(super) async fn code(
    c: &impl GenericClient,
    hash: &[u8],
) -> Result<Option<AuthCode>, StoreError> {
    let sql = format!("SELECT {AUTH_CODE_COLS} FROM oidc_codes WHERE code_hash = $1");
    query_opt(c, &sql, &[&hash])
        .await?
        .as_ref()
        .map(code_row)
        .transpose()
}

pub(super) async fn hosted(
    c: &impl GenericClient,
    login_id: &str,
) -> Result<Option<HostedLogin>, StoreError> {
    let sql = format!("SELECT {HOSTED_LOGIN_COLS} FROM oidc_hosted_logins WHERE login_id = $1");
    query_opt(c, &sql, &[&login_id])
        .await?
        .as_ref()
        .map(hosted_row)
        .transpose()
}

pub(super) async fn prune(c: &impl GenericClient, before: i64) -> Result<u64, StoreError> {
    let mut n = 0;
    for table in ["oidc_hint_jtis", "oidc_codes", "oidc_hosted_logins"] {
        let sql = format!("DELETE FROM {table} WHERE expires_at < $1");
        n += exec(c, &sql, &[&before]).await?;
    }
    Ok(n)
}

/// Applies one of the provider's effects; anything else is a bug in the caller.
pub(super) async fn apply(tx: &Tx<'_>, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertOidcClient(o) => {
            let sql = format!(
                "INSERT INTO oidc_clients ({OIDC_CLIENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            );
            let uris = uris_to_json(&o.redirect_uris);
            insert(
                tx,
                &sql,
                &[
                    &o.id,
                    &o.tenant_id,
                    &o.app_id,
                    &uris,
                    &o.sealed_secret,
                    &o.created_at,
                    &o.secret_at,
                ],
                "oidc_client_exists",
            )
            .await
            .map(|_| ())
        }
        Effect::SetOidcRedirectUris {
            id,
            tenant_id,
            redirect_uris,
        } => {
            let uris = uris_to_json(&redirect_uris);
            changed(
                tx,
                "UPDATE oidc_clients SET redirect_uris = $1 WHERE id = $2 AND tenant_id = $3",
                &[&uris, &id, &tenant_id],
            )
            .await
        }
        Effect::SetOidcSecret {
            id,
            tenant_id,
            sealed_secret,
            at,
        } => {
            changed(
                tx,
                "UPDATE oidc_clients SET sealed_secret = $1, secret_at = $2
                 WHERE id = $3 AND tenant_id = $4",
                &[&sealed_secret, &at, &id, &tenant_id],
            )
            .await
        }
        Effect::DeleteOidcClient { id, tenant_id } => {
            changed(
                tx,
                "DELETE FROM oidc_clients WHERE id = $1 AND tenant_id = $2",
                &[&id, &tenant_id],
            )
            .await
        }
        Effect::InsertSigningKey(k) => {
            let sql =
                format!("INSERT INTO oidc_signing_keys ({SIGNING_KEY_COLS}) VALUES ($1, $2, $3)");
            insert(
                tx,
                &sql,
                &[&k.kid, &k.sealed_key, &k.created_at],
                "signing_key_exists",
            )
            .await
            .map(|_| ())
        }
        // The primary key makes a second insert of the same jti fail, whichever commits first.
        Effect::UseHintJti {
            client_id,
            jti,
            tenant_id,
            expires_at,
        } => insert(
            tx,
            "INSERT INTO oidc_hint_jtis (client_id, jti, tenant_id, expires_at)
             VALUES ($1, $2, $3, $4)",
            &[&client_id, &jti, &tenant_id, &expires_at],
            "hint_replayed",
        )
        .await
        .map(|_| ()),
        Effect::InsertAuthCode(a) => {
            let sql = format!(
                "INSERT INTO oidc_codes ({AUTH_CODE_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            );
            insert(
                tx,
                &sql,
                &[
                    &a.code_hash,
                    &a.tenant_id,
                    &a.client_id,
                    &a.redirect_uri,
                    &a.code_challenge,
                    &a.nonce,
                    &a.user_id,
                    &a.subject,
                    &a.amr,
                    &a.acr,
                    &a.auth_time,
                    &a.session_id,
                    &a.created_at,
                    &a.expires_at,
                    &a.used_at,
                ],
                "auth_code_exists",
            )
            .await
            .map(|_| ())
        }
        // PostgreSQL re-checks `used_at IS NULL` on the newest row version after a concurrent
        // update commits, so of two racing exchanges exactly one spends the code.
        Effect::UseAuthCode { code_hash, at } => {
            changed(
                tx,
                "UPDATE oidc_codes SET used_at = $1
                 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1",
                &[&at, &code_hash],
            )
            .await
        }
        Effect::InsertHostedLogin(h) => {
            let sql = format!(
                "INSERT INTO oidc_hosted_logins ({HOSTED_LOGIN_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            );
            insert(
                tx,
                &sql,
                &[
                    &h.login_id,
                    &h.tenant_id,
                    &h.client_id,
                    &h.redirect_uri,
                    &h.state,
                    &h.nonce,
                    &h.code_challenge,
                    &h.created_at,
                    &h.expires_at,
                ],
                "hosted_login_exists",
            )
            .await
            .map(|_| ())
        }
        other => Err(StoreError::Backend(format!(
            "not an OIDC effect: {other:?}"
        ))),
    }
}
