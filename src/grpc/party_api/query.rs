//! `lefi.v1.QueryService`: the one-off query (LEFI Online style).
//!
//! A query is checked in this order: the request's own fields, then the party's right to the
//! information (the policy, [`crate::policy`]), then the register is read as of its head at the time
//! of the question: the header carries that sequence, and every record is the latest version as of
//! it. Every decision, allowed or denied, is written to the disclosure log before anything is sent.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::authorize::{Ask, CallContext, allowed_entry, authorize, refused_entry};
use crate::domain::Personnummer;
use crate::domain::clock::Micros;
use crate::domain::disclosure::{Channel, Decision, NewDisclosure};
use crate::domain::register::DateRange;
use crate::domain::register::versions::StoredRecord;
use crate::grpc::convert::{self, Audience};
use crate::grpc::fields::{self, FieldError, FieldProblem};
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Missing, Report};
use crate::identity::PartyPrincipal;

/// Records per message after the header.
pub const RECORDS_PER_MESSAGE: usize = 500;
/// Longest accepted case reference.
const MAX_CASE_REFERENCE_LEN: usize = 64;
/// The most persons of one QueryPersons call.
const MAX_BULK: usize = 1_000;
/// QueryPersons messages prepared ahead of a slow client.
const BULK_BUFFER: usize = 8;

type QueryStream = Pin<Box<dyn Stream<Item = Result<pb::QueryPersonResponse, Status>> + Send>>;
type BulkStream = Pin<Box<dyn Stream<Item = Result<pb::QueryPersonsResponse, Status>> + Send>>;

/// A query whose fields have been checked, as the policy request it makes, and its period.
struct CheckedQuery {
    ask: Ask,
    period: DateRange,
}

/// As of when a query is answered.
#[derive(Debug, Clone, Copy)]
enum AsOf {
    /// The register's head, read for this answer (or for every answer of a bulk query).
    Head(u64),
    /// The sequence of an earlier answer to reproduce.
    Reproduce(u64),
}

/// One person's answer, logged and ready to send.
struct Answer {
    header: pb::QueryPersonHeader,
    records: Vec<StoredRecord>,
}

impl Answer {
    /// The answer's messages: the header, then the records in messages of [`RECORDS_PER_MESSAGE`].
    fn into_contents(self) -> impl Iterator<Item = pb::query_person_response::Content> {
        use pb::query_person_response::Content;
        let header = std::iter::once(Content::Header(self.header));
        let records = convert::record_batches(self.records, RECORDS_PER_MESSAGE)
            .into_iter()
            .map(|records| Content::Records(pb::QueryPersonRecords { records }));
        header.chain(records)
    }
}

impl PartyApi {
    /// Answers one query: the person as of the register's head (or as of the earlier answer it
    /// reproduces), then the records in messages of [`RECORDS_PER_MESSAGE`].
    async fn query_person(
        &self,
        (party, call, req): (PartyPrincipal, CallContext, pb::QueryPersonRequest),
    ) -> Result<QueryStream, Status> {
        let as_of = match req.as_of_sequence {
            0 => AsOf::Head(self.state.store.head_seq().await?),
            earlier => AsOf::Reproduce(earlier),
        };
        let answer = self.answer(&party, &call, &req, as_of, None).await?;
        let messages: Vec<_> = answer
            .into_contents()
            .map(|content| {
                Ok(pb::QueryPersonResponse {
                    content: Some(content),
                })
            })
            .collect();
        Ok(Box::pin(tokio_stream::iter(messages)))
    }

