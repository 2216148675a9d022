-- Issue 16: the register no longer keeps register_current (migration 0017). Every person's current
-- state has its own row in register_person_state (0019), which ingest keeps in the transaction that
-- appends the person's versions; a person without one (or asked about as of an older sequence) is
-- read from the log. The per-row trigger that kept the table only cost ingest time. No released
-- version of lefi reads the table (0017 came after 0.1.0), so dropping it is safe for any upgrade.
DROP TRIGGER register_current_keep;
DROP TABLE register_current;
