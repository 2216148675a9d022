-- Issue 16: each person's current state in one row, so that a delivery snapshot reads one row per
-- person instead of one per fact. `state` holds the person's latest person update and the latest
-- version of each of the person's benefit facts that is not retracted, each with its stored
-- encoding, in lefi's own layout (store::register::person_state); `seq` is the sequence of the
-- latest log row it includes.
--
-- Ingest writes the row in the transaction that appends the person's versions. On PostgreSQL a
-- trigger deletes a row that a writer of an older release (a replica during a rolling upgrade)
-- passed by; SQLite needs none: it has one server process, and an older lefi refuses to start on
-- a database a newer one migrated. A person without a row is read from register_current as
-- before, and the next ingest of theirs, or the next start (store::migrate), builds the row.
--
-- The table starts empty: the migration step after the SQL migrations builds the rows of the
-- persons already in the register, in transactions of 1,000 persons.
CREATE TABLE register_person_state (
    person  TEXT PRIMARY KEY,
    seq     BIGINT NOT NULL,
    state   BLOB NOT NULL
);
