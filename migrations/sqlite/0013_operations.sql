-- Per-party limits set by an operator (NULL: the server's configured default), and the audit actions
-- that record each change and the agency's suspension, resumption and ending of subscriptions.
ALTER TABLE parties ADD COLUMN max_streams BIGINT CHECK (max_streams >= 1);
ALTER TABLE parties ADD COLUMN requests_per_second BIGINT CHECK (requests_per_second >= 1);
ALTER TABLE parties ADD COLUMN rate_burst BIGINT CHECK (rate_burst >= 1);

-- SQLite cannot change a CHECK constraint: party_audit is rebuilt with SET_LIMITS allowed, its rows,
-- index and append-only triggers as they were.
DROP TRIGGER party_audit_no_update;
DROP TRIGGER party_audit_no_delete;
CREATE TABLE party_audit_new (
    entry_id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at                    BIGINT NOT NULL,
    operator_name         TEXT NOT NULL,
    operator_fingerprint  TEXT NOT NULL,
    action                TEXT NOT NULL CHECK (action IN ('APPLY', 'SEND_AGREEMENT', 'RECORD_SIGNATURE',
                              'ADD_CERTIFICATE', 'REVOKE_CERTIFICATE', 'SCHEDULE_TERMINATION',
                              'WITHDRAW_TERMINATION', 'TERMINATION_TOOK_EFFECT', 'SET_LIMITS',
                              'SUSPEND_SUBSCRIPTIONS', 'RESUME_SUBSCRIPTIONS', 'END_SUBSCRIPTIONS')),
    party_id              TEXT NOT NULL REFERENCES parties(party_id),
    before_state          TEXT,
    after_state           TEXT NOT NULL,
    details               TEXT NOT NULL,
    idempotency_key       TEXT NOT NULL
);
INSERT INTO party_audit_new SELECT entry_id, at, operator_name, operator_fingerprint, action, party_id,
                                   before_state, after_state, details, idempotency_key
                            FROM party_audit;
DROP TABLE party_audit;
ALTER TABLE party_audit_new RENAME TO party_audit;
CREATE INDEX party_audit_party ON party_audit (party_id, entry_id);
CREATE TRIGGER party_audit_no_update BEFORE UPDATE ON party_audit
BEGIN
    SELECT RAISE(ABORT, 'party_audit is append-only');
END;
CREATE TRIGGER party_audit_no_delete BEFORE DELETE ON party_audit
BEGIN
    SELECT RAISE(ABORT, 'party_audit is append-only');
END;
