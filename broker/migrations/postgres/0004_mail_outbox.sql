-- Mails waiting to be sent: written in the request that decides to send one (in the
-- same transaction as the account token the mail carries), removed once the SMTP
-- server took it or the sender gave up. A sender holds a row by a lease
-- (`lease_owner`, `lease_until`); replicas claim with `FOR UPDATE SKIP LOCKED`.
CREATE TABLE mail_outbox (
    id               TEXT COLLATE "C" NOT NULL,
    recipient        TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT COLLATE "C",
    lease_until      BIGINT,
    CONSTRAINT mail_outbox_pkey PRIMARY KEY (id)
);

CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at);

-- Single-use account links (password reset), by the SHA-256 of their secret.
CREATE TABLE account_tokens (
    token_hash  TEXT COLLATE "C" NOT NULL,
    purpose     TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL
        CONSTRAINT account_tokens_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    CONSTRAINT account_tokens_pkey PRIMARY KEY (token_hash)
);

CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry ON account_tokens (expires_at);
