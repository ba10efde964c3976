-- Twofold schema, version 0006: recovery codes, "this wasn't me" links, the 2FA freeze, app
-- passwords and the login history read by the risk rules. Times are Unix milliseconds.

-- Set when the user confirmed "this wasn't me": their 2FA settings stay frozen until an admin
-- or operator lifts it.
ALTER TABLE users ADD COLUMN frozen_at INTEGER;

-- Only keyed hashes (under the hashing key named by hash_key_id) of the codes are kept, bound
-- to the user. used_at is the single-use guard, set only by
-- `UPDATE ... WHERE used_at IS NULL` in the transaction that signs the user in (INV-02).
-- A new set replaces the old one: the old rows are deleted.
CREATE TABLE recovery_codes (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    code_hash   BLOB    NOT NULL,
    hash_key_id TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE UNIQUE INDEX recovery_codes_by_user ON recovery_codes (user_id, code_hash);

-- A "this wasn't me" link from a security notice. undo is JSON (core::security::Undo): what
-- confirming the link puts back. used_at is the single-use guard; the token itself is only
-- kept as its keyed hash.
CREATE TABLE revert_links (
    id          TEXT    PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    undo        TEXT    NOT NULL,
    change      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX revert_links_by_expiry ON revert_links (expires_at);

-- Per-user passwords for one client app that cannot show a second step. Same rules as
-- sessions: only the keyed hash, revoked rows kept, dead once the user's generation moves.
CREATE TABLE app_passwords (
    id           TEXT    PRIMARY KEY,
    token_hash   BLOB    NOT NULL UNIQUE,
    tenant_id    INTEGER NOT NULL REFERENCES tenants(id),
    user_id      INTEGER NOT NULL REFERENCES users(id),
    client_id    TEXT    NOT NULL,
    label        TEXT    NOT NULL,
    generation   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX app_passwords_by_user ON app_passwords (user_id, created_at);

-- Successful logins, newest read first by the risk rules (familiar device / network /
-- country, impossible travel); pruned after the longest look-back a tenant can configure.
-- lat_e4/lon_e4: the geo-IP coordinates in 1/10,000 degree (about 11 m; geo-IP is far coarser),
-- as integers so rows compare and checksum exactly on both backends.
CREATE TABLE login_history (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    at          INTEGER NOT NULL,
    ip          TEXT,
    network     TEXT,
    country     TEXT,
    lat_e4      INTEGER,
    lon_e4      INTEGER,
    device      TEXT,
    ua_family   TEXT,
    -- The user's credential generation at the login: a reset, "sign out everywhere" or "this
    -- wasn't me" moves it, and the rules then forget everything learnt before.
    generation  INTEGER NOT NULL
);
CREATE INDEX login_history_by_user ON login_history (user_id, at);

-- The device and country a waiting login came from, so the history records them once the
-- second step succeeds.
ALTER TABLE pending_logins ADD COLUMN device TEXT;
ALTER TABLE pending_logins ADD COLUMN country TEXT;
CREATE INDEX login_history_by_time ON login_history (at);
