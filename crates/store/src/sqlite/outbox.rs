//! The message outbox: leased claiming by delivery workers, results, operator views, pruning.

use super::rows::*;
use rusqlite::{params, Connection};
use twofold_core::messaging::*;
use twofold_core::ports::StoreError;

/// The body of `claim_messages`: one statement, so the choice of rows and their lease are a
/// single conditional write that no other claimer (thread or process) can interleave with.
pub(super) fn claim(
    c: &Connection,
    owner: &str,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut s = c
        .prepare_cached(&format!(
            "UPDATE outbox
             SET status = 'sending', lease_owner = ?1, lease_until = ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE status = 'pending' AND next_attempt_at <= ?3
                          UNION ALL
                          SELECT id FROM outbox
                          WHERE status = 'sending' AND lease_until <= ?3
                          ORDER BY id LIMIT ?4)
             RETURNING {MESSAGE_COLS}"
        ))
        .map_err(backend)?;
    let rows = s
        .query_map(
            params![owner, now.saturating_add(lease_ms), now, limit],
            message_row,
        )
        .map_err(backend)?;
    let mut claimed: Vec<OutboxMessage> = rows.collect::<Result<_, _>>().map_err(backend)?;
    // RETURNING gives no order; the contract is oldest first.
    claimed.sort_by_key(|m| m.id);
    Ok(claimed)
}

/// The body of `finish_message`: only the lease holder may record a result.
pub(super) fn finish(
    c: &Connection,
    id: i64,
    owner: &str,
    result: DeliveryResult,
    now: i64,
) -> Result<bool, StoreError> {
    const HELD: &str = "WHERE id = ?1 AND lease_owner = ?2 AND status = 'sending'";
    let n = match result {
        DeliveryResult::Sent => c
            .prepare_cached(&format!(
                "UPDATE outbox SET status = 'sent', sent_at = ?3, sealed_params = NULL,
                                   lease_owner = NULL, lease_until = NULL {HELD}"
            ))
            .and_then(|mut s| s.execute(params![id, owner, now])),
        DeliveryResult::Retry { at, error } => c
            .prepare_cached(&format!(
                "UPDATE outbox SET status = 'pending', next_attempt_at = ?3, last_error = ?4,
                                   lease_owner = NULL, lease_until = NULL {HELD}"
            ))
            .and_then(|mut s| s.execute(params![id, owner, at, error])),
        // The sealed parameters stay, so an operator can retry after fixing the cause.
        DeliveryResult::Failed { error } => c
            .prepare_cached(&format!(
                "UPDATE outbox SET status = 'failed', last_error = ?3,
                                   lease_owner = NULL, lease_until = NULL {HELD}"
            ))
            .and_then(|mut s| s.execute(params![id, owner, error])),
    }
    .map_err(backend)?;
    Ok(n == 1)
}

pub(super) fn stats(c: &Connection, tenant_id: Option<i64>) -> Result<OutboxStats, StoreError> {
    // Two spellings rather than `?1 IS NULL OR …`, so the per-tenant one can use its index.
    let filter = if tenant_id.is_some() {
        "tenant_id = ?1"
    } else {
        "?1 IS NULL"
    };
    let mut stats = OutboxStats::default();
    let mut s = c
        .prepare_cached(&format!(
            "SELECT status, COUNT(*) FROM outbox WHERE {filter} GROUP BY status"
        ))
        .map_err(backend)?;
    let rows = s
        .query_map(params![tenant_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(backend)?;
    for row in rows {
        let (status, n) = row.map_err(backend)?;
        let n = n.max(0) as u64;
        match MessageStatus::parse(&status) {
            Some(MessageStatus::Pending) => stats.pending = n,
            Some(MessageStatus::Sending) => stats.sending = n,
            Some(MessageStatus::Sent) => stats.sent = n,
            Some(MessageStatus::Failed) => stats.failed = n,
            None => {}
        }
    }
    stats.oldest_unsent_at = c
        .prepare_cached(&format!(
            "SELECT MIN(created_at) FROM outbox
             WHERE status IN ('pending', 'sending') AND {filter}"
        ))
        .and_then(|mut s| s.query_row(params![tenant_id], |r| r.get(0)))
        .map_err(backend)?;
    Ok(stats)
}

pub(super) fn list(c: &Connection, q: &MessageQuery) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM outbox
             WHERE (?1 IS NULL OR tenant_id = ?1)
               AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR user_id = ?3)
               AND id < ?4
             ORDER BY id DESC LIMIT ?5"
        ))
        .map_err(backend)?;
    let rows = s
        .query_map(
            params![
                q.tenant_id,
                q.status.map(|st| st.as_str()),
                q.user_id,
                q.before_id.unwrap_or(i64::MAX),
                q.limit
            ],
            message_row,
        )
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// Puts a failed message back in the queue, due at `now`; its attempt count is kept.
pub(super) fn retry(c: &Connection, id: i64, now: i64) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?1
             WHERE id = ?2 AND status = 'failed'",
        )
        .and_then(|mut s| s.execute(params![now, id]))
        .map_err(backend)?;
    Ok(n == 1)
}

/// One bounded pass of `prune_messaging`: at most `chunk` rows from each large table, so one
/// prune never holds the group-commit writer for long. Returns (rows deleted, whether any
/// table may have more).
pub(super) fn prune_chunk(
    c: &Connection,
    before: i64,
    now: i64,
    chunk: u64,
) -> Result<(u64, bool), StoreError> {
    let mut total = 0;
    let mut more = false;
    let grace_end = now.saturating_sub(REVERT_LINK_GRACE_MS);
    let deletes: [(&str, &[&dyn rusqlite::ToSql]); 4] = [
        (
            "DELETE FROM outbox WHERE id IN
               (SELECT id FROM outbox
                WHERE status IN ('sent', 'failed') AND created_at < ?1 LIMIT ?2)",
            params![before, chunk],
        ),
        (
            "DELETE FROM otp_codes WHERE id IN
               (SELECT id FROM otp_codes WHERE expires_at <= ?1 LIMIT ?2)",
            params![now, chunk],
        ),
        // Expired changes are dead whatever their state; finished ones are kept as long as
        // messages are, so a client can still read how its change ended.
        (
            "DELETE FROM phone_changes WHERE id IN
               (SELECT id FROM phone_changes
                WHERE expires_at <= ?2
                   OR (state IN ('done', 'cancelled') AND updated_at < ?1)
                LIMIT ?3)",
            params![before, now, chunk],
        ),
        // Used or not, a "this wasn't me" link is kept for a grace period after it expired.
        (
            "DELETE FROM revert_links WHERE id IN
               (SELECT id FROM revert_links WHERE expires_at <= ?1 LIMIT ?2)",
            params![grace_end, chunk],
        ),
    ];
    for (sql, p) in deletes {
        let n = c
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(p))
            .map_err(backend)? as u64;
        total += n;
        more |= n >= chunk;
    }
    // Few rows (a handful of scopes per window): no need to chunk.
    total += c
        .prepare_cached("DELETE FROM send_counters WHERE window_start + window_ms <= ?1")
        .and_then(|mut s| s.execute(params![now]))
        .map_err(backend)? as u64;
    Ok((total, more))
}
