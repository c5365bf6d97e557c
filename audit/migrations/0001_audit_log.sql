-- The audit log: every webhook delivery, every rejection, and signed chain checkpoints.
-- Append-only is enforced here, twice: the application role is granted SELECT and INSERT only,
-- and a trigger refuses UPDATE, DELETE and TRUNCATE even for the owner. Only someone who can
-- disable triggers (owner or superuser) can change a row, and `ledgerhook verify` catches that.

CREATE SCHEMA audit;
GRANT USAGE ON SCHEMA audit TO ledgerhook_app;

CREATE FUNCTION audit.forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit table %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'the audit log can only be appended to; retention drops whole partitions';
END $$;

-- One row per delivery, duplicates included. `id` is the row's place in the hash chain: assigned
-- gap-free under an advisory lock by audit.chain (see the docstring there), never by a sequence.
CREATE TABLE audit.deliveries (
    id             bigint      NOT NULL,
    received_at    timestamptz NOT NULL,
    provider       text        NOT NULL CHECK (provider IN ('stripe', 'chargebee')),
    endpoint       text        NOT NULL,
    account        text        NOT NULL,
    event_id       text        NOT NULL,
    event_type     text        NOT NULL,
    event_created  bigint      NOT NULL,          -- provider's own event time, unix seconds
    object_id      text,                          -- id of the event's main object, for queries
    origin         text        NOT NULL CHECK (origin IN ('webhook', 'reconciliation')),
    source_address text,
    content_type   text,
    headers        json        NOT NULL,          -- [[name, value], ...] as received, credentials redacted; json keeps the text verbatim
    verification   text        NOT NULL,          -- how it was verified, e.g. 'stripe-v1:key=3f2a...'; never a secret
    duplicate_of   bigint,                        -- first delivery of the same (provider, account, event_id)
    body           bytea       NOT NULL,          -- exact bytes as received
    body_sha256    bytea       NOT NULL,
    prev_hash      bytea       NOT NULL,
    row_hash       bytea       NOT NULL,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

-- Every index is paid for on every ingested row, so each one serves a query (audit.repository,
-- processors, alerts) that no other index serves: lookups by id use the primary key; by event id
-- and by object id, 0011's (event_id, id) and (object_id, id) (both selective on their own).
CREATE INDEX deliveries_received ON audit.deliveries (received_at, id);
CREATE INDEX deliveries_type ON audit.deliveries (event_type, id);
CREATE INDEX deliveries_event_created ON audit.deliveries (event_created, id);

-- Bodies (a few KB of JSON) are TOASTed: lz4 compresses them at a fraction of pglz's CPU, which
-- is paid inside the chain lock on every ingested row. Partitions inherit the setting. Servers
-- built without lz4 keep the default.
DO $$
BEGIN
    IF 'lz4' = ANY (SELECT unnest(enumvals) FROM pg_settings
                    WHERE name = 'default_toast_compression') THEN
        ALTER TABLE audit.deliveries ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END $$;

-- First delivery of each event: the uniqueness that makes "duplicate" a database fact.
CREATE TABLE audit.events (
    provider          text        NOT NULL,
    account           text        NOT NULL,
    event_id          text        NOT NULL,
    first_delivery_id bigint      NOT NULL,
    first_received_at timestamptz NOT NULL,
    PRIMARY KEY (provider, account, event_id)
);

-- One-statement append (audit.chain): the caller hashes the rows against the head it EXPECTS
-- (the last row it appended itself, usually right), and this function, under the chain lock,
-- checks that guess: the head is still (expect_id, expect_hash) and every row's duplicate_of is
-- what audit.events says. Only then are the events and deliveries inserted, ids expect_id+1...,
-- in the caller's statement (one round trip, one commit). Otherwise nothing is written and the
-- actual head and duplicate_of values are returned for the caller to re-hash and try again.
-- The chain's correctness never depends on the guess: a wrong guess only costs a retry.
CREATE FUNCTION audit.append_deliveries(
    expect_id bigint, expect_hash bytea,
    p_received_at timestamptz[], p_provider text[], p_endpoint text[], p_account text[],
    p_event_id text[], p_event_type text[], p_event_created bigint[], p_object_id text[],
    p_origin text[], p_source_address text[], p_content_type text[], p_headers json[],
    p_verification text[], p_duplicate_of bigint[], p_body bytea[], p_body_sha256 bytea[],
    p_prev_hash bytea[], p_row_hash bytea[],
    OUT ok boolean, OUT head_id bigint, OUT head_hash bytea, OUT duplicate_of bigint[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1279787009);  -- audit.chain.CHAIN_LOCK
    -- A VOLATILE function's statements each take a fresh snapshot: this sees the last commit.
    SELECT d.id, d.row_hash INTO head_id, head_hash
        FROM audit.deliveries d ORDER BY d.id DESC LIMIT 1;
    IF NOT FOUND THEN
        head_id := 0;
        head_hash := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    END IF;
    -- First delivery of each key: an earlier one (audit.events), else its first row here.
    SELECT array_agg(
               CASE WHEN e.first_delivery_id IS NOT NULL THEN e.first_delivery_id
                    WHEN f.first_i = k.i THEN NULL
                    ELSE head_id + f.first_i END
               ORDER BY k.i)
        INTO duplicate_of
        FROM unnest(p_provider, p_account, p_event_id) WITH ORDINALITY
                 AS k(provider, account, event_id, i)
        JOIN (SELECT u.provider, u.account, u.event_id, min(u.i) AS first_i
                FROM unnest(p_provider, p_account, p_event_id) WITH ORDINALITY
                         AS u(provider, account, event_id, i)
               GROUP BY 1, 2, 3) f USING (provider, account, event_id)
        LEFT JOIN audit.events e USING (provider, account, event_id);
    ok := head_id = expect_id AND head_hash = expect_hash
          AND p_prev_hash[1] = head_hash
          AND duplicate_of IS NOT DISTINCT FROM p_duplicate_of;
    IF NOT ok THEN
        RETURN;
    END IF;
    INSERT INTO audit.events (provider, account, event_id, first_delivery_id, first_received_at)
    SELECT k.provider, k.account, k.event_id, head_id + k.i, k.received_at
        FROM unnest(p_provider, p_account, p_event_id, p_duplicate_of, p_received_at)
                 WITH ORDINALITY AS k(provider, account, event_id, dup, received_at, i)
        WHERE k.dup IS NULL;
    INSERT INTO audit.deliveries (
        id, received_at, provider, endpoint, account, event_id, event_type, event_created,
        object_id, origin, source_address, content_type, headers, verification, duplicate_of,
        body, body_sha256, prev_hash, row_hash)
    SELECT head_id + r.i, r.received_at, r.provider, r.endpoint, r.account, r.event_id,
           r.event_type, r.event_created, r.object_id, r.origin, r.source_address,
           r.content_type, r.headers, r.verification, r.duplicate_of, r.body, r.body_sha256,
           r.prev_hash, r.row_hash
        FROM unnest(p_received_at, p_provider, p_endpoint, p_account, p_event_id, p_event_type,
                    p_event_created, p_object_id, p_origin, p_source_address, p_content_type,
                    p_headers, p_verification, p_duplicate_of, p_body, p_body_sha256,
                    p_prev_hash, p_row_hash) WITH ORDINALITY
                 AS r(received_at, provider, endpoint, account, event_id, event_type,
                      event_created, object_id, origin, source_address, content_type, headers,
                      verification, duplicate_of, body, body_sha256, prev_hash, row_hash, i);
END $$;
REVOKE ALL ON FUNCTION audit.append_deliveries FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.append_deliveries TO ledgerhook_app;

CREATE SEQUENCE audit.rejections_id_seq;
CREATE TABLE audit.rejections (
    id             bigint      NOT NULL DEFAULT nextval('audit.rejections_id_seq'),
    received_at    timestamptz NOT NULL,
    provider       text        NOT NULL,
    endpoint       text        NOT NULL,
    status         integer     NOT NULL,
    reason         text        NOT NULL,
    source_address text,
    headers        json        NOT NULL,
    body_prefix    bytea       NOT NULL,          -- at most the first 4 KiB
    body_size      bigint      NOT NULL,
    body_sha256    bytea       NOT NULL,          -- of the whole body as received
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
CREATE INDEX rejections_received ON audit.rejections (received_at, id);
CREATE INDEX rejections_id ON audit.rejections (id);

-- Signed checkpoints of the chain head: an auditor can keep one outside the system.
CREATE TABLE audit.checkpoints (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    delivery_id bigint      NOT NULL,             -- last chain position covered
    chain_hash  bytea       NOT NULL,             -- row_hash of that delivery
    row_count   bigint      NOT NULL,
    key_id      text        NOT NULL,             -- fingerprint of the signing key, never the key
    signature   bytea       NOT NULL              -- HMAC-SHA256, see audit.checkpoints
);

CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.deliveries
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.rejections
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit.checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.rejections
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change();

-- Monthly partitions from last month to `months_ahead` ahead, plus a default partition so a
-- delivery is never refused for want of one. TRUNCATE of a single partition does not fire the
-- parent's trigger, so each partition gets its own. Runs as the owner (SECURITY DEFINER) so the
-- worker's daily cron can call it as the application role.
CREATE FUNCTION audit.ensure_partitions(months_ahead integer DEFAULT 3) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    parent  text;
    first_m date := (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')::date;
    m       date;
    part    text;
    created integer := 0;
BEGIN
    FOREACH parent IN ARRAY ARRAY['deliveries', 'rejections'] LOOP
        part := parent || '_default';
        IF to_regclass('audit.' || part) IS NULL THEN
            EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I DEFAULT', part, parent);
            EXECUTE format('CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.%I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change()', part);
            created := created + 1;
        END IF;
        FOR i IN 0..months_ahead + 1 LOOP
            m := (first_m + make_interval(months => i))::date;
            part := format('%s_y%sm%s', parent, to_char(m, 'YYYY'), to_char(m, 'MM'));
            IF to_regclass('audit.' || part) IS NULL THEN
                EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I FOR VALUES FROM (%L) TO (%L)',
                               part, parent, to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00',
                               to_char((m + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00');
                EXECUTE format('CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON audit.%I '
                               'FOR EACH STATEMENT EXECUTE FUNCTION audit.forbid_change()', part);
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END $$;
REVOKE ALL ON FUNCTION audit.ensure_partitions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.ensure_partitions(integer) TO ledgerhook_app;

GRANT SELECT, INSERT ON audit.deliveries, audit.events, audit.rejections, audit.checkpoints TO ledgerhook_app;
GRANT USAGE ON SEQUENCE audit.rejections_id_seq TO ledgerhook_app;
