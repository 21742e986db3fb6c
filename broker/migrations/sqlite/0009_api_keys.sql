-- Switchboard store, SQLite schema 9: API keys.
--
-- A key is a person's long-lived credential for programs: `sbk_` and 256 random bits,
-- stored only as the SHA-256 hex of the whole secret (`secret_hash`; a fast hash is
-- right for a secret that cannot be guessed). `scopes_json` is the permissions the
-- key was created with; what it holds at use is that set narrowed by the person's
-- permissions then. Deleting the user deletes their keys. `last_used_at` is written
-- coarsely (not more than every few minutes), never on every use. `created_by` is the
-- audit actor who made it (`user:ID`, `cli`).
CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL UNIQUE,
    scopes_json    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    revoked_at     INTEGER,
    created_by     TEXT NOT NULL
);

CREATE INDEX api_keys_user ON api_keys (user_id, created_at);
CREATE INDEX api_keys_expiry ON api_keys (expires_at);
