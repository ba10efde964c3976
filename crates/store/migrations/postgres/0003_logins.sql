-- Twofold schema, version 0003, for PostgreSQL: tenant policies and their emailed
-- confirmations, pending logins, sessions and remembered devices; the same as
-- migrations/sqlite/0003_logins.sql. Times are Unix milliseconds; "live" always means
-- now < expires_at. Tokens are random and only their keyed hashes are kept (like codes), so a
-- copy of the database mints no session; a token is found by its hash alone, hence the unique
-- index on every token_hash.

-- generation is the user's security stamp (INV-06): sessions, devices and pending logins copy
-- it when they are made and are dead once it moves, so "kill everything issued before" is one
-- increment instead of a sweep over rows that may be in flight. Existing users start at 0,
-- which every token issued from now on will carry. skip_until: NULL means no "later" given.
ALTER TABLE users ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN skip_until BIGINT;

-- One row per tenant; no row means the built-in default. version is the optimistic lock: a
-- write names the version it read and applies only over it, so a confirmed proposal cannot
-- silently undo a change made after it was proposed.
CREATE TABLE tenant_policies (
    tenant_id   BIGINT  PRIMARY KEY REFERENCES tenants(id),
    json        TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- A policy change waiting for the code emailed to the admin who proposed it. The code is bound
-- to payload_hash (INV-05) and its subject is this row's id, so it confirms this proposal and
-- nothing else. Only the newest pending proposal of a tenant may be confirmed: inserting one
-- supersedes the others (under the tenant's row lock, so two nodes cannot both leave one
-- pending), and every move is a conditional update on (state, expires_at).
CREATE TABLE proposals (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants(id),
    admin_user_id BIGINT  NOT NULL REFERENCES users(id),
    payload       TEXT    NOT NULL,
    payload_hash  BYTEA   NOT NULL,
    base_version  BIGINT  NOT NULL,
    state         TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX proposals_by_tenant ON proposals (tenant_id, state);

-- A login waiting for its second step (INV-04). completed_at is the single-use guard, set only
-- by `UPDATE ... WHERE completed_at IS NULL` together with a live expiry and an unchanged user
-- generation (read under the user's row lock), in the transaction that mints the session: a
-- pending token is never worth a second session, nor one after the user's factors changed.
CREATE TABLE pending_logins (
    id             TEXT    PRIMARY KEY,
    token_hash     BYTEA   NOT NULL UNIQUE,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants(id),
    user_id        BIGINT  NOT NULL REFERENCES users(id),
    generation     BIGINT  NOT NULL,
    decision       TEXT    NOT NULL,
    primary_method TEXT    NOT NULL,
    client_id      TEXT,
    ip             TEXT,
    user_agent     TEXT,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    completed_at   BIGINT
);

-- Revoked sessions are kept (revoked_at, revoke_reason) rather than deleted, so "where am I
-- signed in" and the audit trail can still show them; a lookup by hash must therefore check
-- revoked_at, expires_at and generation, not mere presence.
-- seq stands in for SQLite's rowid: the insertion order, which breaks ties between sessions
-- made in the same millisecond when listing newest first.
CREATE TABLE sessions (
    id            TEXT    PRIMARY KEY,
    token_hash    BYTEA   NOT NULL UNIQUE,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants(id),
    user_id       BIGINT  NOT NULL REFERENCES users(id),
    generation    BIGINT  NOT NULL,
    amr           TEXT    NOT NULL,
    second_factor BOOLEAN NOT NULL,
    client_id     TEXT,
    ip            TEXT,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT,
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY
);
-- A user's sessions, newest first.
CREATE INDEX sessions_by_user ON sessions (user_id, created_at);

-- Same shape and rules as sessions: a remembered device only skips the challenge while it is
-- live, unrevoked and of the user's current generation.
CREATE TABLE trusted_devices (
    id            TEXT    PRIMARY KEY,
    token_hash    BYTEA   NOT NULL UNIQUE,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants(id),
    user_id       BIGINT  NOT NULL REFERENCES users(id),
    generation    BIGINT  NOT NULL,
    label         TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT,
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX trusted_devices_by_user ON trusted_devices (user_id, created_at);

-- Change notices go to every admin of the tenant; tenants can have many users and few admins.
CREATE INDEX users_admins ON users (tenant_id, id) WHERE is_admin;
