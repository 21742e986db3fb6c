-- Switchboard store, SQLite schema 6: only verified emails are unique.
--
-- An email nobody verified is a claim, not an address someone proved: two accounts
-- may carry the same unverified email (or one verified and others unverified), so a
-- stranger who logs in first through an open provider with someone else's email never
-- blocks that person's account. A verified email still names at most one account.
-- (Schema 5 is another change's; migrations apply by version, so the gap is harmless.)

DROP INDEX users_email;

-- The email an operator gave `broker user add` is the broker's own word, as a static
-- user's is: it is verified from now on. Accounts made before that, which have a
-- password and no identity of an upstream (a local login links subject = user id),
-- get the same, so they keep logging in by email. Every email was unique until this
-- migration, so the index below cannot fail on them.
UPDATE users SET email_verified = 1
WHERE email IS NOT NULL
  AND email_verified = 0
  AND password_hash IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM identity_links l WHERE l.user_id = users.id AND l.subject <> users.id
  );

CREATE UNIQUE INDEX users_verified_email ON users (email COLLATE NOCASE) WHERE email_verified = 1;
CREATE INDEX users_email ON users (email COLLATE NOCASE);
