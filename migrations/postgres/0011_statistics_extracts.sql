-- Statistics orders, part two: the operator role `statistician`, the statistics legal basis, and
-- the extracts with their files.

ALTER TABLE operators DROP CONSTRAINT operators_role_check;
ALTER TABLE operators ADD CONSTRAINT operators_role_check
    CHECK (role IN ('operator', 'auditor', 'ingest', 'statistician'));

-- The legal basis of statistics orders. The agency's page names "the exception" (undantaget) from
-- statistical confidentiality, applied restrictively and mainly to other statistics authorities with
-- an equivalent protection, with a confidentiality review of every order; it names no paragraph, so
-- the reference says what it is. Only state authorities may hold it.
INSERT INTO legal_bases (code, purpose, purpose_en, statute_reference, disclosure_basis, automated_basis, requires_consent, requires_open_case, valid_from, valid_to) VALUES
    ('STAT_INDIVIDUAL_DATA', 'Individdata för statistikändamål', 'Individual data for statistical purposes',
     'OSL (2009:400) 24 kap. 8 §: undantaget för statistikändamål, sekretessprövning per beställning',
     'OSL (2009:400) 24 kap. 8 §', '', FALSE, FALSE, '2009-06-30', NULL);
INSERT INTO legal_basis_party_kinds (basis_code, party_kind) VALUES ('STAT_INDIVIDUAL_DATA', 'STATE_AUTHORITY');
INSERT INTO legal_basis_benefits (basis_code, benefit_code)
    SELECT 'STAT_INDIVIDUAL_DATA', code FROM benefit_types;

-- An extract: produced as of one register sequence; its manifest (JSON, metadata only) outlives the
-- files. One row per order (producing again replaces it, until delivery).
CREATE TABLE statistics_extracts (
    order_id      TEXT PRIMARY KEY REFERENCES statistics_orders(order_id),
    sequence      BIGINT NOT NULL,
    manifest      TEXT NOT NULL,
    produced_at   BIGINT NOT NULL
);

-- The extract's files, stored in the database so that every replica serves them and a backup
-- holds them; deleted after the retention period.
CREATE TABLE statistics_files (
    order_id    TEXT NOT NULL REFERENCES statistics_orders(order_id),
    name        TEXT NOT NULL,
    media_type  TEXT NOT NULL,
    size_bytes  BIGINT NOT NULL,
    row_count   BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    PRIMARY KEY (order_id, name)
);

CREATE TABLE statistics_file_chunks (
    order_id  TEXT NOT NULL,
    name      TEXT NOT NULL,
    n         BIGINT NOT NULL,
    data      BYTEA NOT NULL,
    PRIMARY KEY (order_id, name, n),
    FOREIGN KEY (order_id, name) REFERENCES statistics_files(order_id, name)
);
