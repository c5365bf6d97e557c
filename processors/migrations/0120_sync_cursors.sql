-- `ledgerhook sync`: where each listing of a provider's objects stands, so a killed sync resumes
-- where it stopped. One row per (provider, endpoint, object type). The row is updated in the
-- same transaction that appends the page's deliveries to the audit log, so the cursor never
-- runs ahead of (or behind) what was stored. `pending` holds the deliveries of the last stored
-- page until they are applied: a run that was killed in between applies them first.
CREATE TABLE processors.sync_cursors (
    provider             text        NOT NULL CHECK (provider IN ('stripe', 'chargebee')),
    endpoint             text        NOT NULL,
    object_type          text        NOT NULL,          -- the provider's list: customers, charges, transactions, ...
    status               text        NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    since                bigint,                        -- lower bound on creation time of this run (NULL: all)
    cursor               text,                          -- next page: Stripe's last object id, Chargebee's next_offset
    cursor_created       bigint,                        -- Stripe: `created` of the cursor object (if it disappears)
    total                bigint,                        -- objects the provider said the listing has, when it says
    pages                bigint      NOT NULL DEFAULT 0,
    listed               bigint      NOT NULL DEFAULT 0,
    stored               bigint      NOT NULL DEFAULT 0, -- new deliveries
    duplicates           bigint      NOT NULL DEFAULT 0, -- recorded duplicates: unchanged re-fetches
    pending              bigint[]    NOT NULL DEFAULT '{}',
    consecutive_failures integer     NOT NULL DEFAULT 0,
    last_error           text,                          -- class and status only; never a key or a body
    started_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    finished_at          timestamptz,
    PRIMARY KEY (provider, endpoint, object_type)
);
GRANT SELECT, INSERT, UPDATE ON processors.sync_cursors TO ledgerhook_app;
