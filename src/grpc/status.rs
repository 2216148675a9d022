//! The one place that builds gRPC statuses.
//!
//! Every error carries a `google.rpc.ErrorInfo` with domain `lefi` and a stable `reason` from
//! `lefi.v1.ErrorReason`. Messages say what to do and never contain a personal identity number.
//! Unexpected failures become an opaque INTERNAL whose cause chain is logged once, here.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::OperatorRole;
use crate::domain::clock::format_date;
use crate::domain::lifecycle::{CodeList, CodeProblemKind, TerminationRefused};
use crate::domain::party::AdminRight;
use crate::grpc::pb::ErrorReason;
use crate::identity::CertificateRejected;
use crate::store::StoreError;
use crate::store::admin::AdminError;

/// The ErrorInfo domain of every lefi error.
pub const ERROR_DOMAIN: &str = "lefi";

/// A status with an ErrorInfo naming `reason`.
pub fn error(code: Code, reason: ErrorReason, message: impl Into<String>) -> Status {
    error_with(code, reason, message, Vec::new())
}

/// A status with an ErrorInfo naming `reason` and extra metadata (e.g. `field`, `current_state`).
pub fn error_with(
    code: Code,
    reason: ErrorReason,
    message: impl Into<String>,
    metadata: Vec<(&str, String)>,
) -> Status {
    let metadata: std::collections::HashMap<String, String> =
        metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata),
    )
}

/// INVALID_ARGUMENT for one request field.
pub fn invalid_field(reason: ErrorReason, field: &str, message: impl Into<String>) -> Status {
    error_with(
        Code::InvalidArgument,
        reason,
        message,
        vec![("field", field.to_string())],
    )
}

/// An unexpected failure: logged once with its cause chain, returned opaque.
pub fn internal(context: &str, err: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(error = %chain, "{context}");
    error(
        Code::Internal,
        ErrorReason::Internal,
        "internal error; it has been logged — retry later, and if it persists quote the x-request-id response header to the agency",
    )
}

/// Maps a storage error to a status.
pub fn store_error(e: StoreError) -> Status {
    match e {
        StoreError::NotFound => error(Code::NotFound, ErrorReason::InvalidArgument, "not found"),
        StoreError::Conflict(what) => error(Code::AlreadyExists, ErrorReason::InvalidArgument, what),
        StoreError::Connect { .. } | StoreError::Query(sqlx::Error::PoolTimedOut) => {
            tracing::error!(error = %e, "storage unavailable");
            error(
                Code::Unavailable,
                ErrorReason::UnavailableStorage,
                "the register's storage is temporarily unavailable; retry with backoff",
            )
        }
        other => internal("storage failure", &other),
    }
}

/// Reads the ErrorInfo reason of a status (used by clients and tests).
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// PERMISSION_DENIED ROLE_NOT_PERMITTED: the operator's role lacks `right`.
pub fn role_not_permitted(role: OperatorRole, right: AdminRight) -> Status {
    let required: Vec<&str> = OperatorRole::holders_of(right)
        .into_iter()
        .map(OperatorRole::as_str)
        .collect();
    let required = required.join(",");
    error_with(
        Code::PermissionDenied,
        ErrorReason::RoleNotPermitted,
        format!(
            "your operator role '{role}' does not allow this call; it needs one of: {required}. \
             Use a certificate registered with a suitable role"
        ),
        vec![("role", role.as_str().to_string()), ("required_roles", required)],
    )
}

/// INVALID_ARGUMENT CERTIFICATE_INVALID: the certificate cannot be registered.
pub fn certificate_rejected(e: &CertificateRejected) -> Status {
    invalid_field(ErrorReason::CertificateInvalid, "certificate_pem", e.to_string())
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

/// NOT_FOUND PARTY_NOT_FOUND.
pub fn party_not_found() -> Status {
    error(
        Code::NotFound,
        ErrorReason::PartyNotFound,
        "no such party; find its party_id with ListParties, or GetParty by org_number",
    )
}

/// Maps a refused or failed admin step. `fields` names the request's code lists.
pub fn admin_error(e: AdminError, fields: CodeFields) -> Status {
    match e {
        AdminError::PartyNotFound => party_not_found(),
        AdminError::IllegalTransition(t) => error_with(
            Code::FailedPrecondition,
            ErrorReason::IllegalStateTransition,
            format!("{t}. Read the party (GetParty) and do the step its state allows"),
            vec![("current_state", t.current.as_str().to_string())],
        ),
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
            error_with(
                Code::InvalidArgument,
                reason,
                problem.to_string(),
                vec![("field", field), (key, problem.code)],
            )
        }
        AdminError::NoticePeriodDays(why) => {
            invalid_field(ErrorReason::InvalidArgument, "notice_period_days", why)
        }
        AdminError::PartyAlreadyExists { party_id } => {
            let id = party_id.unwrap_or_default();
            error_with(
                Code::AlreadyExists,
                ErrorReason::PartyAlreadyExists,
                format!(
                    "a party with this organisation number exists and is not terminated (party_id {id}); \
                     continue its onboarding, or terminate it before a new application"
                ),
                vec![("party_id", id)],
            )
        }
        AdminError::AgreementIdTaken => invalid_field(
            ErrorReason::InvalidArgument,
            "agreement_id",
            "agreement_id is already used by another agreement; give this agreement document's own id",
        ),
        AdminError::CertificateAlreadyRegistered { to_operator } => error(
            Code::AlreadyExists,
            ErrorReason::CertificateAlreadyRegistered,
            if to_operator {
                "this certificate is registered as an operator certificate; a party needs its own certificate"
            } else {
                "this certificate is registered to another party; each party needs its own certificate"
            },
        ),
        AdminError::CertificateNotFound => error(
            Code::NotFound,
            ErrorReason::CertificateNotFound,
            "the party has no certificate with this fingerprint; GetParty lists the party's certificates",
        ),
        AdminError::Termination(refused) => termination_refused(&refused),
        AdminError::IdempotencyKeyReused => error_with(
            Code::AlreadyExists,
            ErrorReason::IdempotencyKeyReused,
            "this idempotency_key was used before for a different request; nothing was changed. \
             Use a new key for a new request, or resend exactly the first request to get its result",
            vec![("field", "idempotency_key".to_string())],
        ),
        AdminError::KeyRace => internal("idempotency key race survived its retry", &AdminError::KeyRace),
        AdminError::Store(e) => store_error(e),
    }
}

fn termination_refused(refused: &TerminationRefused) -> Status {
    match refused {
        TerminationRefused::Mismatch { field } => error_with(
            Code::FailedPrecondition,
            ErrorReason::TerminationMismatch,
            format!("{refused}; nothing was changed"),
            vec![("field", (*field).to_string())],
        ),
        TerminationRefused::NoticePeriodNotMet { earliest } => error_with(
            Code::FailedPrecondition,
            ErrorReason::NoticePeriodNotMet,
            format!("{refused}; use that date or later, or give an override_reason"),
            vec![("earliest_effective_date", format_date(*earliest))],
        ),
        TerminationRefused::OverrideNotApplicable => invalid_field(
            ErrorReason::InvalidArgument,
            "override_reason",
            refused.to_string(),
        ),
        TerminationRefused::ReceivedInFuture => invalid_field(
            ErrorReason::InvalidDate,
            "notice_received_on",
            refused.to_string(),
        ),
    }
}
