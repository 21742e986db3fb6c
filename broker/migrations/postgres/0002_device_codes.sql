-- Switchboard store, PostgreSQL schema 2: device authorization (RFC 8628).
--
-- As SQLite's schema 11: both codes stored only as SHA-256 hex; `state` is `pending`,
-- `approved` (with `grant_id`), `denied` or `redeemed`; `poll_interval` grows by 5 seconds
-- at each `slow_down`.
CREATE TABLE device_codes (
    device_code_hash  TEXT COLLATE "C" NOT NULL,
    user_code_hash    TEXT COLLATE "C" NOT NULL,
    client_id         TEXT COLLATE "C" NOT NULL,
    scopes_json       TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    poll_interval     BIGINT NOT NULL,
    last_polled_at    BIGINT,
    state             TEXT COLLATE "C" NOT NULL,
    grant_id          TEXT COLLATE "C"
        CONSTRAINT device_codes_grant_fkey REFERENCES grants (id) ON DELETE CASCADE,
    CONSTRAINT device_codes_pkey PRIMARY KEY (device_code_hash),
    CONSTRAINT device_codes_user_code_key UNIQUE (user_code_hash)
);

CREATE INDEX device_codes_expires ON device_codes (expires_at);
