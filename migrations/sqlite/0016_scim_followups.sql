-- SCIM writes whose effect on idsync's users (memberships, disabling) has not been applied
-- yet: a row is written in the same transaction as the SCIM write and deleted once the
-- follow-up applied. A row that stays (the follow-up failed, the process died) is retried by
-- the scheduler, so a committed SCIM write always reaches idsync's users. `change_json` names
-- the SCIM users the write touched and the deleted users' names, never a document.
CREATE TABLE scim_followups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    actor       TEXT    NOT NULL,
    change_json TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX scim_followups_created ON scim_followups (created_at);
