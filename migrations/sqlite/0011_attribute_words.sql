-- Words of each user's last-seen attributes (a word of every group value's first RDN, the
-- entry's id), so that an incremental run finds the users whose attributes name a changed or
-- deleted group, or a deleted entry's id, without reading every user's attributes. A word
-- narrows the search; the attributes themselves decide.
CREATE TABLE user_attribute_words (
    provider_id INTEGER NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    word        TEXT    NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (provider_id, word, user_id)
) WITHOUT ROWID;
CREATE INDEX user_attribute_words_user ON user_attribute_words (user_id, provider_id);
-- Whether a user's words are recorded: rows written before this table are not, and are read
-- in full until a sync or a sign-in writes them again.
ALTER TABLE user_attributes ADD COLUMN words_indexed INTEGER NOT NULL DEFAULT 0;
-- Partial, so that no query of a provider's users by other columns is planned through it.
CREATE INDEX user_attributes_words_unrecorded ON user_attributes (provider_id) WHERE words_indexed = 0;
-- The words of a staged attributes change (a JSON array of strings).
ALTER TABLE sync_changes ADD COLUMN words_json TEXT;
