//! Statuses of statistics orders: missing orders and files, refused steps and population files.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::{ERROR_DOMAIN, REQUEST_ID, Report, internal};
use crate::grpc::pb::ErrorReason;

/// What a statistics-order call could not find or serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderUnavailable {
    /// The order does not exist (for this caller).
    Order,
    /// The extract has no file with this name.
    File,
    /// The files are not available in this state (not produced or delivered yet, or deleted).
    Extract { state: &'static str },
}

/// Reports a statistics order's missing piece.
pub fn order_unavailable(what: OrderUnavailable) -> Status {
    match what {
        OrderUnavailable::Order => Report::new(
            Code::NotFound,
            ErrorReason::OrderNotFound,
            "your party has no statistics order with this id; check it with ListOrders",
        )
        .into(),
        OrderUnavailable::File => Report::new(
            Code::NotFound,
            ErrorReason::FileNotFound,
            "the extract has no file with this name; take the names from GetManifest",
        )
        .into(),
        OrderUnavailable::Extract { state } => Report::new(
            Code::FailedPrecondition,
            ErrorReason::ExtractNotAvailable,
            format!(
                "the extract's files are not available while the order is {state}: they can be downloaded \
                 once delivered, until the retention date (the manifest remains after deletion)"
            ),
        )
        .with("current_state", state)
        .into(),
    }
}

impl From<crate::store::statistics::OrderError> for Status {
    fn from(e: crate::store::statistics::OrderError) -> Self {
        use crate::domain::statistics::order::StepRefused;
        use crate::store::statistics::OrderError;
        match e {
            OrderError::NotFound => order_unavailable(OrderUnavailable::Order),
            OrderError::KeyReused => Report::new(
                Code::AlreadyExists,
                ErrorReason::IdempotencyKeyReused,
                "this idempotency_key was used for another step of the order; nothing was changed. \
                 Use a new key for a new step",
            )
            .into(),
            OrderError::Store(e) => e.into(),
            OrderError::File(e) => internal("storing the extract's files", &e),
            OrderError::Refused(refused) => {
                let message = refused.to_string();
                match refused {
                    StepRefused::WrongState { step, state, .. } => Report::new(
                        Code::FailedPrecondition,
                        ErrorReason::IllegalStateTransition,
                        format!("{message}; read the order (GetOrder) and take the step its state allows"),
                    )
                    .with("current_state", state.as_str())
                    .with("step", step.as_str())
                    .into(),
                    StepRefused::WrongSide { step, .. } => {
                        Report::new(Code::PermissionDenied, ErrorReason::RoleNotPermitted, message)
                            .with("step", step.as_str())
                            .into()
                    }
                    StepRefused::SameReviewer => {
                        Report::new(Code::FailedPrecondition, ErrorReason::FourEyesRequired, message).into()
                    }
                    StepRefused::PopulationBeforeRelease => Report::new(
                        Code::FailedPrecondition,
                        ErrorReason::PopulationBeforeRelease,
                        message,
                    )
                    .into(),
                    StepRefused::NotReadyToExtract { missing } => {
                        Report::new(Code::FailedPrecondition, ErrorReason::NotReadyToExtract, message)
                            .with("missing", missing)
                            .into()
                    }
                }
            }
        }
    }
}

/// The most bad lines a refused population file reports.
pub const MAX_REPORTED_LINES: usize = 100;

/// INVALID_ARGUMENT POPULATION_FILE_INVALID: the file was refused whole; the bad lines go in a
/// `google.rpc.BadRequest` (field "line N"), never with the identity number.
pub fn population_refused(refused: &crate::domain::statistics::population::PopulationRefused) -> Status {
    use crate::domain::statistics::population::PopulationRefused;
    let mut metadata: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    if let Ok(id) = REQUEST_ID.try_with(Clone::clone) {
        metadata.insert("request_id".to_string(), id);
    }
    let mut details = ErrorDetails::new();
    let message = match refused {
        PopulationRefused::Lines(lines) => {
            metadata.insert("bad_lines".to_string(), lines.len().to_string());
            for problem in lines.iter().take(MAX_REPORTED_LINES) {
                details.add_bad_request_violation(format!("line {}", problem.line), problem.reason.clone());
            }
            format!(
                "{refused}. The bad lines are listed by number in the BadRequest detail; correct them and \
                 upload the whole file again"
            )
        }
        other => format!("{other}; nothing was stored"),
    };
    details.set_error_info(
        ErrorReason::PopulationFileInvalid.as_str_name(),
        ERROR_DOMAIN,
        metadata,
    );
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// ALREADY_EXISTS IDEMPOTENCY_KEY_REUSED: an order reference names another order's content.
pub fn order_reference_reused() -> Status {
    Report::new(
        Code::AlreadyExists,
        ErrorReason::IdempotencyKeyReused,
        "this order_reference names an order with other content; nothing was changed. Use a new \
         order_reference for a new order, or resend exactly the first order to read it back",
    )
    .with("field", "order_reference")
    .into()
}

/// FAILED_PRECONDITION PERIOD_NOT_COVERED: an order's period ends in a month not yet complete.
pub fn period_not_covered(
    benefit: &str,
    month: &crate::domain::statistics::coverage::MonthCoverage,
    latest_orderable: Option<crate::domain::statistics::coverage::YearMonth>,
) -> Status {
    let latest = latest_orderable.map(|m| m.to_string()).unwrap_or_default();
    Report::new(
        Code::FailedPrecondition,
        ErrorReason::PeriodNotCovered,
        format!(
            "{benefit} data for {} is about {:.0} % complete; a month may be ordered from 95 %. End the \
             period in {} or earlier, or order later",
            month.month,
            month.coverage * 100.0,
            if latest.is_empty() {
                "an earlier month"
            } else {
                latest.as_str()
            }
        ),
    )
    .with("benefit_type", benefit)
    .with("month", month.month.to_string())
    .with("coverage", format!("{:.3}", month.coverage))
    .with("first_orderable_month", latest)
    .into()
}
