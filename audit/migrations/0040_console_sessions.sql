-- Web console sessions (ledgerhook/console). A signed-in browser holds a random 256-bit session
-- id in an HttpOnly cookie; only its SHA-256 is stored, with the API token the session was opened
-- with. The token itself never goes back to the browser and is never stored here.
-- Append-only like the rest of the audit schema: signing out appends a revocation row. A session
-- is live while it has not expired, has no revocation, and its token has none either
-- (audit.api_token_revocations), so revoking a token ends its sessions on their next request.

CREATE TABLE audit.console_sessions (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_hash   bytea       NOT NULL UNIQUE CHECK (length(session_hash) = 32),
    token_id       bigint      NOT NULL REFERENCES audit.api_tokens (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    source_address text,
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_token ON audit.console_sessions (token_id);

CREATE TABLE audit.console_session_revocations (
    session_id  bigint      PRIMARY KEY REFERENCES audit.console_sessions (id),
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL CHECK (reason ~ '^[a-z_]{1,32}$')
);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.console_sessions
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.console_session_revocations
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.console_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.console_session_revocations
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();

GRANT SELECT, INSERT ON audit.console_sessions, audit.console_session_revocations TO ledgerhook_app;
