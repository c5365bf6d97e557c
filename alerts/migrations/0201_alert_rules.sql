-- The rules an alert may name, as rows instead of a CHECK list: a package that adds a rule adds
-- its name here in its own migration (INSERT ... ON CONFLICT DO NOTHING), without rewriting a
-- constraint every other package's rules also live in.
CREATE TABLE alerts.rules (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z_]{1,62}$')
);
INSERT INTO alerts.rules (name) VALUES
    ('out_of_order'), ('missing_predecessor'), ('missing_event'), ('fetch_back_mismatch'),
    ('silence'), ('rejections'), ('processing'), ('integrity'),
    ('merge_delay');  -- committed deliveries not integrated into the tree in time (audit.sequencer)
ALTER TABLE alerts.alerts DROP CONSTRAINT alerts_rule_check;
ALTER TABLE alerts.alerts ADD CONSTRAINT alerts_rule_known FOREIGN KEY (rule) REFERENCES alerts.rules (name);
GRANT SELECT ON alerts.rules TO ledgerhook_app;
