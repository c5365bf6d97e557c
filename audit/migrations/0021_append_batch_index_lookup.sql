-- audit.append_batch looks up each delivery's first delivery by key, by index (issue 13).
--
-- 0020 joined the batch's keys with audit.events. Inside PL/pgSQL that statement soon runs on a
-- generic plan, which estimates 100 keys for any unnest and picked a hash join over a sequential
-- scan of audit.events: every commit read the whole table, so appends slowed down as the log grew
-- (0.14 ms of PostgreSQL CPU per delivery at 20 000 events, 0.70 ms at 80 000; a commit at half
-- the ingest rate took 30 ms instead of 4). A correlated scalar subquery is one probe of
-- events_pkey per delivery whatever the plan. Nothing else changes: same arguments, results,
-- owner and grants (CREATE OR REPLACE keeps them).

CREATE OR REPLACE FUNCTION audit.append_batch(
    p_received_at timestamptz[], p_provider text[], p_endpoint text[], p_account text[],
    p_event_id text[], p_event_type text[], p_event_created bigint[], p_object_id text[],
    p_origin text[], p_source_address text[], p_content_type text[], p_headers json[],
    p_verification text[], p_body bytea[], p_body_sha256 bytea[],
    OUT ids bigint[], OUT duplicate_of bigint[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(current_setting('ledgerhook.appending', true), '') <> 'on' THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'audit.append_batch must come before any other write of its transaction'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        PERFORM pg_advisory_xact_lock_shared(1279787011);  -- audit.sequencer.APPEND_MARK
        PERFORM set_config('ledgerhook.appending', 'on', true);
        PERFORM pg_current_xact_id();  -- the xid is assigned now, under the mark
    END IF;
    SELECT array_agg(nextval('audit.deliveries_id_seq') ORDER BY i) INTO ids
        FROM generate_series(1, cardinality(p_event_id)) AS i;
    INSERT INTO audit.events (provider, account, event_id, first_delivery_id, first_received_at)
    SELECT DISTINCT ON (k.provider, k.account, k.event_id)
           k.provider, k.account, k.event_id, ids[k.i], k.received_at
        FROM unnest(p_provider, p_account, p_event_id, p_received_at) WITH ORDINALITY
                 AS k(provider, account, event_id, received_at, i)
        ORDER BY k.provider, k.account, k.event_id, k.i
    ON CONFLICT DO NOTHING;
    SELECT array_agg(nullif(k.first, ids[k.i]) ORDER BY k.i)
        INTO duplicate_of
        FROM (SELECT u.i, (SELECT e.first_delivery_id FROM audit.events e
                            WHERE e.provider = u.provider AND e.account = u.account
                              AND e.event_id = u.event_id) AS first
                FROM unnest(p_provider, p_account, p_event_id) WITH ORDINALITY
                         AS u(provider, account, event_id, i)) AS k;
    INSERT INTO audit.deliveries (
        id, received_at, provider, endpoint, account, event_id, event_type, event_created,
        object_id, origin, source_address, content_type, headers, verification, duplicate_of,
        body, body_sha256, body_size)
    SELECT ids[r.i], r.received_at, r.provider, r.endpoint, r.account, r.event_id,
           r.event_type, r.event_created, r.object_id, r.origin, r.source_address,
           r.content_type, r.headers, r.verification, duplicate_of[r.i], r.body, r.body_sha256,
           octet_length(r.body)
        FROM unnest(p_received_at, p_provider, p_endpoint, p_account, p_event_id, p_event_type,
                    p_event_created, p_object_id, p_origin, p_source_address, p_content_type,
                    p_headers, p_verification, p_body, p_body_sha256) WITH ORDINALITY
                 AS r(received_at, provider, endpoint, account, event_id, event_type,
                      event_created, object_id, origin, source_address, content_type, headers,
                      verification, body, body_sha256, i);
END $$;
