-- Switchboard store, SQLite schema 10: roles held on one resource instance.
--
-- A grant belongs to a user or to a managed group, one table each so that a deleted
-- user or group takes its grants by foreign key. The primary keys lead with the
-- resource, so "which roles does this user hold on list 42" is an index lookup; the
-- holder indexes serve "which lists does this user hold a role on".
CREATE TABLE user_resource_grants (
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role           TEXT NOT NULL,
    granted_at     INTEGER NOT NULL,
    granted_by     TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, user_id, role)
) STRICT, WITHOUT ROWID;

CREATE INDEX user_resource_grants_holder
    ON user_resource_grants (user_id, resource_type, resource_id);

CREATE TABLE group_resource_grants (
    resource_type  TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    group_id       TEXT NOT NULL REFERENCES managed_groups (id) ON DELETE CASCADE,
    role           TEXT NOT NULL,
    granted_at     INTEGER NOT NULL,
    granted_by     TEXT NOT NULL,
    PRIMARY KEY (resource_type, resource_id, group_id, role)
) STRICT, WITHOUT ROWID;

CREATE INDEX group_resource_grants_holder
    ON group_resource_grants (group_id, resource_type, resource_id);
