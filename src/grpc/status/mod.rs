//! The one place that turns typed refusals and failures into gRPC statuses.
//!
//! Everything below the edge keeps its errors typed ([`FieldError`], [`Denial`], [`IdentityError`],
//! [`RoleDenied`], [`AdminError`], [`StoreError`]…). This module alone chooses the code and the
//! `ErrorReason` each is reported with, through one intermediate form, [`Report`], which becomes
//! either a `Status` or an in-band [`pb::ItemError`] (per-item results of batch calls). Every
//! status carries a `google.rpc.ErrorInfo` with domain `lefi` and a stable reason; messages say
//! what to do and never contain a personal identity number. Unexpected failures become an opaque
//! INTERNAL whose cause chain is logged once, here.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::clock::format_date;
use crate::grpc::fields::{FieldError, FieldProblem};
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::identity::{CertificateRejected, IdentityError};
use crate::policy::Denial;
use crate::policy::operator::{RoleDenied, holders_of};
use crate::store::StoreError;

/// The ErrorInfo domain of every lefi error.
pub const ERROR_DOMAIN: &str = "lefi";

mod admin;
mod statistics;

pub use admin::{CodeFields, admin, development_only, fact_reason};
pub use statistics::{
    MAX_REPORTED_LINES, OrderUnavailable, order_reference_reused, order_unavailable, period_not_covered,
    population_refused,
};

tokio::task_local! {
    /// The `x-request-id` of the call being served, for the ErrorInfo of every error it ends with.
    static REQUEST_ID: String;
}

/// Runs `fut` as part of the call with this request id: every status built inside it (and inside
/// tasks it starts with [`spawn`]) names the id in its ErrorInfo metadata `request_id`.
pub async fn in_request<F: std::future::Future>(request_id: Option<String>, fut: F) -> F::Output {
    match request_id {
        Some(id) => REQUEST_ID.scope(id, fut).await,
        None => fut.await,
    }
}

/// Spawns a task of the current call (a stream's producer, an ingest writer): its statuses name
/// the call's request id too.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let request_id = REQUEST_ID.try_with(Clone::clone).ok();
    tokio::spawn(in_request(request_id, fut))
}

/// How one problem is reported: the code, the reason, the message and the ErrorInfo metadata.
#[derive(Debug, Clone)]
pub struct Report {
    code: Code,
    reason: ErrorReason,
    message: String,
    metadata: Vec<(&'static str, String)>,
}

impl Report {
    fn new(code: Code, reason: ErrorReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            metadata: Vec::new(),
        }
    }

    fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    /// What is said to the caller.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The name of the reason the caller is given (what the disclosure log records for a denial).
    pub fn reason_name(&self) -> &'static str {
        self.reason.as_str_name()
    }

    /// The report as one item's error in a batch call's results.
    pub fn item_error(self) -> pb::ItemError {
        pb::ItemError {
            reason: self.reason as i32,
            message: self.message,
            metadata: self
                .metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

impl From<Report> for Status {
    fn from(r: Report) -> Self {
        let mut metadata: std::collections::HashMap<String, String> =
            r.metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        if let Ok(id) = REQUEST_ID.try_with(Clone::clone) {
            metadata.entry("request_id".to_string()).or_insert(id);
        }
        Status::with_error_details(
            r.code,
            r.message,
            ErrorDetails::with_error_info(r.reason.as_str_name(), ERROR_DOMAIN, metadata),
        )
    }
}

/// Reads the ErrorInfo reason of a status (for clients and tests; the server never decides
/// anything by it).
pub fn reason_of(status: &Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

impl From<FieldError> for Report {
    fn from(e: FieldError) -> Self {
        let invalid = |reason| Report::new(Code::InvalidArgument, reason, e.message.clone());
        let report = match &e.problem {
            FieldProblem::Invalid => invalid(ErrorReason::InvalidArgument),
            FieldProblem::Date => invalid(ErrorReason::InvalidDate),
            FieldProblem::PersonId => invalid(ErrorReason::PersonIdInvalid),
            FieldProblem::OrgNumber => invalid(ErrorReason::OrgNumberInvalid),
            FieldProblem::PageToken => invalid(ErrorReason::PageTokenInvalid),
            FieldProblem::Cursor => invalid(ErrorReason::CursorInvalid),
            FieldProblem::BatchTooLarge => invalid(ErrorReason::BatchTooLarge),
            FieldProblem::Certificate => invalid(ErrorReason::CertificateInvalid),
            FieldProblem::UnknownBenefitType { code } => {
                invalid(ErrorReason::UnknownBenefitType).with("benefit_type", code.clone())
            }
            FieldProblem::UnknownBasis { code } => {
                invalid(ErrorReason::UnknownBasis).with("legal_basis", code.clone())
            }
            FieldProblem::ConsentPeriodTooLong { max_days } => {
                invalid(ErrorReason::ConsentPeriodTooLong).with("max_days", max_days.to_string())
            }
        };
        report.with("field", e.field)
    }
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Self {
        Report::from(e).into()
    }
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
    Report::new(
        Code::Internal,
        ErrorReason::Internal,
        "internal error; it has been logged — retry later, and if it persists quote the x-request-id response header to the agency",
    )
    .into()
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => {
                Report::new(Code::NotFound, ErrorReason::InvalidArgument, "not found").into()
            }
            StoreError::Conflict(what) => {
                Report::new(Code::AlreadyExists, ErrorReason::InvalidArgument, what).into()
            }
            StoreError::Connect { .. } | StoreError::Unavailable(_) => {
                tracing::error!(error = %e, "storage unavailable");
                Report::new(
                    Code::Unavailable,
                    ErrorReason::UnavailableStorage,
                    "the register's storage is temporarily unavailable; retry with backoff",
                )
                .into()
            }
            other => internal("storage failure", &other),
        }
    }
}

impl From<IdentityError> for Status {
    fn from(e: IdentityError) -> Self {
        // UNAUTHENTICATED: no usable certificate; PERMISSION_DENIED: a known caller that may not call.
        let unauthenticated = |reason, message: &str| Report::new(Code::Unauthenticated, reason, message);
        let refused = |reason, message: &str| Report::new(Code::PermissionDenied, reason, message);
        match e {
            IdentityError::CertificateRequired => unauthenticated(
                ErrorReason::CertificateRequired,
                "a client certificate is required; connect with mTLS using the certificate the agency registered for you",
            ),
            IdentityError::CertificateNotRegistered { fingerprint } => unauthenticated(
                ErrorReason::CertificateNotRegistered,
                &format!(
                    "the client certificate (SHA-256 {fingerprint}) chains to the party CA but is not registered for any party; \
                     ask the agency to register it (technical connection)"
                ),
            ),
            IdentityError::CertificateRevoked { operator: false } => unauthenticated(
                ErrorReason::CertificateRevoked,
                "this client certificate has been revoked; connect with another registered certificate",
            ),
            IdentityError::CertificateRevoked { operator: true } => unauthenticated(
                ErrorReason::CertificateRevoked,
                "this operator certificate has been revoked; ask for a new one",
            ),
            IdentityError::PartyTerminated => refused(
                ErrorReason::PartyTerminated,
                "the party's agreement has been terminated; no further calls are accepted",
            ),
            IdentityError::PartyNotActive { state } => refused(
                ErrorReason::PartyNotActive,
                &format!("the party is in state {state} and not yet connected; onboarding must be completed first"),
            ),
            IdentityError::NotAnOperator { fingerprint } => refused(
                ErrorReason::NotAnOperator,
                &format!(
                    "the client certificate (SHA-256 {fingerprint}) is not registered as an operator; the admin API accepts only operator certificates (register one with `lefi operator add`)"
                ),
            ),
            IdentityError::Store(e) => return e.into(),
        }
        .into()
    }
}

/// A principal missing from the request: the service was mounted without the identity layer.
pub fn missing_principal() -> Status {
    tracing::error!("caller principal missing: service mounted without the identity layer");
    Report::new(
        Code::Internal,
        ErrorReason::Internal,
        "internal error: caller identity unavailable",
    )
    .into()
}

impl From<RoleDenied> for Status {
    fn from(e: RoleDenied) -> Self {
        let required: Vec<&str> = holders_of(e.right).into_iter().map(|r| r.as_str()).collect();
        let required = required.join(",");
        Report::new(
            Code::PermissionDenied,
            ErrorReason::RoleNotPermitted,
            format!(
                "your operator role '{}' does not allow this call; it needs one of: {required}. \
                 Use a certificate registered with a suitable role",
                e.role
            ),
        )
        .with("role", e.role.as_str())
        .with("required_roles", required)
        .into()
    }
}

impl From<CertificateRejected> for Status {
    fn from(e: CertificateRejected) -> Self {
        FieldError::new(FieldProblem::Certificate, "certificate_pem", e.to_string()).into()
    }
}

/// How a policy denial is reported: PERMISSION_DENIED for what the law or the agreement does not
/// allow, INVALID_ARGUMENT for what the request lacks or names wrongly. `basis_code` and
/// `consent_id` are what the request invoked.
pub fn denied(denial: &Denial, basis_code: &str, consent_id: Option<&str>) -> Report {
    // What the law or the agreement does not allow under the basis the request invoked.
    let not_allowed = |reason, message: &str| {
        Report::new(Code::PermissionDenied, reason, message).with("legal_basis", basis_code)
    };
    // What the request lacks or names wrongly for the basis: the field to fix.
    let lacking = |reason, field: &'static str, message: &str| {
        Report::new(Code::InvalidArgument, reason, message)
            .with("legal_basis", basis_code)
            .with("field", field)
    };
    match denial {
        Denial::PartyNotActive { state } => Report::new(
            Code::PermissionDenied,
            ErrorReason::PartyNotActive,
            format!("the party is in state {state}; onboarding must be completed before data can be disclosed"),
        ),
        Denial::PartyTerminated => Report::new(
            Code::PermissionDenied,
            ErrorReason::PartyTerminated,
            "the party's agreement has been terminated; nothing more is disclosed",
        ),
        Denial::AgreementNotInForce { valid_from } => Report::new(
            Code::PermissionDenied,
            ErrorReason::AgreementNotInForce,
            "the party's agreement is not in force today (not signed by both sides, or not yet valid)",
        )
        .with("valid_from", valid_from.map(format_date).unwrap_or_default()),
        Denial::UnknownBasis => lacking(
            ErrorReason::UnknownBasis,
            "legal_basis",
            "no legal basis with this code exists; use a code from PartyService.ListLegalBases",
        ),
        Denial::BasisNotForPartyKind => not_allowed(
            ErrorReason::BasisNotForPartyKind,
            "this legal basis does not allow disclosure to your kind of party",
        ),
        Denial::BasisNotInAgreement => not_allowed(
            ErrorReason::BasisNotInAgreement,
            "your agreement does not grant this legal basis; use a granted one (WhoAmI) or ask the agency",
        ),
        Denial::BasisNotInForce => {
            not_allowed(ErrorReason::BasisNotInForce, "this legal basis is not in force today")
        }
        Denial::BenefitNotCovered { benefit_code } => not_allowed(
            ErrorReason::BenefitNotCovered,
            &format!(
                "benefit type {benefit_code} is not covered by the legal basis and your agreement; nothing was released"
            ),
        )
        .with("benefit_type", benefit_code.clone()),
        Denial::ConsentRequired => lacking(
            ErrorReason::ConsentRequired,
            "consent_id",
            "this legal basis requires the individual's consent: register it with ConsentService.RegisterConsent and pass its consent_id",
        ),
        Denial::ConsentNotValid { problem } => Report::new(
            Code::PermissionDenied,
            ErrorReason::ConsentNotValid,
            format!(
                "the consent does not hold today for this person and legal basis ({}); obtain and register a new consent",
                problem.as_str()
            ),
        )
        .with("consent_id", consent_id.unwrap_or_default())
        .with("consent_problem", problem.as_str()),
        Denial::CaseReferenceRequired => lacking(
            ErrorReason::CaseReferenceRequired,
            "case_reference",
            "this legal basis requires an open case: pass your case reference (e.g. diarienummer) as case_reference",
        ),
        Denial::CaseClosed => Report::new(
            Code::PermissionDenied,
            ErrorReason::CaseClosed,
            "this case reference has been closed and cannot be used again",
        ),
    }
}

