-- How a person authenticated (RFC 8176 `amr` values as a JSON array), on the session
-- and on each grant made from it, so refreshed ID tokens say it too. Rows from before
-- read as an empty list.
ALTER TABLE sessions ADD COLUMN amr_json TEXT COLLATE "C" NOT NULL DEFAULT '[]';
ALTER TABLE grants ADD COLUMN amr_json TEXT COLLATE "C" NOT NULL DEFAULT '[]';

-- A user's TOTP enrolment: the shared secret sealed under the master key, pending
-- until confirmed, and the last time step a code was accepted for (no replay).
CREATE TABLE totp_enrolments (
    user_id        TEXT COLLATE "C" NOT NULL
        CONSTRAINT totp_enrolments_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret  BYTEA NOT NULL,
    created_at     BIGINT NOT NULL,
    confirmed_at   BIGINT,
    last_step      BIGINT,
    CONSTRAINT totp_enrolments_pkey PRIMARY KEY (user_id)
);

-- Unused single-use recovery codes, by the SHA-256 of the code (a use deletes the row).
CREATE TABLE recovery_codes (
    user_id     TEXT COLLATE "C" NOT NULL
        CONSTRAINT recovery_codes_user_fkey REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    CONSTRAINT recovery_codes_pkey PRIMARY KEY (user_id, code_hash)
);
