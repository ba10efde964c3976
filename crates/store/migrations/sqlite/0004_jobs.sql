-- Twofold schema, version 0004: background jobs that work through a tenant's users in id
-- order (setup invitations when 2FA becomes optional or required, revoking sessions without
-- 2FA of users newly required to use it). Times are Unix milliseconds.

-- cursor is the last user id done (0 before the first batch). A batch is committed in the
-- same transaction as `UPDATE jobs SET cursor = <to> ... WHERE id = ? AND cursor = <from> AND
-- done_at IS NULL`, so a job resumed after a crash, or run by two nodes at once, neither
-- skips nor repeats a user. Finished jobs are kept (done_at, processed) to show what was done.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    cursor      INTEGER NOT NULL DEFAULT 0,
    run_at      INTEGER NOT NULL,
    done_at     INTEGER,
    processed   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
-- Every node polls for due jobs every few seconds, while finished jobs pile up forever: a
-- partial index holds only the unfinished ones, so the poll costs as much as the few jobs it
-- can return, not the whole history.
CREATE INDEX jobs_due ON jobs (run_at) WHERE done_at IS NULL;