/// What a NOT_FOUND is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Party,
    Person,
    Subscription,
    Consent,
    Case,
    /// An earlier answer a query asked to reproduce.
    Answer,
}

/// Whether a refusal concerns what was asked (a field, the policy, something not found), so that
/// a batch answers it for one item and goes on; otherwise the service failed (storage, shutdown,
/// a bug) and the call ends with it.
pub fn concerns_the_request(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument | Code::PermissionDenied | Code::NotFound | Code::FailedPrecondition
    )
}

/// A refusal as one item's error in a batch call's results: its reason, message and metadata.
pub fn item_error_of(status: &Status) -> pb::ItemError {
    let info = status.get_details_error_info();
    pb::ItemError {
        reason: info
            .as_ref()
            .and_then(|i| ErrorReason::from_str_name(&i.reason))
            .unwrap_or(ErrorReason::Unspecified) as i32,
        message: status.message().to_string(),
        metadata: info.map(|i| i.metadata.into_iter().collect()).unwrap_or_default(),
    }
}

/// NOT_FOUND for something the caller named that does not exist (for it).
pub fn not_found(what: Missing) -> Status {
    let (reason, message) = match what {
        Missing::Party => (
            ErrorReason::PartyNotFound,
            "no such party; find its party_id with ListParties, or GetParty by org_number",
        ),
        Missing::Person => (
            ErrorReason::PersonNotFound,
            "the register holds no person with this identity number; check the number if you expected data",
        ),
        Missing::Subscription => (
            ErrorReason::SubscriptionNotFound,
            "your party has no subscription with this id; check it with ListSubscriptions",
        ),
        Missing::Consent => (
            ErrorReason::ConsentNotFound,
            "no consent with this id exists for your party; check the id with ListConsents",
        ),
        Missing::Case => (
            ErrorReason::CaseNotFound,
            "your party has never used this case reference; check it with ListCases",
        ),
        Missing::Answer => (
            ErrorReason::AnswerNotFound,
            "your party was given no answer about this person at this as_of_sequence for these benefit \
             types and this period; take all three from the answer you want reproduced",
        ),
    };
    Report::new(Code::NotFound, reason, message).into()
}

