//! One-time codes (SMS, email): issuing under cooldown and sending caps, and consuming by one
//! conditional update (INV-02), bound to purpose + user + factor + action (INV-05). Both take
//! the user's row lock first, so the cooldown, the code's tries and the factor's failures are
//! read and written by one request at a time for that user, on any node.
//!
//! A code is live while `now < expires_at`. Only the newest code per (user, factor, purpose)
//! counts: issuing deletes the older ones, so a superseded code meets the newest one's hash
//! and is refused as a wrong code.

use super::effects::apply_effects;
use super::factors::{budgets_used_up, charge_failure, spend_budgets};
use super::rows::*;
use deadpool_postgres::GenericClient;
use twofold_core::messaging::*;
use twofold_core::model::AuditRecord;
use twofold_core::ports::*;
use twofold_core::throttle::ThrottleState;

async fn newest_code(
    tx: &Tx<'_>,
    tenant_id: i64,
    user_id: i64,
    factor_id: &str,
    purpose: CodePurpose,
) -> Result<Option<CodeRow>, StoreError> {
    let Some(r) = query_opt(
        tx,
        "SELECT id, action_hash, code_hash, attempts, created_at, expires_at, used_at
         FROM otp_codes
         WHERE factor_id = $1 AND user_id = $2 AND purpose = $3 AND tenant_id = $4
         ORDER BY id DESC LIMIT 1",
        &[&factor_id, &user_id, &purpose.as_str(), &tenant_id],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(CodeRow {
        id: get(&r, 0)?,
        action_hash: get(&r, 1)?,
        code_hash: get(&r, 2)?,
        attempts: get(&r, 3)?,
        created_at: get(&r, 4)?,
        expires_at: get(&r, 5)?,
        used_at: get(&r, 6)?,
    }))
}

/// The attempt-limit state of the user's factor; `None` if there is no such factor of theirs.
async fn factor_throttle(
    tx: &Tx<'_>,
    tenant_id: i64,
    user_id: i64,
    factor_id: &str,
) -> Result<Option<ThrottleState>, StoreError> {
    let Some(r) = query_opt(
        tx,
        "SELECT failures, blocked_until, locked_at FROM factors
         WHERE id = $1 AND user_id = $2 AND tenant_id = $3",
        &[&factor_id, &user_id, &tenant_id],
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(ThrottleState {
        failures: get(&r, 0)?,
        blocked_until: get(&r, 1)?,
        locked_at: get(&r, 2)?,
    }))
}

/// The count in the current window (at `now`) of each limit, in order.
pub(super) async fn counts(
    c: &impl GenericClient,
    limits: &[SendLimit],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut counts = Vec::with_capacity(limits.len());
    for l in limits {
        let start = window_start(now, l.window_ms)?;
        let count = match query_opt(
            c,
            "SELECT count FROM send_counters
             WHERE scope = $1 AND window_ms = $2 AND window_start = $3",
            &[&l.scope, &l.window_ms, &start],
        )
        .await?
        {
            Some(row) => get(&row, 0)?,
            None => 0,
        };
        counts.push(count);
    }
    Ok(counts)
}

/// Counts one send against every limit at `now`, each by one upsert that locks its counter
/// row. With `check`, a limit already at its cap is not counted and refuses the send: the
/// check and the count are the same statement, so two nodes cannot both take the last send.
/// Limits are counted in the order given (the same for every caller, so two sends never wait
/// for each other crosswise); the first one at its cap is the refusal, as on SQLite.
pub(super) async fn count_sends_checked(
    c: &impl GenericClient,
    limits: &[SendLimit],
    now: i64,
    check: bool,
) -> Result<Option<(SendRefusal, i64)>, StoreError> {
    for l in limits {
        let start = window_start(now, l.window_ms)?;
        let max = i64::from(l.max);
        let counted = if check && max == 0 {
            None
        } else {
            query_opt(
                c,
                "INSERT INTO send_counters (scope, window_ms, window_start, count)
                 VALUES ($1, $2, $3, 1)
                 ON CONFLICT (scope, window_ms, window_start)
                 DO UPDATE SET count = send_counters.count + 1
                 WHERE NOT $4 OR send_counters.count < $5
                 RETURNING count",
                &[&l.scope, &l.window_ms, &start, &check, &max],
            )
            .await?
        };
        if counted.is_none() {
            return Ok(Some(limit_refusal(l, start)));
        }
    }
    Ok(None)
}

/// Counts one send against every limit at `now` (without checking them).
pub(super) async fn count_sends(
    c: &impl GenericClient,
    limits: &[SendLimit],
    now: i64,
) -> Result<(), StoreError> {
    count_sends_checked(c, limits, now, false).await.map(|_| ())
}

