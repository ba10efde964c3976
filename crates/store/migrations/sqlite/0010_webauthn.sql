-- Twofold schema, version 0010: security keys and passkeys (WebAuthn) as second factors.

-- label: the name the user gave a key, so that several can be told apart. credential_id: the
-- key's WebAuthn credential id. It is unique across the whole server, not per tenant or user:
-- one credential must never be registered to a second user (webauthn-rs requires the check),
-- and a duplicate insert fails as `credential_registered`. Other kinds keep it NULL, which the
-- partial index leaves out.
ALTER TABLE factors ADD COLUMN label TEXT;
ALTER TABLE factors ADD COLUMN credential_id BLOB;
CREATE UNIQUE INDEX factors_by_credential ON factors (credential_id)
    WHERE credential_id IS NOT NULL;

-- A ceremony's server-side state (webauthn-rs's JSON) between the page that asks the browser
-- and the answer. It is spent by `UPDATE … SET used_at WHERE user_id = … AND used_at IS NULL
-- AND expires_at > now` in the transaction that completes the step, so it answers once, for
-- its user only. binding names the pending login, hosted login or session it was made for.
CREATE TABLE webauthn_challenges (
    id         TEXT    PRIMARY KEY,
    tenant_id  INTEGER NOT NULL REFERENCES tenants(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    purpose    TEXT    NOT NULL,
    binding    TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX webauthn_challenges_by_expiry ON webauthn_challenges (expires_at);
