-- Issue 16: the register's current state. One row per benefit fact and per person's source of
-- person data, holding its latest version (a retraction included, marked by its kind). A delivery
-- snapshot reads the rows it sends from here instead of every version in the log; a person any of
-- whose rows is newer than the snapshot's sequence is read from the log (see store::register). The
-- JSON body is kept only for rows without a stored encoding (person updates): encoded rows are sent
-- as stored.
--
-- A trigger on register_log keeps it, in the transaction that appends the versions, whoever
-- appends them: a replica of an older release that ingests during a rolling upgrade keeps it too.
-- (Migrate copies new encodings into it when it encodes the log again: store::register.)
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
    wire            BLOB,
    PRIMARY KEY (person, record_id)
) WITHOUT ROWID;
INSERT INTO register_current (person, record_id, seq, recorded_at, kind, benefit_type, fact_type,
                              valid_from, valid_to, topic, body, wire)
    SELECT person, record_id, seq, recorded_at, kind, benefit_type, fact_type, valid_from, valid_to,
           topic, CASE WHEN wire IS NULL THEN body END, wire
    FROM register_log
    WHERE seq IN (SELECT MAX(seq) FROM register_log GROUP BY person, record_id);

-- Once per appended row (SQLite has no statement triggers).
CREATE TRIGGER register_current_keep AFTER INSERT ON register_log
BEGIN
    INSERT INTO register_current (person, record_id, seq, recorded_at, kind, benefit_type, fact_type,
                              valid_from, valid_to, topic, body, wire)
    VALUES (NEW.person, NEW.record_id, NEW.seq, NEW.recorded_at, NEW.kind, NEW.benefit_type,
            NEW.fact_type, NEW.valid_from, NEW.valid_to, NEW.topic,
            CASE WHEN NEW.wire IS NULL THEN NEW.body END, NEW.wire)
    ON CONFLICT (person, record_id) DO UPDATE SET
            seq = excluded.seq, recorded_at = excluded.recorded_at, kind = excluded.kind,
            benefit_type = excluded.benefit_type, fact_type = excluded.fact_type,
            valid_from = excluded.valid_from, valid_to = excluded.valid_to, topic = excluded.topic,
            body = excluded.body, wire = excluded.wire
        WHERE excluded.seq > register_current.seq;
END;
