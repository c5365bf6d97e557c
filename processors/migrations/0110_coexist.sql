-- Provider migration with coexistence (processors.coexist): links between the same customer
-- (and its subscriptions) in two providers, who is authoritative when, the price map, and the
-- results of every verification run.
--
-- History is append-only (a trigger refuses UPDATE/DELETE/TRUNCATE, even for the owner):
-- imports, link_events, price_events, authority_events, run_results. The current links and
-- prices are derived tables kept in the same transaction as their history row. Uniqueness is a
-- constraint: coexist.linked_objects has one row per linked object, whichever side it is on, so
-- an object can be in at most one link of its kind, and a concurrent import that races past the
-- checks still fails at COMMIT time.

CREATE SCHEMA coexist;
GRANT USAGE ON SCHEMA coexist TO ledgerhook_app;

CREATE FUNCTION coexist.forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'coexist table %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- One row per import (a CLI file or an API body): who, from where, how many lines.
CREATE TABLE coexist.imports (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    what    text        NOT NULL CHECK (what IN ('links', 'prices')),
    origin  text        NOT NULL CHECK (origin IN ('cli', 'api')),
    source  text        NOT NULL,
    format  text        NOT NULL CHECK (format IN ('csv', 'json')),
    actor   text        NOT NULL,
    lines   integer     NOT NULL,
    applied integer     NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);

-- Current links. A customer link is a billing account (billing_account unique among them); a
-- subscription link belongs to one.
CREATE TABLE coexist.links (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('customer', 'subscription')),
    billing_account text        NOT NULL,
    cohort          text        NOT NULL,
    source_provider text        NOT NULL CHECK (source_provider IN ('stripe', 'chargebee')),
    source_account  text        NOT NULL,
    source_id       text        NOT NULL,
    target_provider text        NOT NULL CHECK (target_provider IN ('stripe', 'chargebee')),
    target_account  text        NOT NULL,
    target_id       text        NOT NULL,
    origin          text        NOT NULL CHECK (origin IN ('import', 'metadata')),
    import_id       bigint      REFERENCES coexist.imports (id),
    evidence        text,
    actor           text        NOT NULL,
    linked_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (source_provider <> target_provider)
);
CREATE UNIQUE INDEX links_billing_account ON coexist.links (billing_account) WHERE kind = 'customer';
-- Verification walks a cohort's links of one kind in id order.
CREATE INDEX links_cohort ON coexist.links (cohort, kind, id);
CREATE INDEX links_account ON coexist.links (billing_account, kind);

CREATE TABLE coexist.linked_objects (
    kind     text   NOT NULL,
    provider text   NOT NULL,
    account  text   NOT NULL,
    id       text   NOT NULL,
    link_id  bigint NOT NULL REFERENCES coexist.links (id) ON DELETE CASCADE,
    side     text   NOT NULL CHECK (side IN ('source', 'target')),
    PRIMARY KEY (kind, provider, account, id)
);
CREATE INDEX linked_objects_link ON coexist.linked_objects (link_id);

-- Every link and unlink, with who did it and from where (an import, a metadata key, a command).
CREATE TABLE coexist.link_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    link_id         bigint      NOT NULL,
    action          text        NOT NULL CHECK (action IN ('link', 'unlink')),
    kind            text        NOT NULL,
    billing_account text        NOT NULL,
    cohort          text        NOT NULL,
    source_provider text        NOT NULL,
    source_account  text        NOT NULL,
    source_id       text        NOT NULL,
    target_provider text        NOT NULL,
    target_account  text        NOT NULL,
    target_id       text        NOT NULL,
    origin          text        NOT NULL CHECK (origin IN ('import', 'metadata', 'cli', 'api')),
    import_id       bigint      REFERENCES coexist.imports (id),
    evidence        text,
    actor           text        NOT NULL,
    note            text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX link_events_account ON coexist.link_events (billing_account, id);

-- The price map: a source price and the target price it became.
CREATE TABLE coexist.prices (
    source_provider text        NOT NULL CHECK (source_provider IN ('stripe', 'chargebee')),
    source_price    text        NOT NULL,
    target_provider text        NOT NULL CHECK (target_provider IN ('stripe', 'chargebee')),
    target_price    text        NOT NULL,
    import_id       bigint      NOT NULL REFERENCES coexist.imports (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_provider, source_price, target_provider)
);
CREATE TABLE coexist.price_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_provider text        NOT NULL,
    source_price    text        NOT NULL,
    target_provider text        NOT NULL,
    target_price    text        NOT NULL,
    previous_price  text,
    import_id       bigint      NOT NULL REFERENCES coexist.imports (id),
    at              timestamptz NOT NULL DEFAULT now()
);

-- Authority changes: per cohort (billing_account NULL) or one account. Writers hold a
-- per-cohort advisory lock, so ids within a cohort are in commit order.
CREATE TABLE coexist.authority_events (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cohort          text        NOT NULL,
    billing_account text,
    action          text        NOT NULL CHECK (action IN ('plan', 'cutover', 'rollback')),
    effective_at    timestamptz NOT NULL,
    actor           text        NOT NULL,
    origin          text        NOT NULL CHECK (origin IN ('cli', 'api')),
    note            text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX authority_events_cohort ON coexist.authority_events (cohort, id);

-- Verification runs. A run row is written when it starts and completed once when it finishes;
-- a finished run never changes (trigger). Only pairs that are not a plain match get a result row.
CREATE TABLE coexist.runs (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cohort          text        NOT NULL,
    state_schema    text        NOT NULL CHECK (state_schema IN ('processors', 'processors_replay')),
    actor           text        NOT NULL,
    as_of           bigint      NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    previous_run_id bigint      REFERENCES coexist.runs (id),
    authority       jsonb,
    summary         jsonb,
    changes         jsonb
);
CREATE INDEX runs_cohort ON coexist.runs (cohort, state_schema, id);

CREATE TABLE coexist.run_results (
    run_id          bigint NOT NULL REFERENCES coexist.runs (id),
    pair_key        text   NOT NULL,
    kind            text   NOT NULL,
    billing_account text   NOT NULL,
    source          text   NOT NULL,
    target          text   NOT NULL,
    verdict         text   NOT NULL CHECK (verdict IN ('explained', 'mismatch')),
    checks          jsonb  NOT NULL,
    PRIMARY KEY (run_id, pair_key)
);

CREATE FUNCTION coexist.finished_run_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'coexist.runs: run % is finished and cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER final BEFORE UPDATE OR DELETE ON coexist.runs
    FOR EACH ROW EXECUTE FUNCTION coexist.finished_run_is_final();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON coexist.runs
    FOR EACH STATEMENT EXECUTE FUNCTION coexist.forbid_change();

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['imports', 'link_events', 'price_events', 'authority_events', 'run_results'] LOOP
        EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON coexist.%I '
                       'FOR EACH ROW EXECUTE FUNCTION coexist.forbid_change()', t);
        EXECUTE format('CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON coexist.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION coexist.forbid_change()', t);
    END LOOP;
END $$;

GRANT SELECT, INSERT ON coexist.imports, coexist.link_events, coexist.price_events,
    coexist.authority_events, coexist.run_results TO ledgerhook_app;
GRANT SELECT, INSERT, DELETE ON coexist.links, coexist.linked_objects TO ledgerhook_app;
GRANT SELECT, INSERT, UPDATE ON coexist.prices, coexist.runs TO ledgerhook_app;
