-- Directory sync runs and the diff each one computed (kept for dry runs, confirmations and the
-- record of what was applied).

CREATE TABLE sync_runs (
    id            TEXT    PRIMARY KEY,
    provider_id   INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    provider      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    dry_run       INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    users_seen    INTEGER NOT NULL DEFAULT 0,
    additions     INTEGER NOT NULL DEFAULT 0,
    removals      INTEGER NOT NULL DEFAULT 0,
    removal_limit INTEGER NOT NULL DEFAULT 0,
    high_water    TEXT,
    error         TEXT
);
CREATE INDEX sync_runs_provider ON sync_runs (provider_id, started_at);

CREATE TABLE sync_changes (
    run_id      TEXT    NOT NULL REFERENCES sync_runs(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    username    TEXT    NOT NULL,
    group_id    INTEGER NOT NULL,
    group_name  TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    mapping_id  INTEGER,
    reason      TEXT    NOT NULL,
    attributes_json TEXT,
    attributes_digest TEXT,
    PRIMARY KEY (run_id, seq)
);

-- A digest of the last-seen attributes, so an unchanged directory entry costs no write.
ALTER TABLE user_attributes ADD COLUMN digest TEXT NOT NULL DEFAULT '';
