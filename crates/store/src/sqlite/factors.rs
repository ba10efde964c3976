//! Factor writes: enrolment under the per-user cap, TOTP attempts (INV-01, INV-03), deletion
//! and the failure charging and failure budgets shared with one-time codes.

use super::codes::{count_sends, counts, deny};
use super::effects::apply_effects;
use super::rows::*;
use rusqlite::{params, Connection, OptionalExtension};
use twofold_core::messaging::SendLimit;
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::throttle::{after_failure, ThrottleState};
use twofold_core::totp::HINT_HORIZON;

/// Inserts a factor unless its user already has `max_per_user` (checked in the same
/// transaction, so parallel enrolments cannot overshoot).
pub(super) fn insert_factor_row(
    c: &Connection,
    f: &Factor,
    max_per_user: usize,
) -> Result<(), StoreError> {
    let count: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM factors WHERE user_id = ?1")
        .and_then(|mut s| s.query_row(params![f.user_id], |r| r.get(0)))
        .map_err(backend)?;
    if count >= i64::try_from(max_per_user).unwrap_or(i64::MAX) {
        return Err(StoreError::Conflict("too_many_factors"));
    }
    write_factor_row(c, f)
}

/// Inserts the factor row exactly as given, without the per-user cap (putting back a factor
/// that was removed); a factor with its id is the conflict `factor_exists`, one with a
/// credential id that any factor holds is `credential_registered`.
pub(super) fn write_factor_row(c: &Connection, f: &Factor) -> Result<(), StoreError> {
    c.prepare_cached(&format!(
        "INSERT INTO factors ({FACTOR_COLS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            f.id,
            f.tenant_id,
            f.user_id,
            f.kind,
            f.status.as_str(),
            f.sealed_secret,
            f.algorithm,
            f.digits,
            f.period,
            f.last_step,
            f.drift,
            f.version,
            f.failures,
            f.blocked_until,
            f.locked_at,
            f.created_at,
            f.confirmed_at,
            f.drift_hint.map(|h| h.0),
            f.drift_hint.map(|h| h.1),
            f.destination,
            f.label,
            f.credential_id
        ])
    })
    .map(|_| ())
    .map_err(factor_conflict("factor_exists"))
}

/// Removes a factor with its one-time codes and phone changes (they have no foreign key to
/// it). Returns false when there was no such factor.
pub(super) fn delete_factor_rows(
    c: &Connection,
    factor_id: &str,
    only_if: Option<FactorStatus>,
) -> Result<bool, StoreError> {
    // The factor first and conditionally: a factor confirmed meanwhile is not withdrawn as
    // if it were still pending.
    let n = c
        .prepare_cached("DELETE FROM factors WHERE id = ?1 AND (?2 IS NULL OR status = ?2)")
        .and_then(|mut s| s.execute(params![factor_id, only_if.map(|s| s.as_str())]))
        .map_err(backend)?;
    if n != 1 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM otp_codes WHERE factor_id = ?1",
        "DELETE FROM phone_changes WHERE factor_id = ?1",
    ] {
        c.prepare_cached(sql)
            .and_then(|mut s| s.execute(params![factor_id]))
            .map_err(backend)?;
    }
    Ok(true)
}

/// Removes every factor of the user as [`delete_factor_rows`] does, and their recovery codes.
pub(super) fn delete_all_factors(c: &Connection, user_id: i64) -> Result<(), StoreError> {
    let ids: Vec<String> = all(
        c,
        "SELECT id FROM factors WHERE user_id = ?1",
        params![user_id],
        |r| r.get(0),
    )?;
    for id in &ids {
        delete_factor_rows(c, id, None)?;
    }
    super::security::delete_recovery_codes(c, user_id)
}

/// Clears failures, backoff and lock. Returns false when there is no such factor.
pub(super) fn unlock_factor_row(c: &Connection, factor_id: &str) -> Result<bool, StoreError> {
    let n = c
        .prepare_cached(
            "UPDATE factors SET failures = 0, blocked_until = NULL, locked_at = NULL
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![factor_id]))
        .map_err(backend)?;
    Ok(n == 1)
}

pub(super) fn attempt_row(c: &Connection, id: &str) -> Result<Option<AttemptRow>, StoreError> {
    c.prepare_cached(
        "SELECT status, version, last_step, failures, blocked_until, locked_at
         FROM factors WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![id], |r| {
            Ok(AttemptRow {
                status: r.get(0)?,
                version: r.get(1)?,
                last_step: r.get(2)?,
                throttle: ThrottleState {
                    failures: r.get(3)?,
                    blocked_until: r.get(4)?,
                    locked_at: r.get(5)?,
                },
            })
        })
        .optional()
    })
    .map_err(backend)
}

