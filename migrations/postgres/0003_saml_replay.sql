-- SAML assertion ids seen, kept until the assertion expires, so a replay is refused.
CREATE TABLE saml_assertions (
    provider     TEXT    NOT NULL,
    assertion_id TEXT    NOT NULL,
    expires_at   BIGINT  NOT NULL,
    PRIMARY KEY (provider, assertion_id)
);
CREATE INDEX saml_assertions_expiry ON saml_assertions (expires_at);
