-- Honest run records and safe confirmations.
--
-- skipped: users whose staged changes were not applied because their memberships changed
-- after the run read them (a sign-in, an admin, another run); the next run reconsiders them.
-- config_version: the configuration version the run computed its diff against; a run waiting
-- for confirmation is applied only while it is still current. NULL for runs recorded before.
-- superseded_by: the run that made a run waiting for confirmation unconfirmable: a later run
-- whose findings contradict its diff, or an earlier run waiting with the same changes.
ALTER TABLE sync_runs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN config_version INTEGER;
ALTER TABLE sync_runs ADD COLUMN superseded_by TEXT;
CREATE INDEX sync_runs_status ON sync_runs (provider_id, status);

-- A staged change not applied because the user's membership version had moved.
-- Runs' diffs are compared user by user (a later run supersedes a waiting one it contradicts).
ALTER TABLE sync_changes ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sync_changes_user ON sync_changes (run_id, username);

-- Staged changes are kept only while a run waits for confirmation (or is still running):
-- those of every other run, never dropped until now, go.
DELETE FROM sync_changes WHERE run_id IN
    (SELECT id FROM sync_runs WHERE status NOT IN ('needs_confirmation', 'running'));
