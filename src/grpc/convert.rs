//! Conversions between domain values and protobuf messages.

use crate::domain::clock::format_date;
use crate::domain::party::AgreementType;
use crate::domain::{PartyKind, PartyState};
use crate::grpc::pb::lefi::v1 as pb;
use crate::store::{BenefitType, LegalBasis};

pub fn party_kind(k: PartyKind) -> pb::PartyKind {
    match k {
        PartyKind::Insurer => pb::PartyKind::Insurer,
        PartyKind::StateAuthority => pb::PartyKind::StateAuthority,
        PartyKind::MunicipalAuthority => pb::PartyKind::MunicipalAuthority,
    }
}

pub fn party_kind_from(k: pb::PartyKind) -> Option<PartyKind> {
    match k {
        pb::PartyKind::Unspecified => None,
        pb::PartyKind::Insurer => Some(PartyKind::Insurer),
        pb::PartyKind::StateAuthority => Some(PartyKind::StateAuthority),
        pb::PartyKind::MunicipalAuthority => Some(PartyKind::MunicipalAuthority),
    }
}

pub fn party_state(s: PartyState) -> pb::PartyState {
    match s {
        PartyState::Applied => pb::PartyState::Applied,
        PartyState::AgreementSent => pb::PartyState::AgreementSent,
        PartyState::Signed => pb::PartyState::Signed,
        PartyState::Connected => pb::PartyState::Connected,
        PartyState::TerminationScheduled => pb::PartyState::TerminationScheduled,
        PartyState::Terminated => pb::PartyState::Terminated,
    }
}

pub fn agreement_type(t: AgreementType) -> pb::AgreementType {
    match t {
        AgreementType::Avtal => pb::AgreementType::Avtal,
        AgreementType::Overenskommelse => pb::AgreementType::Overenskommelse,
    }
}

pub fn legal_basis(b: &LegalBasis) -> pb::LegalBasis {
    pb::LegalBasis {
        code: b.code.clone(),
        statute_reference: b.statute_reference.clone(),
        disclosure_basis: b.disclosure_basis.clone(),
        automated_medium_basis: b.automated_basis.clone(),
        purpose: b.purpose.clone(),
        purpose_en: b.purpose_en.clone(),
        allowed_party_kinds: b.party_kinds.iter().map(|k| party_kind(*k) as i32).collect(),
        requires_consent: b.requires_consent,
        requires_open_case: b.requires_open_case,
        benefit_type_codes: b.benefit_codes.clone(),
        valid_from: format_date(b.valid_from),
        valid_to: b.valid_to.map(format_date).unwrap_or_default(),
    }
}

pub fn benefit_type(b: &BenefitType) -> pb::BenefitType {
    pb::BenefitType {
        code: b.code.clone(),
        name_sv: b.name_sv.clone(),
        name_en: b.name_en.clone(),
        paying_agency: b.agency.clone(),
    }
}

/// An instant (microseconds since the epoch) as a protobuf timestamp.
pub fn timestamp(micros: crate::domain::clock::Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}
