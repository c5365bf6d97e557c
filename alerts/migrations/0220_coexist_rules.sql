-- The coexistence rules (alerts.coexist) may raise alerts. alerts.alerts.rule is checked
-- against the list of known rules; other work streams may extend that list in their own
-- migrations, so this one does not restate it: it reads the rule names the current check
-- allows and adds its own, whatever came before.
DO $$
DECLARE
    con   record;
    names text[] := ARRAY['coexist_double_billing', 'coexist_both_active', 'coexist_wrong_side',
                          'coexist_orphan'];
BEGIN
    FOR con IN
        SELECT c.conname, pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c
        WHERE c.conrelid = 'alerts.alerts'::regclass AND c.contype = 'c'
          AND pg_get_constraintdef(c.oid) LIKE '%(rule %'
    LOOP
        names := names || ARRAY(
            SELECT m[1] FROM regexp_matches(con.def, '''([a-z_0-9]+)''', 'g') AS m
        );
        EXECUTE format('ALTER TABLE alerts.alerts DROP CONSTRAINT %I', con.conname);
    END LOOP;
    -- Written as an IN list, as the original was, so a later migration can read it the same way.
    EXECUTE 'ALTER TABLE alerts.alerts ADD CONSTRAINT alerts_rule_check CHECK (rule IN ('
        || (SELECT string_agg(quote_literal(n), ', ' ORDER BY n) FROM (SELECT DISTINCT unnest(names) AS n) s)
        || '))';
END $$;
