//! The message outbox: leased claiming by delivery workers, results, operator views, pruning.

use super::rows::*;
use deadpool_postgres::GenericClient;
use twofold_core::messaging::*;
use twofold_core::ports::StoreError;

/// The body of `claim_messages`: one statement. `FOR UPDATE SKIP LOCKED` lets workers on any
/// number of nodes claim side by side, each passing over the rows another is claiming; a row
/// is locked before it is chosen and its condition re-checked on its newest version, so a row
/// claimed and committed meanwhile is not taken twice.
pub(super) async fn claim(
    c: &impl GenericClient,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let rows = query(
        c,
        &format!(
            "UPDATE outbox
             SET status = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE (status = 'pending' AND next_attempt_at <= $3)
                             OR (status = 'sending' AND lease_until <= $3)
                          ORDER BY id LIMIT $4
                          FOR UPDATE SKIP LOCKED)
             RETURNING {MESSAGE_COLS}"
        ),
        &[
            &owner,
            &now.saturating_add(lease_ms),
            &now,
            &i64::from(limit),
        ],
    )
    .await?;
    let mut claimed = all(rows, message_row)?;
    // RETURNING gives no order; the contract is oldest first.
    claimed.sort_by_key(|m| m.id);
    Ok(claimed)
}

/// The body of `finish_message`: only the lease holder may record a result.
pub(super) async fn finish(
    c: &impl GenericClient,
    id: i64,
    owner: &str,
    result: DeliveryResult,
    now: i64,
) -> Result<bool, StoreError> {
    const HELD: &str = "WHERE id = $1 AND lease_owner = $2 AND status = 'sending'";
    let n = match result {
        DeliveryResult::Sent => {
            exec(
                c,
                &format!(
                    "UPDATE outbox SET status = 'sent', sent_at = $3, sealed_params = NULL,
                                       lease_owner = NULL, lease_until = NULL {HELD}"
                ),
                &[&id, &owner, &now],
            )
            .await?
        }
        DeliveryResult::Retry { at, error } => {
            exec(
                c,
                &format!(
                    "UPDATE outbox SET status = 'pending', next_attempt_at = $3, last_error = $4,
                                       lease_owner = NULL, lease_until = NULL {HELD}"
                ),
                &[&id, &owner, &at, &error],
            )
            .await?
        }
        // The sealed parameters stay, so an operator can retry after fixing the cause.
        DeliveryResult::Failed { error } => {
            exec(
                c,
                &format!(
                    "UPDATE outbox SET status = 'failed', last_error = $3,
                                       lease_owner = NULL, lease_until = NULL {HELD}"
                ),
                &[&id, &owner, &error],
            )
            .await?
        }
    };
    Ok(n == 1)
}

pub(super) async fn stats(
    c: &impl GenericClient,
    tenant_id: Option<i64>,
) -> Result<OutboxStats, StoreError> {
    // Two spellings rather than `$1 IS NULL OR …`, so the per-tenant one can use its index.
    let filter = if tenant_id.is_some() {
        "tenant_id = $1"
    } else {
        "$1::BIGINT IS NULL"
    };
    let mut stats = OutboxStats::default();
    let rows = query(
        c,
        &format!("SELECT status, COUNT(*) FROM outbox WHERE {filter} GROUP BY status"),
        &[&tenant_id],
    )
    .await?;
    for row in &rows {
        let status: String = get(row, 0)?;
        let n = get::<i64>(row, 1)?.max(0) as u64;
        match MessageStatus::parse(&status) {
            Some(MessageStatus::Pending) => stats.pending = n,
            Some(MessageStatus::Sending) => stats.sending = n,
            Some(MessageStatus::Sent) => stats.sent = n,
            Some(MessageStatus::Failed) => stats.failed = n,
            None => {}
        }
    }
    if let Some(row) = query_opt(
        c,
        &format!(
            "SELECT MIN(created_at) FROM outbox
             WHERE status IN ('pending', 'sending') AND {filter}"
        ),
        &[&tenant_id],
    )
    .await?
    {
        stats.oldest_unsent_at = get(&row, 0)?;
    }
    Ok(stats)
}

pub(super) async fn list(
    c: &impl GenericClient,
    q: &MessageQuery,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {MESSAGE_COLS} FROM outbox
             WHERE ($1::BIGINT IS NULL OR tenant_id = $1)
               AND ($2::TEXT IS NULL OR status = $2)
               AND ($3::BIGINT IS NULL OR user_id = $3)
               AND id < $4
             ORDER BY id DESC LIMIT $5"
        ),
        &[
            &q.tenant_id,
            &q.status.map(|st| st.as_str()),
            &q.user_id,
            &q.before_id.unwrap_or(i64::MAX),
            &i64::from(q.limit),
        ],
    )
    .await?;
    all(rows, message_row)
}

/// Puts a failed message back in the queue, due at `now`; its attempt count is kept.
pub(super) async fn retry(c: &impl GenericClient, id: i64, now: i64) -> Result<bool, StoreError> {
    let n = exec(
        c,
        "UPDATE outbox SET status = 'pending', next_attempt_at = $1
         WHERE id = $2 AND status = 'failed'",
        &[&now, &id],
    )
    .await?;
    Ok(n == 1)
}

/// One bounded pass of `prune_messaging`: at most `chunk` rows from each large table, so one
/// prune never holds many row locks for long. Returns (rows deleted, whether any table may
/// have more).
pub(super) async fn prune_chunk(
    c: &impl GenericClient,
    before: i64,
    now: i64,
    chunk: i64,
) -> Result<(u64, bool), StoreError> {
    let mut total = 0;
    let mut more = false;
    let grace_end = now.saturating_sub(REVERT_LINK_GRACE_MS);
    let deletes: [(&str, Params); 4] = [
        (
            "DELETE FROM outbox WHERE id IN
               (SELECT id FROM outbox
                WHERE status IN ('sent', 'failed') AND created_at < $1 LIMIT $2)",
            &[&before, &chunk],
        ),
        (
            "DELETE FROM otp_codes WHERE id IN
               (SELECT id FROM otp_codes WHERE expires_at <= $1 LIMIT $2)",
            &[&now, &chunk],
        ),
        // Expired changes are dead whatever their state; finished ones are kept as long as
        // messages are, so a client can still read how its change ended.
        (
            "DELETE FROM phone_changes WHERE id IN
               (SELECT id FROM phone_changes
                WHERE expires_at <= $2
                   OR (state IN ('done', 'cancelled') AND updated_at < $1)
                LIMIT $3)",
            &[&before, &now, &chunk],
        ),
        // Used or not, a "this wasn't me" link is kept for a grace period after it expired.
        (
            "DELETE FROM revert_links WHERE id IN
               (SELECT id FROM revert_links WHERE expires_at <= $1 LIMIT $2)",
            &[&grace_end, &chunk],
        ),
    ];
    for (sql, params) in deletes {
        let n = exec(c, sql, params).await?;
        total += n;
        more |= n >= chunk.max(0) as u64;
    }
    // Few rows (a handful of scopes per window): no need to chunk.
    total += exec(
        c,
        "DELETE FROM send_counters WHERE window_start + window_ms <= $1",
        &[&now],
    )
    .await?;
    Ok((total, more))
}
