-- One row per finished reconciliation against a provider's Events API (alerts.reconcile): when it
-- ran, over which window, what it listed and what it found missing. Evidence for an auditor that
-- the log was checked against the provider, and the "last reconciliation" the console shows.
-- Append-only like the rest of the audit schema.

CREATE TABLE audit.reconciliation_runs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finished_at  timestamptz NOT NULL,
    provider     text        NOT NULL CHECK (provider IN ('stripe', 'chargebee')),
    endpoint     text        NOT NULL,
    account      text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    clamped      boolean     NOT NULL,
    listed       integer     NOT NULL,
    missing      integer     NOT NULL,
    backfilled   integer     NOT NULL
);
CREATE INDEX reconciliation_runs_latest ON audit.reconciliation_runs (provider, endpoint, finished_at);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.reconciliation_runs
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.reconciliation_runs
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();

GRANT SELECT, INSERT ON audit.reconciliation_runs TO ledgerhook_app;
