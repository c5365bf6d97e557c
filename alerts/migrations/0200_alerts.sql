-- Alerts for on-call: the alert rows, their append-only status history, the notification outbox,
-- and the tracking rows that tell the sweeps what they have already looked at.

CREATE SCHEMA alerts;
GRANT USAGE ON SCHEMA alerts TO ledgerhook_app;

CREATE FUNCTION alerts.forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'alerts table %.% is append-only: % is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- One row per incident. While an alert is not resolved, the same (rule, subject) updates it
-- (the partial unique index makes that a database fact); once resolved, a new firing opens a new row.
CREATE TABLE alerts.alerts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule            text        NOT NULL CHECK (rule IN ('out_of_order', 'missing_predecessor',
                                    'missing_event', 'fetch_back_mismatch', 'silence', 'rejections',
                                    'processing', 'integrity')),
    severity        text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    provider        text,
    subject         text        NOT NULL,
    summary         text        NOT NULL,
    status          text        NOT NULL DEFAULT 'open'
                                CHECK (status IN ('open', 'acknowledged', 'resolved')),
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    count           bigint      NOT NULL DEFAULT 1 CHECK (count >= 1),
    delivery_ids    bigint[]    NOT NULL DEFAULT '{}',   -- linked deliveries (capped, newest kept)
    evidence        jsonb       NOT NULL DEFAULT '{}',
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_by     text,
    resolution      text        CHECK (resolution IN ('manual', 'auto')),
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE UNIQUE INDEX alerts_active_subject ON alerts.alerts (rule, subject) WHERE status <> 'resolved';
CREATE INDEX alerts_status_id ON alerts.alerts (status, id);
CREATE INDEX alerts_rule_id ON alerts.alerts (rule, id);

-- Every status change, who made it (a token name, or 'system') and why. Append-only.
CREATE TABLE alerts.alert_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint      NOT NULL REFERENCES alerts.alerts (id),
    at          timestamptz NOT NULL,
    actor       text        NOT NULL,
    from_status text,
    to_status   text        NOT NULL CHECK (to_status IN ('open', 'acknowledged', 'resolved')),
    note        text
);
CREATE INDEX alert_events_alert ON alerts.alert_events (alert_id, id);
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON alerts.alert_events
    FOR EACH ROW EXECUTE FUNCTION alerts.forbid_change();
CREATE TRIGGER forbid_truncate BEFORE TRUNCATE ON alerts.alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION alerts.forbid_change();

-- Outbox: written in the transaction that changes the alert, delivered by the sweep with retries.
CREATE TABLE alerts.notifications (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id        bigint      NOT NULL REFERENCES alerts.alerts (id),
    channel         text        NOT NULL CHECK (channel IN ('sentry', 'slack', 'pagerduty')),
    action          text        NOT NULL CHECK (action IN ('trigger', 'acknowledge', 'resolve')),
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text,                -- status code or exception class; never a URL or key
    UNIQUE (alert_id, channel, action)
);
CREATE INDEX notifications_due ON alerts.notifications (next_attempt_at) WHERE delivered_at IS NULL;

-- Anomalies the sweep has turned into findings. processors.anomalies.id is a plain sequence
-- (ids commit out of order), so the sweep anti-joins against this table instead of tailing ids.
CREATE TABLE alerts.seen_anomalies (
    anomaly_id bigint      PRIMARY KEY,
    seen_at    timestamptz NOT NULL
);

-- Deliveries whose Chargebee event was fetched back and compared.
CREATE TABLE alerts.fetch_back_checks (
    delivery_id  bigint      PRIMARY KEY,
    checked_at   timestamptz NOT NULL,
    outcome      text        NOT NULL CHECK (outcome IN ('match', 'mismatch', 'not_found')),
    delivered_sha256 text,
    fetched_sha256   text
);

-- Named positions and first-observation times of the sweeps (e.g. the processed low-water mark;
-- audit.deliveries ids are gap-free and commit in order, so a position there is safe).
CREATE TABLE alerts.cursors (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

GRANT SELECT, INSERT, UPDATE ON alerts.alerts, alerts.notifications, alerts.cursors TO ledgerhook_app;
GRANT SELECT, INSERT ON alerts.alert_events, alerts.seen_anomalies, alerts.fetch_back_checks TO ledgerhook_app;
