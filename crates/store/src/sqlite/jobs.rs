//! Background jobs that work through a tenant's users in batches (invitations, revoking
//! sessions without 2FA). A batch's changes and the job's new cursor commit together, and the
//! cursor only moves from the value the runner read, so two runners (or one resumed after a
//! crash) never do the same batch twice and never skip one.

use super::effects::apply_effects;
use super::rows::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use twofold_core::login::Job;
use twofold_core::messaging::Effect;
use twofold_core::ports::StoreError;

fn job_row(r: &Row) -> rusqlite::Result<Job> {
    Ok(Job {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        kind: r.get(2)?,
        payload: r.get(3)?,
        cursor: r.get(4)?,
        run_at: r.get(5)?,
        done_at: r.get(6)?,
        processed: r.get(7)?,
        created_at: r.get(8)?,
    })
}

/// Inserts a job as given, except its id, which the database assigns.
pub(super) fn insert_job(c: &Connection, j: &Job) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO jobs (tenant_id, kind, payload, cursor, run_at, done_at, processed,
                           created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            j.tenant_id,
            j.kind,
            j.payload,
            j.cursor,
            j.run_at,
            j.done_at,
            j.processed,
            j.created_at
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

/// Unfinished jobs due at `now`, in creation order (through the partial index `jobs_due`).
pub(super) fn due(c: &Connection, now: i64, limit: u32) -> Result<Vec<Job>, StoreError> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE done_at IS NULL AND run_at <= ?1
             ORDER BY id LIMIT ?2"
        ))
        .map_err(backend)?;
    let rows = s.query_map(params![now, limit], job_row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(super) fn job(c: &Connection, id: i64) -> Result<Option<Job>, StoreError> {
    c.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))
        .and_then(|mut s| s.query_row(params![id], job_row).optional())
        .map_err(backend)
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
/// batch's effects in the same savepoint. False, with nothing applied, when the job has moved
/// on or finished; a failing effect is returned and, through the savepoint, undoes the move.
pub(super) fn advance(
    c: &Connection,
    a: &Advance,
    effects: Vec<Effect>,
) -> Result<bool, StoreError> {
    let moved = c
        .prepare_cached(
            "UPDATE jobs SET cursor = ?1, processed = processed + ?2,
                             done_at = CASE WHEN ?3 THEN ?4 END
             WHERE id = ?5 AND cursor = ?6 AND done_at IS NULL",
        )
        .and_then(|mut s| {
            s.execute(params![
                a.to_cursor,
                a.processed,
                a.done,
                a.now,
                a.job_id,
                a.from_cursor
            ])
        })
        .map_err(backend)?;
    if moved == 0 {
        return Ok(false);
    }
    apply_effects(c, effects)?;
    Ok(true)
}
