//! `lefi.admin.v1.RegisterAdminService`: the register feed (Ingest), the operator's view of one
//! person (ShowPerson) and the register statistics (GetStats).
//!
//! Ingest runs as two tasks per stream: a reader that decodes and checks each fact as it arrives
//! (feeding a bounded channel, so a fast client is pushed back by HTTP/2 flow control), and a
//! writer that takes whatever has arrived, up to [`INGEST_BATCH`] facts, stores it in one
//! transaction and answers every fact in order once that transaction has committed.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::domain::Personnummer;
use crate::domain::disclosure::{Channel, Decision, NewDisclosure};
use crate::domain::register::versions::{IngestResult, StoredRecord};
use crate::domain::register::{FactBody, FactError, NewFact, RejectReason};
use crate::grpc::admin_api::AdminApi;
use crate::grpc::convert::{self, Audience};
use crate::grpc::fields::{self, FieldError};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::status::{self, Missing, Unreadable};
use crate::identity::OperatorPrincipal;
use crate::policy::operator::AdminRight;
use crate::state::AppState;

/// The most facts stored in one transaction.
pub const INGEST_BATCH: usize = 5_000;
/// Facts read ahead of the writer, and responses buffered for the client, per stream.
const INGEST_BUFFER: usize = 8_192;

type IngestStream = Pin<Box<dyn Stream<Item = Result<pb::IngestResponse, Status>> + Send>>;

/// Records an operator's view of a person in the disclosure log (channel OPERATOR_VIEW), once per
/// ShowPerson, after the lookup and before anything is shown: if the log cannot be written, the
/// view is refused.
async fn log_operator_view(
    state: &AppState,
    operator: &OperatorPrincipal,
    person: &Personnummer,
    as_of_sequence: u64,
    found: bool,
) -> Result<(), Status> {
    let decision = if found {
        Decision::Allowed
    } else {
        Decision::Denied
    };
    let entry = NewDisclosure {
        system_identity: operator.fingerprint.clone(),
        operator_name: Some(operator.name.clone()),
        denial_reason: (!found).then(|| "PERSON_NOT_FOUND".to_string()),
        person: Some(person.clone()),
        to_sequence: as_of_sequence,
        ..NewDisclosure::new(
            Channel::OperatorView,
            decision,
            "/lefi.admin.v1.RegisterAdminService/ShowPerson",
        )
    };
    state
        .append_disclosures(&[entry], state.clock.now_micros())
        .await?;
    Ok(())
}

/// One decoded request: its fact, or why it was refused before reaching the store.
type Decoded = Result<NewFact, FactError>;

/// What the reader hands the writer, in stream order.
#[allow(
    clippy::large_enum_variant,
    reason = "nearly every item is a Request; boxing it would allocate once per fact"
)]
enum Inbound {
    /// A request that was read.
    Request(Decoded),
    /// A request that could not be read: the stream ends with it once everything before it is
    /// answered.
    Unreadable(Unreadable),
}

impl AdminApi {
    /// Takes the client's facts as they come and answers each once it is stored (see the module
    /// docs).
    async fn ingest(
        &self,
        (_, inbound): (OperatorPrincipal, Streaming<pb::IngestRequest>),
    ) -> Result<IngestStream, Status> {
        let (decoded_tx, decoded_rx) = mpsc::channel::<Inbound>(INGEST_BUFFER);
        let (out_tx, out_rx) = mpsc::channel(INGEST_BUFFER);
        status::spawn(read_facts(self.state.clone(), inbound, decoded_tx));
        status::spawn(write_facts(self.state.clone(), decoded_rx, out_tx));
        Ok(Box::pin(ReceiverStream::new(out_rx)))
    }

