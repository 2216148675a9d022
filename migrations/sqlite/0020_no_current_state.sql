-- Issue 16: SQLite no longer keeps register_current (migration 0017). Every person's current state
-- has its own row in register_person_state (0019), which ingest keeps in the transaction that
-- appends the person's versions; a person without one (or asked about as of an older sequence) is
-- read from the log. On SQLite nothing else can append to the log (one server process, and an
-- older lefi refuses a database a newer one migrated), so the per-row trigger that kept the table
-- only cost ingest time. PostgreSQL keeps it one release longer: a replica of the release before
-- 0019 reads it during a rolling upgrade.
DROP TRIGGER register_current_keep;
DROP TABLE register_current;
