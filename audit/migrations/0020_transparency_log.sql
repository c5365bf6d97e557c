-- The transparency log (issue 13): an unordered, lock-free append, and a sequencer that
-- integrates committed deliveries into an RFC 6962 Merkle tree, published as Ed25519-signed
-- checkpoints (C2SP tlog-checkpoint). See audit/sequencer.py and audit/tree.py.
--
-- What changes for audit.deliveries:
-- - ids come from a sequence, in blocks (unique, neither gap-free nor commit-ordered); the
--   order of the log is the leaf order in audit.leaves, assigned by the sequencer;
-- - each new row records the id of the transaction that inserted it (txid), assigned while the
--   transaction holds the appenders' SHARED advisory lock (a mark, never waited for: appenders
--   all take it shared, nobody takes it exclusively). Every row whose txid is below the oldest
--   xid of a marked transaction still running (audit.integration_horizon) is final, committed or
--   not there at all: that is how the sequencer knows which rows it may integrate without
--   ordering the writers, and why only appenders (not every transaction of the cluster) can
--   hold integration back;
-- - new rows carry no chain hashes. Rows appended before this migration keep theirs (the legacy
--   chain): they become the first leaves, in chain order, and `ledgerhook verify` keeps checking
--   their chain links and their HMAC checkpoints as well as the tree.
--
-- The application role no longer inserts into audit.deliveries or audit.events itself: only
-- audit.append_batch (SECURITY DEFINER) does, so a row's id, txid and body_size are never the
-- caller's to choose.

CREATE SEQUENCE audit.deliveries_id_seq INCREMENT BY 1 MINVALUE 1;
SELECT setval('audit.deliveries_id_seq', coalesce((SELECT max(id) FROM audit.deliveries), 0) + 1, false);

-- No volatile default in ADD COLUMN (it would rewrite every existing row): legacy rows keep NULL.
ALTER TABLE audit.deliveries
    ADD COLUMN txid xid8,
    ADD COLUMN body_size bigint,
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN row_hash DROP NOT NULL;
ALTER TABLE audit.deliveries ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
ALTER TABLE audit.deliveries ALTER COLUMN id SET DEFAULT nextval('audit.deliveries_id_seq');
ALTER TABLE audit.deliveries ADD CONSTRAINT deliveries_tree_or_legacy_chain CHECK (
    (txid IS NOT NULL AND body_size IS NOT NULL AND prev_hash IS NULL AND row_hash IS NULL)
    OR (txid IS NULL AND prev_hash IS NOT NULL AND row_hash IS NOT NULL));

-- The sequencer's read: committed rows past its watermark, in (txid, id) order.
CREATE INDEX deliveries_txid ON audit.deliveries (txid, id);

-- One leaf per delivery, leaf_index gap-free from 0, written only by the sequencer, in order.
-- received_at is copied so that lag is measured and the delivery row found (partition pruning)
-- without reading audit.deliveries.
CREATE TABLE audit.leaves (
    leaf_index    bigint      PRIMARY KEY CHECK (leaf_index >= 0),
    delivery_id   bigint      NOT NULL UNIQUE,
    received_at   timestamptz NOT NULL,
    leaf_hash     bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    integrated_at timestamptz NOT NULL
);

