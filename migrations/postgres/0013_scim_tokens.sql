-- A SCIM token is an API key scoped to one provider's SCIM endpoint (/scim/v2/{provider}): it
-- carries no admin permission and works nowhere else. NULL for every other key.
ALTER TABLE api_keys ADD COLUMN scim_provider TEXT;
