-- Twofold schema, version 0001. Migrations are immutable once released: add a new file.
-- Times are Unix milliseconds.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Only the keyed hash of an API key's secret is kept (HMAC under the hashing key).
CREATE TABLE api_keys (
    key_id      TEXT    PRIMARY KEY,
    tenant_id   INTEGER REFERENCES tenants(id),
    label       TEXT    NOT NULL,
    secret_hash BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    external_id TEXT    NOT NULL,
    email       TEXT,
    phone       TEXT,
    profile     TEXT,
    is_admin    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, external_id)
);

-- sealed_secret: AES-256-GCM blob bound to (tenant, user, factor); never the plain seed.
-- last_step is the replay guard: consumed only by `UPDATE ... WHERE last_step < ?`.
CREATE TABLE factors (
    id            TEXT    PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    user_id       INTEGER NOT NULL REFERENCES users(id),
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    sealed_secret BLOB    NOT NULL,
    algorithm     TEXT    NOT NULL,
    digits        INTEGER NOT NULL,
    period        INTEGER NOT NULL,
    last_step     INTEGER NOT NULL,
    drift         INTEGER NOT NULL,
    -- A code seen one step beyond the window (step and direction): the first half of learning
    -- drift on use; a later code in the same direction completes it.
    drift_hint_step INTEGER,
    drift_hint_dir  INTEGER,
    version       INTEGER NOT NULL,
    failures      INTEGER NOT NULL,
    blocked_until INTEGER,
    locked_at     INTEGER,
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER
);
CREATE INDEX factors_by_user ON factors (user_id);

-- Compact on purpose: at full speed verification rows are the bulk of the database.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    user_id     INTEGER,
    factor_id   TEXT,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    ip          TEXT,
    request_id  TEXT
);
CREATE INDEX audit_by_tenant ON audit_events (tenant_id, id);
CREATE INDEX audit_by_time ON audit_events (at);