    /// The operator's view of one person as of a sequence: the person, every stored fact and
    /// every version of the person's own data; logged as an operator view before it is shown.
    async fn show_person(
        &self,
        (operator, req): (OperatorPrincipal, pb::ShowPersonRequest),
    ) -> Result<pb::ShowPersonResponse, Status> {
        let person = fields::person("person_id", &req.person_id, self.state.clock.today())?;
        let store = &self.state.store;
        let head = store.head_seq().await?;
        let as_of = match req.as_of_sequence {
            0 => head,
            s if s > head => {
                return Err(FieldError::invalid(
                    "as_of_sequence",
                    format!(
                        "as_of_sequence {s} is beyond the register's head {head}; ask for {head} or less, \
                         or 0 for the head"
                    ),
                )
                .into());
            }
            s => s,
        };
        let found = store.person(&person, Some(as_of)).await?;
        log_operator_view(&self.state, &operator, &person, as_of, found.is_some()).await?;
        let Some(found) = found else {
            return Err(status::not_found(Missing::Person));
        };
        let history = store.person_history(&person, Some(as_of)).await?;
        let mut facts = Vec::new();
        let mut person_versions = Vec::new();
        for mut r in history {
            if r.is_person_update() {
                person_versions.push(person_version(&r));
            } else {
                facts.push(pb::StoredFact {
                    source_system: std::mem::take(&mut r.source_system),
                    source_id: r.source_id.take().unwrap_or_default(),
                    source_version: r.source_version,
                    record: Some(convert::benefit_record(r)),
                });
            }
        }
        Ok(pb::ShowPersonResponse {
            person: Some(convert::person(&found.person, &found.data, Audience::Operator)),
            as_of_sequence: as_of,
            facts,
            person_versions,
        })
    }

    /// The register's statistics (no personal data).
    async fn get_stats(
        &self,
        _: (OperatorPrincipal, pb::GetStatsRequest),
    ) -> Result<pb::GetStatsResponse, Status> {
        let stats = self.state.store.stats(self.state.clock.now_micros()).await?;
        Ok(pb::GetStatsResponse {
            person_count: stats.person_count,
            fact_count: stats.fact_count,
            fact_version_count: stats.fact_version_count,
            latest_sequence: stats.latest_seq,
            latest_recorded_at: stats.latest_recorded_at.map(convert::timestamp),
            accepted_last_minute: stats.accepted_last_minute,
            accepted_last_hour: stats.accepted_last_hour,
        })
    }
}

fn person_version(r: &StoredRecord) -> pb::PersonVersion {
    let data = match &r.body {
        FactBody::Person(d) => d.clone(),
        _ => Default::default(),
    };
    pb::PersonVersion {
        register_sequence: r.seq,
        recorded_at: Some(convert::timestamp(r.recorded_at)),
        person: Some(convert::person(&r.person, &data, Audience::Operator)),
        source_system: r.source_system.clone(),
        source_version: r.source_version,
    }
}

/// Reads the client's facts, decodes and checks each one, and hands them to the writer in order.
/// Ends when the client finishes or fails, when the writer is gone, or when the server drains.
async fn read_facts(state: AppState, mut inbound: Streaming<pb::IngestRequest>, tx: mpsc::Sender<Inbound>) {
    loop {
        let next = tokio::select! {
            biased;
            () = state.shutdown.cancelled() => return,
            next = inbound.message() => next,
        };
        let request = match next {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(status) => {
                // The facts before the failure are still answered; nothing after it is read.
                match Unreadable::of(&status, state.max_message_bytes) {
                    Some(unreadable) => {
                        let _ = tx.send(Inbound::Unreadable(unreadable)).await;
                    }
                    None => tracing::debug!(code = ?status.code(), "ingest stream from the client failed"),
                }
                return;
            }
        };
        let decoded = fact_of_request(request, state.clock.today());
        if tx.send(Inbound::Request(decoded)).await.is_err() {
            return;
        }
    }
}

/// What the ingest stream makes of one request it could read: the checked fact, or why it is
/// refused (answered as that request's REJECTED outcome). `today` is the reference date of
/// ten-digit identity numbers. Public for the fuzz target `ingest_request` (`fuzz/`), which runs it
/// on every message arbitrary bytes decode to.
pub fn fact_of_request(request: pb::IngestRequest, today: time::Date) -> Result<NewFact, FactError> {
    match request.fact {
        Some(fact) => convert::new_fact(fact, today),
        None => Err(FactError::new(
            RejectReason::InvalidArgument,
            "fact",
            "the request holds no fact; set IngestRequest.fact",
        )),
    }
}

