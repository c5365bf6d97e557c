-- State drift checks (alerts.drift) and provider API health (sync and drift).
-- Two new alert rules. The allowed rule names are read from the constraint as it stands and
-- these are added, so rules other migrations added are kept whatever the merge order.
DO $$
DECLARE
    allowed text[];
    wanted  text;
BEGIN
    SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO allowed
        FROM pg_constraint c,
             regexp_matches(pg_get_constraintdef(c.oid), '''([^'']+)''', 'g') AS m
        WHERE c.conrelid = 'alerts.alerts'::regclass AND c.conname = 'alerts_rule_check';
    FOREACH wanted IN ARRAY ARRAY['state_drift', 'provider_api'] LOOP
        IF allowed IS NULL OR NOT wanted = ANY (allowed) THEN
            allowed := array_append(coalesce(allowed, ARRAY[]::text[]), wanted);
        END IF;
    END LOOP;
    ALTER TABLE alerts.alerts DROP CONSTRAINT IF EXISTS alerts_rule_check;
    -- Written as an IN list, so the constraint reads back in the form this parses.
    EXECUTE format('ALTER TABLE alerts.alerts ADD CONSTRAINT alerts_rule_check CHECK (rule IN (%s))',
                   (SELECT string_agg(quote_literal(a), ', ') FROM unnest(allowed) AS a));
END $$;

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
