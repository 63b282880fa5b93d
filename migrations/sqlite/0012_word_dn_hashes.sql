-- Beside each word, a hash of the user's last-seen DN (model::sync::dn_hash), so that an
-- incremental run compares a changed group's members with who held it at the last run by
-- scanning the words index alone, without a look-up per holder. Rows written before have
-- none, and their users are compared by their attributes until they are written again.
ALTER TABLE user_attribute_words ADD COLUMN dn_hash INTEGER;
-- The DN hash of a staged attributes change.
ALTER TABLE sync_changes ADD COLUMN dn_hash INTEGER;
-- A provider's memberships counted through an index (the removal threshold of every run
-- counts them), not by reading the whole table.
CREATE INDEX memberships_provider ON memberships (provider_id, source_kind);
