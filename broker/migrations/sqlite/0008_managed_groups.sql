-- Switchboard store, SQLite schema 8: groups the broker itself holds.
--
-- Managed through the admin API, they reach tokens as `managed/<name>` and role rules
-- name them with `managed_group`. A deleted group or user takes its memberships.
CREATE TABLE managed_groups (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL COLLATE NOCASE,
    description  TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    revision     INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX managed_groups_name ON managed_groups (name COLLATE NOCASE);
CREATE INDEX managed_groups_created ON managed_groups (created_at, id);

CREATE TABLE group_members (
    group_id  TEXT NOT NULL REFERENCES managed_groups (id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at  INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT;

CREATE INDEX group_members_user ON group_members (user_id);