-- Hashes of complete subtrees (RFC 6962 interior nodes) at levels 4, 8, 12, ...: the subtree
-- `idx` of `level` covers leaves [idx * 2^level, (idx + 1) * 2^level). Any other node is at most
-- 8 rows (or 8 leaves) away, so roots and proofs cost one small indexed read (audit/tree.py).
-- Complete subtrees never change, so this table is append-only like the rest.
CREATE TABLE audit.tree_nodes (
    level smallint NOT NULL CHECK (level > 0 AND level % 4 = 0),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    hash  bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed tree heads: C2SP tlog-checkpoint bodies as C2SP signed notes (Ed25519). `note` is the
-- exact text an auditor keeps and verifies; the other columns repeat what it says, for queries.
CREATE TABLE audit.tree_checkpoints (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL,
    origin     text        NOT NULL,
    tree_size  bigint      NOT NULL CHECK (tree_size >= 0),
    root_hash  bytea       NOT NULL CHECK (length(root_hash) = 32),
    key_name   text        NOT NULL,
    key_id     bytea       NOT NULL CHECK (length(key_id) = 4),
    note       text        NOT NULL
);
CREATE INDEX tree_checkpoints_size ON audit.tree_checkpoints (tree_size, id);

-- Results of tree verifications (the worker's integrity job, `ledgerhook verify`): the truth
-- the integrity gauge and alert report, whichever process is asked.
CREATE TABLE audit.verification_runs (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    ok           boolean     NOT NULL,
    tree_size    bigint      NOT NULL,
    leaves_checked bigint    NOT NULL,
    from_size    bigint      NOT NULL,
    checkpoints_checked integer NOT NULL,
    first_bad    text,
    reason       text,
    source       text        NOT NULL
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['leaves', 'tree_nodes', 'tree_checkpoints', 'verification_runs'] LOOP
        EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.%I '
                       'FOR EACH ROW EXECUTE FUNCTION audit.forbid_change()', t);
        EXECUTE format('CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change()', t);
    END LOOP;
END $$;

-- The request path's one statement: mark the transaction as an appender, reserve ids, settle
-- "first delivery of each event" and insert. Nothing makes writers wait for each other (the mark
-- is a shared lock), except concurrent batches delivering the same event: they meet on
-- audit.events' primary key, the second waits for the first to commit and then sees its row
-- (each statement of a VOLATILE function takes a fresh snapshot). Keys are inserted in sorted
-- order, so two batches never wait on each other in a cycle.
--
-- The transaction's xid must be assigned while the mark is held (see audit.integration_horizon),
-- so the first call of a transaction refuses to run after the transaction already wrote
-- something: append first, then do other work in the same transaction if needed.
CREATE FUNCTION audit.append_batch(
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
    SELECT array_agg(CASE WHEN e.first_delivery_id = ids[k.i] THEN NULL
                          ELSE e.first_delivery_id END ORDER BY k.i)
        INTO duplicate_of
        FROM unnest(p_provider, p_account, p_event_id) WITH ORDINALITY
                 AS k(provider, account, event_id, i)
        JOIN audit.events e USING (provider, account, event_id);
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
REVOKE ALL ON FUNCTION audit.append_batch FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.append_batch TO ledgerhook_app;

-- Below which txid every appended row is final. r is the first xid not yet completed when the
-- function starts (any transaction that gets an xid later gets r or more); an appender still
-- running holds the mark and its xid lock, both in pg_locks (read ONCE: one consistent look at
-- the lock table). An appender with an xid below the result has therefore ended before this
-- returned, so a read that starts afterwards sees all of its rows, or it rolled back. pg_locks
-- shows 32-bit xids: each is widened to the 64-bit xid nearest r. Other transactions (other
-- databases, long reports, rebuilds) do not count, so they never hold integration back.
CREATE FUNCTION audit.integration_horizon() RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r    bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    base bigint := r - r % 4294967296;
    h    bigint;
BEGIN
    WITH l AS MATERIALIZED (
        SELECT locktype, database, classid, objid, objsubid, transactionid, pid, mode, granted
        FROM pg_locks
    )
    SELECT min(CASE WHEN c > r + 2147483648 THEN c - 4294967296
                    WHEN c < r - 2147483648 THEN c + 4294967296
                    ELSE c END)
        INTO h
        FROM (SELECT base + t.transactionid::text::bigint AS c
                FROM l a JOIN l t ON t.pid = a.pid
               WHERE a.locktype = 'advisory' AND a.granted AND a.classid = 0
                 AND a.objid = 1279787011 AND a.objsubid = 1
                 AND a.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                 AND t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted) x;
    RETURN least(r, coalesce(h, r));
END $$;
REVOKE ALL ON FUNCTION audit.integration_horizon() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.integration_horizon() TO ledgerhook_app;

-- The chain's append and its HMAC checkpoints are retired: audit.checkpoints stays, read-only,
-- for `verify` to check the legacy chain against.
DROP FUNCTION audit.append_deliveries;
REVOKE INSERT ON audit.deliveries, audit.events, audit.checkpoints FROM ledgerhook_app;

GRANT SELECT, INSERT ON audit.leaves, audit.tree_nodes, audit.tree_checkpoints,
    audit.verification_runs TO ledgerhook_app;
