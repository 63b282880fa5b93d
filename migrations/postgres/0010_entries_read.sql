-- How many directory entries a run read (changed entries, tombstones, the entries of a full
-- read): what an incremental run costs, as opposed to how many users it evaluated.
ALTER TABLE sync_runs ADD COLUMN entries_read BIGINT NOT NULL DEFAULT 0;