    /// Answers a bulk query: every person as of one register sequence, each checked, decided and
    /// logged on its own, the answers streamed in request order as they are ready.
    async fn query_persons(
        &self,
        (party, call, req): (PartyPrincipal, CallContext, pb::QueryPersonsRequest),
    ) -> Result<BulkStream, Status> {
        let count = req.persons.len();
        tracing::Span::current().record("persons", count);
        fields::batch_size("persons", count, MAX_BULK)?;
        let state = &self.state;
        let today = state.clock.today();
        // The shared fields are checked once: a fault there refuses every person, each valid
        // identity number logged as denied for it.
        let shared = pb::QueryPersonRequest {
            benefit_type_codes: req.benefit_type_codes.clone(),
            period: req.period.clone(),
            legal_basis: req.legal_basis.clone(),
            ..Default::default()
        };
        let period = match self.check_shared_fields(&shared).await? {
            Ok(period) => period,
            Err(error) => {
                let report = Report::from(error);
                let mut entries = Vec::new();
                for item in &req.persons {
                    if let Ok(person) = fields::person("person_id", &item.person_id, today) {
                        let ask = self.ask(&shared, person);
                        entries.push(refused_entry(&party, &call, &ask, report.reason_name()));
                    }
                }
                state
                    .append_disclosures(&entries, state.clock.now_micros())
                    .await?;
                return Err(report.into());
            }
        };
        let as_of = AsOf::Head(state.store.head_seq().await?);
        let (tx, rx) = mpsc::channel(BULK_BUFFER);
        let api = self.clone();
        status::spawn(async move {
            for (index, item) in req.persons.into_iter().enumerate() {
                // A client that left is answered (and logged) no further.
                if tx.is_closed() {
                    return;
                }
                let index = index as u32;
                let one = pb::QueryPersonRequest {
                    person_id: item.person_id,
                    case_reference: item.case_reference,
                    consent_id: item.consent_id,
                    ..shared.clone()
                };
                let contents = match api.answer(&party, &call, &one, as_of, Some(period)).await {
                    Ok(answer) => answer.into_contents().map(bulk_content).collect(),
                    Err(status) if status::concerns_the_request(&status) => {
                        vec![pb::query_persons_response::Content::Error(status::item_error_of(
                            &status,
                        ))]
                    }
                    // The service failed (storage, shutdown): the call ends here.
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                for content in contents {
                    let message = pb::QueryPersonsResponse {
                        index,
                        content: Some(content),
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// One person's answer: the request's fields are checked, the policy decides, and the register
    /// is read as of `as_of`; the decision is logged before the answer is returned. A refusal is
    /// the status to answer with (already logged when the request names a valid person).
    /// `shared` is the period when the fields every person of a bulk query shares were already
    /// checked (then only the person's own fields are).
    async fn answer(
        &self,
        party: &PartyPrincipal,
        call: &CallContext,
        req: &pb::QueryPersonRequest,
        as_of: AsOf,
        shared: Option<DateRange>,
    ) -> Result<Answer, Status> {
        let state = &self.state;
        // A request that names nobody is refused without a log entry; every other refusal is a
        // decision about the person, logged before it is answered.
        let person = fields::person("person_id", &req.person_id, state.clock.today())?;
        let CheckedQuery { ask, period } = match self.check(req, person, shared).await? {
            Ok(checked) => checked,
            Err((ask, error)) => {
                let report = Report::from(error);
                let entry = refused_entry(party, call, &ask, report.reason_name());
                state
                    .append_disclosures(&[entry], state.clock.now_micros())
                    .await?;
                return Err(report.into());
            }
        };
        // The policy decides (and logs a denial) before the register is read.
        let permit = authorize(state, party, call, &ask).await?;
        let store = &state.store;
        let (as_of, reproduces) = match as_of {
            AsOf::Head(head) => (head, None),
            AsOf::Reproduce(earlier) => match self.earlier_answer(party, &ask, earlier).await? {
                Some(at) => (earlier, Some(at)),
                None => {
                    let entry = refused_entry(party, call, &ask, ErrorReason::AnswerNotFound.as_str_name());
                    state
                        .append_disclosures(&[entry], state.clock.now_micros())
                        .await?;
                    return Err(status::not_found(Missing::Answer));
                }
            },
        };
        // Everything as of one sequence: one consistent answer.
        let found = store.person(permit.person(), Some(as_of)).await?;
        let records = match &found {
            Some(_) => store.records_as_of(&permit, period, as_of).await?,
            None => Vec::new(),
        };
        let allowed = allowed_entry(party, call, &ask, &permit, records.len(), (0, as_of));
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
        Ok(Answer {
            header: pb::QueryPersonHeader {
                person: Some(convert::person(&person.person, &person.data, Audience::Party)),
                as_of_sequence: as_of,
                record_count: records.len() as u64,
                reproduces_answer_at: reproduces.map(convert::timestamp),
            },
            records,
        })
    }

    /// When the party was answered a query about the same person, benefit types (in any order)
    /// and period as of `sequence`, if it ever was.
    async fn earlier_answer(
        &self,
        party: &PartyPrincipal,
        ask: &Ask,
        sequence: u64,
    ) -> Result<Option<Micros>, Status> {
        let given = self
            .state
            .store
            .answers_given(&party.party_id, &ask.person, Channel::Query, sequence)
            .await?;
        let mut asked = ask.benefit_codes.clone();
        asked.sort();
        Ok(given
            .into_iter()
            .find(|e| {
                let mut types = e.entry.benefit_types.clone();
                types.sort();
                types == asked && (e.entry.period_from, e.entry.period_to) == ask.period
            })
            .map(|e| e.at))
    }

    /// Checks the request's fields other than the person: those a bulk query shares against the
    /// catalogue (unless `shared` is their already checked period), then the case reference. A
    /// refusal comes with what the request asked for, as given, for the log.
    async fn check(
        &self,
        req: &pb::QueryPersonRequest,
        person: Personnummer,
        shared: Option<DateRange>,
    ) -> Result<Result<CheckedQuery, (Ask, FieldError)>, Status> {
        let mut ask = self.ask(req, person);
        let checked = match shared {
            Some(period) => Ok(period),
            None => self.check_shared_fields(req).await?,
        };
        let checked = checked.and_then(|period| {
            fields::at_most("case_reference", &req.case_reference, MAX_CASE_REFERENCE_LEN)?;
            Ok(period)
        });
        Ok(match checked {
            Ok(period) => {
                ask.period = (Some(period.from), period.to);
                Ok(CheckedQuery { ask, period })
            }
            Err(error) => Err((ask, error)),
        })
    }

    /// What a query about `person` asks the policy for, as given (benefit codes trimmed and each
    /// named once; the period is set once it has been read).
    fn ask(&self, req: &pb::QueryPersonRequest, person: Personnummer) -> Ask {
        let trimmed = |v: &str| Some(v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
        let mut benefit_codes: Vec<String> = Vec::with_capacity(req.benefit_type_codes.len());
        for code in req.benefit_type_codes.iter().map(|c| c.trim()) {
            if !benefit_codes.iter().any(|c| c == code) {
                benefit_codes.push(code.to_string());
            }
        }
        Ask {
            basis_code: req.legal_basis.trim().to_string(),
            person,
            benefit_codes,
            case_reference: trimmed(&req.case_reference),
            consent_id: trimmed(&req.consent_id),
            period: (None, None),
            subscription_id: None,
        }
    }

    /// Checks the fields every person of a bulk query shares: benefit types, period, basis.
    /// Returns the period asked for.
    async fn check_shared_fields(
        &self,
        req: &pb::QueryPersonRequest,
    ) -> Result<Result<DateRange, FieldError>, Status> {
        let known = self.state.store.benefit_types().await?;
        let bases = self.state.store.legal_bases().await?;
        let codes: Vec<String> = req
            .benefit_type_codes
            .iter()
            .map(|c| c.trim().to_string())
            .collect();
        let basis = req.legal_basis.trim();
        Ok((|| {
            if codes.is_empty() {
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
            if basis.is_empty() {
                return Err(FieldError::invalid(
                    "legal_basis",
                    "legal_basis is required: a code from PartyService.ListLegalBases",
                ));
            }
            fields::benefit_codes("benefit_type_codes", &codes, |c| {
                known.iter().any(|t| t.code == c)
            })?;
            if !bases.iter().any(|b| b.code == basis) {
                return Err(FieldError::new(
                    FieldProblem::UnknownBasis {
                        code: basis.to_string(),
                    },
                    "legal_basis",
                    "unknown legal basis; use a code from PartyService.ListLegalBases",
                ));
            }
            Ok(period)
        })())
    }
}

/// One message of a person's answer, as a bulk answer carries it.
fn bulk_content(content: pb::query_person_response::Content) -> pb::query_persons_response::Content {
    use pb::query_person_response::Content;
    match content {
        Content::Header(header) => pb::query_persons_response::Content::Header(header),
        Content::Records(records) => pb::query_persons_response::Content::Records(records),
    }
}

crate::grpc::service! {
    impl pb::query_service_server::QueryService for PartyApi {
        query_person(pb::QueryPersonRequest) -> QueryStream:
            logged("/lefi.v1.QueryService/QueryPerson", Channel::Query);
        #[fields(persons)]
        query_persons(pb::QueryPersonsRequest) -> BulkStream:
            logged("/lefi.v1.QueryService/QueryPersons", Channel::Query);
    }
}
