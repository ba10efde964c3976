//! Master key rotation: the cluster's sealing-key state, the nodes' key reports, and the
//! sweep over sealed values (see `twofold_core::keys` for the procedure).

use super::rows::*;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use twofold_core::keys::*;
use twofold_core::ports::StoreError;

fn key_state_row(r: &Row) -> Result<KeyState, StoreError> {
    Ok(KeyState {
        active: get(r, 0)?,
        pending: get(r, 1)?,
        version: get(r, 2)?,
        changed_at: get(r, 3)?,
    })
}

fn node_row(r: &Row) -> Result<NodeKeys, StoreError> {
    Ok(NodeKeys {
        node_id: get(r, 0)?,
        key_ids: split_key_ids(get(r, 1)?),
        sealing_key_id: get(r, 2)?,
        started_at: get(r, 3)?,
        seen_at: get(r, 4)?,
    })
}

pub(super) async fn key_state(c: &impl GenericClient) -> Result<KeyState, StoreError> {
    query_opt(
        c,
        &format!("SELECT {KEY_STATE_COLS} FROM sealing_keys WHERE only_row = 1"),
        &[],
    )
    .await?
    .as_ref()
    .map(key_state_row)
    .transpose()
    .map(Option::unwrap_or_default)
}

/// Version 0 means "no row yet": the insert then loses to any row another writer made.
pub(super) async fn set_key_state(
    c: &impl GenericClient,
    k: &KeyChange,
) -> Result<bool, StoreError> {
    let sql = if k.expected_version == 0 {
        "INSERT INTO sealing_keys (only_row, active_key_id, pending_key_id, version, changed_at)
         VALUES (1, $1, $2, $3::BIGINT + 1, $4) ON CONFLICT (only_row) DO NOTHING"
    } else {
        "UPDATE sealing_keys SET active_key_id = $1, pending_key_id = $2, version = $3::BIGINT + 1,
                                 changed_at = $4
         WHERE only_row = 1 AND version = $3"
    };
    Ok(exec(c, sql, &[&k.active, &k.pending, &k.expected_version, &k.at]).await? == 1)
}

pub(super) async fn report_node(c: &impl GenericClient, n: &NodeKeys) -> Result<(), StoreError> {
    exec(
        c,
        &format!(
            "INSERT INTO node_keys ({NODE_KEYS_COLS}) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (node_id) DO UPDATE SET key_ids = excluded.key_ids,
                 sealing_key_id = excluded.sealing_key_id, seen_at = excluded.seen_at"
        ),
        &[
            &n.node_id,
            &join_key_ids(&n.key_ids),
            &n.sealing_key_id,
            &n.started_at,
            &n.seen_at,
        ],
    )
    .await
    .map(|_| ())
}

pub(super) async fn nodes(c: &impl GenericClient, since: i64) -> Result<Vec<NodeKeys>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {NODE_KEYS_COLS} FROM node_keys WHERE seen_at >= $1
             ORDER BY node_id COLLATE \"C\""
        ),
        &[&since],
    )
    .await?;
    all(rows, node_row)
}

/// Paged in the key's own collation, so the primary-key (or unique) index serves each page.
pub(super) async fn sealed_rows(
    c: &impl GenericClient,
    column: SealedColumn,
    after: &str,
    limit: u32,
) -> Result<Vec<SealedRow>, StoreError> {
    let sql = sealed_sql(column);
    let rows = query(
        c,
        &sql.select_page(|i| format!("${i}")),
        &[&after, &i64::from(limit)],
    )
    .await?;
    all(rows, |r| {
        let value = if sql.text {
            get::<String>(r, 3)?.into_bytes()
        } else {
            get::<Vec<u8>>(r, 3)?
        };
        Ok(SealedRow {
            key: get(r, 0)?,
            tenant_id: get(r, 1)?,
            user_id: get(r, 2)?,
            value,
        })
    })
}

pub(super) async fn reseal(
    c: &impl GenericClient,
    changes: &[Reseal],
) -> Result<Vec<bool>, StoreError> {
    let mut applied = Vec::with_capacity(changes.len());
    for ch in changes {
        let sql = sealed_sql(ch.column);
        let update = sql.update_if_unchanged(|i| format!("${i}"));
        let n = if sql.text {
            let (to, from) = (text_value(&ch.to)?, text_value(&ch.from)?);
            exec(c, &update, &[&to, &ch.key, &from]).await?
        } else {
            exec(c, &update, &[&ch.to, &ch.key, &ch.from]).await?
        };
        applied.push(n == 1);
    }
    Ok(applied)
}
