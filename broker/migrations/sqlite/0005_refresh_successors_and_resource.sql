-- Switchboard store, SQLite schema 5: refresh retries that never fork a family, and
-- the resource (RFC 8707) a grant was authorized for.
--
-- `parent_hash` is the token a refresh token replaced. A client that retries a lost
-- refresh answer within `refresh_reuse_grace` presents the parent again: the unused
-- successor is then `superseded_at` (dead, never exchanged) and a new one takes its
-- place, so a family has one live token at a time.
ALTER TABLE refresh_tokens ADD COLUMN parent_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN superseded_at INTEGER;

CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_hash);

-- The one `resource` asked for at /authorize; access tokens of the grant name it in
-- `aud`. NULL: the client's default audience.
ALTER TABLE grants ADD COLUMN resource TEXT;
