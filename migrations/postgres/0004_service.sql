-- The running service: a configuration version for caches, stateless sessions, API keys and
-- leases for scheduled work shared by several instances.

-- Bumped by every configuration change, in the same transaction, so a cache keyed by it (the
-- compiled mappings, resolved group access) is never used past a change, on any instance.
CREATE TABLE config_state (
    id      BIGINT  PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO config_state (id, version) VALUES (1, 1);

-- Sessions are carried by their tokens; the store keeps only what limits them: the end of the
-- user's latest session (to tell whether the user has sessions running), and an instant before
-- which every session of the user is revoked. Revoking one session writes a row to `sessions`.
ALTER TABLE users ADD COLUMN sessions_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN sessions_revoked_before BIGINT NOT NULL DEFAULT 0;

-- When the user's effective permissions last changed (unix ms): the webhook reports users
-- whose permissions changed since it last looked.
ALTER TABLE users ADD COLUMN permissions_changed_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX users_permissions_changed ON users (permissions_changed_at);

-- API keys (the "Developer API"): a key carries its own permissions. Only a hash of the secret
-- is kept.
CREATE TABLE api_keys (
    id               TEXT    PRIMARY KEY,
    name             TEXT    NOT NULL UNIQUE,
    secret_hash      TEXT    NOT NULL,
    permissions_json TEXT    NOT NULL,
    created_by       TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT,
    revoked_at       BIGINT
);

-- A named lease: the instance holding it does the work it names until the lease expires.
CREATE TABLE leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    acquired_at BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
