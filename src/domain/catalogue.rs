//! The catalogues the policy reads (legal bases, benefit types) and a party's agreement.
//!
//! All of it is data: paragraph numbers of statutes live in the catalogue tables, seeded by
//! migration, never in code. These types only say what a basis or an agreement holds.

use time::Date;

use crate::domain::PartyKind;
use crate::domain::clock::Micros;
use crate::domain::lifecycle::Signer;
use crate::domain::party::AgreementType;

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

/// A party's agreement (avtal or överenskommelse): what it grants, and who has signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    pub agreement_id: String,
    pub agreement_type: AgreementType,
    pub valid_from: Date,
    /// 0 for authorities.
    pub notice_period_days: u32,
    pub sent_at: Micros,
    pub party_signed: Option<Signature>,
    pub agency_signed: Option<Signature>,
    pub basis_codes: Vec<String>,
    pub benefit_codes: Vec<String>,
}

impl Agreement {
    /// Whether both sides have signed.
    pub fn fully_signed(&self) -> bool {
        self.party_signed.is_some() && self.agency_signed.is_some()
    }

    /// The signatures recorded so far, the party's first.
    pub fn signatures(&self) -> impl Iterator<Item = (Signer, &Signature)> {
        [
            (Signer::Party, &self.party_signed),
            (Signer::Agency, &self.agency_signed),
        ]
        .into_iter()
        .filter_map(|(signer, signature)| Some((signer, signature.as_ref()?)))
    }
}

/// One signature on an agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub signed_by: String,
    pub signed_on: Date,
    /// When the signature was registered, and by which operator; `None` for signatures registered
    /// before that was recorded.
    pub recorded_at: Option<Micros>,
    pub recorded_by: Option<String>,
}
