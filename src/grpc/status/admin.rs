//! Statuses of the admin API's own failures: refused lifecycle steps and ingested facts.

use tonic::{Code, Status};

use super::{Missing, Report, internal, not_found};
use crate::domain::clock::format_date;
use crate::domain::lifecycle::{CodeList, CodeProblemKind, TerminationRefused};
use crate::domain::register::RejectReason;
use crate::grpc::fields::FieldError;
use crate::grpc::pb::ErrorReason;
use crate::store::parties::AdminError;

/// The reason an ingested fact was refused with, in its in-band answer.
pub fn fact_reason(r: RejectReason) -> ErrorReason {
    match r {
        RejectReason::InvalidArgument => ErrorReason::InvalidArgument,
        RejectReason::PersonIdInvalid => ErrorReason::PersonIdInvalid,
        RejectReason::UnknownBenefitType => ErrorReason::UnknownBenefitType,
        RejectReason::InvalidDate => ErrorReason::InvalidDate,
        RejectReason::SourceVersionConflict => ErrorReason::SourceVersionConflict,
        RejectReason::SourceVersionOutOfOrder => ErrorReason::SourceVersionOutOfOrder,
        RejectReason::RecordNotFound => ErrorReason::RecordNotFound,
    }
}

/// The request fields that hold legal-basis and benefit-type codes, for errors about one code.
#[derive(Debug, Clone, Copy)]
pub struct CodeFields {
    pub bases: &'static str,
    pub benefits: &'static str,
}

impl CodeFields {
    /// For requests without code lists (their steps never report a code problem).
    pub const NONE: CodeFields = CodeFields {
        bases: "basis_codes",
        benefits: "benefit_type_codes",
    };
}

/// Maps a refused or failed administrative step. `fields` names the request's code lists.
pub fn admin(e: AdminError, fields: CodeFields) -> Status {
    match e {
        AdminError::PartyNotFound => not_found(Missing::Party),
        AdminError::IllegalTransition(t) => Report::new(
            Code::FailedPrecondition,
            ErrorReason::IllegalStateTransition,
            format!("{t}. Read the party (GetParty) and do the step its state allows"),
        )
        .with("current_state", t.current.as_str())
        .into(),
        AdminError::Code(problem) => {
            let field = match problem.list {
                CodeList::Bases => format!("{}[{}]", fields.bases, problem.index),
                CodeList::Benefits => format!("{}[{}]", fields.benefits, problem.index),
            };
            let (reason, key) = match problem.kind {
                CodeProblemKind::UnknownBasis => (ErrorReason::UnknownBasis, "legal_basis"),
                CodeProblemKind::BasisNotForKind(_) | CodeProblemKind::BasisNotInForce => {
                    (ErrorReason::InvalidArgument, "legal_basis")
                }
                CodeProblemKind::UnknownBenefit => (ErrorReason::UnknownBenefitType, "benefit_type"),
                CodeProblemKind::BenefitNotCovered => (ErrorReason::InvalidArgument, "benefit_type"),
            };
            Report::new(Code::InvalidArgument, reason, problem.to_string())
                .with("field", field)
                .with(key, problem.code)
                .into()
        }
        AdminError::NoticePeriodDays(why) => FieldError::invalid("notice_period_days", why).into(),
        AdminError::PartyAlreadyExists { party_id } => {
            let id = party_id.unwrap_or_default();
            Report::new(
                Code::AlreadyExists,
                ErrorReason::PartyAlreadyExists,
                format!(
                    "a party with this organisation number exists and is not terminated (party_id {id}); \
                     continue its onboarding, or terminate it before a new application"
                ),
            )
            .with("party_id", id)
            .into()
        }
        AdminError::AgreementIdTaken => FieldError::invalid(
            "agreement_id",
            "agreement_id is already used by another agreement; give this agreement document's own id",
        )
        .into(),
        AdminError::CertificateAlreadyRegistered { to_operator } => Report::new(
            Code::AlreadyExists,
            ErrorReason::CertificateAlreadyRegistered,
            if to_operator {
                "this certificate is registered as an operator certificate; a party needs its own certificate"
            } else {
                "this certificate is registered to another party; each party needs its own certificate"
            },
        )
        .into(),
        AdminError::CertificateNotFound => Report::new(
            Code::NotFound,
            ErrorReason::CertificateNotFound,
            "the party has no certificate with this fingerprint; GetParty lists the party's certificates",
        )
        .into(),
        AdminError::Termination(refused) => termination_refused(&refused),
        AdminError::IdempotencyKeyReused => Report::new(
            Code::AlreadyExists,
            ErrorReason::IdempotencyKeyReused,
            "this idempotency_key was used before for a different request; nothing was changed. \
             Use a new key for a new request, or resend exactly the first request to get its result",
        )
        .with("field", "idempotency_key")
        .into(),
        AdminError::KeyRace => internal("idempotency key race survived its retry", &AdminError::KeyRace),
        AdminError::Store(e) => e.into(),
    }
}

fn termination_refused(refused: &TerminationRefused) -> Status {
    match refused {
        TerminationRefused::Mismatch { field } => Report::new(
            Code::FailedPrecondition,
            ErrorReason::TerminationMismatch,
            format!("{refused}; nothing was changed"),
        )
        .with("field", *field)
        .into(),
        TerminationRefused::NoticePeriodNotMet { earliest } => Report::new(
            Code::FailedPrecondition,
            ErrorReason::NoticePeriodNotMet,
            format!("{refused}; use that date or later, or give an override_reason"),
        )
        .with("earliest_effective_date", format_date(*earliest))
        .into(),
        TerminationRefused::OverrideNotApplicable => {
            FieldError::invalid("override_reason", refused.to_string()).into()
        }
        TerminationRefused::ReceivedInFuture => {
            FieldError::date("notice_received_on", refused.to_string()).into()
        }
    }
}

/// UNIMPLEMENTED NOT_IMPLEMENTED: a development-only admin RPC (the sandbox's) on a server that
/// does not run `serve --dev`.
pub fn development_only(rpc: &str) -> Status {
    Report::new(
        Code::Unimplemented,
        ErrorReason::NotImplemented,
        format!(
            "{rpc} is for development servers only (lefi serve --dev); this server does not run in \
             development mode"
        ),
    )
    .into()
}
