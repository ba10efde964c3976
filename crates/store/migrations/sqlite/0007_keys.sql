-- Twofold schema, version 0007: master key rotation. Times are Unix milliseconds.

-- The cluster's sealing key (one row, written by `twofold key rotate`; absent until the first
-- rotation, when every node seals under its own primary key, the one master.key they share).
-- pending_key_id: the key a rotation waits for every node to hold. version moves by one on
-- every change, and a change is conditional on it, so two rotations cannot interleave.
CREATE TABLE sealing_keys (
    only_row       INTEGER PRIMARY KEY CHECK (only_row = 1),
    active_key_id  TEXT,
    pending_key_id TEXT,
    version        INTEGER NOT NULL,
    changed_at     INTEGER NOT NULL
);

-- Each running `twofold serve` reports the key ids it holds and the one it seals under, every
-- few seconds (seen_at, wall clock). A rotation waits on the nodes seen recently; rows of
-- stopped nodes are pruned after a day. key_ids: sorted, comma-separated.
CREATE TABLE node_keys (
    node_id        TEXT    PRIMARY KEY,
    key_ids        TEXT    NOT NULL,
    sealing_key_id TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    seen_at        INTEGER NOT NULL
);
CREATE INDEX node_keys_by_seen ON node_keys (seen_at);
