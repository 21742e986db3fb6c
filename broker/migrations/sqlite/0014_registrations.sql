-- Self-service accounts (issue 14). A "verify email" link proves one address: the
-- address it was sent to, kept beside the token (an email change's new address).
ALTER TABLE account_tokens ADD COLUMN detail TEXT;

-- Registrations waiting for their confirmation link, by the SHA-256 of its secret.
-- No user exists until the link is used: an unconfirmed account cannot log in, and
-- a pending registration holds no username or address (the first confirmed wins).
CREATE TABLE pending_registrations (
    token_hash     TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL,
    username       TEXT NOT NULL,
    email          TEXT NOT NULL,
    name           TEXT,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX pending_registrations_expiry ON pending_registrations (expires_at);
