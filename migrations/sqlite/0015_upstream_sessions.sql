-- Upstream re-checks (OpenID providers with recheck_interval_secs): a session of such a
-- provider has a row from its sign-in on, keeping the user's subject at the provider, the
-- provider's refresh token (sealed with a key derived from http.state_secret and bound to the
-- session's id; wiped when the session ends), when the provider last vouched for the sign-in,
-- and until when a check in progress holds the session (so two refreshes never spend one
-- refresh token at once). Rows of ended sessions are pruned by expiry.
ALTER TABLE sessions ADD COLUMN upstream_subject TEXT;
ALTER TABLE sessions ADD COLUMN upstream_token TEXT;
ALTER TABLE sessions ADD COLUMN upstream_checked_at INTEGER;
ALTER TABLE sessions ADD COLUMN upstream_check_until INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_expiry ON sessions (expires_at);
