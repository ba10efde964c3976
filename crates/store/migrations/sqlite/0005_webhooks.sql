-- Twofold schema, version 0005: integrators' webhook subscriptions. Events are delivered
-- through the outbox (channel 'webhook') with retries, like email and SMS.

-- sealed_secret: the HMAC signing key, AES-256-GCM sealed and bound to the webhook id; it is
-- shown to the integrator once, at creation. events: comma-separated event names.
CREATE TABLE webhooks (
    id            TEXT    PRIMARY KEY,
    tenant_id     INTEGER NOT NULL REFERENCES tenants(id),
    url           TEXT    NOT NULL,
    sealed_secret BLOB    NOT NULL,
    events        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id);
