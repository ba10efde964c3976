//! Background jobs that work through a tenant's users in batches (invitations, revoking
//! sessions without 2FA). A batch's changes and the job's new cursor commit together, and the
//! cursor only moves from the value the runner read, so two runners (on one node or two), or
//! one resumed after a crash, never do the same batch twice and never skip one.

use super::effects::apply_effects;
use super::rows::*;
use deadpool_postgres::GenericClient;
use twofold_core::login::Job;
use twofold_core::messaging::Effect;
use twofold_core::ports::StoreError;

/// Inserts a job as given, except its id, which the database assigns.
pub(super) async fn insert_job(c: &impl GenericClient, j: &Job) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO jobs (tenant_id, kind, payload, cursor, run_at, done_at, processed,
                           created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &j.tenant_id,
            &j.kind,
            &j.payload,
            &j.cursor,
            &j.run_at,
            &j.done_at,
            &j.processed,
            &j.created_at,
        ],
    )
    .await
    .map(|_| ())
}

/// Unfinished jobs due at `now`, in creation order (through the partial index `jobs_due`).
pub(super) async fn due(
    c: &impl GenericClient,
    now: i64,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    let rows = query(
        c,
        &format!(
            "SELECT {JOB_COLS} FROM jobs WHERE done_at IS NULL AND run_at <= $1
             ORDER BY id LIMIT $2"
        ),
        &[&now, &i64::from(limit)],
    )
    .await?;
    all(rows, job_row)
}

pub(super) async fn job(c: &impl GenericClient, id: i64) -> Result<Option<Job>, StoreError> {
    query_opt(
        c,
        &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
        &[&id],
    )
    .await?
    .as_ref()
    .map(job_row)
    .transpose()
}

/// One batch of a job: where it starts and ends, and what it did.
pub(super) struct Advance {
    pub job_id: i64,
    pub from_cursor: i64,
    pub to_cursor: i64,
    pub processed: i64,
    pub done: bool,
    pub now: i64,
}

/// Moves the job by one conditional update on (id, cursor, unfinished), then applies the
/// batch's effects in the same transaction. False, with nothing applied, when the job has
/// moved on or finished; a failing effect is returned and, through the transaction, undoes
/// the move. A second runner's update waits for the first one's row lock, then re-checks the
/// cursor on the committed row (READ COMMITTED), so it finds the job moved and does nothing;
/// if the first one rolled back, the second goes ahead from the same cursor.
pub(super) async fn advance(
    tx: &Tx<'_>,
    a: &Advance,
    effects: Vec<Effect>,
) -> Result<bool, StoreError> {
    let moved = exec(
        tx,
        "UPDATE jobs SET cursor = $1, processed = processed + $2,
                         done_at = CASE WHEN $3::BOOLEAN THEN $4::BIGINT END
         WHERE id = $5 AND cursor = $6 AND done_at IS NULL",
        &[
            &a.to_cursor,
            &a.processed,
            &a.done,
            &a.now,
            &a.job_id,
            &a.from_cursor,
        ],
    )
    .await?;
    if moved == 0 {
        return Ok(false);
    }
    apply_effects(tx, effects).await?;
    Ok(true)
}
