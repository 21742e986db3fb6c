-- Switchboard store, SQLite schema 1.
--
-- Times are INTEGER unix seconds. JSON is TEXT, byte blobs are BLOB. Every table that
-- holds JSON carries `format_version` (1 today); a reader that meets a version it does not
-- know reports the row as corrupt instead of guessing.
-- Bearer secrets (codes, refresh tokens, session and auth-request ids) are stored only as
-- lowercase hex SHA-256 hashes.

CREATE TABLE users (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT COLLATE NOCASE,
    email           TEXT COLLATE NOCASE,
    email_verified  INTEGER NOT NULL CHECK (email_verified IN (0, 1)),
    name            TEXT,
    given_name      TEXT,
    family_name     TEXT,
    picture         TEXT,
    groups_json     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    password_hash   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_login_at   INTEGER,
    format_version  INTEGER NOT NULL
) STRICT;

-- NULLs never collide in a UNIQUE index, so many users may have no username or email.
CREATE UNIQUE INDEX users_username ON users (username COLLATE NOCASE);
CREATE UNIQUE INDEX users_email ON users (email COLLATE NOCASE);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE identity_links (
    provider_id           TEXT NOT NULL,
    subject               TEXT NOT NULL,
    user_id               TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    claims_json           TEXT NOT NULL,
    sealed_provider_data  BLOB,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    format_version        INTEGER NOT NULL,
    PRIMARY KEY (provider_id, subject)
) STRICT;

CREATE INDEX identity_links_user ON identity_links (user_id);

CREATE TABLE auth_requests (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    request_json    TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    format_version  INTEGER NOT NULL
) STRICT;

CREATE INDEX auth_requests_expires ON auth_requests (expires_at);

CREATE TABLE grants (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id        TEXT NOT NULL,
    session_id_hash  TEXT,
    scopes_json      TEXT NOT NULL,
    auth_time        INTEGER NOT NULL,
    provider_id      TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    revoked_at       INTEGER,
    format_version   INTEGER NOT NULL
) STRICT;

CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_expires ON grants (expires_at);

CREATE TABLE codes (
    code_hash       TEXT PRIMARY KEY NOT NULL,
    grant_id        TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT,
    nonce           TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER
) STRICT;

CREATE INDEX codes_grant ON codes (grant_id);
CREATE INDEX codes_expires ON codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    grant_id    TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    spent_at    INTEGER
) STRICT;

CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE sessions (
    id_hash      TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider_id  TEXT NOT NULL,
    auth_time    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
) STRICT;

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE signing_keys (
    kid                 TEXT PRIMARY KEY NOT NULL,
    alg                 TEXT NOT NULL,
    epoch               INTEGER NOT NULL,
    sealed_private_key  BLOB NOT NULL,
    public_jwk_json     TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    activate_at         INTEGER NOT NULL,
    retire_at           INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    format_version      INTEGER NOT NULL,
    UNIQUE (alg, epoch)
) STRICT;

CREATE INDEX signing_keys_expires ON signing_keys (expires_at);

-- One fixed window per throttle key: `hits` attempts since the window opened; the window
-- ends (and the row may be purged) at `expires_at`.
CREATE TABLE throttle_windows (
    throttle_key  TEXT PRIMARY KEY NOT NULL,
    hits          INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX throttle_windows_expires ON throttle_windows (expires_at);
