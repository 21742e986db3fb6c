-- Switchboard store, PostgreSQL schema 1: the whole schema of SQLite schemas 1–10 in
-- one file (the PostgreSQL backend started after them).
--
-- The backend follows the SQLite backend's rules exactly (the conformance suite runs
-- against both), which shapes this file:
--
-- * Every text column is `COLLATE "C"`, so ordering and comparisons (paging cursors,
--   `ORDER BY id`) are byte order, as in SQLite and in Rust, whatever the database's
--   default collation is.
-- * Usernames, emails and group names compare case-insensitively in ASCII only, like
--   SQLite's NOCASE. `lower()` would fold non-ASCII letters too (and by locale), so the
--   folded forms are generated columns made with `translate` of A–Z alone; the unique
--   indexes and lookups use them.
-- * Times are BIGINT unix seconds. JSON is TEXT (kept byte for byte, as SQLite keeps
--   it), byte strings are BYTEA. Tables that hold JSON carry `format_version` (1 today).
-- * Bearer secrets (codes, refresh tokens, session and auth-request ids, API keys) are
--   stored only as lowercase hex SHA-256 hashes.
-- * Constraint names are spelled out: the backend maps a unique violation to the
--   `Conflict` it reports by the constraint's name.

CREATE TABLE users (
    id               TEXT COLLATE "C" NOT NULL,
    username         TEXT COLLATE "C",
    email            TEXT COLLATE "C",
    email_verified   BOOLEAN NOT NULL,
    name             TEXT COLLATE "C",
    given_name       TEXT COLLATE "C",
    family_name      TEXT COLLATE "C",
    picture          TEXT COLLATE "C",
    groups_json      TEXT COLLATE "C" NOT NULL,
    status           TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'disabled')),
    password_hash    TEXT COLLATE "C",
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_login_at    BIGINT,
    format_version   BIGINT NOT NULL,
    -- Counts the writes to the user: the admin API's ETag.
    revision         BIGINT NOT NULL DEFAULT 1,
    username_folded  TEXT COLLATE "C" GENERATED ALWAYS AS
        (translate(username, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')) STORED,
    email_folded     TEXT COLLATE "C" GENERATED ALWAYS AS
        (translate(email, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')) STORED,
    CONSTRAINT users_pkey PRIMARY KEY (id)
);

-- NULLs never collide in a unique index, so many users may have no username or email.
CREATE UNIQUE INDEX users_username ON users (username_folded);
-- Only a verified email names one account; any number may claim it unverified.
CREATE UNIQUE INDEX users_verified_email ON users (email_folded) WHERE email_verified;
CREATE INDEX users_email ON users (email_folded);
CREATE INDEX users_created ON users (created_at, id);

CREATE TABLE identity_links (
    provider_id           TEXT COLLATE "C" NOT NULL,
    subject               TEXT COLLATE "C" NOT NULL,
    user_id               TEXT COLLATE "C" NOT NULL
        CONSTRAINT identity_links_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    claims_json           TEXT COLLATE "C" NOT NULL,
    sealed_provider_data  BYTEA,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    format_version        BIGINT NOT NULL,
    CONSTRAINT identity_links_pkey PRIMARY KEY (provider_id, subject)
);

CREATE INDEX identity_links_user ON identity_links (user_id);

-- Roles given to a user by an operator. The empty client id is a global role.
CREATE TABLE role_grants (
    user_id     TEXT COLLATE "C" NOT NULL
        CONSTRAINT role_grants_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT COLLATE "C" NOT NULL DEFAULT '',
    role        TEXT COLLATE "C" NOT NULL,
    granted_at  BIGINT NOT NULL,
    CONSTRAINT role_grants_pkey PRIMARY KEY (user_id, client_id, role)
);

-- Append-only, no foreign key: the record outlives the rows it is about. `seq` is the
-- recording order and the paging cursor; inserts take a per-schema advisory lock so
-- that seq N is committed before N+1 is taken (see record_audit).
CREATE TABLE audit_events (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    user_id         TEXT COLLATE "C" NOT NULL,
    actor           TEXT COLLATE "C",
    kind            TEXT COLLATE "C" NOT NULL,
    detail_json     TEXT COLLATE "C" NOT NULL,
    at              BIGINT NOT NULL,
    format_version  BIGINT NOT NULL,
    CONSTRAINT audit_events_pkey PRIMARY KEY (seq)
);

CREATE INDEX audit_events_user ON audit_events (user_id, at, seq);
CREATE INDEX audit_events_at ON audit_events (at, seq);
CREATE INDEX audit_events_kind ON audit_events (kind, at, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, at, seq);

CREATE TABLE auth_requests (
    id_hash         TEXT COLLATE "C" NOT NULL,
    request_json    TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    format_version  BIGINT NOT NULL,
    CONSTRAINT auth_requests_pkey PRIMARY KEY (id_hash)
);

CREATE INDEX auth_requests_expires ON auth_requests (expires_at);

CREATE TABLE grants (
    id               TEXT COLLATE "C" NOT NULL,
    user_id          TEXT COLLATE "C" NOT NULL
        CONSTRAINT grants_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    client_id        TEXT COLLATE "C" NOT NULL,
    session_id_hash  TEXT COLLATE "C",
    scopes_json      TEXT COLLATE "C" NOT NULL,
    auth_time        BIGINT NOT NULL,
    provider_id      TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    revoked_at       BIGINT,
    format_version   BIGINT NOT NULL,
    -- The one RFC 8707 `resource` asked for at /authorize; NULL: the client's default.
    resource         TEXT COLLATE "C",
    CONSTRAINT grants_pkey PRIMARY KEY (id)
);

CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_expires ON grants (expires_at);
-- Logout lists a session's grants (SQLite scans for it; here it would be a seq scan
-- of every grant of every replica's users).
CREATE INDEX grants_session ON grants (session_id_hash);

CREATE TABLE codes (
    code_hash       TEXT COLLATE "C" NOT NULL,
    grant_id        TEXT COLLATE "C" NOT NULL
        CONSTRAINT codes_grant_fkey REFERENCES grants (id) ON DELETE CASCADE,
    client_id       TEXT COLLATE "C" NOT NULL,
    redirect_uri    TEXT COLLATE "C" NOT NULL,
    code_challenge  TEXT COLLATE "C",
    nonce           TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    CONSTRAINT codes_pkey PRIMARY KEY (code_hash)
);

CREATE INDEX codes_grant ON codes (grant_id);
CREATE INDEX codes_expires ON codes (expires_at);

-- `parent_hash` is the token a refresh token replaced. A retry of a lost answer within
-- the reuse grace presents the parent again: the unused successor is `superseded_at`
-- and a new one takes its place, so a family has one live token at a time.
CREATE TABLE refresh_tokens (
    token_hash     TEXT COLLATE "C" NOT NULL,
    grant_id       TEXT COLLATE "C" NOT NULL
        CONSTRAINT refresh_tokens_grant_fkey REFERENCES grants (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    spent_at       BIGINT,
    parent_hash    TEXT COLLATE "C",
    superseded_at  BIGINT,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (token_hash)
);

CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_hash);

-- Access tokens revoked before their `exp` (`expires_at`), by `jti`. No foreign key:
-- client-credentials tokens belong to no grant.
CREATE TABLE denied_access_tokens (
    jti         TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    denied_at   BIGINT NOT NULL,
    CONSTRAINT denied_access_tokens_pkey PRIMARY KEY (jti)
);

CREATE INDEX denied_access_tokens_expires ON denied_access_tokens (expires_at);

CREATE TABLE sessions (
    id_hash      TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL
        CONSTRAINT sessions_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    provider_id  TEXT COLLATE "C" NOT NULL,
    auth_time    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    CONSTRAINT sessions_pkey PRIMARY KEY (id_hash)
);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- `(alg, epoch)` is unique: every replica inserts-if-absent, then reads what won.
CREATE TABLE signing_keys (
    kid                 TEXT COLLATE "C" NOT NULL,
    alg                 TEXT COLLATE "C" NOT NULL,
    epoch               BIGINT NOT NULL,
    sealed_private_key  BYTEA NOT NULL,
    public_jwk_json     TEXT COLLATE "C" NOT NULL,
    created_at          BIGINT NOT NULL,
    activate_at         BIGINT NOT NULL,
    retire_at           BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    format_version      BIGINT NOT NULL,
    CONSTRAINT signing_keys_pkey PRIMARY KEY (kid),
    CONSTRAINT signing_keys_alg_epoch UNIQUE (alg, epoch)
);

CREATE INDEX signing_keys_expires ON signing_keys (expires_at);

-- One fixed window per throttle key: `hits` attempts since the window opened; it ends
-- (and the row may be purged) at `expires_at`.
CREATE TABLE throttle_windows (
    throttle_key  TEXT COLLATE "C" NOT NULL,
    hits          BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    CONSTRAINT throttle_windows_pkey PRIMARY KEY (throttle_key)
);

CREATE INDEX throttle_windows_expires ON throttle_windows (expires_at);

-- Groups the broker itself holds; a deleted group or user takes its memberships.
CREATE TABLE managed_groups (
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C",
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    revision     BIGINT NOT NULL,
    name_folded  TEXT COLLATE "C" GENERATED ALWAYS AS
        (translate(name, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')) STORED,
    CONSTRAINT managed_groups_pkey PRIMARY KEY (id)
);

CREATE UNIQUE INDEX managed_groups_name ON managed_groups (name_folded);
CREATE INDEX managed_groups_created ON managed_groups (created_at, id);

CREATE TABLE group_members (
    group_id  TEXT COLLATE "C" NOT NULL
        CONSTRAINT group_members_group_fkey REFERENCES managed_groups (id) ON DELETE CASCADE,
    user_id   TEXT COLLATE "C" NOT NULL
        CONSTRAINT group_members_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    added_at  BIGINT NOT NULL,
    CONSTRAINT group_members_pkey PRIMARY KEY (group_id, user_id)
);

CREATE INDEX group_members_user ON group_members (user_id);

-- API keys: only the SHA-256 hex of the whole secret is kept. `last_used_at` is
-- written coarsely; `created_by` is the audit actor who made the key.
CREATE TABLE api_keys (
    id             TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL
        CONSTRAINT api_keys_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    name           TEXT COLLATE "C" NOT NULL,
    secret_hash    TEXT COLLATE "C" NOT NULL,
    scopes_json    TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    created_by     TEXT COLLATE "C" NOT NULL,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_secret_hash UNIQUE (secret_hash)
);

CREATE INDEX api_keys_user ON api_keys (user_id, created_at);
CREATE INDEX api_keys_expiry ON api_keys (expires_at);

-- Roles held on one resource instance, by a user or a managed group: one table each so
-- that a deleted user or group takes its grants by foreign key. The primary keys lead
-- with the resource ("which roles does this user hold on list 42" is an index lookup);
-- the holder indexes serve "which lists does this user hold a role on".
CREATE TABLE user_resource_grants (
    resource_type  TEXT COLLATE "C" NOT NULL,
    resource_id    TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL
        CONSTRAINT user_resource_grants_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    role           TEXT COLLATE "C" NOT NULL,
    granted_at     BIGINT NOT NULL,
    granted_by     TEXT COLLATE "C" NOT NULL,
    CONSTRAINT user_resource_grants_pkey PRIMARY KEY (resource_type, resource_id, user_id, role)
);

CREATE INDEX user_resource_grants_holder
    ON user_resource_grants (user_id, resource_type, resource_id);

CREATE TABLE group_resource_grants (
    resource_type  TEXT COLLATE "C" NOT NULL,
    resource_id    TEXT COLLATE "C" NOT NULL,
    group_id       TEXT COLLATE "C" NOT NULL
        CONSTRAINT group_resource_grants_group_fkey
        REFERENCES managed_groups (id) ON DELETE CASCADE,
    role           TEXT COLLATE "C" NOT NULL,
    granted_at     BIGINT NOT NULL,
    granted_by     TEXT COLLATE "C" NOT NULL,
    CONSTRAINT group_resource_grants_pkey
        PRIMARY KEY (resource_type, resource_id, group_id, role)
);

CREATE INDEX group_resource_grants_holder
    ON group_resource_grants (group_id, resource_type, resource_id);
