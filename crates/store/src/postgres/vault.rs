//! The authenticator vault: entries, groups and tokens (`twofold_core::vault`), mirroring
//! `sqlite/vault.rs`.

use super::rows::*;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use twofold_core::messaging::Effect;
use twofold_core::ports::StoreError;
use twofold_core::vault::*;

fn entry_row(r: &Row) -> Result<VaultEntry, StoreError> {
    let owner_kind: String = get(r, 3)?;
    let kind: String = get(r, 6)?;
    let digits: i32 = get(r, 9)?;
    let period: i64 = get(r, 10)?;
    let damaged = |what: &str, v: &dyn std::fmt::Debug| {
        StoreError::Backend(format!("stored {what} out of range: {v:?}"))
    };
    Ok(VaultEntry {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        name: get(r, 2)?,
        owner_kind: OwnerKind::parse(&owner_kind).ok_or_else(|| {
            StoreError::Backend(crate::common::unknown("owner kind", &owner_kind))
        })?,
        owner: get(r, 4)?,
        group_id: get(r, 5)?,
        kind: EntryKind::parse(&kind)
            .ok_or_else(|| StoreError::Backend(crate::common::unknown("entry kind", &kind)))?,
        sealed_secret: get(r, 7)?,
        algorithm: get(r, 8)?,
        digits: u8::try_from(digits).map_err(|_| damaged("digits", &digits))?,
        period: u32::try_from(period).map_err(|_| damaged("period", &period))?,
        counter: get(r, 11)?,
        issuer: get(r, 12)?,
        account: get(r, 13)?,
        created_at: get(r, 14)?,
    })
}

fn group_row(r: &Row) -> Result<VaultGroup, StoreError> {
    Ok(VaultGroup {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        name: get(r, 2)?,
        created_at: get(r, 3)?,
    })
}

fn token_row(r: &Row) -> Result<VaultToken, StoreError> {
    Ok(VaultToken {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        label: get(r, 2)?,
        token_hash: get(r, 3)?,
        entry_id: get(r, 4)?,
        group_id: get(r, 5)?,
        created_at: get(r, 6)?,
        revoked_at: get(r, 7)?,
    })
}

pub(super) async fn entries(
    c: &impl GenericClient,
    tenant_id: i64,
) -> Result<Vec<VaultEntry>, StoreError> {
    let sql = format!(
        "SELECT {VAULT_ENTRY_COLS} FROM vault_entries WHERE tenant_id = $1
         ORDER BY name COLLATE \"C\""
    );
    all(query(c, &sql, &[&tenant_id]).await?, entry_row)
}

pub(super) async fn entry(
    c: &impl GenericClient,
    tenant_id: i64,
    name: &str,
) -> Result<Option<VaultEntry>, StoreError> {
    let sql =
        format!("SELECT {VAULT_ENTRY_COLS} FROM vault_entries WHERE tenant_id = $1 AND name = $2");
    query_opt(c, &sql, &[&tenant_id, &name])
        .await?
        .as_ref()
        .map(entry_row)
        .transpose()
}

pub(super) async fn groups(
    c: &impl GenericClient,
    tenant_id: i64,
) -> Result<Vec<VaultGroup>, StoreError> {
    let sql = format!(
        "SELECT {VAULT_GROUP_COLS} FROM vault_groups WHERE tenant_id = $1
         ORDER BY name COLLATE \"C\""
    );
    all(query(c, &sql, &[&tenant_id]).await?, group_row)
}

pub(super) async fn tokens(
    c: &impl GenericClient,
    tenant_id: i64,
) -> Result<Vec<VaultToken>, StoreError> {
    let sql = format!(
        "SELECT {VAULT_TOKEN_COLS} FROM vault_tokens WHERE tenant_id = $1
         ORDER BY created_at, id COLLATE \"C\""
    );
    all(query(c, &sql, &[&tenant_id]).await?, token_row)
}

pub(super) async fn token(
    c: &impl GenericClient,
    hash: &[u8],
) -> Result<Option<VaultToken>, StoreError> {
    let sql = format!("SELECT {VAULT_TOKEN_COLS} FROM vault_tokens WHERE token_hash = $1");
    query_opt(c, &sql, &[&hash])
        .await?
        .as_ref()
        .map(token_row)
        .transpose()
}

/// Applies one of the vault's effects; anything else is a bug in the caller.
pub(super) async fn apply(tx: &Tx<'_>, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertVaultEntry(e) => {
            let sql = format!(
                "INSERT INTO vault_entries ({VAULT_ENTRY_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            );
            insert(
                tx,
                &sql,
                &[
                    &e.id,
                    &e.tenant_id,
                    &e.name,
                    &e.owner_kind.as_str(),
                    &e.owner,
                    &e.group_id,
                    &e.kind.as_str(),
                    &e.sealed_secret,
                    &e.algorithm,
                    &i32::from(e.digits),
                    &i64::from(e.period),
                    &e.counter,
                    &e.issuer,
                    &e.account,
                    &e.created_at,
                ],
                "vault_entry_exists",
            )
            .await
            .map(|_| ())
        }
        Effect::DeleteVaultEntry { id, tenant_id } => {
            exec(
                tx,
                "DELETE FROM vault_tokens WHERE entry_id = $1 AND tenant_id = $2",
                &[&id, &tenant_id],
            )
            .await?;
            changed(
                tx,
                "DELETE FROM vault_entries WHERE id = $1 AND tenant_id = $2",
                &[&id, &tenant_id],
            )
            .await
        }
        Effect::SetVaultEntryGroup {
            entry_id,
            tenant_id,
            group_id,
        } => {
            changed(
                tx,
                "UPDATE vault_entries SET group_id = $1::text
                 WHERE id = $2 AND tenant_id = $3
                   AND ($1::text IS NULL
                        OR EXISTS (SELECT 1 FROM vault_groups WHERE id = $1 AND tenant_id = $3))",
                &[&group_id, &entry_id, &tenant_id],
            )
            .await
        }
        // PostgreSQL re-checks `counter = $2` on the newest row version after a concurrent
        // update commits, so of two racing requests exactly one advances.
        Effect::AdvanceVaultCounter { entry_id, expected } => {
            changed(
                tx,
                "UPDATE vault_entries SET counter = counter + 1
                 WHERE id = $1 AND kind = 'hotp' AND counter = $2",
                &[&entry_id, &expected],
            )
            .await
        }
        Effect::InsertVaultGroup(g) => {
            let sql =
                format!("INSERT INTO vault_groups ({VAULT_GROUP_COLS}) VALUES ($1, $2, $3, $4)");
            insert(
                tx,
                &sql,
                &[&g.id, &g.tenant_id, &g.name, &g.created_at],
                "vault_group_exists",
            )
            .await
            .map(|_| ())
        }
        Effect::InsertVaultToken(t) => {
            let sql = format!(
                "INSERT INTO vault_tokens ({VAULT_TOKEN_COLS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            );
            insert(
                tx,
                &sql,
                &[
                    &t.id,
                    &t.tenant_id,
                    &t.label,
                    &t.token_hash,
                    &t.entry_id,
                    &t.group_id,
                    &t.created_at,
                    &t.revoked_at,
                ],
                "vault_token_exists",
            )
            .await
            .map(|_| ())
        }
        Effect::RevokeVaultToken { id, tenant_id, at } => {
            changed(
                tx,
                "UPDATE vault_tokens SET revoked_at = $1
                 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
                &[&at, &id, &tenant_id],
            )
            .await
        }
        other => Err(StoreError::Backend(format!(
            "not a vault effect: {other:?}"
        ))),
    }
}
