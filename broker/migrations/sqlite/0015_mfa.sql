-- How a person authenticated (RFC 8176 `amr` values as a JSON array), on the session
-- and on each grant made from it, so refreshed ID tokens say it too. Rows from before
-- read as an empty list.
ALTER TABLE sessions ADD COLUMN amr_json TEXT NOT NULL DEFAULT '[]';
ALTER TABLE grants ADD COLUMN amr_json TEXT NOT NULL DEFAULT '[]';

-- A user's TOTP enrolment: the shared secret sealed under the master key, pending
-- until confirmed, and the last time step a code was accepted for (no replay).
CREATE TABLE totp_enrolments (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sealed_secret  BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    confirmed_at   INTEGER,
    last_step      INTEGER
) STRICT;

-- Unused single-use recovery codes, by the SHA-256 of the code (a use deletes the row).
CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, code_hash)
) STRICT;
