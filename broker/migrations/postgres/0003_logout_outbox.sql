-- Back-channel logout notices waiting to be delivered: one row per client and
-- session, written in the transaction that ends the session, removed once the
-- client answered 2xx or the sender gave up. A sender holds a row by a lease
-- (`lease_owner`, `lease_until`); a row whose lease ended is free to claim again,
-- and replicas claim with `FOR UPDATE SKIP LOCKED`, so two never take one row.
CREATE TABLE logout_outbox (
    client_id        TEXT COLLATE "C" NOT NULL,
    sid              TEXT COLLATE "C" NOT NULL,
    user_id          TEXT COLLATE "C" NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT COLLATE "C",
    lease_until      BIGINT,
    CONSTRAINT logout_outbox_pkey PRIMARY KEY (client_id, sid)
);

CREATE INDEX logout_outbox_due ON logout_outbox (next_attempt_at);
