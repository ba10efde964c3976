//! Integrators' webhook subscriptions (their events travel through the outbox).

use super::rows::*;
use deadpool_postgres::GenericClient;
use twofold_core::login::Webhook;
use twofold_core::ports::StoreError;

pub(super) async fn insert_webhook(c: &impl GenericClient, w: &Webhook) -> Result<(), StoreError> {
    insert(
        c,
        &format!("INSERT INTO webhooks ({WEBHOOK_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &w.id,
            &w.tenant_id,
            &w.url,
            &w.sealed_secret,
            &w.events.join(","),
            &w.created_at,
        ],
        "webhook_exists",
    )
    .await
    .map(|_| ())
}

/// The tenant's webhooks, oldest first.
pub(super) async fn of_tenant(
    c: &impl GenericClient,
    tenant_id: i64,
) -> Result<Vec<Webhook>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id COLLATE \"C\""
        ),
        &[&tenant_id],
    )
    .await?;
    all(rows, webhook_row)
}
