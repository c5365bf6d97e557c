-- The coexistence rules (alerts.coexist) may raise alerts: their names join alerts.rule_names
-- (migration 0210), which alerts.alerts.rule references.
INSERT INTO alerts.rule_names (name) VALUES
    ('coexist_double_billing'), ('coexist_both_active'), ('coexist_wrong_side'), ('coexist_orphan')
ON CONFLICT DO NOTHING;
