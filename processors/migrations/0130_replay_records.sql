-- `ledgerhook replay --rebuild` rebuilds everything processing derives from the log, not only
-- current state: each settled delivery's outcome, the history, the subscription changes (with
-- their MRR deltas) and the anomalies, so that `--compare` can check all of it against live.
-- Same columns, constraints and indexes as the live tables (the partial unique index
-- processed_event_once included: the rebuild may settle an event once, like live).
--
-- The `id` columns lose their default: LIKE would copy `nextval('processors.<t>_id_seq')` and the
-- rebuild would draw ids from the live sequences. The rebuild numbers its rows itself, in the
-- order it folds them (only their relative order means anything).
CREATE TABLE processors_replay.processed (LIKE processors.processed INCLUDING ALL);
CREATE TABLE processors_replay.history (LIKE processors.history INCLUDING ALL);
ALTER TABLE processors_replay.history ALTER COLUMN id DROP DEFAULT;
CREATE TABLE processors_replay.subscription_changes (LIKE processors.subscription_changes INCLUDING ALL);
ALTER TABLE processors_replay.subscription_changes ALTER COLUMN id DROP DEFAULT;
CREATE TABLE processors_replay.anomalies (LIKE processors.anomalies INCLUDING ALL);
ALTER TABLE processors_replay.anomalies ALTER COLUMN id DROP DEFAULT;

-- The application role empties and refills them, like the replay's state tables.
GRANT SELECT, INSERT, DELETE, TRUNCATE ON processors_replay.processed, processors_replay.history,
    processors_replay.subscription_changes, processors_replay.anomalies TO ledgerhook_app;
