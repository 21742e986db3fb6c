-- Switchboard store, SQLite schema 11: device authorization (RFC 8628).
--
-- One row per device authorization request. Both codes are stored only as SHA-256
-- hex: `device_code_hash` of the secret the device polls with, `user_code_hash` of
-- the user code normalised (upper case, no dash) that the person types in. `state` is
-- `pending`, `approved` (with `grant_id`, the grant made at approval), `denied` or
-- `redeemed` (the device got its tokens: never again). `poll_interval` is the current
-- polling interval in seconds (it grows by 5 at each `slow_down`), `last_polled_at`
-- when the device last asked.
CREATE TABLE device_codes (
    device_code_hash  TEXT PRIMARY KEY NOT NULL,
    user_code_hash    TEXT NOT NULL UNIQUE,
    client_id         TEXT NOT NULL,
    scopes_json       TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    poll_interval     INTEGER NOT NULL,
    last_polled_at    INTEGER,
    state             TEXT NOT NULL,
    grant_id          TEXT REFERENCES grants (id) ON DELETE CASCADE
) STRICT;

CREATE INDEX device_codes_expires ON device_codes (expires_at);
