-- Issue 16: the trigger of 0019 goes. It deleted a person's register_person_state row when a
-- version of theirs was appended without it, which only a replica of 0.1.0 (knowing nothing of
-- the table) could do during a rolling upgrade. Since 0021 an upgrade from 0.1.0 stops every
-- replica before migrating (docs/OPERATIONS.md), and a 0.1.0 binary refuses to start on a
-- database with migrations it does not know, so no such writer can append beside this release:
-- ingest keeps every row in the transaction that appends its person's versions. The trigger's
-- transition table copied every appended log row (about a tenth of PostgreSQL's ingest time).
DROP TRIGGER register_person_state_drop_stale ON register_log;
DROP FUNCTION register_person_state_drop_stale();
