//! The one place that builds gRPC statuses.
//!
//! Every error carries a `google.rpc.ErrorInfo` with domain `lefi` and a stable `reason` from
//! `lefi.v1.ErrorReason`. Messages say what to do and never contain a personal identity number.
//! Unexpected failures become an opaque INTERNAL whose cause chain is logged once, here.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::grpc::pb::ErrorReason;
use crate::store::StoreError;

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
