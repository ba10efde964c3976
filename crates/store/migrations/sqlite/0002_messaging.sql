-- Twofold schema, version 0002: SMS and email factors, one-time codes, phone changes and the
-- message outbox. Times are Unix milliseconds; "live" always means now < expires_at.

-- The phone number or address of an SMS or email factor (NULL for TOTP, whose
-- sealed_secret is then the only thing that makes a code).
ALTER TABLE factors ADD COLUMN destination TEXT;

-- NULL means "the server's default" for both, so existing tenants need no backfill.
-- sms_countries is a JSON array of calling codes: unlike a comma list it tells an empty
-- allow-list (`[]`, SMS off) from none at all (NULL).
ALTER TABLE tenants ADD COLUMN sender_name TEXT;
ALTER TABLE tenants ADD COLUMN sms_countries TEXT;

-- Only a keyed hash of the code is kept (hash_key_id names the key, so the key can be rotated
-- while codes are in flight); comparing it happens in the application, in constant time.
-- Only the newest row per (user, factor, purpose) is ever valid: issuing deletes the older
-- ones, so a superseded code cannot be accepted by any path.
-- factor_id has no foreign key on purpose: an enrolment code is issued in the same
-- transaction that creates its factor, and deleting a factor deletes its codes explicitly.
-- attempts counts wrong tries of this code; used_at is the replay guard, set only by
-- `UPDATE ... WHERE used_at IS NULL`.
CREATE TABLE otp_codes (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    factor_id   TEXT    NOT NULL,
    purpose     TEXT    NOT NULL,
    action_hash BLOB,
    code_hash   BLOB    NOT NULL,
    hash_key_id TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
-- "The newest code for (user, factor, purpose)" is the hot lookup (issue and consume); with
-- factor_id leading, the same index also finds a deleted factor's codes.
CREATE INDEX otp_codes_newest ON otp_codes (factor_id, user_id, purpose, id);
CREATE INDEX otp_codes_by_expiry ON otp_codes (expires_at);

-- A phone change is a small state machine (core::phone_change); each transition is a
-- conditional update on (state, expires_at), so it cannot skip a step or finish twice.
CREATE TABLE phone_changes (
    id          TEXT    PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    factor_id   TEXT    NOT NULL,
    new_phone   TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- Starting a change cancels the factor's open one; deleting a factor deletes its changes.
CREATE INDEX phone_changes_by_factor ON phone_changes (factor_id, state);
CREATE INDEX phone_changes_by_expiry ON phone_changes (expires_at);

-- Messages are queued in the transaction that caused them and sent later by workers that
-- lease rows (lease_owner, lease_until): a worker that dies loses its lease and another one
-- picks the row up. message_id is the deduplication key given to the mail server / SMS
-- provider, so a resend after a crash is harmless. sealed_params may hold a one-time code and
-- is wiped (NULL) once sent; a failed row keeps it so an operator can retry.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT    NOT NULL UNIQUE,
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id),
    user_id         INTEGER REFERENCES users(id),
    channel         TEXT    NOT NULL,
    destination     TEXT    NOT NULL,
    template        TEXT    NOT NULL,
    sealed_params   BLOB,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
-- Claiming: due pending rows, and sending rows whose lease ran out.
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_leases ON outbox (status, lease_until);
-- Queue age for metrics, and pruning finished rows by age.
CREATE INDEX outbox_by_age ON outbox (status, created_at);
-- Operator listings, newest first.
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, id);
CREATE INDEX outbox_by_user ON outbox (user_id, id);

-- Sending caps counted in fixed windows in the database, so they hold across nodes and
-- restarts. window_ms is part of the key: two caps on the same scope with different windows
-- (per hour and per day) must not share a row when their windows happen to start together;
-- it also tells the pruner when a window is over.
CREATE TABLE send_counters (
    scope        TEXT    NOT NULL,
    window_ms    INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (scope, window_ms, window_start)
) WITHOUT ROWID;
CREATE INDEX send_counters_by_window ON send_counters (window_start);
