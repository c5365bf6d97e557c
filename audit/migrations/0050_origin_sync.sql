-- Deliveries fetched from a provider's object APIs by `ledgerhook sync` (and drift repairs) are
-- stored with origin 'sync': the body is one object exactly as the API returned it, not an event.
-- The allowed values are read from the constraint as it stands and 'sync' is added to them, so
-- this migration keeps any origin another migration added before it (whatever the merge order).
DO $$
DECLARE
    allowed text[];
BEGIN
    SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO allowed
        FROM pg_constraint c,
             regexp_matches(pg_get_constraintdef(c.oid), '''([^'']+)''', 'g') AS m
        WHERE c.conrelid = 'audit.deliveries'::regclass AND c.conname = 'deliveries_origin_check';
    IF allowed IS NULL THEN
        allowed := ARRAY['reconciliation', 'webhook'];
    END IF;
    IF NOT 'sync' = ANY (allowed) THEN
        allowed := array_append(allowed, 'sync');
    END IF;
    ALTER TABLE audit.deliveries DROP CONSTRAINT IF EXISTS deliveries_origin_check;
    -- Written as an IN list, so the constraint reads back in the form this parses.
    EXECUTE format('ALTER TABLE audit.deliveries ADD CONSTRAINT deliveries_origin_check CHECK (origin IN (%s))',
                   (SELECT string_agg(quote_literal(a), ', ') FROM unnest(allowed) AS a));
END $$;
