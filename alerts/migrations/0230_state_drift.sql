-- State drift checks (alerts.drift) and provider API health (sync and drift).
-- Two new alert rules, in alerts.rule_names (migration 0210).
INSERT INTO alerts.rule_names (name) VALUES ('state_drift'), ('provider_api')
ON CONFLICT DO NOTHING;

-- Where the periodic drift sweep stands, per provider account: it walks the state tables in
-- (object type, id) order a budget of API calls at a time and starts again at the end, so a large
-- account is covered gradually. Failures are counted here for the provider_api rule.
CREATE TABLE alerts.drift_positions (
    provider             text        NOT NULL,
    account              text        NOT NULL,
    object_type          text        NOT NULL DEFAULT '',  -- neutral type of the last object checked
    last_id              text        NOT NULL DEFAULT '',  -- its id ('' = from the start)
    passes               bigint      NOT NULL DEFAULT 0,   -- completed sweeps over every object
    checked              bigint      NOT NULL DEFAULT 0,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    last_error           text,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (provider, account)
);
GRANT SELECT, INSERT, UPDATE ON alerts.drift_positions TO ledgerhook_app;