/// Stores what the reader decoded, in batches, and answers each fact in order after its batch has
/// committed.
async fn write_facts(
    state: AppState,
    mut rx: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Result<pb::IngestResponse, Status>>,
) {
    let mut index: u64 = 0;
    let mut batch: Vec<Inbound> = Vec::with_capacity(INGEST_BATCH);
    loop {
        batch.clear();
        let received = tokio::select! {
            biased;
            () = state.shutdown.cancelled() => {
                let _ = out.send(Err(status::shutting_down())).await;
                return;
            }
            n = rx.recv_many(&mut batch, INGEST_BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let mut facts = Vec::with_capacity(batch.len());
        let mut refused: Vec<Option<FactError>> = Vec::with_capacity(batch.len());
        let mut unreadable = None;
        for item in batch.drain(..) {
            match item {
                Inbound::Request(Ok(fact)) => {
                    facts.push(fact);
                    refused.push(None);
                }
                Inbound::Request(Err(e)) => refused.push(Some(e)),
                // The reader sends nothing after it.
                Inbound::Unreadable(u) => unreadable = Some(u),
            }
        }
        let started = std::time::Instant::now();
        let stored = match state
            .store
            .ingest_and_fan_out(facts, state.clock.now_micros())
            .await
        {
            Ok(ingested) => {
                // The streams of the parties whose histories grew (here, and through NOTIFY on
                // other replicas) look for their new events.
                state.notify_parties(&ingested.parties);
                ingested.results
            }
            Err(e) => {
                // Nothing of this batch was committed: the client resends every fact without answer.
                let _ = out.send(Err(e.into())).await;
                return;
            }
        };
        let commit_took = started.elapsed();
        // Every answer is settled, and counted, before the first is sent: a client that has its
        // answers sees them in the metrics.
        let mut stored = stored.into_iter();
        let mut answers = Vec::with_capacity(refused.len());
        for item in refused {
            answers.push(match item {
                None => match stored.next() {
                    Some(result) => result,
                    None => {
                        let _ = out
                            .send(Err(status::internal(
                                "ingest",
                                &std::io::Error::other("the store answered fewer facts than it was given"),
                            )))
                            .await;
                        return;
                    }
                },
                Some(e) => IngestResult::Rejected(e),
            });
        }
        let (mut accepted, mut unchanged, mut rejected) = (0u64, 0u64, 0u64);
        for result in &answers {
            match result {
                IngestResult::Accepted(_) => accepted += 1,
                IngestResult::Unchanged(_) => unchanged += 1,
                IngestResult::Rejected(_) => rejected += 1,
            }
        }
        state
            .metrics
            .ingest_batch((accepted, unchanged, rejected), commit_took);
        for result in answers {
            if out.send(Ok(response(index, result))).await.is_err() {
                return;
            }
            index += 1;
        }
        tracing::debug!(
            accepted,
            unchanged,
            rejected,
            store_ms = commit_took.as_millis() as u64,
            "ingest batch committed"
        );
        if let Some(unreadable) = unreadable {
            tracing::info!(index, reason = ?unreadable, "ingest stream ended at a request that could not be read");
            let _ = out.send(Err(unreadable.status_at(index))).await;
            return;
        }
    }
}

fn response(index: u64, result: IngestResult) -> pb::IngestResponse {
    let outcome = outcome_of(&result) as i32;
    match result {
        IngestResult::Accepted(v) | IngestResult::Unchanged(v) => pb::IngestResponse {
            index,
            outcome,
            register_sequence: v.seq,
            // Person updates have no record id on the wire.
            record_id: if v.person_update {
                String::new()
            } else {
                v.record_id
            },
            version: if v.person_update { 0 } else { v.version },
            ..Default::default()
        },
        IngestResult::Rejected(e) => pb::IngestResponse {
            index,
            outcome,
            reason: status::fact_reason(e.reason) as i32,
            message: e.message,
            field: e.field,
            ..Default::default()
        },
    }
}

fn outcome_of(result: &IngestResult) -> pb::IngestOutcome {
    match result {
        IngestResult::Accepted(_) => pb::IngestOutcome::Accepted,
        IngestResult::Unchanged(_) => pb::IngestOutcome::Unchanged,
        IngestResult::Rejected(_) => pb::IngestOutcome::Rejected,
    }
}

crate::grpc::service! {
    impl pb::register_admin_service_server::RegisterAdminService for AdminApi {
        ingest(Streaming<pb::IngestRequest>) -> IngestStream: needs(AdminRight::FeedRegister);
        show_person(pb::ShowPersonRequest) -> pb::ShowPersonResponse: needs(AdminRight::ViewPerson);
        get_stats(pb::GetStatsRequest) -> pb::GetStatsResponse: needs(AdminRight::ReadRegisterStats);
    }
}
