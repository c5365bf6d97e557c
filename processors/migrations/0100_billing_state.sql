-- Billing state (processors). Exactly-once is a database fact here:
--   * processors.processed has one row per delivery (primary key): a second run finds it;
--   * the partial unique index processed_event_once makes "an event applied twice" impossible:
--     at most one delivery of each (provider, account, event_id) has a terminal outcome.
-- State rows are never deleted (a `deleted` flag keeps history); history tables are append-only
-- for the application role (SELECT, INSERT only).

CREATE SCHEMA processors;
GRANT USAGE ON SCHEMA processors TO ledgerhook_app;

CREATE TABLE processors.processed (
    delivery_id  bigint      PRIMARY KEY,
    provider     text        NOT NULL,
    account      text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('applied','duplicate','stale','ignored','dead_letter')),
    object_type  text,
    object_id    text,
    change       jsonb,
    error        text,
    attempts     integer     NOT NULL DEFAULT 1,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX processed_event_once ON processors.processed (provider, account, event_id)
    WHERE outcome IN ('applied', 'stale', 'ignored');
CREATE INDEX processed_event ON processors.processed (provider, account, event_id);
CREATE INDEX processed_dead_letter ON processors.processed (delivery_id) WHERE outcome = 'dead_letter';
CREATE INDEX processed_at ON processors.processed (processed_at);

CREATE TABLE processors.anomalies (
    id            bigserial   PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('out_of_order', 'missing_predecessor')),
    provider      text        NOT NULL,
    account       text        NOT NULL,
    object_type   text        NOT NULL,
    object_id     text        NOT NULL,
    delivery_id   bigint      NOT NULL,
    event_type    text        NOT NULL,
    event_created bigint      NOT NULL,
    detail        jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anomalies_created ON processors.anomalies (created_at);
CREATE INDEX anomalies_object ON processors.anomalies (provider, account, object_type, object_id);

-- Every update an event made (or would have made, when stale) to every object, with its delivery.
CREATE TABLE processors.history (
    id          bigserial   PRIMARY KEY,
    provider    text        NOT NULL,
    account     text        NOT NULL,
    object_type text        NOT NULL,
    object_id   text        NOT NULL,
    delivery_id bigint      NOT NULL,
    event_type  text        NOT NULL,
    version     text        NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('applied', 'stale', 'unchanged')),
    change      jsonb       NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_object ON processors.history (provider, account, object_type, object_id, id);
CREATE INDEX history_delivery ON processors.history (delivery_id);

CREATE TABLE processors.subscription_changes (
    id              bigserial   PRIMARY KEY,
    provider        text        NOT NULL,
    account         text        NOT NULL,
    subscription_id text        NOT NULL,
    delivery_id     bigint      NOT NULL,
    event_type      text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('created','upgraded','downgraded','quantity_changed',
                                                         'plan_switched','canceled','reactivated','renewed',
                                                         'paused','resumed')),
    mrr_before      bigint      NOT NULL,
    mrr_after       bigint      NOT NULL,
    mrr_delta       bigint      NOT NULL,
    currency        text,
    version         text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscription_changes_sub ON processors.subscription_changes (provider, account, subscription_id, id);

