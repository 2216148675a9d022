//! `lefi.v1.QueryService`: the one-off query (LEFI Online style).
//!
//! A query is checked in this order: the request's own fields, then the party's right to the
//! information (the policy, [`crate::policy`]), then the register is read as of its head at the time of
//! the question: the header carries that sequence, and every record is the latest version as of
//! it. Every decision, allowed or denied, is written to the disclosure log before anything is sent.

use std::pin::Pin;

use futures::Stream;
use time::Date;
use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::Personnummer;
use crate::domain::clock::format_date;
use crate::domain::register::DateRange;
use crate::grpc::authorize::{CallContext, Request as AuthRequest, allowed_entry, authorize};
use crate::grpc::convert::{self, Audience};
use crate::grpc::party_of;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::register::person_not_found;
use crate::grpc::status::{error_with, invalid_field, store_error};
use crate::identity::PartyPrincipal;
use crate::policy::Permit;
use crate::store::LegalBasis;
use crate::store::policy::{Channel, Decision, NewDisclosure};

/// Records per message after the header.
pub const RECORDS_PER_MESSAGE: usize = 500;
/// Longest accepted case reference.
const MAX_CASE_REFERENCE_LEN: usize = 64;

type QueryStream = Pin<Box<dyn Stream<Item = Result<pb::QueryPersonResponse, Status>> + Send>>;

/// `lefi.v1.QueryService`.
#[derive(Debug, Clone)]
pub struct QueryApi {
    state: AppState,
}

impl QueryApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A query whose fields have been checked.
#[derive(Debug, Clone)]
pub struct CheckedQuery {
    pub person: Personnummer,
    pub benefit_codes: Vec<String>,
    pub period: DateRange,
    pub basis: LegalBasis,
    /// Empty when not given.
    pub case_reference: String,
    /// Empty when not given.
    pub consent_id: String,
}

/// How a query ended, for the disclosure log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOutcome {
    /// The answer was released: the register's sequence and the number of records.
    Disclosed { as_of_sequence: u64, record_count: u64 },
    /// The register holds no such person (as of this sequence).
    PersonNotFound { as_of_sequence: u64 },
}

/// The policy request a checked query makes.
fn policy_request(query: &CheckedQuery) -> AuthRequest {
    AuthRequest {
        basis_code: query.basis.code.clone(),
        person: query.person.clone(),
        benefit_codes: query.benefit_codes.clone(),
        case_reference: (!query.case_reference.is_empty()).then(|| query.case_reference.clone()),
        consent_id: (!query.consent_id.is_empty()).then(|| query.consent_id.clone()),
        period: (
            format_date(query.period.from),
            query.period.to.map(format_date).unwrap_or_default(),
        ),
        subscription_id: String::new(),
    }
}

/// Records in the disclosure log what a permitted query released (or that the person was not
/// found). Written before anything is sent: if it fails, nothing is released.
async fn log_query(
    state: &AppState,
    party: &PartyPrincipal,
    call: &CallContext,
    request: &AuthRequest,
    permit: &Permit,
    outcome: QueryOutcome,
) -> Result<(), Status> {
    let entry = match outcome {
        QueryOutcome::Disclosed {
            as_of_sequence,
            record_count,
        } => allowed_entry(
            party,
            call,
            request,
            permit,
            usize::try_from(record_count).unwrap_or(usize::MAX),
            (0, as_of_sequence),
        ),
        QueryOutcome::PersonNotFound { as_of_sequence } => NewDisclosure {
            decision: Decision::Denied.as_str().to_string(),
            denial_reason: "PERSON_NOT_FOUND".to_string(),
            ..allowed_entry(party, call, request, permit, 0, (0, as_of_sequence))
        },
    };
    state
        .store
        .append_disclosures(&[entry], state.clock.now_micros())
        .await
        .map_err(store_error)
}