/// The body of [`Store::issue_code`]; `code.created_at` is "now".
pub(super) async fn issue_code(tx: &Tx<'_>, issue: IssueCode) -> Result<IssueOutcome, StoreError> {
    let IssueCode {
        code,
        message,
        cooldown_ms,
        limits,
        effects,
        audit,
    } = issue;
    let now = code.created_at;
    lock_user(tx, code.user_id).await?;
    // A factor that does not exist yet (enrolment creates it with this code), or a subject
    // that is no factor at all (a proposal), is not locked.
    let throttle = factor_throttle(tx, code.tenant_id, code.user_id, &code.factor_id).await?;
    let prev = newest_code(
        tx,
        code.tenant_id,
        code.user_id,
        &code.factor_id,
        code.purpose,
    )
    .await?;
    let mut refused = refusal_before_limits(throttle, prev.as_ref(), now, cooldown_ms);
    if refused.is_none() {
        // A refusal by a later limit must not leave the earlier ones counted.
        tx.batch_execute("SAVEPOINT send_limits")
            .await
            .map_err(pg)?;
        refused = count_sends_checked(tx, &limits, now, true).await?;
        if refused.is_some() {
            tx.batch_execute("ROLLBACK TO SAVEPOINT send_limits")
                .await
                .map_err(pg)?;
        }
    }
    if let Some((reason, retry_at)) = refused {
        insert_audit(tx, &denied(audit, &reason.label())).await?;
        return Ok(IssueOutcome::Refused { reason, retry_at });
    }
    // Effects first: one of them may create the factor this code is for.
    apply_effects(tx, effects).await?;
    insert_code(tx, &code).await?;
    insert_message(tx, &message).await?;
    insert_audit(tx, &ok(audit)).await?;
    Ok(IssueOutcome::Issued)
}

/// Inserts a code, deleting older ones for the same (user, factor, purpose): only the newest
/// is valid.
pub(super) async fn insert_code(tx: &Tx<'_>, code: &NewCode) -> Result<(), StoreError> {
    exec(
        tx,
        "DELETE FROM otp_codes WHERE factor_id = $1 AND user_id = $2 AND purpose = $3",
        &[&code.factor_id, &code.user_id, &code.purpose.as_str()],
    )
    .await?;
    exec(
        tx,
        "INSERT INTO otp_codes (tenant_id, user_id, factor_id, purpose, action_hash, code_hash,
                                hash_key_id, attempts, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
        &[
            &code.tenant_id,
            &code.user_id,
            &code.factor_id,
            &code.purpose.as_str(),
            &code.action_hash,
            &code.code_hash,
            &code.hash_key_id,
            &code.created_at,
            &code.expires_at,
        ],
    )
    .await
    .map(|_| ())
}

/// Refuses an attempt: its audit row with the real reason, and the outcome.
pub(super) async fn deny(
    tx: &Tx<'_>,
    audit: AuditRecord,
    reason: RejectReason,
) -> Result<AttemptOutcome, StoreError> {
    insert_audit(tx, &denied(audit, reason.as_str())).await?;
    Ok(AttemptOutcome::Rejected { reason })
}

/// The body of [`Store::consume_code`].
pub(super) async fn consume_code(
    tx: &Tx<'_>,
    k: ConsumeCode,
) -> Result<AttemptOutcome, StoreError> {
    let ConsumeCode {
        tenant_id,
        user_id,
        factor_id,
        purpose,
        action_hash,
        presented_hash,
        now,
        on_success,
        on_lock,
        on_backoff,
        budgets,
        audit,
    } = k;
    lock_user(tx, user_id).await?;
    // The failure budgets first, as for TOTP: a full one refuses even a right code unjudged.
    if budgets_used_up(tx, &budgets, now).await? {
        return deny(tx, audit, RejectReason::Throttled).await;
    }
    // The subject may be no factor of this user (e.g. a proposal): then the code's own try
    // limit is the only one, and there is no factor to charge or clear.
    let throttle = factor_throttle(tx, tenant_id, user_id, &factor_id).await?;
    // Attempt limits first, without looking at the code, and not counted (like TOTP).
    if let Some(t) = &throttle {
        if t.is_locked() {
            return deny(tx, audit, RejectReason::Locked).await;
        }
        if t.is_blocked(now) {
            return deny(tx, audit, RejectReason::Throttled).await;
        }
    }
    let code = newest_code(tx, tenant_id, user_id, &factor_id, purpose).await?;
    let reason = match check_code(code.as_ref(), &presented_hash, &action_hash, now) {
        Err(reason) => reason,
        Ok(id) => {
            // INV-02: the one consume statement; everything checked above is re-checked by its
            // condition, and "one row changed" is the success.
            let used = exec(
                tx,
                "UPDATE otp_codes SET used_at = $1
                 WHERE id = $2 AND used_at IS NULL AND expires_at > $1 AND attempts < $3",
                &[&now, &id, &CODE_MAX_ATTEMPTS],
            )
            .await?;
            if used == 1 {
                if throttle.is_some() {
                    exec(
                        tx,
                        "UPDATE factors SET failures = 0, blocked_until = NULL WHERE id = $1",
                        &[&factor_id],
                    )
                    .await?;
                }
                apply_effects(tx, on_success).await?;
                insert_audit(tx, &ok(audit)).await?;
                return Ok(AttemptOutcome::Accepted { factor_id });
            }
            RejectReason::Replayed
        }
    };
    // Every counted rejection costs each budget one failure (unless a parallel attempt took
    // the last one: then this one is refused unjudged after all), the code one try and the
    // factor one failure.
    if !spend_budgets(tx, &budgets, now).await? {
        return deny(tx, audit, RejectReason::Throttled).await;
    }
    if let Some(row) = &code {
        exec(
            tx,
            "UPDATE otp_codes SET attempts = attempts + 1 WHERE id = $1",
            &[&row.id],
        )
        .await?;
    }
    if let Some(t) = throttle {
        let mut reactions = OnFailure {
            on_lock,
            on_backoff,
        };
        charge_failure(tx, &factor_id, t, now, &audit, &mut reactions).await?;
    }
    deny(tx, audit, reason).await
}

pub(super) async fn phone_change(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<PhoneChange>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {PHONE_CHANGE_COLS} FROM phone_changes WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(phone_change_row)
    .transpose()
}
