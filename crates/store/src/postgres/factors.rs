//! Factor writes: enrolment under the per-user cap, TOTP attempts (INV-01, INV-03), deletion
//! and the failure charging and failure budgets shared with one-time codes. Each runs inside
//! the caller's transaction after taking the owning user's row lock ([`lock_user`]).

use super::codes::{count_sends_checked, counts, deny};
use super::effects::apply_effects;
use super::rows::*;
use tokio_postgres::Row;
use twofold_core::messaging::SendLimit;
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::throttle::{after_failure, ThrottleState};
use twofold_core::totp::HINT_HORIZON;

/// Inserts a factor unless its user already has `max_per_user`: counted under the user's row
/// lock, so parallel enrolments on any number of nodes cannot overshoot.
pub(super) async fn insert_factor_row(
    tx: &Tx<'_>,
    f: &Factor,
    max_per_user: usize,
) -> Result<(), StoreError> {
    lock_user(tx, f.user_id).await?;
    let count: i64 = match query_opt(
        tx,
        "SELECT COUNT(*) FROM factors WHERE user_id = $1",
        &[&f.user_id],
    )
    .await?
    {
        Some(row) => get(&row, 0)?,
        None => 0,
    };
    if count >= i64::try_from(max_per_user).unwrap_or(i64::MAX) {
        return Err(StoreError::Conflict("too_many_factors"));
    }
    insert_row(tx, f).await
}

/// Inserts the factor row exactly as given, without the per-user cap (putting back a factor
/// that was removed), under the user's row lock; a factor with its id is the conflict
/// `factor_exists`.
pub(super) async fn write_factor_row(tx: &Tx<'_>, f: &Factor) -> Result<(), StoreError> {
    lock_user(tx, f.user_id).await?;
    insert_row(tx, f).await
}

/// The factor's insert; the caller holds its user's row lock. A credential id that any factor
/// holds is `credential_registered` (the unique index decides, even between nodes).
async fn insert_row(tx: &Tx<'_>, f: &Factor) -> Result<(), StoreError> {
    insert_mapped(
        tx,
        &format!(
            "INSERT INTO factors ({FACTOR_COLS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, $19, $20, $21, $22)"
        ),
        &[
            &f.id,
            &f.tenant_id,
            &f.user_id,
            &f.kind,
            &f.status.as_str(),
            &f.sealed_secret,
            &f.algorithm,
            &i32::from(f.digits),
            &i64::from(f.period),
            &f.last_step,
            &f.drift,
            &f.version,
            &f.failures,
            &f.blocked_until,
            &f.locked_at,
            &f.created_at,
            &f.confirmed_at,
            &f.drift_hint.map(|h| h.0),
            &f.drift_hint.map(|h| h.1),
            &f.destination,
            &f.label,
            &f.credential_id,
        ],
        factor_conflict("factor_exists"),
    )
    .await
    .map(|_| ())
}

/// Removes a factor with its one-time codes and phone changes (they have no foreign key to
/// it). Returns false when there was no such factor.
pub(super) async fn delete_factor_rows(
    tx: &Tx<'_>,
    factor_id: &str,
    only_if: Option<FactorStatus>,
) -> Result<bool, StoreError> {
    lock_owners(tx, &[factor_id]).await?;
    // The factor first and conditionally: a factor confirmed meanwhile is not withdrawn as
    // if it were still pending.
    let n = exec(
        tx,
        "DELETE FROM factors WHERE id = $1 AND ($2::TEXT IS NULL OR status = $2)",
        &[&factor_id, &only_if.map(|s| s.as_str())],
    )
    .await?;
    if n != 1 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM otp_codes WHERE factor_id = $1",
        "DELETE FROM phone_changes WHERE factor_id = $1",
    ] {
        exec(tx, sql, &[&factor_id]).await?;
    }
    Ok(true)
}

/// Removes every factor of the user as [`delete_factor_rows`] does, and their recovery codes,
/// under the user's row lock (so no factor can be added meanwhile).
pub(super) async fn delete_all_factors(tx: &Tx<'_>, user_id: i64) -> Result<(), StoreError> {
    lock_user(tx, user_id).await?;
    let rows = query(tx, "SELECT id FROM factors WHERE user_id = $1", &[&user_id]).await?;
    for row in &rows {
        let id: String = get(row, 0)?;
        delete_factor_rows(tx, &id, None).await?;
    }
    super::security::delete_recovery_codes(tx, user_id).await
}

