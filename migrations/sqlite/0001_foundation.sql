-- The legal-basis and benefit catalogues, parties, agreements, certificates and operators.
-- Instants are BIGINT microseconds since the Unix epoch (UTC); business dates are TEXT 'YYYY-MM-DD'.

-- Benefit types (förmåner). Data, not code: new types arrive by migration.
CREATE TABLE benefit_types (
    code        TEXT PRIMARY KEY,
    name_sv     TEXT NOT NULL,
    name_en     TEXT NOT NULL,
    agency      TEXT NOT NULL,
    valid_from  TEXT NOT NULL,
    valid_to    TEXT
);

-- Legal bases a request may invoke. Paragraph numbers live here and nowhere in code.
CREATE TABLE legal_bases (
    code                TEXT PRIMARY KEY,
    purpose             TEXT NOT NULL,
    purpose_en          TEXT NOT NULL,
    statute_reference   TEXT NOT NULL,
    disclosure_basis    TEXT NOT NULL,
    automated_basis     TEXT NOT NULL,
    requires_consent    BOOLEAN NOT NULL,
    requires_open_case  BOOLEAN NOT NULL,
    valid_from          TEXT NOT NULL,
    valid_to            TEXT
);

CREATE TABLE legal_basis_party_kinds (
    basis_code  TEXT NOT NULL REFERENCES legal_bases(code),
    party_kind  TEXT NOT NULL CHECK (party_kind IN ('INSURER', 'STATE_AUTHORITY', 'MUNICIPAL_AUTHORITY')),
    PRIMARY KEY (basis_code, party_kind)
);

CREATE TABLE legal_basis_benefits (
    basis_code    TEXT NOT NULL REFERENCES legal_bases(code),
    benefit_code  TEXT NOT NULL REFERENCES benefit_types(code),
    PRIMARY KEY (basis_code, benefit_code)
);

-- Parties: insurers and authorities, from application (anmälan) to termination (uppsägning).
CREATE TABLE parties (
    party_id               TEXT PRIMARY KEY,
    org_number             TEXT NOT NULL,
    name                   TEXT NOT NULL,
    kind                   TEXT NOT NULL CHECK (kind IN ('INSURER', 'STATE_AUTHORITY', 'MUNICIPAL_AUTHORITY')),
    state                  TEXT NOT NULL CHECK (state IN ('APPLIED', 'AGREEMENT_SENT', 'SIGNED', 'CONNECTED', 'TERMINATION_SCHEDULED', 'TERMINATED')),
    contact_name           TEXT NOT NULL,
    contact_email          TEXT NOT NULL,
    requested_bases        TEXT NOT NULL,
    requested_benefits     TEXT NOT NULL,
    applied_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    termination_effective  TEXT,
    termination_override   TEXT
);
-- At most one party that is not terminated per organisation number.
CREATE UNIQUE INDEX parties_live_org_number ON parties (org_number) WHERE state <> 'TERMINATED';

-- Agreements: an avtal (insurers) or an överenskommelse (authorities).
CREATE TABLE agreements (
    agreement_id        TEXT PRIMARY KEY,
    party_id            TEXT NOT NULL REFERENCES parties(party_id),
    agreement_type      TEXT NOT NULL CHECK (agreement_type IN ('AVTAL', 'OVERENSKOMMELSE')),
    valid_from          TEXT NOT NULL,
    notice_period_days  BIGINT,
    sent_at             BIGINT NOT NULL,
    party_signed_by     TEXT,
    party_signed_on     TEXT,
    agency_signed_by    TEXT,
    agency_signed_on    TEXT
);
CREATE INDEX agreements_party ON agreements (party_id);

CREATE TABLE agreement_bases (
    agreement_id  TEXT NOT NULL REFERENCES agreements(agreement_id),
    basis_code    TEXT NOT NULL REFERENCES legal_bases(code),
    PRIMARY KEY (agreement_id, basis_code)
);

CREATE TABLE agreement_benefits (
    agreement_id  TEXT NOT NULL REFERENCES agreements(agreement_id),
    benefit_code  TEXT NOT NULL REFERENCES benefit_types(code),
    PRIMARY KEY (agreement_id, benefit_code)
);

-- Client certificates registered for parties (technical connection). Identity is the SHA-256
-- fingerprint of the leaf certificate.
CREATE TABLE party_certificates (
    fingerprint    TEXT PRIMARY KEY,
    party_id       TEXT NOT NULL REFERENCES parties(party_id),
    subject        TEXT NOT NULL,
    serial         TEXT NOT NULL,
    not_before     BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    added_at       BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoke_reason  TEXT
);
CREATE INDEX party_certificates_party ON party_certificates (party_id);

-- Operators at the agency, identified by their certificate's fingerprint.
CREATE TABLE operators (
    fingerprint  TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('operator', 'auditor', 'ingest')),
    added_at     BIGINT NOT NULL,
    revoked_at   BIGINT
);

