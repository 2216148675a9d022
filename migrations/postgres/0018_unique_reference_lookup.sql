-- CreateSubscriptions' lookup of a batch's client references by the combined key (migration 0007)
-- still scanned every subscription for each 500 references on a table not yet analyzed (a new
-- database's first bulk load: about 1 s per 500 at 100,000 subscriptions, until autovacuum's
-- ANALYZE): without statistics, PostgreSQL takes each of 500 values to match 0.5 % of the rows,
-- which is all of them. A unique index tells it that each value matches at most one row, with or
-- without statistics. The key is unique: party ids never contain a space, and (party_id,
-- client_reference) is unique.
DROP INDEX subscriptions_reference_lookup;
CREATE UNIQUE INDEX subscriptions_reference_lookup ON subscriptions ((party_id || ' ' || client_reference));
