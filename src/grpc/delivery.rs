//! `lefi.v1.DeliveryService`: the resumable delivery stream.
//!
//! One task per stream reads the party's delivery history (`store::delivery`) in (sequence, ord)
//! order, a page at a time, and feeds a small bounded channel; HTTP/2 flow control pushes back
//! from there, so a slow client never makes the server buffer more than a page. Before every
//! delivery the stream re-checks the caller's certificate and the policy for the subscription;
//! it writes the disclosure-log entries for a page before sending it. When idle it waits for a
//! change notification (or the heartbeat interval) instead of polling.
//!
//! The stream ends when the client leaves; with UNAUTHENTICATED when its certificate is revoked;
//! with PERMISSION_DENIED `PARTY_TERMINATED` once the party's termination takes effect (after the
//! ENDED notices); and with UNAVAILABLE `SERVER_SHUTTING_DOWN` when the server drains.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::Personnummer;
use crate::domain::clock::format_date;
use crate::domain::cursor::{CursorKey, Position};
use crate::domain::register::{DateRange, PersonData};
use crate::grpc::authorize::{CallContext, Gate, Refusal, Request as Ask, allowed_entry};
use crate::grpc::convert::{self, Audience, timestamp};
use crate::grpc::party::{heartbeat_interval, shutting_down};
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{error, invalid_field, store_error};
use crate::grpc::subscriptions::state_reason;
use crate::grpc::{party_of, status::reason_of};
use crate::identity::PartyPrincipal;
use crate::store::StoredRecord;
use crate::store::delivery::{
    DeliveryEvent, EndReason, EndSelector, EventKind, Subscription, SubscriptionState,
};
use crate::store::policy::{Channel, NewDisclosure};

/// Messages buffered per stream before the producer waits for the client.
const STREAM_BUFFER: usize = 16;
/// History events read per page.
const PAGE: i64 = 256;
/// Records per RecordBatch unless the client asks for fewer.
const DEFAULT_BATCH: usize = 500;
/// The most records per RecordBatch.
const MAX_BATCH: usize = 5_000;

/// `lefi.v1.DeliveryService`.
#[derive(Debug, Clone)]
pub struct DeliveryApi {
    state: AppState,
}

