-- The admin service: onboarding and termination bookkeeping, the parties' audit log, and the
-- idempotency keys of mutating admin calls.
-- Instants are BIGINT microseconds since the Unix epoch (UTC); business dates are TEXT 'YYYY-MM-DD'.

-- The termination notice (uppsägning). `termination_effective` and `termination_override` (the
-- override reason) already exist; `state_before_termination` is where a withdrawal returns to.
ALTER TABLE parties ADD COLUMN termination_notice_received_on TEXT;
ALTER TABLE parties ADD COLUMN termination_scheduled_at BIGINT;
ALTER TABLE parties ADD COLUMN termination_scheduled_by TEXT;
ALTER TABLE parties ADD COLUMN state_before_termination TEXT;

-- Who recorded each signature, and when.
ALTER TABLE agreements ADD COLUMN party_signature_recorded_at BIGINT;
ALTER TABLE agreements ADD COLUMN party_signature_recorded_by TEXT;
ALTER TABLE agreements ADD COLUMN agency_signature_recorded_at BIGINT;
ALTER TABLE agreements ADD COLUMN agency_signature_recorded_by TEXT;

-- The operator who registered a certificate (NULL for certificates registered outside the admin API).
ALTER TABLE party_certificates ADD COLUMN added_by TEXT;

-- Every administrative action on a party, in the same transaction as the change. Append-only:
-- the triggers below refuse updates and deletes.
CREATE TABLE party_audit (
    entry_id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                    BIGINT NOT NULL,
    operator_name         TEXT NOT NULL,   -- '' for actions the server records itself
    operator_fingerprint  TEXT NOT NULL,   -- '' likewise
    action                TEXT NOT NULL CHECK (action IN ('APPLY', 'SEND_AGREEMENT', 'RECORD_SIGNATURE',
                              'ADD_CERTIFICATE', 'REVOKE_CERTIFICATE', 'SCHEDULE_TERMINATION',
                              'WITHDRAW_TERMINATION', 'TERMINATION_TOOK_EFFECT')),
    party_id              TEXT NOT NULL REFERENCES parties(party_id),
    before_state          TEXT,            -- NULL for APPLY: the party did not exist before
    after_state           TEXT NOT NULL,
    details               TEXT NOT NULL,   -- a JSON object
    idempotency_key       TEXT NOT NULL    -- '' for actions the server records itself
);
CREATE INDEX party_audit_party ON party_audit (party_id, entry_id);

CREATE FUNCTION party_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'party_audit is append-only';
END;
$$;
CREATE TRIGGER party_audit_no_change BEFORE UPDATE OR DELETE ON party_audit
    FOR EACH ROW EXECUTE FUNCTION party_audit_append_only();

-- Idempotency keys of mutating admin calls: a retry with the same key and the same request gets
-- the stored response; the same key with another request is refused. Kept as long as the audit log.
CREATE TABLE admin_idempotency (
    idempotency_key       TEXT PRIMARY KEY,
    method                TEXT NOT NULL,   -- the audit action, e.g. SEND_AGREEMENT
    request_hash          TEXT NOT NULL,   -- SHA-256 (hex) of the method and the request without its key
    operator_fingerprint  TEXT NOT NULL,
    party_id              TEXT,
    created_at            BIGINT NOT NULL,
    response              BYTEA NOT NULL   -- the encoded response, written in the same transaction
);
