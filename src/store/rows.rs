//! Values the store returns and accepts. They hold domain types, never sqlx or proto types.

use time::Date;

use crate::domain::clock::Micros;
use crate::domain::party::AgreementType;
use crate::domain::{OperatorRole, OrgNumber, PartyKind, PartyState};

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
