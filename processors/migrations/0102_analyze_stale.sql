-- Planner statistics for Ledgerhook's own tables, kept current by the worker.
--
-- Every statement the services run is prepared once per connection and, after a few runs,
-- PostgreSQL keeps a generic plan for it until the table's statistics change. With autovacuum
-- off (this is a server setting, and some servers have it off) the statistics never change:
-- a plan chosen while the audit log and the processed table were nearly empty (sequential
-- scans, hash joins) stays in use as they grow to millions of rows, and every batch gets
-- slower. Measured in the 10-minute soak: the worker fell from ~1 900 to ~500 applied/s.
--
-- This function does what autovacuum's analyze would: ANALYZE each table owned by Ledgerhook
-- whose changes since its last analyze exceed the server's autovacuum_analyze_threshold +
-- autovacuum_analyze_scale_factor x rows (so with autovacuum on it seldom finds anything to
-- do). ANALYZE refreshes the statistics and invalidates the cached plans, which are then
-- planned again against the table as it is. It runs as the owner (SECURITY DEFINER: ANALYZE
-- needs ownership) so the worker's cron can call it as the application role.
--
-- It samples 3 000 rows per table (statistics target 10) instead of the default 30 000: what
-- the plans need here is the table's size and that its keys are unique, and ANALYZE at the
-- default target took 2-3 s of CPU per round on the benchmark machine, enough to stall a
-- worker sharing its two cores (a 2 s lag spike in the end-to-end benchmark). Columns given
-- their own target by ALTER TABLE keep it.
CREATE FUNCTION processors.analyze_stale() RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET default_statistics_target = 10 AS $$
DECLARE
    base  float8 := current_setting('autovacuum_analyze_threshold')::float8;
    scale float8 := current_setting('autovacuum_analyze_scale_factor')::float8;
    t     record;
    done  text[] := '{}';
BEGIN
    FOR t IN
        SELECT s.schemaname, s.relname
        FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
          AND c.relkind = 'r'
          AND s.n_mod_since_analyze > base + scale * greatest(c.reltuples, 0)
        ORDER BY s.n_mod_since_analyze DESC
    LOOP
        EXECUTE format('ANALYZE %I.%I', t.schemaname, t.relname);
        done := done || format('%I.%I', t.schemaname, t.relname);
    END LOOP;
    RETURN done;
END
$$;
REVOKE ALL ON FUNCTION processors.analyze_stale() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION processors.analyze_stale() TO ledgerhook_app;
