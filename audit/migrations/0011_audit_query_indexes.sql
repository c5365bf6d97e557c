-- Indexes for the audit API's filters (audit.repository). Each filter alone is served by an index
-- whose trailing column is `id`, so a keyset page (`... AND id > $cursor ORDER BY id LIMIT n`)
-- reads only the rows it returns. Filters already covered by 0001: received_at, event_created,
-- event_type. (event_id, id) also serves (provider, account, event_id) lookups, and (object_id,
-- id) an object's timeline (provider and the event_created order applied to its few rows).
CREATE INDEX deliveries_event_id ON audit.deliveries (event_id, id);
CREATE INDEX deliveries_object_id ON audit.deliveries (object_id, id);
CREATE INDEX deliveries_endpoint ON audit.deliveries (endpoint, id);
-- Duplicates are the rare case: a partial index finds them without touching the rest.
CREATE INDEX deliveries_duplicates ON audit.deliveries (id) WHERE duplicate_of IS NOT NULL;
CREATE INDEX rejections_endpoint ON audit.rejections (provider, endpoint, id);
