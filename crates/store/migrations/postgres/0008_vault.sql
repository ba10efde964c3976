-- Twofold schema, version 0008, for PostgreSQL: the authenticator vault (issue #7); the same
-- as migrations/sqlite/0008_vault.sql. Version 0007 comes from another branch; this file is
-- named 0008 so both apply in order once merged. period is BIGINT (a u32 in the model).

-- Groups: named sets of entries with their own tokens.
CREATE TABLE vault_groups (
    id         TEXT    PRIMARY KEY,
    tenant_id  BIGINT  NOT NULL REFERENCES tenants(id),
    name       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    UNIQUE (tenant_id, name)
);

-- sealed_secret: the TOTP/HOTP seed, AES-256-GCM sealed and bound to 'vault:{tenant}:{id}'.
-- owner_kind 'user' (owner = a user's external id) or 'service' (a service account name).
-- counter: the next HOTP counter, advanced only by `counter = counter + 1 WHERE counter = ?`.
CREATE TABLE vault_entries (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants(id),
    name          TEXT    NOT NULL,
    owner_kind    TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    group_id      TEXT    REFERENCES vault_groups(id),
    kind          TEXT    NOT NULL,
    sealed_secret BYTEA   NOT NULL,
    algorithm     TEXT    NOT NULL,
    digits        INTEGER NOT NULL,
    period        BIGINT  NOT NULL,
    counter       BIGINT  NOT NULL,
    issuer        TEXT,
    account       TEXT,
    created_at    BIGINT  NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX vault_entries_by_group ON vault_entries (group_id);

-- Tokens: only the keyed hash is kept; scoped to exactly one entry or one group.
CREATE TABLE vault_tokens (
    id         TEXT    PRIMARY KEY,
    tenant_id  BIGINT  NOT NULL REFERENCES tenants(id),
    label      TEXT    NOT NULL,
    token_hash BYTEA   NOT NULL UNIQUE,
    entry_id   TEXT    REFERENCES vault_entries(id),
    group_id   TEXT    REFERENCES vault_groups(id),
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT,
    CHECK ((entry_id IS NULL) <> (group_id IS NULL))
);
CREATE INDEX vault_tokens_by_tenant ON vault_tokens (tenant_id);
CREATE INDEX vault_tokens_by_entry ON vault_tokens (entry_id);