#[tonic::async_trait]
impl pb::query_service_server::QueryService for QueryApi {
    #[tracing::instrument(skip_all)]
    async fn query_person(
        &self,
        request: Request<pb::QueryPersonRequest>,
    ) -> Result<Response<QueryStream>, Status> {
        let party = party_of(&request)?;
        let call = CallContext::new(&request, "/lefi.v1.QueryService/QueryPerson", Channel::Query);
        let today = self.state.clock.today();
        let query = self.check(request.into_inner(), today).await?;
        let ask = policy_request(&query);
        // The policy decides (and logs a denial) before the register is read.
        let permit = authorize(&self.state, &party, &call, &ask).await?;
        let store = &self.state.store;
        // The head first, then everything as of it: one consistent answer.
        let as_of = store.head_seq().await.map_err(store_error)?;
        let Some(person) = store
            .person(&query.person, Some(as_of))
            .await
            .map_err(store_error)?
        else {
            log_query(
                &self.state,
                &party,
                &call,
                &ask,
                &permit,
                QueryOutcome::PersonNotFound {
                    as_of_sequence: as_of,
                },
            )
            .await?;
            return Err(person_not_found());
        };
        let records = store
            .records_as_of(&query.person, &query.benefit_codes, query.period, Some(as_of))
            .await
            .map_err(store_error)?;
        let record_count = records.len() as u64;
        log_query(
            &self.state,
            &party,
            &call,
            &ask,
            &permit,
            QueryOutcome::Disclosed {
                as_of_sequence: as_of,
                record_count,
            },
        )
        .await?;
        let mut messages = Vec::with_capacity(1 + records.len() / RECORDS_PER_MESSAGE + 1);
        messages.push(Ok(pb::QueryPersonResponse {
            content: Some(pb::query_person_response::Content::Header(
                pb::QueryPersonHeader {
                    person: Some(convert::person(&person.person, &person.data, Audience::Party)),
                    as_of_sequence: as_of,
                    record_count,
                },
            )),
        }));
        for records in convert::record_batches(records, RECORDS_PER_MESSAGE) {
            messages.push(Ok(pb::QueryPersonResponse {
                content: Some(pb::query_person_response::Content::Records(
                    pb::QueryPersonRecords { records },
                )),
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }
}

impl QueryApi {
    /// Checks the request's fields and reads the catalogue entries it names.
    async fn check(&self, req: pb::QueryPersonRequest, today: Date) -> Result<CheckedQuery, Status> {
        let person = Personnummer::parse(&req.person_id, today)
            .map_err(|e| invalid_field(ErrorReason::PersonIdInvalid, "person_id", e.to_string()))?;
        if req.benefit_type_codes.is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "benefit_type_codes",
                "give at least one benefit type code (PartyService.ListBenefitTypes)",
            ));
        }
        let period = req.period.unwrap_or_default();
        if period.from.trim().is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "period.from",
                "period.from is required (YYYY-MM-DD); leave period.to empty for an open end",
            ));
        }
        let period = convert::date_range("period", &period)
            .map_err(|e| invalid_field(ErrorReason::InvalidDate, &e.field, e.message))?;
        if req.legal_basis.trim().is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "legal_basis",
                "legal_basis is required: a code from PartyService.ListLegalBases",
            ));
        }
        if req.case_reference.chars().count() > MAX_CASE_REFERENCE_LEN {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "case_reference",
                format!("case_reference is longer than {MAX_CASE_REFERENCE_LEN} characters"),
            ));
        }
        let known = self.state.store.benefit_types().await.map_err(store_error)?;
        let mut benefit_codes: Vec<String> = Vec::with_capacity(req.benefit_type_codes.len());
        for (i, code) in req.benefit_type_codes.iter().enumerate() {
            let code = code.trim();
            if !known.iter().any(|t| t.code == code) {
                return Err(error_with(
                    Code::InvalidArgument,
                    ErrorReason::UnknownBenefitType,
                    "unknown benefit type; use codes from PartyService.ListBenefitTypes",
                    vec![
                        ("field", format!("benefit_type_codes[{i}]")),
                        ("benefit_type", code.to_string()),
                    ],
                ));
            }
            if !benefit_codes.iter().any(|c| c == code) {
                benefit_codes.push(code.to_string());
            }
        }
        let code = req.legal_basis.trim();
        let basis = self
            .state
            .store
            .legal_bases()
            .await
            .map_err(store_error)?
            .into_iter()
            .find(|b| b.code == code)
            .ok_or_else(|| {
                error_with(
                    Code::InvalidArgument,
                    ErrorReason::UnknownBasis,
                    "unknown legal basis; use a code from PartyService.ListLegalBases",
                    vec![
                        ("field", "legal_basis".to_string()),
                        ("legal_basis", code.to_string()),
                    ],
                )
            })?;
        Ok(CheckedQuery {
            person,
            benefit_codes,
            period,
            basis,
            case_reference: req.case_reference.trim().to_string(),
            consent_id: req.consent_id.trim().to_string(),
        })
    }
}
