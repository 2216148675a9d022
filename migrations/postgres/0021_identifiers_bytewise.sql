-- Issue 16: identifiers compare byte by byte. The columns that hold a personal identity number, a
-- record id or a source system's key are compared at every ingest (each fact's key is looked up and
-- inserted into unique indexes) and every delivery (subscriptions joined with the log by person).
-- Under the database's default collation (often a libc locale such as C.UTF-8 or sv_SE.UTF-8)
-- every such comparison goes through strcoll; under "C" it is a memcmp, as in SQLite, whose
-- default is bytewise too. These columns are compared for equality, and ordered only where they
-- hold digits (persons) or lefi's own fixed-form ids, whose order is the same under every
-- collation, so no query's answer changes.
--
-- Every column of these names changes in the same step: a join between two columns of different
-- non-default collations has no collation to compare with, and PostgreSQL would refuse it. Names,
-- texts and party ids keep the database's collation.
--
-- Changing a column's collation rebuilds the indexes on it under an exclusive lock of its table (the
-- rows stay as they are): about a second for 347,305 register versions on the benchmark machine.
-- Not additive for a rolling upgrade: a statement a running server has prepared that returns one of
-- these columns fails ("cached plan must not change result type") on that connection for as long
-- as the connection lives. Stop every replica, migrate, start the new release (docs/OPERATIONS.md).
ALTER TABLE register_log
    ALTER COLUMN person TYPE TEXT COLLATE "C",
    ALTER COLUMN record_id TYPE TEXT COLLATE "C",
    ALTER COLUMN source_system TYPE TEXT COLLATE "C",
    ALTER COLUMN source_id TYPE TEXT COLLATE "C";
ALTER TABLE register_records
    ALTER COLUMN record_id TYPE TEXT COLLATE "C",
    ALTER COLUMN source_system TYPE TEXT COLLATE "C",
    ALTER COLUMN source_id TYPE TEXT COLLATE "C",
    ALTER COLUMN person TYPE TEXT COLLATE "C";
ALTER TABLE register_persons ALTER COLUMN person TYPE TEXT COLLATE "C";
ALTER TABLE register_person_sources
    ALTER COLUMN person TYPE TEXT COLLATE "C",
    ALTER COLUMN source_system TYPE TEXT COLLATE "C";
ALTER TABLE register_person_state ALTER COLUMN person TYPE TEXT COLLATE "C";
ALTER TABLE subscriptions ALTER COLUMN person TYPE TEXT COLLATE "C";
ALTER TABLE consents ALTER COLUMN person TYPE TEXT COLLATE "C";
ALTER TABLE disclosure_log ALTER COLUMN person TYPE TEXT COLLATE "C";
ALTER TABLE statistics_population ALTER COLUMN person TYPE TEXT COLLATE "C";
