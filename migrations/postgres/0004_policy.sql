-- Consents, case references, and the hash-chained disclosure log.

-- Consents (samtycken) registered by parties. Evaluated at every request and delivery.
CREATE TABLE consents (
    consent_id          TEXT PRIMARY KEY,
    party_id            TEXT NOT NULL REFERENCES parties(party_id),
    person              TEXT NOT NULL,
    basis_code          TEXT NOT NULL REFERENCES legal_bases(code),
    given_on            TEXT NOT NULL,
    expires_on          TEXT NOT NULL,
    evidence_reference  TEXT NOT NULL,
    registered_at       BIGINT NOT NULL,
    revoked_at          BIGINT,
    revocation_reason   TEXT,
    revoked_by_agency   BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (party_id, person, basis_code, evidence_reference)
);
CREATE INDEX consents_party_registered ON consents (party_id, registered_at);
CREATE INDEX consents_person ON consents (person);

-- Case references (ärenden) an authority has named; open until closed, closing is final.
CREATE TABLE party_cases (
    party_id        TEXT NOT NULL REFERENCES parties(party_id),
    case_reference  TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('OPEN', 'CLOSED')),
    first_used_at   BIGINT NOT NULL,
    last_used_at    BIGINT NOT NULL,
    closed_at       BIGINT,
    close_reason    TEXT,
    PRIMARY KEY (party_id, case_reference)
);

-- The disclosure log: every decision and disclosure, append-only and hash-chained.
CREATE TABLE disclosure_log (
    entry_id          BIGINT PRIMARY KEY,
    at                BIGINT NOT NULL,
    party_id          TEXT NOT NULL,
    party_org_number  TEXT NOT NULL,
    system_identity   TEXT NOT NULL,
    operator_name     TEXT NOT NULL,
    channel           TEXT NOT NULL,
    rpc               TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    decision          TEXT NOT NULL CHECK (decision IN ('ALLOWED', 'DENIED')),
    denial_reason     TEXT NOT NULL,
    legal_basis       TEXT NOT NULL,
    purpose           TEXT NOT NULL,
    case_reference    TEXT NOT NULL,
    consent_id        TEXT NOT NULL,
    subscription_id   TEXT NOT NULL,
    person            TEXT NOT NULL,
    benefit_types     TEXT NOT NULL,
    period_from       TEXT NOT NULL,
    period_to         TEXT NOT NULL,
    record_count      BIGINT NOT NULL,
    from_sequence     BIGINT NOT NULL,
    to_sequence       BIGINT NOT NULL,
    previous_hash     TEXT NOT NULL,
    hash              TEXT NOT NULL
);
CREATE INDEX disclosure_log_person ON disclosure_log (person, at);
CREATE INDEX disclosure_log_party ON disclosure_log (party_id, at);

-- The head of the chain: one row, updated in every append (its row lock orders appends).
CREATE TABLE disclosure_chain_head (
    id             BIGINT PRIMARY KEY CHECK (id = 1),
    last_entry_id  BIGINT NOT NULL,
    last_hash      TEXT NOT NULL
);
INSERT INTO disclosure_chain_head (id, last_entry_id, last_hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
