-- Switchboard store, SQLite schema 4: access tokens revoked before their expiry.
--
-- An access token is a signed JWT that cannot be recalled, so revocation writes its
-- `jti` here and every check of a token (introspection, userinfo) asks. A row is kept
-- until the token's own `exp` (`expires_at`), after which the token is refused
-- anyway and the row may be purged. No foreign key: client-credentials tokens belong
-- to no grant.

CREATE TABLE denied_access_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    expires_at  INTEGER NOT NULL,
    denied_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX denied_access_tokens_expires ON denied_access_tokens (expires_at);
