-- Twofold schema, version 0009, for PostgreSQL: the OpenID Connect provider behind the hosted second step
-- (issue #6); the same as migrations/sqlite/0009_oidc.sql.

-- Clients: the tenant's client apps registered for OIDC. id is '{tenant slug}.{app id}';
-- redirect_uris is a JSON array of exact URIs; sealed_secret is the client secret, AES-256-GCM
-- sealed and bound to 'oidc-client:{tenant}:{id}' (HS256 login hints need the secret itself).
CREATE TABLE oidc_clients (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants(id),
    app_id        TEXT    NOT NULL,
    redirect_uris TEXT    NOT NULL,
    sealed_secret BYTEA   NOT NULL,
    created_at    BIGINT  NOT NULL,
    secret_at     BIGINT  NOT NULL,
    UNIQUE (tenant_id, app_id)
);

-- The provider's ES256 keys (PKCS#8, sealed bound to 'oidc-signing:{kid}'), shared by every
-- node: the oldest signs, all are published in the JWKS.
CREATE TABLE oidc_signing_keys (
    kid        TEXT    PRIMARY KEY,
    sealed_key BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL
);

-- Login hints' jti, each usable once per client until the hint expires.
CREATE TABLE oidc_hint_jtis (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    tenant_id  BIGINT  NOT NULL REFERENCES tenants(id),
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oidc_hint_jtis_by_expiry ON oidc_hint_jtis (expires_at);

-- Authorization codes: only the keyed hash is kept, with everything the code is bound to;
-- spent by `UPDATE … SET used_at WHERE used_at IS NULL AND expires_at > now`.
CREATE TABLE oidc_codes (
    code_hash      BYTEA   PRIMARY KEY,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants(id),
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    nonce          TEXT,
    user_id        BIGINT  NOT NULL REFERENCES users(id),
    subject        TEXT    NOT NULL,
    amr            TEXT    NOT NULL,
    acr            TEXT    NOT NULL,
    auth_time      BIGINT  NOT NULL,
    session_id     TEXT,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT
);
CREATE INDEX oidc_codes_by_expiry ON oidc_codes (expires_at);

-- A browser's login through the hosted pages: its pending login (the browser's cookie is that
-- login's token, stored only as a hash in pending_logins) and the authorization request.
CREATE TABLE oidc_hosted_logins (
    login_id       TEXT    PRIMARY KEY,
    tenant_id      BIGINT  NOT NULL REFERENCES tenants(id),
    client_id      TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL
);
CREATE INDEX oidc_hosted_logins_by_expiry ON oidc_hosted_logins (expires_at);
