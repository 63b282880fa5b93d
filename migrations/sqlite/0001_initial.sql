-- idsync schema, SQLite flavour. Integers are INTEGER (64-bit), times are unix milliseconds,
-- flags are 0/1, structured values are JSON text: the same column types the PostgreSQL schema
-- uses, so one set of queries serves both.

CREATE TABLE groups (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    description TEXT    NOT NULL DEFAULT '',
    priority    INTEGER NOT NULL,
    is_system   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE group_permissions (
    group_id   INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    permission TEXT    NOT NULL,
    PRIMARY KEY (group_id, permission)
);

CREATE TABLE group_settings (
    group_id   INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    value_json TEXT    NOT NULL,
    PRIMARY KEY (group_id, name)
);

CREATE TABLE group_file_mappings (
    group_id     INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    destination  TEXT    NOT NULL,
    mapping_json TEXT    NOT NULL,
    PRIMARY KEY (group_id, destination)
);

CREATE TABLE group_workspaces (
    group_id  INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    workspace TEXT    NOT NULL,
    PRIMARY KEY (group_id, workspace)
);

CREATE TABLE providers (
    id                        INTEGER PRIMARY KEY,
    name                      TEXT    NOT NULL UNIQUE,
    kind                      TEXT    NOT NULL,
    remove_manual_memberships INTEGER NOT NULL DEFAULT 1,
    options_json              TEXT    NOT NULL DEFAULT '{}',
    created_at                INTEGER NOT NULL,
    updated_at                INTEGER NOT NULL
);

CREATE TABLE mappings (
    id              INTEGER PRIMARY KEY,
    provider_id     INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    group_id        INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    assign_all      INTEGER NOT NULL DEFAULT 0,
    attributes_json TEXT    NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX mappings_provider ON mappings (provider_id);

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    username            TEXT    NOT NULL UNIQUE,
    disabled            INTEGER NOT NULL DEFAULT 0,
    permission_version  INTEGER NOT NULL DEFAULT 1,
    permissions_digest  TEXT    NOT NULL DEFAULT '',
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

-- Membership in All Users is implicit and never stored.
CREATE TABLE memberships (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id    INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    source_kind TEXT    NOT NULL,
    provider_id INTEGER,
    mapping_id  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX memberships_group ON memberships (group_id);

CREATE TABLE user_attributes (
    user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider_id     INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    attributes_json TEXT    NOT NULL,
    seen_at         INTEGER NOT NULL,
    PRIMARY KEY (user_id, provider_id)
);

CREATE TABLE sessions (
    id         TEXT    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    algorithm   TEXT    NOT NULL,
    private_der BLOB    NOT NULL,
    public_key  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    retire_at   INTEGER
);

-- Every membership change and every configuration change, with who, what, why and when.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    user_id     INTEGER,
    username    TEXT,
    group_name  TEXT,
    provider    TEXT,
    mapping_id  INTEGER,
    run_id      TEXT,
    reason      TEXT    NOT NULL,
    detail_json TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_user ON audit_log (username, at);
CREATE INDEX audit_group ON audit_log (group_name, at);
CREATE INDEX audit_run ON audit_log (run_id);