-- Current state. `data` is the neutral snapshot (processors.model), the money columns repeat its
-- integer amounts for SQL. `version` is the ordering key (text, fixed width; see transitions).
CREATE TABLE processors.customers (
    provider text NOT NULL, account text NOT NULL, id text NOT NULL,
    status text, customer_id text, currency text,
    email text, name text,
    data jsonb NOT NULL, version text NOT NULL, deleted boolean NOT NULL DEFAULT false,
    last_delivery_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account, id)
);
CREATE TABLE processors.subscriptions (
    provider text NOT NULL, account text NOT NULL, id text NOT NULL,
    status text, customer_id text, currency text,
    mrr bigint NOT NULL DEFAULT 0, current_period_start bigint, current_period_end bigint,
    trial_end bigint, cancel_at_period_end boolean NOT NULL DEFAULT false,
    canceled_at bigint, ended_at bigint,
    data jsonb NOT NULL, version text NOT NULL, deleted boolean NOT NULL DEFAULT false,
    last_delivery_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account, id)
);
CREATE TABLE processors.invoices (
    provider text NOT NULL, account text NOT NULL, id text NOT NULL,
    status text, customer_id text, currency text,
    subscription_id text, total bigint NOT NULL DEFAULT 0, amount_paid bigint NOT NULL DEFAULT 0,
    amount_due bigint NOT NULL DEFAULT 0,
    data jsonb NOT NULL, version text NOT NULL, deleted boolean NOT NULL DEFAULT false,
    last_delivery_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account, id)
);
CREATE TABLE processors.payments (
    provider text NOT NULL, account text NOT NULL, id text NOT NULL,
    status text, customer_id text, currency text,
    kind text, invoice_id text, amount bigint NOT NULL DEFAULT 0, amount_refunded bigint NOT NULL DEFAULT 0,
    data jsonb NOT NULL, version text NOT NULL, deleted boolean NOT NULL DEFAULT false,
    last_delivery_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account, id)
);
CREATE TABLE processors.refunds (
    provider text NOT NULL, account text NOT NULL, id text NOT NULL,
    status text, customer_id text, currency text,
    payment_id text, amount bigint NOT NULL DEFAULT 0,
    data jsonb NOT NULL, version text NOT NULL, deleted boolean NOT NULL DEFAULT false,
    last_delivery_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account, id)
);
CREATE TABLE processors.credit_notes (
    provider text NOT NULL, account text NOT NULL, id text NOT NULL,
    status text, customer_id text, currency text,
    invoice_id text, total bigint NOT NULL DEFAULT 0,
    data jsonb NOT NULL, version text NOT NULL, deleted boolean NOT NULL DEFAULT false,
    last_delivery_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, account, id)
);
CREATE INDEX customers_email ON processors.customers (email);
CREATE INDEX subscriptions_customer ON processors.subscriptions (provider, account, customer_id);
CREATE INDEX subscriptions_status ON processors.subscriptions (status, provider, account, id);
CREATE INDEX invoices_customer ON processors.invoices (provider, account, customer_id);
CREATE INDEX invoices_status ON processors.invoices (status, provider, account, id);
CREATE INDEX payments_customer ON processors.payments (provider, account, customer_id);
CREATE INDEX refunds_payment ON processors.refunds (provider, account, payment_id);
CREATE INDEX credit_notes_customer ON processors.credit_notes (provider, account, customer_id);

-- The sweeper's low watermark: every delivery id <= upto has a processed row (ids are gap-free and
-- commit in order, see audit.chain), so the anti-join only scans the tail of the log.
CREATE TABLE processors.sweep_watermark (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    upto      bigint  NOT NULL
);
INSERT INTO processors.sweep_watermark (upto) VALUES (0);

GRANT SELECT, INSERT, UPDATE ON processors.customers, processors.subscriptions, processors.invoices,
    processors.payments, processors.refunds, processors.credit_notes TO ledgerhook_app;
GRANT SELECT, INSERT, UPDATE ON processors.processed TO ledgerhook_app;
GRANT SELECT, INSERT ON processors.anomalies, processors.history, processors.subscription_changes TO ledgerhook_app;
GRANT SELECT, UPDATE ON processors.sweep_watermark TO ledgerhook_app;
GRANT USAGE ON SEQUENCE processors.anomalies_id_seq, processors.history_id_seq,
    processors.subscription_changes_id_seq TO ledgerhook_app;

-- `ledgerhook replay --rebuild` writes here: the same state tables, rebuilt from the audit log.
-- The application role may empty and refill them (and nothing else may read them as live state).
CREATE SCHEMA processors_replay;
GRANT USAGE ON SCHEMA processors_replay TO ledgerhook_app;
CREATE TABLE processors_replay.customers (LIKE processors.customers INCLUDING ALL);
CREATE TABLE processors_replay.subscriptions (LIKE processors.subscriptions INCLUDING ALL);
CREATE TABLE processors_replay.invoices (LIKE processors.invoices INCLUDING ALL);
CREATE TABLE processors_replay.payments (LIKE processors.payments INCLUDING ALL);
CREATE TABLE processors_replay.refunds (LIKE processors.refunds INCLUDING ALL);
CREATE TABLE processors_replay.credit_notes (LIKE processors.credit_notes INCLUDING ALL);
GRANT SELECT, INSERT, DELETE, TRUNCATE ON processors_replay.customers, processors_replay.subscriptions,
    processors_replay.invoices, processors_replay.payments, processors_replay.refunds,
    processors_replay.credit_notes TO ledgerhook_app;
