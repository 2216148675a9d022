//! Values the store returns and accepts. They hold domain types, never sqlx or proto types.

use time::Date;

use crate::domain::clock::Micros;
use crate::domain::party::AgreementType;
use crate::domain::register::{DateRange, FactBody, FactError, FactType, PersonData, RecordKind};
use crate::domain::{OperatorRole, OrgNumber, PartyKind, PartyState, Personnummer};

/// A legal basis from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalBasis {
    pub code: String,
    pub purpose: String,
    pub purpose_en: String,
    pub statute_reference: String,
    pub disclosure_basis: String,
    pub automated_basis: String,
    pub requires_consent: bool,
    pub requires_open_case: bool,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
    pub party_kinds: Vec<PartyKind>,
    pub benefit_codes: Vec<String>,
}

impl LegalBasis {
    /// Whether the basis is in force on `day`.
    pub fn in_force_on(&self, day: Date) -> bool {
        self.valid_from <= day && self.valid_to.is_none_or(|to| day <= to)
    }
}

/// A benefit type from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenefitType {
    pub code: String,
    pub name_sv: String,
    pub name_en: String,
    pub agency: String,
    pub valid_from: Date,
    pub valid_to: Option<Date>,
}

/// A party as seen through one of its registered certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedParty {
    pub party_id: String,
    pub org_number: OrgNumber,
    pub name: String,
    pub kind: PartyKind,
    pub state: PartyState,
    pub termination_effective: Option<Date>,
    /// When the certificate was revoked, if it was.
    pub certificate_revoked_at: Option<Micros>,
    pub certificate_not_before: Micros,
    pub certificate_not_after: Micros,
}

/// A registered operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub fingerprint: String,
    pub name: String,
    pub role: OperatorRole,
    pub revoked_at: Option<Micros>,
}

/// A party's agreement (avtal or överenskommelse) with what it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub agreement_id: String,
    pub agreement_type: AgreementType,
    pub valid_from: Date,
    pub notice_period_days: Option<i64>,
    pub party_signed: Option<Signature>,
    pub agency_signed: Option<Signature>,
    pub basis_codes: Vec<String>,
    pub benefit_codes: Vec<String>,
}

/// One signature on an agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub signed_by: String,
    pub signed_on: Date,
}

/// A client certificate to register, with the facts read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    pub fingerprint: String,
    pub subject: String,
    pub serial: String,
    pub not_before: Micros,
    pub not_after: Micros,
}

/// A party registered directly as connected, with a signed agreement: used by `serve --dev` for
/// the demo parties. Real parties go through the admin API's onboarding.
#[derive(Debug, Clone)]
pub struct NewConnectedParty {
    pub org_number: OrgNumber,
    pub name: String,
    pub kind: PartyKind,
    pub contact_name: String,
    pub contact_email: String,
    pub agreement_id: String,
    pub valid_from: Date,
    pub notice_period_days: Option<i64>,
    pub basis_codes: Vec<String>,
    pub benefit_codes: Vec<String>,
    pub certificates: Vec<NewCertificate>,
}

/// One stored version of a fact (a benefit fact, or a person update with fact type `PERSON`), as the
/// register log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The register sequence: strictly increasing, in commit order.
    pub seq: u64,
    pub recorded_at: Micros,
    pub person: Personnummer,
    /// Stable id of the fact across its versions; `person:<source_system>` for person updates.
    pub record_id: String,
    /// 1 for the first version, +1 for every later one.
    pub version: u32,
    pub kind: RecordKind,
    pub retroactive: bool,
    /// Empty for person updates and for person events that concern no single benefit.
    pub benefit_type: String,
    pub fact_type: FactType,
    /// The business period; `None` for person updates.
    pub valid: Option<DateRange>,
    /// For a retraction, the content of the version it retracts.
    pub body: FactBody,
    pub source_system: String,
    /// Empty for person updates.
    pub source_id: String,
    pub source_version: u64,
}

/// A person in the register, as of some sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPerson {
    pub person: Personnummer,
    /// Name, protection and death; the default (no name) when only benefit facts named the person.
    pub data: PersonData,
    /// The sequence of the first fact that named the person.
    pub created_seq: u64,
    /// The sequence of the person-data version shown (0 when there is none).
    pub latest_seq: u64,
}

/// What happened to one fact given to [`crate::store::Store::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResult {
    /// Stored as a new version.
    Accepted(IngestedVersion),
    /// This exact version was stored before; nothing changed.
    Unchanged(IngestedVersion),
    /// Not stored.
    Rejected(FactError),
}

/// The version an ingested fact is stored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestedVersion {
    pub seq: u64,
    /// The stable record id (for person updates `person:<source_system>`).
    pub record_id: String,
    pub version: u32,
    /// Whether this is a person update (the API reports no record id for those).
    pub person_update: bool,
}

/// Register statistics for the operator view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegisterStats {
    pub person_count: u64,
    /// Distinct benefit facts (record ids).
    pub fact_count: u64,
    /// Stored benefit fact versions (facts plus corrections and retractions).
    pub fact_version_count: u64,
    pub latest_seq: u64,
    /// When the head was recorded; `None` for an empty register.
    pub latest_recorded_at: Option<Micros>,
    pub accepted_last_minute: u64,
    pub accepted_last_hour: u64,
}