impl DeliveryApi {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEvent, Status>> + Send>>;

/// Decodes a client's cursor, refusing forged, foreign and expired ones.
async fn read_cursor(
    state: &AppState,
    key: &CursorKey,
    party_id: &str,
    cursor: &str,
) -> Result<Position, Status> {
    let position = key.decode(party_id, cursor).map_err(|e| {
        invalid_field(
            ErrorReason::CursorInvalid,
            "cursor",
            format!("{e}; resume with a cursor this service gave your party, or start with an empty cursor"),
        )
    })?;
    let floor = match position {
        Position::History { seq, .. } => seq,
        Position::Start { head, .. } => head,
    };
    let horizon = state
        .store
        .delivery_horizon(party_id)
        .await
        .map_err(store_error)?;
    if horizon > 0 && floor < horizon {
        return Err(crate::grpc::status::error_with(
            Code::FailedPrecondition,
            ErrorReason::CursorExpired,
            "this cursor is older than the delivery history kept; call RequestFullRefresh and stream from the cursor it returns",
            vec![("horizon_sequence", horizon.to_string())],
        ));
    }
    Ok(position)
}

#[tonic::async_trait]
impl pb::delivery_service_server::DeliveryService for DeliveryApi {
    #[tracing::instrument(skip_all)]
    async fn stream(&self, request: Request<pb::StreamRequest>) -> Result<Response<EventStream>, Status> {
        let party = party_of(&request)?;
        let call = CallContext::new(
            &request,
            "/lefi.v1.DeliveryService/Stream",
            Channel::StreamDelivery,
        );
        let req = request.into_inner();
        let state = self.state.clone();
        let key = CursorKey::new(state.store.cursor_key().await.map_err(store_error)?);
        let position = if req.cursor.is_empty() {
            let head = state.store.delivery_head().await.map_err(store_error)?;
            Position::Start {
                head,
                index: 0,
                records_sent: 0,
            }
        } else {
            read_cursor(&state, &key, &party.party_id, &req.cursor).await?
        };
        let interval = heartbeat_interval(req.heartbeat_interval.as_ref(), state.heartbeat_interval)?;
        let batch = match req.max_batch_records {
            0 => DEFAULT_BATCH,
            n => (n as usize).min(MAX_BATCH),
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (outlet, outgoing) = mpsc::channel(OUTLET_BATCHES);
        tokio::spawn(run_outlet(state.clone(), outgoing, tx));
        tokio::spawn(async move {
            let mut stream = DeliveryStream {
                state,
                party,
                call,
                key,
                batch,
                interval,
                outlet,
                position,
                outbox: Vec::new(),
                pending_log: Vec::new(),
                person_cache: std::collections::HashMap::new(),
            };
            if let Some(status) = stream.run().await {
                // The client may already be gone; then there is nobody to tell.
                let _ = stream.outlet.send(Outgoing::End(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn request_full_refresh(
        &self,
        request: Request<pb::FullRefreshRequest>,
    ) -> Result<Response<pb::FullRefreshResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let state = &self.state;
        let key = CursorKey::new(state.store.cursor_key().await.map_err(store_error)?);
        let (before, refreshed, skipped) = state
            .store
            .full_refresh(&party.party_id, &req.subscription_ids, state.clock.now_micros())
            .await
            .map_err(store_error)?;
        state.notify_history();
        Ok(Response::new(pb::FullRefreshResponse {
            cursor: key.encode(
                &party.party_id,
                Position::History {
                    seq: before,
                    ord: u64::MAX,
                    records_sent: 0,
                },
            ),
            as_of_sequence: before + 1,
            subscription_count: u64::try_from(refreshed.len()).unwrap_or(u64::MAX),
            skipped_subscription_ids: skipped,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn commit_cursor(
        &self,
        request: Request<pb::CommitCursorRequest>,
    ) -> Result<Response<pb::CommitCursorResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let key = CursorKey::new(self.state.store.cursor_key().await.map_err(store_error)?);
        read_cursor(&self.state, &key, &party.party_id, &req.cursor).await?;
        Ok(Response::new(pb::CommitCursorResponse::default()))
    }
}

/// What a stream's producer hands its outlet, in order.
enum Outgoing {
    /// Append these disclosure-log entries (one transaction), then send these messages. Nothing is
    /// sent unless the entries were written.
    Batch {
        log: Vec<NewDisclosure>,
        messages: Vec<pb::StreamEvent>,
    },
    /// End the stream with this status, after everything handed over before it.
    End(Status),
}

/// Batches handed to the outlet but not yet logged and sent. With one being written, this lets
/// the producer prepare the next batch while the previous one is logged and sent.
const OUTLET_BATCHES: usize = 4;

/// A stream's outlet: writes each batch's disclosure-log entries, then sends its messages to
/// the client, in the order the producer handed them over. Running it beside the producer
/// overlaps the log's commit with reading and building the next batch. When the log cannot be
/// written, the client gets the error and nothing of that batch; when the client leaves, the
/// outlet ends, which the producer notices at its next hand-over.
async fn run_outlet(
    state: AppState,
    mut incoming: mpsc::Receiver<Outgoing>,
    tx: mpsc::Sender<Result<pb::StreamEvent, Status>>,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return,
            next = incoming.recv() => next,
        };
        match next {
            None => return,
            Some(Outgoing::End(status)) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
            Some(Outgoing::Batch { log, messages }) => {
                if !log.is_empty() {
                    if let Err(e) = state
                        .store
                        .append_disclosures(&log, state.clock.now_micros())
                        .await
                    {
                        let _ = tx.send(Err(store_error(e))).await;
                        return;
                    }
                }
                for message in messages {
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// How one pass over the history ended.
enum Flow {
    /// Keep going.
    Continue,
    /// Stop with this status (or quietly when `None`: the client left).
    Stop(Option<Status>),
}

/// One open stream.
struct DeliveryStream {
    state: AppState,
    party: PartyPrincipal,
    call: CallContext,
    key: CursorKey,
    batch: usize,
    interval: Duration,
    /// Where prepared batches go to be logged and sent (see [`run_outlet`]).
    outlet: mpsc::Sender<Outgoing>,
    position: Position,
    /// Messages prepared but not yet sent: they go out only after `pending_log` is written.
    outbox: Vec<(String, pb::stream_event::Event)>,
    /// Disclosure-log entries for the messages in `outbox`, written in one transaction.
    pending_log: Vec<NewDisclosure>,
    /// Each subscribed person's own data as of this stream's position (bounded by the party's
    /// subscriptions; see `deliver_change`).
    person_cache: std::collections::HashMap<String, crate::domain::register::PersonData>,
}

/// What one snapshot reads: the person, the benefit types and the period.
type SnapshotItem = (Personnummer, Vec<String>, DateRange);

/// Start snapshots read together in one query.
const PREFETCH: usize = 64;

/// Chunks of start snapshots read ahead of the one being delivered.
const READ_AHEAD: usize = 2;

/// Chunks of start snapshots read at the same time.
const PARALLEL_READS: usize = 2;

/// A person's own data and records, as a snapshot delivers them.
type Snapshot = (PersonData, Vec<StoredRecord>);

/// What the start-snapshot reader hands over: chunks of subscriptions in start order, each with
/// the number of its latest event at the head and its snapshot (`None` where the stored person id
/// does not parse; its delivery then reads, and fails, on its own).
enum StartRead {
    Chunk(StartChunk),
    /// Every subscription was handed over.
    Done,
    Failed(crate::store::StoreError),
}

/// Reads the subscriptions a stream started at `head` gives start snapshots for, from index
/// `from`, `PREFETCH` at a time, with their snapshots as of `head`, and hands them over in order.
/// Up to `PARALLEL_READS` chunks' snapshots are read at once (each on its own task and database
/// connection), so reading overlaps with itself as well as with the delivery. Stops after `Done`,
/// after the first error (handed over), or when the stream no longer wants them; reads still
/// running are then aborted.
async fn read_start_snapshots(
    store: crate::store::Store,
    party_id: String,
    from: u64,
    head: u64,
    tx: mpsc::Sender<StartRead>,
) {
    let mut reads: tokio::task::JoinSet<(u64, Result<StartChunk, crate::store::StoreError>)> =
        tokio::task::JoinSet::new();
    let mut ready: std::collections::BTreeMap<u64, StartChunk> = std::collections::BTreeMap::new();
    let (mut next_read, mut next_send) = (0u64, 0u64);
    let mut after: Option<String> = None;
    let mut exhausted = false;
    loop {
        while !exhausted && reads.len() + ready.len() < PARALLEL_READS {
            let page = match store
                .start_subscriptions(&party_id, head, after.as_deref(), from, PREFETCH)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(StartRead::Failed(e)).await;
                    return;
                }
            };
            match page.last() {
                None => exhausted = true,
                Some((last, _)) => {
                    after = Some(last.subscription_id.clone());
                    let store = store.clone();
                    let n = next_read;
                    reads.spawn(async move { (n, read_start_chunk(&store, page, head).await) });
                    next_read += 1;
                }
            }
        }
        if let Some(chunk) = ready.remove(&next_send) {
            if tx.send(StartRead::Chunk(chunk)).await.is_err() {
                return;
            }
            next_send += 1;
            continue;
        }
        match reads.join_next().await {
            None => {
                let _ = tx.send(StartRead::Done).await;
                return;
            }
            Some(Ok((n, Ok(chunk)))) => {
                ready.insert(n, chunk);
            }
            Some(Ok((_, Err(e)))) => {
                let _ = tx.send(StartRead::Failed(e)).await;
                return;
            }
            Some(Err(_)) => {
                let _ = tx
                    .send(StartRead::Failed(crate::store::StoreError::Corrupt(
                        "start snapshot read task failed",
                    )))
                    .await;
                return;
            }
        }
    }
}

/// One chunk of start snapshots, in subscription order.
type StartChunk = Vec<(Subscription, u64, Option<Snapshot>)>;

/// Reads the snapshots of one page of subscriptions as of `head`, in one query.
async fn read_start_chunk(
    store: &crate::store::Store,
    page: Vec<(Subscription, u64)>,
    head: u64,
) -> Result<StartChunk, crate::store::StoreError> {
    let parsed: Vec<Option<SnapshotItem>> = page
        .iter()
        .map(|(s, _)| {
            let person = Personnummer::from_storage(&s.person).ok()?;
            let period = DateRange {
                from: s.from_date,
                to: None,
            };
            Some((person, s.benefit_types.clone(), period))
        })
        .collect();
    let items: Vec<SnapshotItem> = parsed.iter().flatten().cloned().collect();
    let mut found = store.snapshots_of(&items, head).await?.into_iter();
    Ok(page
        .into_iter()
        .zip(parsed)
        .map(|((subscription, number), item)| (subscription, number, item.and_then(|_| found.next())))
        .collect())
}

/// Persons whose data a stream remembers at most.
const PERSON_CACHE: usize = 4_096;

/// Prepared messages are flushed (logged, then sent) once this many are waiting.
const FLUSH_AT: usize = 256;

impl DeliveryStream {
    /// Queues a message for the next flush.
    fn queue(&mut self, cursor: String, event: pb::stream_event::Event) {
        self.outbox.push((cursor, event));
    }

    /// Hands the queued messages and their disclosure-log entries to the outlet, which logs them
    /// in one transaction and only then sends them. Fails when the outlet has ended (the client
    /// left, or the log could not be written and the client was told).
    async fn flush(&mut self) -> Result<(), Flow> {
        if self.outbox.is_empty() && self.pending_log.is_empty() {
            return Ok(());
        }
        let messages = std::mem::take(&mut self.outbox)
            .into_iter()
            .map(|(cursor, event)| pb::StreamEvent {
                cursor,
                event: Some(event),
            })
            .collect();
        let log = std::mem::take(&mut self.pending_log);
        if self.outlet.send(Outgoing::Batch { log, messages }).await.is_err() {
            return Err(Flow::Stop(None));
        }
        Ok(())
    }

    /// Remembers a person's data as of the stream's position; the cache is emptied when it grows
    /// past a bound, so a stream's memory does not grow with the number of persons it serves.
    fn cache_person(&mut self, person: String, data: crate::domain::register::PersonData) {
        if self.person_cache.len() >= PERSON_CACHE && !self.person_cache.contains_key(&person) {
            self.person_cache.clear();
        }
        self.person_cache.insert(person, data);
    }

    /// Flushes when enough is waiting.
    async fn maybe_flush(&mut self) -> Flow {
        if self.outbox.len() >= FLUSH_AT {
            if let Err(flow) = self.flush().await {
                return flow;
            }
        }
        Flow::Continue
    }

    fn cursor(&self) -> String {
        self.key.encode(&self.party.party_id, self.position)
    }

    /// Sends one message that discloses nothing (a heartbeat) after everything handed over.
    async fn send(&self, cursor: String, event: pb::stream_event::Event) -> bool {
        let message = pb::StreamEvent {
            cursor,
            event: Some(event),
        };
        self.outlet
            .send(Outgoing::Batch {
                log: Vec::new(),
                messages: vec![message],
            })
            .await
            .is_ok()
    }

    async fn heartbeat(&self) -> bool {
        let head = self.state.store.delivery_head().await.unwrap_or_default();
        let reached = match self.position {
            Position::History { seq, .. } => seq,
            Position::Start { .. } => 0,
        };
        let now = crate::domain::clock::to_micros(self.state.clock.now());
        self.send(
            self.cursor(),
            pb::stream_event::Event::Heartbeat(pb::Heartbeat {
                register_sequence: reached.min(head),
                head_sequence: head,
                server_time: Some(timestamp(now)),
            }),
        )
        .await
    }

    /// Feeds the stream until it ends; returns the status to end it with.
    async fn run(&mut self) -> Option<Status> {
        let mut changes = self.state.changes.subscribe();
        if let Err(status) = self.still_allowed().await {
            return Some(status);
        }
        if !self.heartbeat().await {
            return None;
        }
        if let Position::Start { head, .. } = self.position {
            match self.deliver_start(head).await {
                Flow::Continue => {}
                Flow::Stop(status) => return status,
            }
        }
        loop {
            if self.state.shutdown.is_cancelled() {
                return Some(shutting_down());
            }
            if let Err(status) = self.still_allowed().await {
                if reason_of(&status).as_deref() == Some("PARTY_TERMINATED") {
                    return self.end_for_termination(status).await;
                }
                return Some(status);
            }
            changes.mark_unchanged();
            match self.deliver_page(false).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(flow) => match flow {
                    Flow::Continue => continue,
                    Flow::Stop(status) => return status,
                },
            }
            // Caught up: wait for a change, the heartbeat interval, or the end.
            tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => return Some(shutting_down()),
                () = self.outlet.closed() => return None,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Some(shutting_down());
                    }
                }
                () = tokio::time::sleep(self.interval) => {
                    if !self.heartbeat().await {
                        return None;
                    }
                }
            }
        }
    }

    /// The party's termination took effect: end its subscriptions (their notices are written once,
    /// by whichever stream or call gets there first), deliver the notices, then end the stream.
    async fn end_for_termination(&mut self, status: Status) -> Option<Status> {
        let ended = self
            .state
            .store
            .withdraw_subscriptions(
                EndSelector::AllOfParty {
                    party_id: &self.party.party_id,
                },
                EndReason::PartyTerminated,
                "the party's termination took effect",
                self.state.clock.now_micros(),
            )
            .await;
        if let Err(e) = ended {
            return Some(store_error(e));
        }
        self.state.notify_history();
        loop {
            match self.deliver_page(true).await {
                Ok(true) => continue,
                Ok(false) => return Some(status),
                Err(Flow::Continue) => continue,
                Err(Flow::Stop(s)) => return s,
            }
        }
    }

    /// Re-checks that the stream's certificate may still call (registered, not revoked, party not
    /// terminated).
    async fn still_allowed(&self) -> Result<(), Status> {
        let current = self
            .state
            .store
            .party_by_certificate(&self.party.fingerprint)
            .await
            .map_err(store_error)?;
        let Some(current) = current else {
            return Err(error(
                Code::Unauthenticated,
                ErrorReason::CertificateNotRegistered,
                "the certificate this stream was opened with is no longer registered",
            ));
        };
        crate::identity::check_party(
            Some(current),
            &self.party.fingerprint,
            self.state.clock.now_micros(),
            self.state.clock.today(),
        )
        .map(|_| ())
    }

    /// Delivers the start snapshots of a stream opened without a cursor.
    async fn deliver_start(&mut self, head: u64) -> Flow {
        let gate = match Gate::load(&self.state, &self.party).await {
            Ok(g) => g,
            Err(status) => return Flow::Stop(Some(status)),
        };
        let (first, mut skip) = match self.position {
            Position::Start {
                index, records_sent, ..
            } => (index, records_sent),
            Position::History { .. } => return Flow::Continue,
        };
        // The start snapshots all stand at the same sequence, so a chunk of subscriptions and their
        // snapshots is read in two queries, by a reader task that stays up to READ_AHEAD chunks
        // ahead of the delivery. Neither side ever holds more than a few chunks.
        let (chunks_tx, mut chunks) = mpsc::channel(READ_AHEAD);
        tokio::spawn(read_start_snapshots(
            self.state.store.clone(),
            self.party.party_id.clone(),
            first,
            head,
            chunks_tx,
        ));
        let mut index = first;
        loop {
            let chunk = match chunks.recv().await {
                Some(StartRead::Chunk(chunk)) => chunk,
                Some(StartRead::Done) => break,
                Some(StartRead::Failed(e)) => return Flow::Stop(Some(store_error(e))),
                None => {
                    return Flow::Stop(Some(crate::grpc::status::internal(
                        "start snapshots",
                        &crate::store::StoreError::Corrupt("start snapshot reader stopped"),
                    )));
                }
            };
            for (subscription, number, prefetched) in chunk {
                match self
                    .deliver_start_item(&gate, head, index, skip, &subscription, number, prefetched)
                    .await
                {
                    Flow::Continue => {}
                    stop => return stop,
                }
                skip = 0;
                index += 1;
                self.position = Position::Start {
                    head,
                    index,
                    records_sent: 0,
                };
            }
        }
        if let Err(flow) = self.flush().await {
            return flow;
        }
        self.position = Position::History {
            seq: head,
            ord: u64::MAX,
            records_sent: 0,
        };
        Flow::Continue
    }

    /// The start snapshot (or, for a suspended subscription, the notice) of the subscription at
    /// `index` of a stream started at `head`.
    #[allow(clippy::too_many_arguments, reason = "the item's place in the start sequence")]
    async fn deliver_start_item(
        &mut self,
        gate: &Gate,
        head: u64,
        index: u64,
        skip: u64,
        subscription: &Subscription,
        number: u64,
        prefetched: Option<Snapshot>,
    ) -> Flow {
        let done = Position::Start {
            head,
            index: index + 1,
            records_sent: 0,
        };
        if subscription.state == SubscriptionState::Suspended {
            // Suspended now: no data, but the client learns the state.
            if skip > 0 {
                return Flow::Continue;
            }
            self.queue_start_notice(subscription, number, done);
            return self.maybe_flush().await;
        }
        let at = |records_sent| Position::Start {
            head,
            index,
            records_sent,
        };
        self.deliver_snapshot(
            gate,
            subscription,
            number,
            head,
            pb::SnapshotReason::StreamStart,
            skip,
            &at,
            done,
            prefetched,
        )
        .await
    }

    /// Queues the notice a stream started without a cursor gives a suspended subscription
    /// instead of its snapshot.
    fn queue_start_notice(&mut self, subscription: &Subscription, event_number: u64, done: Position) {
        let cursor = self.key.encode(&self.party.party_id, done);
        self.queue(
            cursor,
            pb::stream_event::Event::Notice(pb::SubscriptionNotice {
                subscription_id: subscription.subscription_id.clone(),
                event_number,
                state: pb::SubscriptionState::Suspended as i32,
                reason: state_reason(&subscription.state_reason) as i32,
                message: "suspended; nothing is delivered until it resumes".to_string(),
                effective_at: None,
            }),
        );
    }

    /// Delivers one page of history after the current position. `Ok(true)` when events were read
    /// (more may follow), `Ok(false)` when caught up. With `notices_only`, other events are passed
    /// over (the party has been terminated).
    async fn deliver_page(&mut self, notices_only: bool) -> Result<bool, Flow> {
        let Position::History {
            seq,
            ord,
            records_sent,
        } = self.position
        else {
            return Ok(false);
        };
        let head = self
            .state
            .store
            .delivery_head()
            .await
            .map_err(|e| Flow::Stop(Some(store_error(e))))?;
        let page = self
            .state
            .store
            .delivery_page(&self.party.party_id, (seq, ord), head, PAGE)
            .await
            .map_err(|e| Flow::Stop(Some(store_error(e))))?;
        if page.is_empty() {
            // Every event up to the head has been read: a later resume may start from there.
            if seq < head {
                self.position = Position::History {
                    seq: head,
                    ord: u64::MAX,
                    records_sent: 0,
                };
            }
            return Ok(false);
        }
        let gate = Gate::load(&self.state, &self.party)
            .await
            .map_err(|s| Flow::Stop(Some(s)))?;
        // The facts of the page's changes, read in one query.
        let mut change_seqs: Vec<u64> = page
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Change))
            .map(|e| e.seq)
            .collect();
        change_seqs.dedup();
        let facts = if notices_only || change_seqs.is_empty() {
            std::collections::HashMap::new()
        } else {
            self.state
                .store
                .records_at(&change_seqs)
                .await
                .map_err(|e| Flow::Stop(Some(store_error(e))))?
        };
        // The own data of changed persons this stream does not remember, also in one query.
        let mut uncached: Vec<&str> = page
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Change))
            .map(|e| e.subscription.person.as_str())
            .filter(|p| !self.person_cache.contains_key(*p))
            .collect();
        uncached.sort_unstable();
        uncached.dedup();
        let persons = match (notices_only, uncached.is_empty(), page.last()) {
            (false, false, Some(last)) => self
                .state
                .store
                .person_versions(&uncached, last.seq)
                .await
                .map_err(|e| Flow::Stop(Some(store_error(e))))?,
            _ => std::collections::HashMap::new(),
        };
        let mut skip = records_sent;
        for event in &page {
            let previous = self.position;
            let resume_at = |records_sent| match previous {
                Position::History { seq, ord, .. } => Position::History {
                    seq,
                    ord,
                    records_sent,
                },
                start => start,
            };
            let flow = match &event.kind {
                EventKind::Notice {
                    state,
                    reason,
                    message,
                } => self.deliver_notice(event, state, reason, message).await,
                _ if notices_only => Flow::Continue,
                EventKind::Snapshot { reason } => {
                    let reason = match reason.as_str() {
                        "FULL_REFRESH" => pb::SnapshotReason::FullRefresh,
                        "RESUMED" => pb::SnapshotReason::SubscriptionResumed,
                        _ => pb::SnapshotReason::SubscriptionCreated,
                    };
                    self.deliver_snapshot(
                        &gate,
                        &event.subscription,
                        event.event_number,
                        event.seq,
                        reason,
                        skip,
                        &resume_at,
                        Position::History {
                            seq: event.seq,
                            ord: event.ord,
                            records_sent: 0,
                        },
                        None,
                    )
                    .await
                }
                EventKind::Change => {
                    let versions = persons
                        .get(&event.subscription.person)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    self.deliver_change(&gate, event, facts.get(&event.seq), versions)
                        .await
                }
            };
            skip = 0;
            if let Flow::Stop(status) = flow {
                return Err(Flow::Stop(status));
            }
            self.position = Position::History {
                seq: event.seq,
                ord: event.ord,
                records_sent: 0,
            };
        }
        self.flush().await?;
        Ok(true)
    }

    /// The subscription's order as a policy request.
    fn ask_for(&self, subscription: &Subscription) -> Result<Ask, Status> {
        let person = Personnummer::from_storage(&subscription.person).map_err(|_| {
            crate::grpc::status::internal(
                "stored person id",
                &crate::store::StoreError::Corrupt("subscriptions.person"),
            )
        })?;
        Ok(Ask {
            basis_code: subscription.legal_basis.clone(),
            person,
            benefit_codes: subscription.benefit_types.clone(),
            case_reference: (!subscription.case_reference.is_empty())
                .then(|| subscription.case_reference.clone()),
            consent_id: (!subscription.consent_id.is_empty()).then(|| subscription.consent_id.clone()),
            period: (format_date(subscription.from_date), String::new()),
            subscription_id: subscription.subscription_id.clone(),
        })
    }

    /// Runs the policy for a delivery. When it no longer holds, the subscription is ended (its
    /// notice follows in the history) and the delivery is withheld: `Ok(None)`.
    async fn permit(
        &self,
        gate: &Gate,
        subscription: &Subscription,
    ) -> Result<Option<(Ask, crate::policy::Permit)>, Flow> {
        let ask = self.ask_for(subscription).map_err(|s| Flow::Stop(Some(s)))?;
        #[cfg(feature = "bench-policy-stub")]
        if crate::policy::bench_stub::enabled() {
            let permit = crate::policy::bench_stub::permit(
                &ask.basis_code,
                &ask.benefit_codes,
                ask.consent_id.as_deref(),
                ask.case_reference.as_deref(),
            );
            return Ok(Some((ask, permit)));
        }
        match gate.check(&self.state, &self.party, &self.call, &ask).await {
            Err(status) => Err(Flow::Stop(Some(status))),
            Ok(Ok(permit)) => Ok(Some((ask, permit))),
            Ok(Err(Refusal { status, entry })) => {
                let reason = match reason_of(&status).as_deref() {
                    Some("CONSENT_NOT_VALID") | Some("CONSENT_REQUIRED") => EndReason::ConsentEnded,
                    Some("CASE_CLOSED") => EndReason::CaseClosed,
                    Some("BASIS_NOT_IN_FORCE") => EndReason::BasisNoLongerInForce,
                    Some("PARTY_TERMINATED") => EndReason::PartyTerminated,
                    _ => EndReason::EndedByAgency,
                };
                let now = self.state.clock.now_micros();
                self.state
                    .store
                    .append_disclosures(&[entry], now)
                    .await
                    .map_err(|e| Flow::Stop(Some(store_error(e))))?;
                let selector = EndSelector::One {
                    party_id: &self.party.party_id,
                    subscription_id: &subscription.subscription_id,
                };
                // A consent that ended suspends (a new consent resumes); anything else ends.
                let changed = self
                    .state
                    .store
                    .withdraw_subscriptions(selector, reason, status.message(), now)
                    .await;
                changed.map_err(|e| Flow::Stop(Some(store_error(e))))?;
                self.state.notify_history();
                Ok(None)
            }
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the snapshot's identity, position and resume point"
    )]
    async fn deliver_snapshot(
        &mut self,
        gate: &Gate,
        subscription: &Subscription,
        event_number: u64,
        as_of: u64,
        reason: pb::SnapshotReason,
        skip: u64,
        at: &(dyn Fn(u64) -> Position + Sync),
        done: Position,
        prefetched: Option<(PersonData, Vec<StoredRecord>)>,
    ) -> Flow {
        let (ask, permit) = match self.permit(gate, subscription).await {
            Ok(Some(p)) => p,
            Ok(None) => return Flow::Continue,
            Err(flow) => return flow,
        };
        // One read: the person's data and records, both as of the snapshot's sequence (already
        // read with the rest of its chunk for start snapshots).
        let found = match prefetched {
            Some(found) => Ok(found),
            None => {
                self.state
                    .store
                    .snapshot_of(
                        &ask.person,
                        permit.benefit_codes(),
                        DateRange {
                            from: subscription.from_date,
                            to: None,
                        },
                        as_of,
                    )
                    .await
            }
        };
        let (data, mut records) = match found {
            Ok(found) => found,
            Err(e) => return Flow::Stop(Some(store_error(e))),
        };
        let person = convert::person(&ask.person, &data, Audience::Party);
        self.cache_person(ask.person.as_storage().to_string(), data);
        // `skip` counts SnapshotBegin as 1 and each record after it as 1 more.
        let already = skip.saturating_sub(1) as usize;
        let remaining = records.len().saturating_sub(already);
        let entry = allowed_entry(&self.party, &self.call, &ask, &permit, remaining, (0, as_of));
        self.pending_log.push(entry);
        let id = &subscription.subscription_id;
        if skip == 0 {
            self.queue(
                self.key.encode(&self.party.party_id, at(1)),
                pb::stream_event::Event::SnapshotBegin(pb::SnapshotBegin {
                    subscription_id: id.clone(),
                    event_number,
                    as_of_sequence: as_of,
                    reason: reason as i32,
                    person: Some(person.clone()),
                }),
            );
        }
        let record_count = records.len() as u64;
        records.drain(..already.min(records.len()));
        let mut sent = already;
        let mut batch_index = (already / self.batch.max(1)) as u32;
        for batch in convert::record_batches(records, self.batch) {
            sent += batch.len();
            self.queue(
                self.key.encode(&self.party.party_id, at(sent as u64 + 1)),
                pb::stream_event::Event::Records(pb::RecordBatch {
                    subscription_id: id.clone(),
                    event_number,
                    batch_index,
                    person: Some(person.clone()),
                    records: batch,
                }),
            );
            batch_index += 1;
        }
        // The end marker carries the position after the whole event.
        self.queue(
            self.key.encode(&self.party.party_id, done),
            pb::stream_event::Event::SnapshotEnd(pb::SnapshotEnd {
                subscription_id: id.clone(),
                event_number,
                as_of_sequence: as_of,
                record_count,
                batch_count: batch_index,
            }),
        );
        self.maybe_flush().await
    }

    /// Delivers one change. `fact` is the log row at the change's sequence and `versions` the
    /// person's recorded data (when the stream does not remember it), both read with the page.
    async fn deliver_change(
        &mut self,
        gate: &Gate,
        event: &DeliveryEvent,
        fact: Option<&StoredRecord>,
        versions: &[(u64, PersonData)],
    ) -> Flow {
        let (ask, permit) = match self.permit(gate, &event.subscription).await {
            Ok(Some(p)) => p,
            Ok(None) => return Flow::Continue,
            Err(flow) => return flow,
        };
        let records: Vec<StoredRecord> = fact.into_iter().cloned().collect();
        // The person's data as of this change: a person update is itself the change; otherwise the
        // stream's cache holds it (every person update of a subscribed person reaches this stream
        // as a change, and snapshots fill the cache), or the latest version recorded at or before
        // the change's sequence.
        let person_update = records.iter().find_map(|r| match &r.body {
            crate::domain::register::FactBody::Person(data) => Some(data.clone()),
            _ => None,
        });
        let key = ask.person.as_storage().to_string();
        let data = match person_update {
            Some(data) => data,
            None => match self.person_cache.get(&key) {
                Some(data) => data.clone(),
                None => versions
                    .iter()
                    .rev()
                    .find(|(seq, _)| *seq <= event.seq)
                    .map(|(_, data)| data.clone())
                    .unwrap_or_default(),
            },
        };
        let person = convert::person(&ask.person, &data, Audience::Party);
        self.cache_person(key, data);
        // Person-data changes carry no records: the new Person is the change.
        let benefit_records: Vec<pb::BenefitRecord> = records
            .into_iter()
            .filter(|r| !r.record_id.starts_with("person:"))
            .map(convert::benefit_record)
            .collect();
        self.pending_log.push(allowed_entry(
            &self.party,
            &self.call,
            &ask,
            &permit,
            benefit_records.len(),
            (event.seq.saturating_sub(1), event.seq),
        ));
        let cursor = self.key.encode(
            &self.party.party_id,
            Position::History {
                seq: event.seq,
                ord: event.ord,
                records_sent: 0,
            },
        );
        self.queue(
            cursor,
            pb::stream_event::Event::Change(pb::Change {
                subscription_id: event.subscription.subscription_id.clone(),
                event_number: event.event_number,
                person: Some(person),
                records: benefit_records,
                register_sequence: event.seq,
            }),
        );
        self.maybe_flush().await
    }

    async fn deliver_notice(
        &mut self,
        event: &DeliveryEvent,
        state: &str,
        reason: &str,
        message: &str,
    ) -> Flow {
        let state = match state {
            "ACTIVE" => pb::SubscriptionState::Active,
            "SUSPENDED" => pb::SubscriptionState::Suspended,
            _ => pb::SubscriptionState::Ended,
        };
        let cursor = self.key.encode(
            &self.party.party_id,
            Position::History {
                seq: event.seq,
                ord: event.ord,
                records_sent: 0,
            },
        );
        self.queue(
            cursor,
            pb::stream_event::Event::Notice(pb::SubscriptionNotice {
                subscription_id: event.subscription.subscription_id.clone(),
                event_number: event.event_number,
                state: state as i32,
                reason: state_reason(reason) as i32,
                message: message.to_string(),
                effective_at: Some(timestamp(event.recorded_at)),
            }),
        );
        self.maybe_flush().await
    }
}
