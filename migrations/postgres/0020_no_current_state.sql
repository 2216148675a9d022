-- Issue 16: the register no longer keeps register_current (migration 0017). Every person's current
-- state has its own row in register_person_state (0019), which ingest keeps in the transaction that
-- appends the person's versions; a person without one (or asked about as of an older sequence) is
-- read from the log. The statement trigger that kept the table cost a fifth of ingest's time. No
-- released version of lefi reads the table (0017 came after 0.1.0), so dropping it is safe for a
-- rolling upgrade from 0.1.0: its replicas neither read nor write it (what they append is handled
-- by 0019's trigger, which stays).
DROP TRIGGER register_current_keep ON register_log;
DROP FUNCTION register_current_keep();
DROP TABLE register_current;
