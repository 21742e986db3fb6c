-- Back-channel logout notices waiting to be delivered: one row per client and
-- session, written in the transaction that ends the session, removed once the
-- client answered 2xx or the sender gave up. A sender holds a row by a lease
-- (`lease_owner`, `lease_until`); a row whose lease ended is free to claim again.
CREATE TABLE logout_outbox (
    client_id        TEXT NOT NULL,
    sid              TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    PRIMARY KEY (client_id, sid)
) STRICT;

CREATE INDEX logout_outbox_due ON logout_outbox (next_attempt_at);