/// Clears failures, backoff and lock. Returns false when there is no such factor.
pub(super) async fn unlock_factor_row(tx: &Tx<'_>, factor_id: &str) -> Result<bool, StoreError> {
    lock_owners(tx, &[factor_id]).await?;
    let n = exec(
        tx,
        "UPDATE factors SET failures = 0, blocked_until = NULL, locked_at = NULL WHERE id = $1",
        &[&factor_id],
    )
    .await?;
    Ok(n == 1)
}

fn to_attempt_row(r: &Row) -> Result<AttemptRow, StoreError> {
    Ok(AttemptRow {
        status: get(r, 0)?,
        version: get(r, 1)?,
        last_step: get(r, 2)?,
        throttle: ThrottleState {
            failures: get(r, 3)?,
            blocked_until: get(r, 4)?,
            locked_at: get(r, 5)?,
        },
    })
}

async fn attempt_row(tx: &Tx<'_>, id: &str) -> Result<Option<AttemptRow>, StoreError> {
    query_opt(
        tx,
        "SELECT status, version, last_step, failures, blocked_until, locked_at
         FROM factors WHERE id = $1",
        &[&id],
    )
    .await?
    .as_ref()
    .map(to_attempt_row)
    .transpose()
}

/// Counts one failure on an open factor (INV-03); the caller holds the user's row lock, so
/// `failures` is still what it read. If that locks the factor, writes a `factor.lock` audit
/// row (derived from `audit`); the effects of `reactions` that fall due (the lock, the start
/// of the backoff) are applied, each list at most once per operation.
pub(super) async fn charge_failure(
    tx: &Tx<'_>,
    factor_id: &str,
    throttle: ThrottleState,
    now: i64,
    audit: &AuditRecord,
    reactions: &mut OnFailure,
) -> Result<(), StoreError> {
    let next = after_failure(throttle, now);
    exec(
        tx,
        "UPDATE factors SET failures = $1, blocked_until = $2, locked_at = $3
         WHERE id = $4 AND failures = $5",
        &[
            &next.failures,
            &next.blocked_until,
            &next.locked_at,
            &factor_id,
            &throttle.failures,
        ],
    )
    .await?;
    if next.is_locked() && !throttle.is_locked() {
        insert_audit(tx, &lock_audit(audit, factor_id, next.failures)).await?;
    }
    apply_effects(tx, reactions.due(throttle, next)).await
}

/// Before an attempt is judged: true if one of its failure budgets is used up (see
/// [`budgets_full`]), and it is to be refused unjudged. Otherwise, if it has budgets, marks
/// the savepoint that [`spend_budgets`] goes back to.
///
/// The read takes no lock, so parallel attempts on any number of nodes may all find a budget
/// one short of full and all be judged; the count afterwards settles which of them really
/// fit.
pub(super) async fn budgets_used_up(
    tx: &Tx<'_>,
    budgets: &[SendLimit],
    now: i64,
) -> Result<bool, StoreError> {
    if budgets.is_empty() {
        return Ok(false);
    }
    if budgets_full(budgets, &counts(tx, budgets, now).await?) {
        return Ok(true);
    }
    tx.batch_execute("SAVEPOINT budgets").await.map_err(pg)?;
    Ok(false)
}

/// After an attempt was judged a failure, before anything is charged for it: counts one
/// failure in each budget by the checked upsert of [`count_sends_checked`], which takes the
/// counter's row lock and counts only below `max`, so the check and the count are one
/// statement and the budgets stay exact across nodes. False when a parallel attempt took the
/// last failure meanwhile: everything since [`budgets_used_up`] is then rolled back (this
/// attempt's counts included) and the attempt is to be refused as `Throttled`, as it would
/// have been had it come after that one. Only an accepted code can slip in while a budget
/// fills, since success is never counted: as if it had come first.
pub(super) async fn spend_budgets(
    tx: &Tx<'_>,
    budgets: &[SendLimit],
    now: i64,
) -> Result<bool, StoreError> {
    if budgets.is_empty() || count_sends_checked(tx, budgets, now, true).await?.is_none() {
        return Ok(true);
    }
    tx.batch_execute("ROLLBACK TO SAVEPOINT budgets")
        .await
        .map_err(pg)?;
    Ok(false)
}

