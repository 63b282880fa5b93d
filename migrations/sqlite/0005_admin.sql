-- Workspace images, as far as the admin API manages them: a name, a description and the
-- image's settings as JSON text (keyed by the documented setting name). Which settings are
-- resource settings, and so need Images Modify Resources to change, is decided by the
-- permission rules, not by the schema.
CREATE TABLE images (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    description   TEXT    NOT NULL DEFAULT '',
    settings_json TEXT    NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
