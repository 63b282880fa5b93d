-- Evidence is accepted once: SAML assertion ids and ID tokens (by jti, else a hash of the
-- token) are kept until the evidence could no longer be accepted anyway.
CREATE TABLE used_evidence (
    provider    TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    evidence_id TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, kind, evidence_id)
);
CREATE INDEX used_evidence_expiry ON used_evidence (expires_at);
INSERT INTO used_evidence (provider, kind, evidence_id, expires_at)
    SELECT provider, 'saml', assertion_id, expires_at FROM saml_assertions;
DROP TABLE saml_assertions;

-- Failed password sign-ins per key (a username at a provider, a client address), for the
-- brute-force lockout.
CREATE TABLE login_failures (
    throttle_key    TEXT    PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at INTEGER NOT NULL
);

-- Refused sign-ins: who tried what, from where, and why it was refused. Never the password,
-- the token or the assertion. Kept for a bounded time.
CREATE TABLE security_events (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    provider       TEXT    NOT NULL,
    evidence       TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    client_address TEXT,
    username       TEXT,
    correlation_id TEXT
);
CREATE INDEX security_events_at ON security_events (at);
CREATE INDEX security_events_provider ON security_events (provider, at);
