-- Switchboard store, SQLite schema 3: audit events.
--
-- Append-only: what happened to an account (identities linked, roles granted or
-- revoked), for the operator to answer for later. No foreign key: the record of what
-- happened outlives the rows it is about. `seq` keeps the recording order.

CREATE TABLE audit_events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    detail_json     TEXT NOT NULL,
    at              INTEGER NOT NULL,
    format_version  INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_events_user ON audit_events (user_id, at, seq);
