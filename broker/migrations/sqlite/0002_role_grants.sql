-- Switchboard store, SQLite schema 2: direct role grants.
--
-- A grant gives a user a role by an operator's decision rather than by a rule. The
-- empty string in client_id means a global role (a NULL would not be unique in the
-- primary key); any other value scopes the role to that client.

CREATE TABLE role_grants (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id, role)
) STRICT;
