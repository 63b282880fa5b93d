-- Where a directory sync last left each user of a provider in line with the mappings: the
-- configuration version it evaluated under and the user's membership version afterwards. A
-- later full run skips a user whose directory entry (its attributes digest), the configuration
-- and whose memberships are all as they were then: nothing about them can have changed, so
-- an unchanged directory costs reading it, not evaluating and writing it again.
ALTER TABLE user_attributes ADD COLUMN settled_config_version INTEGER;
ALTER TABLE user_attributes ADD COLUMN settled_membership_version INTEGER;
