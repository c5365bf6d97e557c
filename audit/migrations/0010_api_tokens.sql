-- Bearer tokens for the read/ops API, their revocations, and the access log.
-- All three are append-only like the rest of the audit schema: a token is revoked by appending a
-- row to audit.api_token_revocations (never by UPDATE), so the application role keeps INSERT and
-- SELECT only. Only the SHA-256 of a token is stored: tokens are 256-bit random strings, not
-- passwords, so a fast hash is enough and lets the lookup be one indexed equality.

CREATE TABLE audit.api_tokens (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role        text        NOT NULL CHECK (role IN ('auditor', 'oncall', 'admin')),
    token_hash  bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit.api_token_revocations (
    token_id    bigint      PRIMARY KEY REFERENCES audit.api_tokens (id),
    revoked_at  timestamptz NOT NULL DEFAULT now()
);

-- Who asked what, when. Written by the API guard before the handler runs, so a read that
-- returned data always has its record. Never holds the token itself.
CREATE TABLE audit.access_log (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    token_name     text,                          -- NULL when the token was not recognised
    role           text,
    method         text        NOT NULL,
    path           text        NOT NULL,
    query          text        NOT NULL,
    decision       text        NOT NULL CHECK (decision IN ('allowed', 'forbidden', 'unauthenticated')),
    required_role  text        NOT NULL,
    source_address text
);
CREATE INDEX access_log_at ON audit.access_log (at, id);
CREATE INDEX access_log_token ON audit.access_log (token_name, at);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.api_tokens
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.api_token_revocations
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.access_log
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.api_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.api_token_revocations
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.access_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();

GRANT SELECT, INSERT ON audit.api_tokens, audit.api_token_revocations, audit.access_log TO ledgerhook_app;
