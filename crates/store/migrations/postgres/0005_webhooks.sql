-- Twofold schema, version 0005, for PostgreSQL: integrators' webhook subscriptions; the same
-- as migrations/sqlite/0005_webhooks.sql. Events are delivered through the outbox (channel
-- 'webhook') with retries, like email and SMS.

-- sealed_secret: the HMAC signing key, AES-256-GCM sealed and bound to the webhook id; it is
-- shown to the integrator once, at creation. events: comma-separated event names.
CREATE TABLE webhooks (
    id            TEXT    PRIMARY KEY,
    tenant_id     BIGINT  NOT NULL REFERENCES tenants(id),
    url           TEXT    NOT NULL,
    sealed_secret BYTEA   NOT NULL,
    events        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id);
