-- Directory sync runs and the diff each one computed (kept for dry runs, confirmations and the
-- record of what was applied).

CREATE TABLE sync_runs (
    id            TEXT    PRIMARY KEY,
    provider_id   BIGINT  NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    provider      TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    dry_run       BIGINT  NOT NULL DEFAULT 0,
    started_at    BIGINT  NOT NULL,
    finished_at   BIGINT ,
    users_seen    BIGINT  NOT NULL DEFAULT 0,
    additions     BIGINT  NOT NULL DEFAULT 0,
    removals      BIGINT  NOT NULL DEFAULT 0,
    removal_limit BIGINT  NOT NULL DEFAULT 0,
    high_water    TEXT,
    error         TEXT
);
CREATE INDEX sync_runs_provider ON sync_runs (provider_id, started_at);

CREATE TABLE sync_changes (
    run_id      TEXT    NOT NULL REFERENCES sync_runs(id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    username    TEXT    NOT NULL,
    group_id    BIGINT  NOT NULL,
    group_name  TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    mapping_id  BIGINT ,
    reason      TEXT    NOT NULL,
    attributes_json TEXT,
    attributes_digest TEXT,
    PRIMARY KEY (run_id, seq)
);

-- A digest of the last-seen attributes, so an unchanged directory entry costs no write.
ALTER TABLE user_attributes ADD COLUMN digest TEXT NOT NULL DEFAULT '';
