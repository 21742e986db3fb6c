-- Mails waiting to be sent: written in the request that decides to send one (in the
-- same transaction as the account token the mail carries), removed once the SMTP
-- server took it or the sender gave up. A sender holds a row by a lease
-- (`lease_owner`, `lease_until`); a row whose lease ended is free to claim again.
CREATE TABLE mail_outbox (
    id               TEXT PRIMARY KEY NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER
) STRICT;

CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at);

-- Single-use account links (password reset), by the SHA-256 of their secret.
CREATE TABLE account_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    purpose     TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry ON account_tokens (expires_at);
