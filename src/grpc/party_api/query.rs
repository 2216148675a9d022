//! `lefi.v1.QueryService`: the one-off query (LEFI Online style).
//!
//! A query is checked in this order: the request's own fields, then the party's right to the
//! information (the policy, [`crate::policy`]), then the register is read as of its head at the time
//! of the question: the header carries that sequence, and every record is the latest version as of
//! it. Every decision, allowed or denied, is written to the disclosure log before anything is sent.

use std::pin::Pin;

use futures::Stream;
use tonic::Status;

use super::authorize::{Ask, CallContext, allowed_entry, authorize, refused_entry};
use crate::domain::Personnummer;
use crate::domain::disclosure::{Channel, Decision, NewDisclosure};
use crate::domain::register::DateRange;
use crate::grpc::convert::{self, Audience};
use crate::grpc::fields::{self, FieldError, FieldProblem};
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Missing, Report};
use crate::identity::PartyPrincipal;

/// Records per message after the header.
pub const RECORDS_PER_MESSAGE: usize = 500;
/// Longest accepted case reference.
const MAX_CASE_REFERENCE_LEN: usize = 64;

type QueryStream = Pin<Box<dyn Stream<Item = Result<pb::QueryPersonResponse, Status>> + Send>>;

/// A query whose fields have been checked, as the policy request it makes, and its period.
struct CheckedQuery {
    ask: Ask,
    period: DateRange,
}

impl PartyApi {
    /// Answers one query: the person as of the register's head, then the records in messages of
    /// [`RECORDS_PER_MESSAGE`].
    async fn query_person(
        &self,
        (party, call, req): (PartyPrincipal, CallContext, pb::QueryPersonRequest),
    ) -> Result<QueryStream, Status> {
        let state = &self.state;
        // A request that names nobody is refused without a log entry; every other refusal is a
        // decision about the person, logged before it is answered.
        let person = fields::person("person_id", &req.person_id, state.clock.today())?;
        let CheckedQuery { ask, period } = match self.check(&req, person).await? {
            Ok(checked) => checked,
            Err((ask, error)) => {
                let report = Report::from(error);
                let entry = refused_entry(&party, &call, &ask, report.reason_name());
                state
                    .append_disclosures(&[entry], state.clock.now_micros())
                    .await?;
                return Err(report.into());
            }
        };
        // The policy decides (and logs a denial) before the register is read.
        let permit = authorize(state, &party, &call, &ask).await?;
        let store = &state.store;
        // The head first, then everything as of it: one consistent answer.
        let as_of = store.head_seq().await?;
        let found = store.person(permit.person(), Some(as_of)).await?;
        let records = match &found {
            Some(_) => store.records_as_of(&permit, period, as_of).await?,
            None => Vec::new(),
        };
        let allowed = allowed_entry(&party, &call, &ask, &permit, records.len(), (0, as_of));
        // Logged before anything is sent: if the log cannot be written, nothing is released.
        let entry = match &found {
            Some(_) => allowed,
            None => NewDisclosure {
                decision: Decision::Denied,
                denial_reason: Some("PERSON_NOT_FOUND".to_string()),
                ..allowed
            },
        };
        state
            .append_disclosures(&[entry], state.clock.now_micros())
            .await?;
        let Some(person) = found else {
            return Err(status::not_found(Missing::Person));
        };
        let record_count = records.len() as u64;
        let mut messages = Vec::with_capacity(2 + records.len() / RECORDS_PER_MESSAGE);
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
        Ok(Box::pin(tokio_stream::iter(messages)))
    }

    /// Checks the request's fields (other than the person) against the catalogue. A refusal comes
    /// with what the request asked for, as given, for the log.
    async fn check(
        &self,
        req: &pb::QueryPersonRequest,
        person: Personnummer,
    ) -> Result<Result<CheckedQuery, (Ask, FieldError)>, Status> {
        let trimmed = |v: &str| Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
        let mut ask = Ask {
            basis_code: req.legal_basis.trim().to_string(),
            person,
            benefit_codes: req
                .benefit_type_codes
                .iter()
                .map(|c| c.trim().to_string())
                .collect(),
            case_reference: trimmed(&req.case_reference),
            consent_id: trimmed(&req.consent_id),
            period: (None, None),
            subscription_id: None,
        };
        let known = self.state.store.benefit_types().await?;
        let bases = self.state.store.legal_bases().await?;
        let checked = (|| {
            if ask.benefit_codes.is_empty() {
                return Err(FieldError::invalid(
                    "benefit_type_codes",
                    "give at least one benefit type code (PartyService.ListBenefitTypes)",
                ));
            }
            let period = req.period.clone().unwrap_or_default();
            if period.from.trim().is_empty() {
                return Err(FieldError::invalid(
                    "period.from",
                    "period.from is required (YYYY-MM-DD); leave period.to empty for an open end",
                ));
            }
            let period =
                convert::date_range("period", &period).map_err(|e| FieldError::date(e.field, e.message))?;
            if ask.basis_code.is_empty() {
                return Err(FieldError::invalid(
                    "legal_basis",
                    "legal_basis is required: a code from PartyService.ListLegalBases",
                ));
            }
            fields::at_most("case_reference", &req.case_reference, MAX_CASE_REFERENCE_LEN)?;
            fields::benefit_codes("benefit_type_codes", &ask.benefit_codes, |c| {
                known.iter().any(|t| t.code == c)
            })?;
            if !bases.iter().any(|b| b.code == ask.basis_code) {
                return Err(FieldError::new(
                    FieldProblem::UnknownBasis {
                        code: ask.basis_code.clone(),
                    },
                    "legal_basis",
                    "unknown legal basis; use a code from PartyService.ListLegalBases",
                ));
            }
            Ok(period)
        })();
        let mut benefit_codes: Vec<String> = Vec::with_capacity(ask.benefit_codes.len());
        for code in &ask.benefit_codes {
            if !benefit_codes.contains(code) {
                benefit_codes.push(code.clone());
            }
        }
        ask.benefit_codes = benefit_codes;
        Ok(match checked {
            Ok(period) => {
                ask.period = (Some(period.from), period.to);
                Ok(CheckedQuery { ask, period })
            }
            Err(error) => Err((ask, error)),
        })
    }
}

crate::grpc::service! {
    impl pb::query_service_server::QueryService for PartyApi {
        query_person(pb::QueryPersonRequest) -> QueryStream:
            logged("/lefi.v1.QueryService/QueryPerson", Channel::Query);
    }
}
