//! One-time codes (SMS, email): issuing under cooldown and sending caps, and consuming by one
//! conditional update (INV-02), bound to purpose + user + factor + action (INV-05).
//!
//! A code is live while `now < expires_at`. Only the newest code per (user, factor, purpose)
//! counts: issuing deletes the older ones, so a superseded code meets the newest one's hash
//! and is refused as a wrong code.

use super::effects::apply_effects;
use super::factors::{budgets_used_up, charge_failure};
use super::rows::*;
use rusqlite::{params, Connection, OptionalExtension};
use twofold_core::messaging::*;
use twofold_core::model::AuditRecord;
use twofold_core::ports::*;
use twofold_core::throttle::ThrottleState;

/// The newest code for (tenant, user, factor, purpose).
fn newest_code(
    c: &Connection,
    tenant_id: i64,
    user_id: i64,
    factor_id: &str,
    purpose: CodePurpose,
) -> Result<Option<CodeRow>, StoreError> {
    c.prepare_cached(
        "SELECT id, action_hash, code_hash, attempts, created_at, expires_at, used_at
         FROM otp_codes
         WHERE factor_id = ?1 AND user_id = ?2 AND purpose = ?3 AND tenant_id = ?4
         ORDER BY id DESC LIMIT 1",
    )
    .and_then(|mut s| {
        s.query_row(
            params![factor_id, user_id, purpose.as_str(), tenant_id],
            |r| {
                Ok(CodeRow {
                    id: r.get(0)?,
                    action_hash: r.get(1)?,
                    code_hash: r.get(2)?,
                    attempts: r.get(3)?,
                    created_at: r.get(4)?,
                    expires_at: r.get(5)?,
                    used_at: r.get(6)?,
                })
            },
        )
        .optional()
    })
    .map_err(backend)
}

/// The attempt-limit state of the user's factor; `None` if there is no such factor of theirs.
fn factor_throttle(
    c: &Connection,
    tenant_id: i64,
    user_id: i64,
    factor_id: &str,
) -> Result<Option<ThrottleState>, StoreError> {
    c.prepare_cached(
        "SELECT failures, blocked_until, locked_at FROM factors
         WHERE id = ?1 AND user_id = ?2 AND tenant_id = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![factor_id, user_id, tenant_id], |r| {
            Ok(ThrottleState {
                failures: r.get(0)?,
                blocked_until: r.get(1)?,
                locked_at: r.get(2)?,
            })
        })
        .optional()
    })
    .map_err(backend)
}

/// A reservation in each limit's window, only while below its maximum (the single writer
/// makes the check and the count one step); `state_changed` when one is full.
pub(super) fn charge_budgets(
    c: &Connection,
    limits: &[SendLimit],
    now: i64,
) -> Result<(), StoreError> {
    for l in limits {
        if counter(c, l, window_start(now, l.window_ms)?)? >= i64::from(l.max) {
            return Err(StoreError::Conflict("state_changed"));
        }
    }
    count_sends(c, limits, now)
}

/// Gives back one reservation in each limit's current window.
pub(super) fn refund_budgets(
    c: &Connection,
    limits: &[SendLimit],
    now: i64,
) -> Result<(), StoreError> {
    for l in limits {
        let start = window_start(now, l.window_ms)?;
        c.prepare_cached(
            "UPDATE send_counters SET count = count - 1
             WHERE scope = ?1 AND window_ms = ?2 AND window_start = ?3 AND count > 0",
        )
        .and_then(|mut s| s.execute(params![l.scope, l.window_ms, start]))
        .map_err(backend)?;
    }
    Ok(())
}

fn counter(c: &Connection, l: &SendLimit, start: i64) -> Result<i64, StoreError> {
    c.prepare_cached(
        "SELECT count FROM send_counters
         WHERE scope = ?1 AND window_ms = ?2 AND window_start = ?3",
    )
    .and_then(|mut s| {
        s.query_row(params![l.scope, l.window_ms, start], |r| r.get(0))
            .optional()
    })
    .map(|n| n.unwrap_or(0))
    .map_err(backend)
}

/// The count in the current window (at `now`) of each limit, in order.
pub(super) fn counts(
    c: &Connection,
    limits: &[SendLimit],
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    limits
        .iter()
        .map(|l| counter(c, l, window_start(now, l.window_ms)?))
        .collect()
}

/// Why the code may not be sent now, and until when; checked in the documented order.
fn refusal(
    c: &Connection,
    code: &NewCode,
    cooldown_ms: i64,
    limits: &[SendLimit],
) -> Result<Option<(SendRefusal, i64)>, StoreError> {
    let now = code.created_at;
    // A factor that does not exist yet (enrolment creates it with this code), or a subject
    // that is no factor at all (a proposal), is not locked.
    let throttle = factor_throttle(c, code.tenant_id, code.user_id, &code.factor_id)?;
    let prev = newest_code(
        c,
        code.tenant_id,
        code.user_id,
        &code.factor_id,
        code.purpose,
    )?;
    if let Some(refused) = refusal_before_limits(throttle, prev.as_ref(), now, cooldown_ms) {
        return Ok(Some(refused));
    }
    for l in limits {
        let start = window_start(now, l.window_ms)?;
        if counter(c, l, start)? >= i64::from(l.max) {
            return Ok(Some(limit_refusal(l, start)));
        }
    }
    Ok(None)
}

