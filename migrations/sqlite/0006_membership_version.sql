-- A user's membership version: raised by every transaction that changes the user's
-- memberships. A sync stages its diff against the version it read, and applies a user's staged
-- changes only while the version is still that one: a user changed in between (by a sign-in,
-- an admin, another run) is left for the next run instead of getting a mix of two states.
ALTER TABLE users ADD COLUMN membership_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_changes ADD COLUMN user_version INTEGER NOT NULL DEFAULT 0;
