-- Switchboard store, SQLite schema 7: what the admin API needs.
--
-- `revision` counts the writes to a user (profile, status, password): the admin API's
-- ETag, so two administrators' concurrent updates cannot lose each other.
ALTER TABLE users ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;

-- Who did it: `user:ID` for a person through the admin API, `client:ID` for a machine,
-- `cli` for the command line; NULL for the broker itself (a login linking by email).
ALTER TABLE audit_events ADD COLUMN actor TEXT;

CREATE INDEX audit_events_at ON audit_events (at, seq);
CREATE INDEX audit_events_kind ON audit_events (kind, at, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, at, seq);
