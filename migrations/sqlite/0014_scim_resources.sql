-- The users and groups a provider's SCIM client (Entra ID, Okta, …) pushes to
-- /scim/v2/{provider}: one row per resource, its canonical JSON document, and the columns a
-- filter looks up (the name lower-cased: unique per provider and kind, as RFC 7643 makes
-- userName; externalId). A group's members are rows of their own, so a member change writes
-- one row, not the group's document. Passwords are never stored.
CREATE TABLE scim_resources (
    provider_id INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL,
    external_id TEXT,
    active      INTEGER NOT NULL,
    document    TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX scim_resources_name ON scim_resources (provider_id, kind, name_key);
CREATE INDEX scim_resources_external_id ON scim_resources (provider_id, kind, external_id);
CREATE INDEX scim_resources_listed ON scim_resources (provider_id, kind, created_at, id);

CREATE TABLE scim_members (
    group_id TEXT NOT NULL REFERENCES scim_resources(id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES scim_resources(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_members_user ON scim_members (user_id);

-- Who disabled a user (the actor's name; NULL when enabled): SCIM enables again only a user
-- that SCIM disabled, never one an admin disabled.
ALTER TABLE users ADD COLUMN disabled_by TEXT;

-- SCIM's userName is unique without regard to case, a sign-in's username is kept as given:
-- a SCIM write finds the idsync user its userName names through this.
CREATE INDEX users_username_lower ON users (lower(username));
