//! The authenticator vault: entries, groups and tokens (`twofold_core::vault`).

use super::rows::*;
use rusqlite::{params, Connection, Row};
use twofold_core::messaging::Effect;
use twofold_core::ports::StoreError;
use twofold_core::vault::*;

fn unknown(idx: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        crate::common::unknown(what, value).into(),
    )
}

fn entry_row(r: &Row) -> rusqlite::Result<VaultEntry> {
    let owner_kind: String = r.get(3)?;
    let kind: String = r.get(6)?;
    Ok(VaultEntry {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        owner_kind: OwnerKind::parse(&owner_kind)
            .ok_or_else(|| unknown(3, "owner kind", &owner_kind))?,
        owner: r.get(4)?,
        group_id: r.get(5)?,
        kind: EntryKind::parse(&kind).ok_or_else(|| unknown(6, "entry kind", &kind))?,
        sealed_secret: r.get(7)?,
        algorithm: r.get(8)?,
        digits: r.get(9)?,
        period: r.get(10)?,
        counter: r.get(11)?,
        issuer: r.get(12)?,
        account: r.get(13)?,
        created_at: r.get(14)?,
    })
}

fn group_row(r: &Row) -> rusqlite::Result<VaultGroup> {
    Ok(VaultGroup {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn token_row(r: &Row) -> rusqlite::Result<VaultToken> {
    Ok(VaultToken {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        label: r.get(2)?,
        token_hash: r.get(3)?,
        entry_id: r.get(4)?,
        group_id: r.get(5)?,
        created_at: r.get(6)?,
        revoked_at: r.get(7)?,
    })
}

pub(super) fn entries(c: &Connection, tenant_id: i64) -> Result<Vec<VaultEntry>, StoreError> {
    all(
        c,
        &format!("SELECT {VAULT_ENTRY_COLS} FROM vault_entries WHERE tenant_id = ?1 ORDER BY name"),
        params![tenant_id],
        entry_row,
    )
}

pub(super) fn entry(
    c: &Connection,
    tenant_id: i64,
    name: &str,
) -> Result<Option<VaultEntry>, StoreError> {
    one(
        c,
        &format!("SELECT {VAULT_ENTRY_COLS} FROM vault_entries WHERE tenant_id = ?1 AND name = ?2"),
        params![tenant_id, name],
        entry_row,
    )
}

pub(super) fn groups(c: &Connection, tenant_id: i64) -> Result<Vec<VaultGroup>, StoreError> {
    all(
        c,
        &format!("SELECT {VAULT_GROUP_COLS} FROM vault_groups WHERE tenant_id = ?1 ORDER BY name"),
        params![tenant_id],
        group_row,
    )
}

pub(super) fn tokens(c: &Connection, tenant_id: i64) -> Result<Vec<VaultToken>, StoreError> {
    all(
        c,
        &format!(
            "SELECT {VAULT_TOKEN_COLS} FROM vault_tokens WHERE tenant_id = ?1
             ORDER BY created_at, id"
        ),
        params![tenant_id],
        token_row,
    )
}

pub(super) fn token(c: &Connection, hash: &[u8]) -> Result<Option<VaultToken>, StoreError> {
    one(
        c,
        &format!("SELECT {VAULT_TOKEN_COLS} FROM vault_tokens WHERE token_hash = ?1"),
        params![hash],
        token_row,
    )
}

/// Applies one of the vault's effects; anything else is a bug in the caller.
pub(super) fn apply(c: &Connection, effect: Effect) -> Result<(), StoreError> {
    match effect {
        Effect::InsertVaultEntry(e) => exec(
            c,
            &format!(
                "INSERT INTO vault_entries ({VAULT_ENTRY_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ),
            params![
                e.id,
                e.tenant_id,
                e.name,
                e.owner_kind.as_str(),
                e.owner,
                e.group_id,
                e.kind.as_str(),
                e.sealed_secret,
                e.algorithm,
                e.digits,
                e.period,
                e.counter,
                e.issuer,
                e.account,
                e.created_at
            ],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("vault_entry_exists")),
        Effect::DeleteVaultEntry { id, tenant_id } => {
            exec(
                c,
                "DELETE FROM vault_tokens WHERE entry_id = ?1 AND tenant_id = ?2",
                params![id, tenant_id],
            )
            .map_err(backend)?;
            changed(exec(
                c,
                "DELETE FROM vault_entries WHERE id = ?1 AND tenant_id = ?2",
                params![id, tenant_id],
            ))
        }
        Effect::SetVaultEntryGroup {
            entry_id,
            tenant_id,
            group_id,
        } => changed(exec(
            c,
            "UPDATE vault_entries SET group_id = ?1
             WHERE id = ?2 AND tenant_id = ?3
               AND (?1 IS NULL
                    OR EXISTS (SELECT 1 FROM vault_groups WHERE id = ?1 AND tenant_id = ?3))",
            params![group_id, entry_id, tenant_id],
        )),
        Effect::AdvanceVaultCounter { entry_id, expected } => changed(exec(
            c,
            "UPDATE vault_entries SET counter = counter + 1
             WHERE id = ?1 AND kind = 'hotp' AND counter = ?2",
            params![entry_id, expected],
        )),
        Effect::InsertVaultGroup(g) => exec(
            c,
            &format!("INSERT INTO vault_groups ({VAULT_GROUP_COLS}) VALUES (?1, ?2, ?3, ?4)"),
            params![g.id, g.tenant_id, g.name, g.created_at],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("vault_group_exists")),
        Effect::InsertVaultToken(t) => exec(
            c,
            &format!(
                "INSERT INTO vault_tokens ({VAULT_TOKEN_COLS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                t.id,
                t.tenant_id,
                t.label,
                t.token_hash,
                t.entry_id,
                t.group_id,
                t.created_at,
                t.revoked_at
            ],
        )
        .map(|_| ())
        .map_err(conflict_on_duplicate("vault_token_exists")),
        Effect::RevokeVaultToken { id, tenant_id, at } => changed(exec(
            c,
            "UPDATE vault_tokens SET revoked_at = ?1
             WHERE id = ?2 AND tenant_id = ?3 AND revoked_at IS NULL",
            params![at, id, tenant_id],
        )),
        other => Err(StoreError::Backend(format!(
            "not a vault effect: {other:?}"
        ))),
    }
}