-- Seed: benefit types seen in LEFI Online's data description (see DOMAIN.md).
INSERT INTO benefit_types (code, name_sv, name_en, agency, valid_from, valid_to) VALUES
    ('SJP', 'Sjukpenning (inkl. ersättning för karens)', 'Sickness benefit (incl. qualifying-day compensation)', 'FK', '2011-01-01', NULL),
    ('RP',  'Rehabiliteringspenning', 'Rehabilitation benefit', 'FK', '2011-01-01', NULL),
    ('SA',  'Sjukersättning / aktivitetsersättning', 'Sickness or activity compensation', 'FK', '2011-01-01', NULL),
    ('FP',  'Föräldrapenning', 'Parental benefit', 'FK', '2011-01-01', NULL),
    ('TFP', 'Tillfällig föräldrapenning', 'Temporary parental benefit', 'FK', '2011-01-01', NULL),
    ('GP',  'Graviditetspenning', 'Pregnancy benefit', 'FK', '2011-01-01', NULL),
    ('NP',  'Närståendepenning', 'Care-of-closely-related-person benefit', 'FK', '2011-01-01', NULL),
    ('SMB', 'Smittbärarpenning', 'Disease-carrier benefit', 'FK', '2011-01-01', NULL),
    ('ASL', 'Arbetsskadelivränta', 'Occupational-injury annuity', 'FK', '2011-01-01', NULL),
    ('AKS', 'Aktivitetsstöd', 'Activity support', 'FK', '2011-01-01', NULL),
    ('BB',  'Barnbidrag', 'Child allowance', 'FK', '2011-01-01', NULL),
    ('BOB', 'Bostadsbidrag', 'Housing allowance', 'FK', '2011-01-01', NULL),
    ('UHS', 'Underhållsstöd', 'Maintenance support', 'FK', '2011-01-01', NULL),
    ('OMV', 'Omvårdnadsbidrag', 'Care allowance', 'FK', '2019-01-01', NULL),
    ('MKE', 'Merkostnadsersättning', 'Additional-cost compensation', 'FK', '2019-01-01', NULL),
    ('AP',  'Ålderspension', 'Old-age pension', 'PM', '2011-01-01', NULL),
    ('EP',  'Efterlevandepension', 'Survivor''s pension', 'PM', '2011-01-01', NULL),
    ('BTP', 'Bostadstillägg för pensionärer', 'Housing supplement for pensioners', 'PM', '2011-01-01', NULL);

-- Seed: legal bases named on the agency's page (see DOMAIN.md for the 2024 renumbering caveat).
INSERT INTO legal_bases (code, purpose, purpose_en, statute_reference, disclosure_basis, automated_basis, requires_consent, requires_open_case, valid_from, valid_to) VALUES
    ('INS_COORDINATION', 'Samordning', 'Coordination of payouts', 'SFB 110 kap. 39 §; SFB 114 kap. 24 § och 9 §', 'SFB 110 kap. 39 §', 'SFB 114 kap. 24 § och 9 §', FALSE, FALSE, '2011-01-01', NULL),
    ('INS_RISK_ASSESSMENT', 'Riskbedömning', 'Risk assessment', 'SFB 114 kap. 24 §', '', 'SFB 114 kap. 24 §', TRUE, FALSE, '2011-01-01', NULL),
    ('INS_PENSION_FORECAST', 'Pensionsprognos', 'Pension forecast', 'SFB 114 kap. 25 §', '', 'SFB 114 kap. 25 §', TRUE, FALSE, '2011-01-01', NULL),
    ('INS_CLAIMS', 'Skadereglering', 'Claims settlement', 'SFB 114 kap. 26 §', '', 'SFB 114 kap. 26 §', TRUE, FALSE, '2011-01-01', NULL),
    ('AUTH_DUTY_1980_995', 'Uppgiftsskyldighet till andra myndigheter', 'Duty to provide information to other authorities', 'förordning (1980:995) 2 och 3 §§; SFB 110 kap. 24 § och 8 §', 'förordning (1980:995) 2 och 3 §§', 'SFB 110 kap. 24 § och 8 § (as published)', FALSE, TRUE, '1980-01-01', NULL),
    ('AUTH_SOCIAL_SERVICES', 'Socialtjänst, t.ex. ekonomiskt bistånd', 'Social services, e.g. financial assistance', 'förordning (2008:975) 3 §', 'förordning (2008:975) 3 §', 'SFB 110 kap. 24 § och 8 § (as published)', FALSE, TRUE, '2009-01-01', NULL),
    ('AUTH_CHILD_CARE_ALLOWANCE', 'Kommunalt vårdnadsbidrag', 'Municipal child-care allowance (abolished 2016)', 'förordning (2009:555) 2 §', 'förordning (2009:555) 2 §', 'SFB 110 kap. 24 § och 8 § (as published)', FALSE, TRUE, '2009-07-01', '2015-12-31');

INSERT INTO legal_basis_party_kinds (basis_code, party_kind) VALUES
    ('INS_COORDINATION', 'INSURER'),
    ('INS_RISK_ASSESSMENT', 'INSURER'),
    ('INS_PENSION_FORECAST', 'INSURER'),
    ('INS_CLAIMS', 'INSURER'),
    ('AUTH_DUTY_1980_995', 'STATE_AUTHORITY'),
    ('AUTH_DUTY_1980_995', 'MUNICIPAL_AUTHORITY'),
    ('AUTH_SOCIAL_SERVICES', 'MUNICIPAL_AUTHORITY'),
    ('AUTH_CHILD_CARE_ALLOWANCE', 'MUNICIPAL_AUTHORITY');

-- Which benefits each basis covers is not published: every basis covers every type, and the
-- agreement narrows what a party receives.
INSERT INTO legal_basis_benefits (basis_code, benefit_code)
    SELECT b.code, t.code FROM legal_bases b CROSS JOIN benefit_types t;
