-- Issue 16: each person's current state in one row, so that a delivery snapshot reads one row per
-- person instead of one per fact. `state` holds the person's latest person update and the latest
-- version of each of the person's benefit facts that is not retracted, each with its stored
-- encoding, in lefi's own layout (store::register::person_state); `seq` is the sequence of the
-- latest log row it includes.
--
-- Ingest writes the row in the transaction that appends the person's versions. A row that does
-- not include every version of its person is never kept: the trigger below deletes it when a log
-- row newer than it is appended without it (by a replica of an older release during a rolling
-- upgrade, which knows nothing of this table). A person without a row is read from
-- register_current as before, and the next ingest of theirs, or the next start (store::migrate),
-- builds the row again.
--
-- The table starts empty: the migration step after the SQL migrations builds the rows of the
-- persons already in the register, in transactions of 1,000 persons.
CREATE TABLE register_person_state (
    person  TEXT PRIMARY KEY,
    seq     BIGINT NOT NULL,
    state   BYTEA NOT NULL
);
-- A state is a few kB and is rewritten at every ingest of its person: keep it in the row up to a
-- page (no TOAST chunks to write and read back), and never compress it (the encodings are dense,
-- and each write would pay for it).
ALTER TABLE register_person_state ALTER COLUMN state SET STORAGE EXTERNAL;
ALTER TABLE register_person_state SET (toast_tuple_target = 8160);

CREATE FUNCTION register_person_state_drop_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM register_person_state s
        USING (SELECT person, MAX(seq) AS seq FROM appended GROUP BY person) a
        WHERE s.person = a.person AND s.seq < a.seq;
    RETURN NULL;
END
$$;
CREATE TRIGGER register_person_state_drop_stale AFTER INSERT ON register_log
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION register_person_state_drop_stale();