/// The body of [`Store::issue_code`]; `code.created_at` is "now".
pub(super) fn issue_code(c: &Connection, issue: IssueCode) -> Result<IssueOutcome, StoreError> {
    let IssueCode {
        code,
        message,
        cooldown_ms,
        limits,
        effects,
        audit,
    } = issue;
    if let Some((reason, retry_at)) = refusal(c, &code, cooldown_ms, &limits)? {
        insert_audit(c, &denied(audit, &reason.label()))?;
        return Ok(IssueOutcome::Refused { reason, retry_at });
    }
    count_sends(c, &limits, code.created_at)?;
    // Effects first: one of them may create the factor this code is for.
    apply_effects(c, effects)?;
    insert_code(c, &code)?;
    insert_message(c, &message)?;
    insert_audit(c, &ok(audit))?;
    Ok(IssueOutcome::Issued)
}

/// Counts one send against every limit at `now` (without checking them).
pub(super) fn count_sends(
    c: &Connection,
    limits: &[SendLimit],
    now: i64,
) -> Result<(), StoreError> {
    for l in limits {
        let start = window_start(now, l.window_ms)?;
        c.prepare_cached(
            "INSERT INTO send_counters (scope, window_ms, window_start, count)
             VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (scope, window_ms, window_start) DO UPDATE SET count = count + 1",
        )
        .and_then(|mut s| s.execute(params![l.scope, l.window_ms, start]))
        .map_err(backend)?;
    }
    Ok(())
}

/// Inserts a code, deleting older ones for the same (user, factor, purpose): only the newest
/// is valid.
pub(super) fn insert_code(c: &Connection, code: &NewCode) -> Result<(), StoreError> {
    c.prepare_cached(
        "DELETE FROM otp_codes WHERE factor_id = ?1 AND user_id = ?2 AND purpose = ?3",
    )
    .and_then(|mut s| s.execute(params![code.factor_id, code.user_id, code.purpose.as_str()]))
    .map_err(backend)?;
    c.prepare_cached(
        "INSERT INTO otp_codes (tenant_id, user_id, factor_id, purpose, action_hash, code_hash,
                                hash_key_id, attempts, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            code.tenant_id,
            code.user_id,
            code.factor_id,
            code.purpose.as_str(),
            code.action_hash,
            code.code_hash,
            code.hash_key_id,
            code.created_at,
            code.expires_at
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// Refuses an attempt: its audit row with the real reason, and the outcome.
pub(super) fn deny(
    c: &Connection,
    audit: AuditRecord,
    reason: RejectReason,
) -> Result<AttemptOutcome, StoreError> {
    insert_audit(c, &denied(audit, reason.as_str()))?;
    Ok(AttemptOutcome::Rejected { reason })
}

/// The body of [`Store::consume_code`].
pub(super) fn consume_code(c: &Connection, k: ConsumeCode) -> Result<AttemptOutcome, StoreError> {
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
    // The failure budgets first, as for TOTP: a full one refuses even a right code unjudged.
    if budgets_used_up(c, &budgets, now)? {
        return deny(c, audit, RejectReason::Throttled);
    }
    // The subject may be no factor of this user (e.g. a proposal): then the code's own try
    // limit is the only one, and there is no factor to charge or clear.
    let throttle = factor_throttle(c, tenant_id, user_id, &factor_id)?;
    // Attempt limits first, without looking at the code, and not counted (like TOTP).
    if let Some(t) = &throttle {
        if t.is_locked() {
            return deny(c, audit, RejectReason::Locked);
        }
        if t.is_blocked(now) {
            return deny(c, audit, RejectReason::Throttled);
        }
    }
    let code = newest_code(c, tenant_id, user_id, &factor_id, purpose)?;
    let reason = match check_code(code.as_ref(), &presented_hash, &action_hash, now) {
        Err(reason) => reason,
        Ok(id) => {
            // INV-02: the one consume statement; everything checked above is re-checked by its
            // condition, and "one row changed" is the success.
            let used = c
                .prepare_cached(
                    "UPDATE otp_codes SET used_at = ?1
                     WHERE id = ?2 AND used_at IS NULL AND expires_at > ?1 AND attempts < ?3",
                )
                .and_then(|mut s| s.execute(params![now, id, CODE_MAX_ATTEMPTS]))
                .map_err(backend)?;
            if used == 1 {
                if throttle.is_some() {
                    c.prepare_cached(
                        "UPDATE factors SET failures = 0, blocked_until = NULL WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![factor_id]))
                    .map_err(backend)?;
                }
                apply_effects(c, on_success)?;
                insert_audit(c, &ok(audit))?;
                return Ok(AttemptOutcome::Accepted { factor_id });
            }
            RejectReason::Replayed
        }
    };
    // Every counted rejection costs the code one try, the factor one failure and each budget
    // one failure.
    if let Some(row) = &code {
        c.prepare_cached("UPDATE otp_codes SET attempts = attempts + 1 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![row.id]))
            .map_err(backend)?;
    }
    count_sends(c, &budgets, now)?;
    if let Some(t) = throttle {
        let mut reactions = OnFailure {
            on_lock,
            on_backoff,
        };
        charge_failure(c, &factor_id, t, now, &audit, &mut reactions)?;
    }
    deny(c, audit, reason)
}

pub(super) fn phone_change(c: &Connection, id: &str) -> Result<Option<PhoneChange>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {PHONE_CHANGE_COLS} FROM phone_changes WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row(params![id], phone_change_row).optional())
    .map_err(backend)
}
