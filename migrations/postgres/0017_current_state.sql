-- Issue 16: the register's current state. One row per benefit fact and per person's source of
-- person data, holding its latest version (a retraction included, marked by its kind), kept by
-- every ingest in the same transaction as the log rows. A delivery snapshot reads the rows it
-- sends from here instead of every version in the log; a person any of whose rows is newer than
-- the snapshot's sequence is read from the log (see store::register). The JSON body is kept only
-- for rows without a stored encoding (person updates): encoded rows are sent as stored.
CREATE TABLE register_current (
    person          TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    recorded_at     BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    benefit_type    TEXT NOT NULL,
    fact_type       TEXT NOT NULL,
    valid_from      TEXT NOT NULL,
    valid_to        TEXT,
    topic           TEXT NOT NULL,
    body            TEXT,
    wire            BYTEA,
    PRIMARY KEY (person, record_id)
);
INSERT INTO register_current (person, record_id, seq, recorded_at, kind, benefit_type, fact_type,
                              valid_from, valid_to, topic, body, wire)
    SELECT person, record_id, seq, recorded_at, kind, benefit_type, fact_type, valid_from, valid_to,
           topic, CASE WHEN wire IS NULL THEN body END, wire
    FROM register_log
    WHERE seq IN (SELECT MAX(seq) FROM register_log GROUP BY person, record_id);