/// A store failure where [`StoreError::NotFound`] means `what` does not exist (for the caller).
pub fn or_missing(e: StoreError, what: Missing) -> Status {
    match e {
        StoreError::NotFound => not_found(what),
        other => other.into(),
    }
}

/// What an ALREADY_EXISTS is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    /// A subscription's client reference names another subscription.
    ClientReference,
    /// A consent with the same evidence reference has other dates.
    ConsentDates,
}

/// ALREADY_EXISTS IDEMPOTENCY_KEY_REUSED: the same reference was used for something else.
pub fn conflict(what: Conflict) -> Report {
    let message = match what {
        Conflict::ClientReference => {
            "this client_reference names another subscription with other content; use a new client_reference"
        }
        Conflict::ConsentDates => {
            "a consent with this person, legal basis and evidence_reference is registered with other dates; \
             use a new evidence_reference for a new consent"
        }
    };
    Report::new(Code::AlreadyExists, ErrorReason::IdempotencyKeyReused, message)
}

/// The status a stream or call ends with when the server drains: clients reconnect and resume.
pub fn shutting_down() -> Status {
    Report::new(
        Code::Unavailable,
        ErrorReason::ServerShuttingDown,
        "the server is shutting down; reconnect (to another replica, or shortly) and resume from your last cursor",
    )
    .into()
}

/// Why a request message could not be read, before any handler saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// The bytes are not the method's request message (prost's description of why).
    Malformed(String),
    /// The message is longer than the server's limit, in bytes.
    TooLarge { max_bytes: usize },
}

impl Unreadable {
    /// What tonic reports when a message could not be read: our codec's MESSAGE_MALFORMED (see
    /// [`crate::grpc::codec`]), or tonic's own OUT_OF_RANGE for a message over the limit (a
    /// status without details: every status lefi builds has an ErrorInfo). Anything else, such
    /// as a reset stream, is not about the message.
    pub fn of(status: &Status, max_bytes: usize) -> Option<Self> {
        if reason_of(status).as_deref() == Some(ErrorReason::MessageMalformed.as_str_name()) {
            return Some(Self::Malformed(status.message().to_string()));
        }
        let untouched = status.details().is_empty();
        (untouched && status.code() == Code::OutOfRange).then_some(Self::TooLarge { max_bytes })
    }

    fn report(&self) -> Report {
        match self {
            Self::Malformed(cause) => Report::new(Code::InvalidArgument, ErrorReason::MessageMalformed, cause.clone()),
            Self::TooLarge { max_bytes } => Report::new(
                Code::ResourceExhausted,
                ErrorReason::MessageTooLarge,
                format!(
                    "the request message is larger than this server accepts ({max_bytes} bytes); send smaller \
                     messages (split the batch into several calls)"
                ),
            )
            .with("max_bytes", max_bytes.to_string()),
        }
    }