/// The body of [`Store::attempt`], inside one transaction.
pub(super) async fn run_attempt(tx: &Tx<'_>, a: Attempt) -> Result<AttemptOutcome, StoreError> {
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
    let mut ids: Vec<&str> = factors.iter().map(|f| f.id.as_str()).collect();
    ids.extend(matched.iter().map(|m| m.factor_id.as_str()));
    lock_owners(tx, &ids).await?;
    // The failure budgets first, before anything about the factors is looked at: a full one
    // refuses even a right code, and nothing is judged or counted.
    if budgets_used_up(tx, &budgets, now).await? {
        return deny(tx, audit, RejectReason::Throttled).await;
    }
    let mut reactions = OnFailure {
        on_lock,
        on_backoff,
    };
    let mut reason = RejectReason::WrongCode;
    if let Some(m) = &matched {
        // INV-01: the one consume statement. Replay, staleness, lock and backoff are all
        // conditions of this single write; success is "one row changed". It holds on its own
        // even without the user's row lock: PostgreSQL re-checks the condition on the newest
        // row version before updating it.
        let changed = exec(
            tx,
            "UPDATE factors
             SET last_step = $1, failures = 0, blocked_until = NULL, drift = $2,
                 version = $3, status = 'active', confirmed_at = COALESCE(confirmed_at, $4),
                 drift_hint_step = NULL, drift_hint_dir = NULL
             WHERE id = $5 AND version = $6 AND status = $7 AND last_step < $1
               AND locked_at IS NULL AND (blocked_until IS NULL OR blocked_until <= $4)
               AND ($8::INTEGER IS NULL OR (drift_hint_dir = $8 AND drift_hint_step < $1
                                            AND drift_hint_step >= $1 - $9))",
            &[
                &m.step,
                &m.new_drift,
                &m.new_version,
                &now,
                &m.factor_id,
                &m.expected_version,
                &m.expected_status.as_str(),
                &m.hint_dir,
                &HINT_HORIZON,
            ],
        )
        .await?;
        if changed == 1 {
            // A failing effect rolls the consumed step back with it (the transaction).
            apply_effects(tx, on_accept).await?;
            insert_audit(tx, &ok(audit)).await?;
            return Ok(AttemptOutcome::Accepted {
                factor_id: m.factor_id.clone(),
            });
        }
        match unconsumed_reason(attempt_row(tx, &m.factor_id).await?.as_ref(), m, now) {
            Some(why) => reason = why,
            None => return Ok(AttemptOutcome::Stale),
        }
    }
    // Before anything is charged, every candidate must still be as the caller saw it: a
    // failure must never be counted because a cached copy was behind.
    let mut rows = Vec::with_capacity(factors.len());
    for f in &factors {
        match attempt_row(tx, &f.id).await? {
            Some(row) if row.version == f.version => rows.push((f.id.as_str(), row)),
            _ => return Ok(AttemptOutcome::Stale),
        }
    }
    if let Some(m) = &matched {
        if let (Some(dir), RejectReason::WrongCode) = (m.hint_dir, reason) {
            // First half of learning drift on use: remember where this code matched.
            exec(
                tx,
                "UPDATE factors SET drift_hint_step = $1, drift_hint_dir = $2 WHERE id = $3",
                &[&m.step, &dir, &m.factor_id],
            )
            .await?;
        }
    }
    // Failure path: count one failure on every candidate that is open (INV-03).
    let (reason, charge) = failures_to_charge(reason, rows, now);
    if failure_was_judged(reason, charge.len()) && !spend_budgets(tx, &budgets, now).await? {
        return deny(tx, audit, RejectReason::Throttled).await;
    }
    for (id, throttle) in charge {
        charge_failure(tx, id, throttle, now, &audit, &mut reactions).await?;
    }
    deny(tx, audit, reason).await
}
