//! `lefi.v1.QueryService`: the one-off query (LEFI Online style).
//!
//! A query is checked in this order: the request's own fields, then the party's right to the
//! information ([`authorize_query`]), then the register is read as of its head at the time of
//! the question: the header carries that sequence, and every record is the latest version as of
//! it. Every decision, allowed or denied, goes through [`log_query`].

use std::pin::Pin;

use futures::Stream;
use time::Date;
use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::Personnummer;
use crate::domain::register::DateRange;
use crate::grpc::convert::{self, Audience};
use crate::grpc::party_of;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::register::person_not_found;
use crate::grpc::status::{error_with, invalid_field, store_error};
use crate::identity::PartyPrincipal;
use crate::store::LegalBasis;

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
    /// Refused by [`authorize_query`].
    Denied,
}

/// HOOK(issue 4): the disclosure policy for a one-off query. Until the policy module lands this
/// holds the interim checks read straight from the catalogue and the agreement: the basis fits the
/// party kind, the agreement is in force and grants the basis, the basis is in force, every
/// benefit type is granted and covered, a consent is named where the basis needs one (and, with no
/// consent register yet, is never accepted), and a case reference is given where the basis needs
/// an open case. Replace the body with the call to the policy.
pub async fn authorize_query(
    state: &AppState,
    party: &PartyPrincipal,
    query: &CheckedQuery,
    today: Date,
) -> Result<(), Status> {
    let basis = &query.basis;
    let basis_meta = || vec![("legal_basis", basis.code.clone())];
    if !basis.party_kinds.contains(&party.kind) {
        return Err(error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotForPartyKind,
            "this legal basis does not allow disclosure to your kind of party; choose a basis listed by \
             PartyService.ListLegalBases with granted_only = true",
            basis_meta(),
        ));
    }
    let agreement = state
        .store
        .agreement_for_party(&party.party_id)
        .await
        .map_err(store_error)?;
    let Some(agreement) = agreement else {
        return Err(error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotInAgreement,
            "your party has no agreement that grants this legal basis; contact the agency",
            basis_meta(),
        ));
    };
    if agreement.valid_from > today {
        return Err(error_with(
            Code::PermissionDenied,
            ErrorReason::AgreementNotInForce,
            "your agreement is not in force yet; retry on or after its valid_from date",
            vec![(
                "valid_from",
                crate::domain::clock::format_date(agreement.valid_from),
            )],
        ));
    }
    if !agreement.basis_codes.contains(&basis.code) {
        return Err(error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotInAgreement,
            "your agreement does not grant this legal basis; use a granted basis \
             (WhoAmI.granted_basis_codes) or ask the agency to extend the agreement",
            basis_meta(),
        ));
    }
    if !basis.in_force_on(today) {
        return Err(error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotInForce,
            "this legal basis is not in force today; use a basis that is",
            basis_meta(),
        ));
    }
    for code in &query.benefit_codes {
        if !agreement.benefit_codes.contains(code) || !basis.benefit_codes.contains(code) {
            return Err(error_with(
                Code::PermissionDenied,
                ErrorReason::BenefitNotCovered,
                "a requested benefit type is not granted by your agreement or not covered by the legal \
                 basis; nothing was released — ask only for granted and covered types",
                vec![
                    ("benefit_type", code.clone()),
                    ("legal_basis", basis.code.clone()),
                ],
            ));
        }
    }
    if basis.requires_consent {
        if query.consent_id.is_empty() {
            return Err(error_with(
                Code::InvalidArgument,
                ErrorReason::ConsentRequired,
                "this legal basis requires the individual's consent: register it with \
                 ConsentService.RegisterConsent and pass its consent_id",
                vec![
                    ("field", "consent_id".to_string()),
                    ("legal_basis", basis.code.clone()),
                ],
            ));
        }
        return Err(error_with(
            Code::PermissionDenied,
            ErrorReason::ConsentNotValid,
            "the consent_id does not identify a consent that is valid today for this person and basis",
            vec![
                ("consent_id", query.consent_id.clone()),
                ("consent_problem", "UNKNOWN".to_string()),
            ],
        ));
    }
    if basis.requires_open_case && query.case_reference.is_empty() {
        return Err(error_with(
            Code::InvalidArgument,
            ErrorReason::CaseReferenceRequired,
            "this legal basis requires an open case at your authority: pass its case_reference",
            vec![
                ("field", "case_reference".to_string()),
                ("legal_basis", basis.code.clone()),
            ],
        ));
    }
    Ok(())
}

/// HOOK(issue 4): records the query's decision and what was released in the disclosure log.
/// Called exactly once per query that passed the field checks, whatever the outcome. Until the
/// disclosure log lands it does nothing.
pub async fn log_query(
    _state: &AppState,
    _party: &PartyPrincipal,
    _query: &CheckedQuery,
    _outcome: QueryOutcome,
) -> Result<(), Status> {
    Ok(())
}

#[tonic::async_trait]
impl pb::query_service_server::QueryService for QueryApi {
    #[tracing::instrument(skip_all)]
    async fn query_person(
        &self,
        request: Request<pb::QueryPersonRequest>,
    ) -> Result<Response<QueryStream>, Status> {
        let party = party_of(&request)?;
        let today = self.state.clock.today();
        let query = self.check(request.into_inner(), today).await?;
        if let Err(denied) = authorize_query(&self.state, &party, &query, today).await {
            log_query(&self.state, &party, &query, QueryOutcome::Denied).await?;
            return Err(denied);
        }
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
                &query,
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
            &query,
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
        for chunk in records.chunks(RECORDS_PER_MESSAGE) {
            messages.push(Ok(pb::QueryPersonResponse {
                content: Some(pb::query_person_response::Content::Records(
                    pb::QueryPersonRecords {
                        records: chunk.iter().map(convert::benefit_record).collect(),
                    },
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
