-- The benefit register: an append-only, commit-ordered log of fact versions (bitemporal: every
-- version has its business period `valid_from..valid_to` and is recorded at a register sequence),
-- with the current head of every fact and every person beside it.
-- Instants are BIGINT microseconds since the Unix epoch (UTC); business dates are TEXT 'YYYY-MM-DD';
-- money is integer öre inside the JSON bodies.

-- One row. Every ingest transaction updates it first, which serializes writers, so sequences
-- commit strictly in order: a reader never sees sequence N+1 before N. The counters feed the
-- operator statistics without scanning the log.
CREATE TABLE register_head (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq            BIGINT NOT NULL,
    last_recorded_at    BIGINT NOT NULL,
    person_count        BIGINT NOT NULL,
    fact_count          BIGINT NOT NULL,
    fact_version_count  BIGINT NOT NULL
);
INSERT INTO register_head (id, last_seq, last_recorded_at, person_count, fact_count, fact_version_count)
    VALUES (1, 0, 0, 0, 0, 0);

-- One row per accepted version, never updated or deleted. Person updates are rows too
-- (fact_type 'PERSON', record_id 'person:<source_system>', empty valid_from), so a delivery can
-- follow them in the same order. In SQLite, INTEGER PRIMARY KEY makes seq the rowid, and the
-- tables keyed by text below are WITHOUT ROWID (one b-tree less to write per row).
CREATE TABLE register_log (
    seq             INTEGER PRIMARY KEY,
    recorded_at     BIGINT NOT NULL,
    person          TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    version         BIGINT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('NEW', 'CORRECTION', 'RETRACTION')),
    retroactive     BOOLEAN NOT NULL,
    benefit_type    TEXT NOT NULL,
    fact_type       TEXT NOT NULL CHECK (fact_type IN ('CASE', 'PERIOD', 'DECISION', 'PAYMENT', 'EVENT', 'PERSON')),
    valid_from      TEXT NOT NULL,
    valid_to        TEXT,
    body            TEXT NOT NULL,
    source_system   TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    source_version  BIGINT NOT NULL,
    content_hash    TEXT NOT NULL
);
CREATE INDEX register_log_person ON register_log (person, seq);
CREATE INDEX register_log_record ON register_log (record_id, version);

-- The current head of every benefit fact: idempotency and "as of now".
CREATE TABLE register_records (
    record_id              TEXT PRIMARY KEY,
    source_system          TEXT NOT NULL,
    source_id              TEXT NOT NULL,
    person                 TEXT NOT NULL,
    latest_version         BIGINT NOT NULL,
    latest_seq             BIGINT NOT NULL,
    latest_source_version  BIGINT NOT NULL,
    retracted              BOOLEAN NOT NULL,
    UNIQUE (source_system, source_id)
) WITHOUT ROWID;

-- The current data of every person; its history is in register_log. created_seq is the sequence
-- of the first fact that named the person; latest_seq that of the latest person update (0 when
-- the person was created by a benefit fact and never updated).
CREATE TABLE register_persons (
    person              TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    protected_identity  BOOLEAN NOT NULL,
    date_of_death       TEXT,
    created_seq         BIGINT NOT NULL,
    latest_seq          BIGINT NOT NULL
) WITHOUT ROWID;

-- The latest version of a person's own data per source system (person updates are identified by
-- source system and person, not by a source id).
CREATE TABLE register_person_sources (
    person                 TEXT NOT NULL,
    source_system          TEXT NOT NULL,
    latest_version         BIGINT NOT NULL,
    latest_seq             BIGINT NOT NULL,
    latest_source_version  BIGINT NOT NULL,
    PRIMARY KEY (person, source_system)
) WITHOUT ROWID;

-- One row per ingest transaction, for the ingest rate in the operator statistics.
CREATE TABLE register_batches (
    last_seq     BIGINT PRIMARY KEY,
    recorded_at  BIGINT NOT NULL,
    accepted     BIGINT NOT NULL
);
CREATE INDEX register_batches_recorded_at ON register_batches (recorded_at);
