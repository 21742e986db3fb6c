-- Self-service accounts (issue 14). A "verify email" link proves one address: the
-- address it was sent to, kept beside the token (an email change's new address).
ALTER TABLE account_tokens ADD COLUMN detail TEXT;

-- Registrations waiting for their confirmation link, by the SHA-256 of its secret.
-- No user exists until the link is used: an unconfirmed account cannot log in, and
-- a pending registration holds no username or address (the first confirmed wins).
CREATE TABLE pending_registrations (
    token_hash     TEXT COLLATE "C" NOT NULL,
    user_id        TEXT COLLATE "C" NOT NULL,
    username       TEXT NOT NULL,
    email          TEXT NOT NULL,
    name           TEXT,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    CONSTRAINT pending_registrations_pkey PRIMARY KEY (token_hash)
);

CREATE INDEX pending_registrations_expiry ON pending_registrations (expires_at);
