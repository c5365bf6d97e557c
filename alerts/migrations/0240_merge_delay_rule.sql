-- Committed deliveries not integrated into the Merkle tree in time (audit.sequencer,
-- alerts.rules.merge_delay).
INSERT INTO alerts.rule_names (name) VALUES ('merge_delay') ON CONFLICT DO NOTHING;
