//! Integrators' webhook subscriptions (their events travel through the outbox).

use super::rows::*;
use rusqlite::{params, Connection};
use twofold_core::login::Webhook;
use twofold_core::ports::StoreError;

pub(super) fn insert(c: &Connection, w: &Webhook) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO webhooks (id, tenant_id, url, sealed_secret, events, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            w.id,
            w.tenant_id,
            w.url,
            w.sealed_secret,
            w.events.join(","),
            w.created_at
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("webhook_exists"))
}

pub(super) fn of_tenant(c: &Connection, tenant_id: i64) -> Result<Vec<Webhook>, StoreError> {
    let mut s = c
        .prepare_cached(
            "SELECT id, tenant_id, url, sealed_secret, events, created_at
             FROM webhooks WHERE tenant_id = ?1 ORDER BY created_at, id",
        )
        .map_err(backend)?;
    let rows = s
        .query_map(params![tenant_id], |r| {
            let events: String = r.get(4)?;
            Ok(Webhook {
                id: r.get(0)?,
                tenant_id: r.get(1)?,
                url: r.get(2)?,
                sealed_secret: r.get(3)?,
                events: events
                    .split(',')
                    .filter(|e| !e.is_empty())
                    .map(String::from)
                    .collect(),
                created_at: r.get(5)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}
