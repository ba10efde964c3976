//! Master key rotation: the cluster's sealing-key state, the nodes' key reports, and the
//! sweep over sealed values (see `twofold_core::keys` for the procedure).

use super::rows::*;
use rusqlite::{params, types::Value, Connection, Row};
use twofold_core::keys::*;
use twofold_core::ports::StoreError;

fn key_state_row(r: &Row) -> rusqlite::Result<KeyState> {
    Ok(KeyState {
        active: r.get(0)?,
        pending: r.get(1)?,
        version: r.get(2)?,
        changed_at: r.get(3)?,
    })
}

fn node_row(r: &Row) -> rusqlite::Result<NodeKeys> {
    let ids: String = r.get(1)?;
    Ok(NodeKeys {
        node_id: r.get(0)?,
        key_ids: split_key_ids(&ids),
        sealing_key_id: r.get(2)?,
        started_at: r.get(3)?,
        seen_at: r.get(4)?,
    })
}

pub(super) fn key_state(c: &Connection) -> Result<KeyState, StoreError> {
    Ok(one(
        c,
        &format!("SELECT {KEY_STATE_COLS} FROM sealing_keys WHERE only_row = 1"),
        [],
        key_state_row,
    )?
    .unwrap_or_default())
}

/// Version 0 means "no row yet": the insert then loses to any row another writer made.
pub(super) fn set_key_state(c: &Connection, k: &KeyChange) -> Result<bool, StoreError> {
    let sql = if k.expected_version == 0 {
        "INSERT INTO sealing_keys (only_row, active_key_id, pending_key_id, version, changed_at)
         VALUES (1, ?1, ?2, ?3 + 1, ?4) ON CONFLICT (only_row) DO NOTHING"
    } else {
        "UPDATE sealing_keys SET active_key_id = ?1, pending_key_id = ?2, version = ?3 + 1,
                                 changed_at = ?4
         WHERE only_row = 1 AND version = ?3"
    };
    let n = c
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(params![k.active, k.pending, k.expected_version, k.at]))
        .map_err(backend)?;
    Ok(n == 1)
}

pub(super) fn report_node(c: &Connection, n: &NodeKeys) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO node_keys ({NODE_KEYS_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (node_id) DO UPDATE SET key_ids = excluded.key_ids,
             sealing_key_id = excluded.sealing_key_id, seen_at = excluded.seen_at"
    ))
    .and_then(|mut s| {
        s.execute(params![
            n.node_id,
            join_key_ids(&n.key_ids),
            n.sealing_key_id,
            n.started_at,
            n.seen_at
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

pub(super) fn nodes(c: &Connection, since: i64) -> Result<Vec<NodeKeys>, StoreError> {
    all(
        c,
        &format!("SELECT {NODE_KEYS_COLS} FROM node_keys WHERE seen_at >= ?1 ORDER BY node_id"),
        params![since],
        node_row,
    )
}

pub(super) fn sealed_rows(
    c: &Connection,
    column: SealedColumn,
    after: &str,
    limit: u32,
) -> Result<Vec<SealedRow>, StoreError> {
    let sql = sealed_sql(column);
    all(
        c,
        &sql.select_page(|i| format!("?{i}")),
        params![after, limit],
        |r| {
            // A text value (the undo JSON) is carried as its UTF-8 bytes.
            let value = match r.get::<_, Value>(3)? {
                Value::Blob(b) => b,
                Value::Text(t) => t.into_bytes(),
                _ => Vec::new(),
            };
            Ok(SealedRow {
                key: r.get(0)?,
                tenant_id: r.get(1)?,
                user_id: r.get(2)?,
                value,
            })
        },
    )
}

pub(super) fn reseal(c: &Connection, changes: &[Reseal]) -> Result<Vec<bool>, StoreError> {
    let mut applied = Vec::with_capacity(changes.len());
    for ch in changes {
        let sql = sealed_sql(ch.column);
        let update = sql.update_if_unchanged(|i| format!("?{i}"));
        let n = if sql.text {
            let (to, from) = (text_value(&ch.to)?, text_value(&ch.from)?);
            c.prepare_cached(&update)
                .and_then(|mut s| s.execute(params![to, ch.key, from]))
        } else {
            c.prepare_cached(&update)
                .and_then(|mut s| s.execute(params![ch.to, ch.key, ch.from]))
        }
        .map_err(backend)?;
        applied.push(n == 1);
    }
    Ok(applied)
}