/// Counts one failure on an open factor (INV-03). If that locks it, writes a `factor.lock`
/// audit row (derived from `audit`); the effects of `reactions` that fall due (the lock, the
/// start of the backoff) are applied, each list at most once per operation.
pub(super) fn charge_failure(
    c: &Connection,
    factor_id: &str,
    throttle: ThrottleState,
    now: i64,
    audit: &AuditRecord,
    reactions: &mut OnFailure,
) -> Result<(), StoreError> {
    let next = after_failure(throttle, now);
    c.prepare_cached(
        "UPDATE factors SET failures = ?1, blocked_until = ?2, locked_at = ?3
         WHERE id = ?4 AND failures = ?5",
    )
    .and_then(|mut s| {
        s.execute(params![
            next.failures,
            next.blocked_until,
            next.locked_at,
            factor_id,
            throttle.failures
        ])
    })
    .map_err(backend)?;
    if next.is_locked() && !throttle.is_locked() {
        insert_audit(c, &lock_audit(audit, factor_id, next.failures))?;
    }
    apply_effects(c, reactions.due(throttle, next))
}

/// Whether the attempt's failure budgets are used up (see [`budgets_full`]), and it is to be
/// refused unjudged. With one writer nothing comes between this read and the count of a
/// failure, so the budgets are exact.
pub(super) fn budgets_used_up(
    c: &Connection,
    budgets: &[SendLimit],
    now: i64,
) -> Result<bool, StoreError> {
    Ok(budgets_full(budgets, &counts(c, budgets, now)?))
}

/// The body of [`Store::attempt`], run inside the writer's transaction.
pub(super) fn run_attempt(c: &Connection, a: Attempt) -> Result<AttemptOutcome, StoreError> {
    let Attempt {
        factors,
        matched,
        now,
        audit,
        on_accept,
        on_lock,
        on_backoff,
        budgets,
    } = a;
    // The failure budgets first, before anything about the factors is looked at: a full one
    // refuses even a right code, and nothing is judged or counted.
    if budgets_used_up(c, &budgets, now)? {
        return deny(c, audit, RejectReason::Throttled);
    }
    let mut reactions = OnFailure {
        on_lock,
        on_backoff,
    };
    let mut reason = RejectReason::WrongCode;
    if let Some(m) = &matched {
        // INV-01: the one consume statement. Replay, staleness, lock and backoff are all
        // conditions of this single write; success is "one row changed".
        let changed = c
            .prepare_cached(
                "UPDATE factors
                 SET last_step = ?1, failures = 0, blocked_until = NULL, drift = ?2,
                     version = ?3, status = 'active', confirmed_at = COALESCE(confirmed_at, ?4),
                     drift_hint_step = NULL, drift_hint_dir = NULL
                 WHERE id = ?5 AND version = ?6 AND status = ?7 AND last_step < ?1
                   AND locked_at IS NULL AND (blocked_until IS NULL OR blocked_until <= ?4)
                   AND (?8 IS NULL OR (drift_hint_dir = ?8 AND drift_hint_step < ?1
                                       AND drift_hint_step >= ?1 - ?9))",
            )
            .and_then(|mut s| {
                s.execute(params![
                    m.step,
                    m.new_drift,
                    m.new_version,
                    now,
                    m.factor_id,
                    m.expected_version,
                    m.expected_status.as_str(),
                    m.hint_dir,
                    HINT_HORIZON
                ])
            })
            .map_err(backend)?;
        if changed == 1 {
            // A failing effect rolls the consumed step back with it (the job's savepoint).
            apply_effects(c, on_accept)?;
            insert_audit(c, &ok(audit))?;
            return Ok(AttemptOutcome::Accepted {
                factor_id: m.factor_id.clone(),
            });
        }
        match unconsumed_reason(attempt_row(c, &m.factor_id)?.as_ref(), m, now) {
            Some(why) => reason = why,
            None => return Ok(AttemptOutcome::Stale),
        }
    }
    // Before anything is charged, every candidate must still be as the caller saw it: a
    // failure must never be counted because a cached copy was behind.
    let mut rows = Vec::with_capacity(factors.len());
    for f in &factors {
        match attempt_row(c, &f.id)? {
            Some(row) if row.version == f.version => rows.push((f.id.as_str(), row)),
            _ => return Ok(AttemptOutcome::Stale),
        }
    }
    if let Some(m) = &matched {
        if let (Some(dir), RejectReason::WrongCode) = (m.hint_dir, reason) {
            // First half of learning drift on use: remember where this code matched.
            c.prepare_cached(
                "UPDATE factors SET drift_hint_step = ?1, drift_hint_dir = ?2 WHERE id = ?3",
            )
            .and_then(|mut s| s.execute(params![m.step, dir, m.factor_id]))
            .map_err(backend)?;
        }
    }
    // Failure path: count one failure on every candidate that is open (INV-03).
    let (reason, charge) = failures_to_charge(reason, rows, now);
    if failure_was_judged(reason, charge.len()) {
        count_sends(c, &budgets, now)?;
    }
    for (id, throttle) in charge {
        charge_failure(c, id, throttle, now, &audit, &mut reactions)?;
    }
    deny(c, audit, reason)
}