    /// The status of a unary request that could not be read.
    pub fn status(&self) -> Status {
        self.report().into()
    }

    /// The status a client stream ends with when its message at `index` (0-based) could not be
    /// read, after every message before it was answered.
    pub fn status_at(&self, index: u64) -> Status {
        let mut report = self.report();
        report.message = format!(
            "request {index} of this stream could not be read: {}. Every request before it was answered and \
             nothing after it was read: fix it and resend from request {index}",
            report.message
        );
        report.with("index", index.to_string()).into()
    }
}

/// INVALID_ARGUMENT MESSAGE_MALFORMED, for the codec: bytes that do not decode as the expected
/// message. prost's description names the wire problem, never a field's value.
pub fn malformed_message(err: &prost::DecodeError) -> Status {
    Unreadable::Malformed(format!(
        "the message could not be decoded as this method's message type ({err}); generate your client \
         from this server's proto/ (or fetch the schema by server reflection)"
    ))
    .status()
}

/// FAILED_PRECONDITION CURSOR_EXPIRED for a cursor past the register's head: the database was
/// restored to an earlier point, so the history after `head` is not the one the party was sent.
pub fn cursor_ahead(head: u64) -> Status {
    Report::new(
        Code::FailedPrecondition,
        ErrorReason::CursorExpired,
        format!(
            "this cursor is past the register's head ({head}): the agency's register was restored to an \
             earlier point, and what you received after it may differ from what the register now holds; \
             call RequestFullRefresh and stream from the cursor it returns"
        ),
    )
    .with("head_sequence", head.to_string())
    .with("cause", "ahead_of_register")
    .into()
}

/// FAILED_PRECONDITION CRL_RELOAD_FAILED: the CRLs in force stay as they were.
pub fn crl_reload_failed(e: &crate::revocation::ReloadError) -> Status {
    use crate::revocation::ReloadError as E;
    let report = Report::new(
        Code::FailedPrecondition,
        ErrorReason::CrlReloadFailed,
        format!("{e}; the CRLs in force stay as they were: fix the file, then reload again"),
    );
    match e {
        E::Read { path, .. } | E::Parse { path, .. } => report.with("file", path.display().to_string()),
        E::Verifier(_) | E::NoFiles => report,
    }
    .into()
}

/// RESOURCE_EXHAUSTED TOO_MANY_STREAMS: the party has as many delivery streams open as it may.
pub fn too_many_streams(e: crate::streams::TooManyStreams) -> Status {
    Report::new(
        Code::ResourceExhausted,
        ErrorReason::TooManyStreams,
        format!(
            "{e}; close a stream you do not need (one stream carries all of your subscriptions), or ask \
             the agency to raise your limit"
        ),
    )
    .with("max", e.limit.to_string())
    .into()
}

/// RESOURCE_EXHAUSTED RATE_LIMITED with a RetryInfo: the party made more requests than its rate
/// allows; it may call again after `retry_after`.
pub fn rate_limited(limits: crate::domain::limits::PartyLimits, retry_after: std::time::Duration) -> Status {
    // Whole seconds for the metadata, never 0 (a client that waits 0 s just hits the limit again).
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let mut metadata = std::collections::HashMap::from([
        ("retry_after_seconds".to_string(), seconds.max(1).to_string()),
        (
            "requests_per_second".to_string(),
            limits.requests_per_second.to_string(),
        ),
        ("burst".to_string(), limits.burst.to_string()),
    ]);
    if let Ok(id) = REQUEST_ID.try_with(Clone::clone) {
        metadata.insert("request_id".to_string(), id);
    }
    let mut details =
        ErrorDetails::with_error_info(ErrorReason::RateLimited.as_str_name(), ERROR_DOMAIN, metadata);
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "your party made more than its {} requests per second (burst {}); wait as the RetryInfo \
             says, then retry",
            limits.requests_per_second, limits.burst
        ),
        details,
    )
}

/// FAILED_PRECONDITION CURSOR_EXPIRED: the history behind the cursor was pruned.
pub fn cursor_expired(horizon: u64) -> Status {
    Report::new(
        Code::FailedPrecondition,
        ErrorReason::CursorExpired,
        "this cursor is older than the delivery history kept; call RequestFullRefresh and stream from the cursor it returns",
    )
    .with("horizon_sequence", horizon.to_string())
    .into()
}
