-- Alert rule names in a table instead of a CHECK list on alerts.alerts.rule: adding a rule is one
-- INSERT in the migration that brings it (work on different rules no longer rewrites the same
-- constraint), and the names stay enforced by the foreign key. alerts.model.RULES must match:
-- tests store an alert of every rule it names.
CREATE TABLE alerts.rule_names (
    name text PRIMARY KEY
);
INSERT INTO alerts.rule_names (name) VALUES
    ('out_of_order'), ('missing_predecessor'), ('missing_event'), ('fetch_back_mismatch'),
    ('silence'), ('rejections'), ('processing'), ('integrity'),
    -- a provider's Events API failed during reconciliation (alerts.rules.reconciliation_failing)
    ('reconciliation_failing');

ALTER TABLE alerts.alerts
    DROP CONSTRAINT alerts_rule_check,
    ADD CONSTRAINT alerts_rule_known FOREIGN KEY (rule) REFERENCES alerts.rule_names (name);

GRANT SELECT ON alerts.rule_names TO ledgerhook_app;
