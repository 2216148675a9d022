//! A stream's producer: reads the party's history after the stream's position, decides every
//! delivery by the policy, and hands batches of messages with their disclosure-log entries to the
//! outlet.
//!
//! Before each page it re-checks the stream's certificate (revoked → UNAUTHENTICATED; the party's
//! termination took effect → the ENDED notices, then PERMISSION_DENIED). Every delivery is decided
//! by the policy first; only what it permits is read ([`Permit`] in hand), and a delivery the
//! policy no longer allows is withheld: the denial is logged and the subscription withdrawn for the
//! reason the denial gives (its notice follows in the history). When idle it waits for a change
//! notification, the heartbeat interval, or the end.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use super::messages::{SnapshotPlace, snapshot_reason};
use super::outlet::Outgoing;
use super::start::{READ_AHEAD, Reader, Start, StartItem, StartRead};
use super::{Decided, decide};
use crate::domain::cursor::{CursorKey, Position};
use crate::domain::delivery::{EndReason, EventKind};
use crate::domain::disclosure::NewDisclosure;
use crate::domain::register::PersonData;
use crate::grpc::convert::{self, timestamp};
use crate::grpc::party_api::authorize::{CallContext, Gate, Refusal};
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status;
use crate::identity::{IdentityError, PartyPrincipal, check_party};
use crate::policy::Permit;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::delivery::{EndSelector, Subscription};

/// History events read per page.
const PAGE: i64 = 256;
/// Persons whose data a stream remembers at most.
const PERSON_CACHE: usize = 4_096;
/// Prepared messages are flushed (logged, then sent) once this many are waiting. Each flush is one
/// disclosure-log transaction: with 1,024 rather than 256 a start snapshot ran a fifth faster, and
/// a slow reader's server peaked at 104 instead of 83 MiB (docs/BENCHMARKS.md). A history page
/// (at most [`PAGE`] events) is flushed at its end, so changes never wait for a full flush.
const FLUSH_AT: usize = 1_024;

/// How one step of the stream ended.
pub(super) enum Flow {
    /// Keep going.
    Continue,
    /// A pull's answer is full (see [`super::pull::Budget`]): stop after handing over what is
    /// queued.
    Full,
    /// Stop with this status (or quietly when `None`: the client left).
    Stop(Option<Status>),
}

impl From<StoreError> for Flow {
    fn from(e: StoreError) -> Self {
        Flow::Stop(Some(e.into()))
    }
}

/// What becomes of a heartbeat the producer builds.
enum Announce {
    /// Sent at once (the first message of every stream).
    Send,
    /// Reported to the outlet, which sends the idle heartbeats.
    Standing,
}

/// One open stream's producer, built by the `Stream` call (with an empty outbox and cache).
pub(super) struct DeliveryStream {
    pub state: AppState,
    pub party: PartyPrincipal,
    pub call: CallContext,
    pub key: CursorKey,
    /// Records per RecordBatch.
    pub batch: usize,
    /// The heartbeat interval.
    pub interval: Duration,
    /// Where prepared batches go to be logged and sent (see [`super::outlet`]).
    pub outlet: mpsc::Sender<Outgoing>,
    pub position: Position,
    pub outbox: Outbox,
    /// Each subscribed person's own data as of this stream's position (see
    /// [`DeliveryStream::deliver_change`]).
    pub persons: PersonCache,
    /// What a pull's answer may still hold; `None` for a stream, which has no end.
    pub budget: Option<super::pull::Budget>,
    /// The position after the last message queued, if any.
    pub last_queued: Option<Position>,
}

/// Messages prepared but not yet sent, and the disclosure-log entries for them: the messages go
/// out only after the entries are written, in one transaction.
#[derive(Default)]
pub(super) struct Outbox {
    messages: Vec<pb::StreamEvent>,
    pub(super) log: Vec<NewDisclosure>,
}

/// Persons' own data, by identity number (storage form), at most [`PERSON_CACHE`] of them: the
/// cache is emptied when it would grow past that, so a stream's memory does not grow with the
/// number of persons it serves.
#[derive(Default)]
pub(super) struct PersonCache(HashMap<String, PersonData>);

impl PersonCache {
    pub(super) fn get(&self, person: &str) -> Option<&PersonData> {
        self.0.get(person)
    }

    pub(super) fn contains(&self, person: &str) -> bool {
        self.0.contains_key(person)
    }

    pub(super) fn remember(&mut self, person: String, data: PersonData) {
        if self.0.len() >= PERSON_CACHE && !self.0.contains_key(&person) {
            self.0.clear();
        }
        self.0.insert(person, data);
    }
}

impl DeliveryStream {
    /// Runs the stream, then ends it with its final status (when the client is still there).
    pub async fn run_to_end(mut self) {
        if let Some(status) = self.run().await {
            let _ = self.outlet.send(Outgoing::End(status)).await;
        }
    }

    /// Feeds the stream until it ends; returns the status to end it with. Every step that reads
    /// the database runs boxed, so that an idle stream's task does not hold room for the largest
    /// of their states while it waits (12.9 → 1.7 KiB for this task, measured with size_of_val).
    async fn run(&mut self) -> Option<Status> {
        let mut changes = self.state.wakeups.watch(&self.party.party_id);
        if let Err(e) = Box::pin(self.still_allowed()).await {
            return Some(e.into());
        }
        if let Flow::Stop(status) = Box::pin(self.heartbeat(Announce::Send)).await {
            return status;
        }
        if let Position::Start { head, .. } = self.position {
            if let Flow::Stop(status) = Box::pin(self.deliver_start(head)).await {
                return status;
            }
        }
        loop {
            if self.state.shutdown.is_cancelled() {
                return Some(status::shutting_down());
            }
            match Box::pin(self.still_allowed()).await {
                Ok(()) => {}
                Err(IdentityError::PartyTerminated) => {
                    return Box::pin(self.end_for_termination(IdentityError::PartyTerminated.into())).await;
                }
                Err(e) => return Some(e.into()),
            }
            changes.mark_unchanged();
            match Box::pin(self.deliver_page(false)).await {
                Ok(true) => continue,
                Ok(false) => {}
                // A stream has no budget: Full does not happen.
                Err(Flow::Continue | Flow::Full) => continue,
                Err(Flow::Stop(status)) => return status,
            }
            // Caught up: wait for a change, the heartbeat interval, or the end.
            tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => return Some(status::shutting_down()),
                () = self.outlet.closed() => return None,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Some(status::shutting_down());
                    }
                }
                () = tokio::time::sleep(self.interval) => {
                    if let Flow::Stop(status) = Box::pin(self.heartbeat(Announce::Standing)).await {
                        return status;
                    }
                }
            }
        }
    }

    /// Re-checks that the stream's certificate may still call (registered, not revoked, not revoked
    /// by a CRL reloaded since it connected, party not terminated).
    pub(super) async fn still_allowed(&self) -> Result<(), IdentityError> {
        if let Some(leaf) = &self.call.certificate
            && !self
                .state
                .party_certificates
                .still_valid(leaf, &self.party.fingerprint)
        {
            return Err(IdentityError::CertificateRevoked { operator: false });
        }
        let current = self
            .state
            .store
            .party_by_certificate(&self.party.fingerprint)
            .await?;
        check_party(
            current,
            &self.party.fingerprint,
            self.state.clock.now_micros(),
            self.state.clock.today(),
        )
        .map(|_| ())
    }

    /// The party's termination took effect: end its subscriptions (their notices are written once,
    /// by whichever stream or call gets there first), deliver the notices, then end the stream.
    async fn end_for_termination(&mut self, status: Status) -> Option<Status> {
        match self.deliver_termination().await {
            Flow::Stop(s) => s,
            Flow::Continue | Flow::Full => Some(status),
        }
    }

    /// Ends the party's subscriptions for its termination and delivers their ENDED notices (as
    /// many as a pull has room for: `Full` when more are due).
    pub(super) async fn deliver_termination(&mut self) -> Flow {
        let selector = EndSelector::AllOfParty {
            party_id: &self.party.party_id,
        };
        let ended = self
            .state
            .withdraw_subscriptions(
                selector,
                EndReason::PartyTerminated,
                "the party's termination took effect",
            )
            .await;
        if let Err(e) = ended {
            return e.into();
        }
        loop {
            match self.deliver_page(true).await {
                Ok(true) | Err(Flow::Continue) => continue,
                Ok(false) => return Flow::Continue,
                Err(flow) => return flow,
            }
        }
    }

    fn cursor_at(&self, position: Position) -> String {
        self.key.encode(&self.party.party_id, position)
    }

    /// The message at `position` (its cursor names the position after it).
    pub(super) fn message(
        &self,
        position: Position,
        event: pb::stream_event::Event,
    ) -> (Position, pb::StreamEvent) {
        let cursor = self.cursor_at(position);
        let message = pb::StreamEvent {
            cursor,
            event: Some(event),
        };
        (position, message)
    }

    /// Whether a pull's answer has room for `message` (taking it); a stream always has.
    pub(super) fn admit(&mut self, message: &pb::StreamEvent) -> bool {
        match &mut self.budget {
            None => true,
            Some(budget) => budget.take(prost::Message::encoded_len(message)),
        }
    }

    /// Queues an admitted message for the next flush.
    pub(super) fn push(&mut self, (position, message): (Position, pb::StreamEvent)) {
        self.outbox.messages.push(message);
        self.last_queued = Some(position);
    }

    /// Queues a message that discloses nothing for the next flush, if there is room; otherwise
    /// the pull's answer is full.
    pub(super) fn queue(&mut self, position: Position, event: pb::stream_event::Event) -> Flow {
        let message = self.message(position, event);
        if !self.admit(&message.1) {
            return Flow::Full;
        }
        self.push(message);
        Flow::Continue
    }

    /// Hands the queued messages and their disclosure-log entries to the outlet, which logs them
    /// in one transaction and only then sends them. Fails when the outlet has ended (the client
    /// left, or the log could not be written and the client was told).
    async fn flush(&mut self) -> Result<(), Flow> {
        if self.outbox.messages.is_empty() && self.outbox.log.is_empty() {
            return Ok(());
        }
        let Outbox { messages, log } = std::mem::take(&mut self.outbox);
        let batch = Outgoing::Batch { log, messages };
        self.outlet.send(batch).await.map_err(|_| Flow::Stop(None))
    }

    /// Flushes when enough is waiting.
    pub(super) async fn maybe_flush(&mut self) -> Flow {
        if self.outbox.messages.len() >= FLUSH_AT {
            if let Err(flow) = self.flush().await {
                return flow;
            }
        }
        Flow::Continue
    }

    /// Sends a heartbeat (it discloses nothing) after everything handed over, or reports where
    /// the stream stands for the outlet's next heartbeat.
    async fn heartbeat(&mut self, announce: Announce) -> Flow {
        let head = match self.state.store.head_seq().await {
            Ok(head) => head,
            Err(e) => return e.into(),
        };
        let reached = match self.position {
            Position::History { seq, .. } => seq,
            Position::Start { .. } => 0,
        };
        let message = pb::StreamEvent {
            cursor: self.cursor_at(self.position),
            event: Some(pb::stream_event::Event::Heartbeat(pb::Heartbeat {
                register_sequence: reached.min(head),
                head_sequence: head,
                server_time: Some(timestamp(self.state.clock.now_micros())),
            })),
        };
        let outgoing = match announce {
            Announce::Send => Outgoing::Batch {
                log: Vec::new(),
                messages: vec![message],
            },
            Announce::Standing => Outgoing::Standing(message),
        };
        match self.outlet.send(outgoing).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop(None),
        }
    }

    /// A delivery the policy no longer allows: the denial is logged and the subscription is
    /// withdrawn for the reason the denial gives (a consent that ended suspends it, anything else
    /// ends it; the notice follows in the history). The delivery itself is withheld.
    async fn refuse(&self, subscription: &Subscription, refusal: Refusal) -> Flow {
        let now = self.state.clock.now_micros();
        if let Err(e) = self
            .state
            .append_disclosures(std::slice::from_ref(&refusal.entry), now)
            .await
        {
            return e.into();
        }
        let message = refusal.report().message().to_string();
        let selector = EndSelector::One {
            party_id: &self.party.party_id,
            subscription_id: &subscription.subscription_id,
        };
        match self
            .state
            .withdraw_subscriptions(selector, refusal.denial.ends_subscription(), &message)
            .await
        {
            Ok(_) => {
                // Another stream of the party may have withdrawn it first; wake them all anyway.
                self.state.notify_history();
                Flow::Continue
            }
            Err(e) => e.into(),
        }
    }

    /// Delivers the start snapshots of a stream opened without a cursor.
    pub(super) async fn deliver_start(&mut self, head: u64) -> Flow {
        let Position::Start {
            index: first,
            records_sent: mut skip,
            ..
        } = self.position
        else {
            return Flow::Continue;
        };
        let gate = match Gate::load(&self.state, &self.party).await {
            Ok(g) => g,
            Err(e) => return e.into(),
        };
        let reader = Reader {
            state: self.state.clone(),
            party: self.party.clone(),
            call: self.call.clone(),
            gate,
            head,
        };
        let (chunks_tx, mut chunks) = mpsc::channel(READ_AHEAD);
        status::spawn(reader.run(first, chunks_tx));
        let mut index = first;
        loop {
            let chunk = match chunks.recv().await {
                Some(StartRead::Chunk(chunk)) => chunk,
                Some(StartRead::Done) => break,
                Some(StartRead::Failed(e)) => return e.into(),
                None => return StoreError::Corrupt("start snapshot reader stopped").into(),
            };
            for item in chunk {
                match self.deliver_start_item(head, index, skip, item).await {
                    Flow::Continue => {}
                    Flow::Full => return self.flush().await.err().unwrap_or(Flow::Full),
                    stop @ Flow::Stop(_) => return stop,
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
    async fn deliver_start_item(&mut self, head: u64, index: u64, skip: u64, item: StartItem) -> Flow {
        let StartItem {
            subscription,
            event_number,
            start,
        } = item;
        let done = Position::Start {
            head,
            index: index + 1,
            records_sent: 0,
        };
        match start {
            Start::Suspended => {
                if skip == 0
                    && let Flow::Full = self.queue(
                        done,
                        pb::stream_event::Event::Notice(pb::SubscriptionNotice {
                            subscription_id: subscription.subscription_id.clone(),
                            event_number,
                            state: pb::SubscriptionState::Suspended as i32,
                            reason: convert::state_reason(subscription.state_reason) as i32,
                            message: "suspended; nothing is delivered until it resumes".to_string(),
                            effective_at: None,
                        }),
                    )
                {
                    return Flow::Full;
                }
                self.maybe_flush().await
            }
            Start::Decided(decided, snapshot) => {
                let (ask, permit) = match *decided {
                    Ok(permitted) => permitted,
                    Err(refusal) => return self.refuse(&subscription, refusal).await,
                };
                let at = |records_sent| Position::Start {
                    head,
                    index,
                    records_sent,
                };
                let place = SnapshotPlace {
                    event_number,
                    as_of: head,
                    reason: pb::SnapshotReason::StreamStart,
                    skip,
                    at: &at,
                    done,
                };
                self.deliver_snapshot(&subscription, &ask, &permit, place, snapshot)
                    .await
            }
        }
    }

    /// Delivers one page of history after the current position. `Ok(true)` when events were read
    /// (more may follow), `Ok(false)` when caught up. With `notices_only`, other events are passed
    /// over (the party has been terminated).
    pub(super) async fn deliver_page(&mut self, notices_only: bool) -> Result<bool, Flow> {
        let Position::History {
            seq,
            ord,
            records_sent,
        } = self.position
        else {
            return Ok(false);
        };
        let store = &self.state.store;
        let head = store.head_seq().await?;
        let page = store
            .delivery_page(&self.party.party_id, (seq, ord), head, PAGE)
            .await?;
        let Some(last) = page.last() else {
            self.caught_up_to(head);
            return Ok(false);
        };
        let last_seq = last.seq;
        // Every delivery is decided before anything of the page is read.
        let gate = Gate::load(&self.state, &self.party).await?;
        let mut decisions: Vec<Option<Decided>> = Vec::with_capacity(page.len());
        for event in &page {
            decisions.push(match event.kind {
                EventKind::Notice(_) => None,
                _ if notices_only => None,
                _ => Some(decide(&self.state, &gate, &self.party, &self.call, &event.subscription).await?),
            });
        }
        // The permitted changes' facts, and the own data of their persons this stream does not
        // remember, read in one query each.
        let permitted = |kind: fn(&EventKind) -> bool| {
            page.iter()
                .zip(&decisions)
                .filter(move |(e, _)| kind(&e.kind))
                .filter_map(|(e, d)| match d {
                    Some(Ok((_, permit))) => Some((e.seq, permit)),
                    _ => None,
                })
        };
        let changes: Vec<(u64, &Permit)> = permitted(|k| matches!(k, EventKind::Change)).collect();
        let facts = if changes.is_empty() {
            HashMap::new()
        } else {
            store.records_at(&changes).await?
        };
        let uncached: Vec<&Permit> = changes
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| !self.persons.contains(p.person().as_storage()))
            .collect();
        let persons = if uncached.is_empty() {
            HashMap::new()
        } else {
            store.person_versions(&uncached, last_seq).await?
        };
        let mut skip = records_sent;
        for (event, decision) in page.iter().zip(decisions) {
            let previous = self.position;
            let resume_at = |records_sent| match previous {
                Position::History { seq, ord, .. } => Position::History {
                    seq,
                    ord,
                    records_sent,
                },
                start => start,
            };
            let done = Position::History {
                seq: event.seq,
                ord: event.ord,
                records_sent: 0,
            };
            let flow = match (&event.kind, decision) {
                (EventKind::Notice(notice), _) => self.deliver_notice(event, notice, done).await,
                (_, None) => Flow::Continue,
                (_, Some(Err(refusal))) => self.refuse(&event.subscription, refusal).await,
                (EventKind::Snapshot(reason), Some(Ok((ask, permit)))) => {
                    let place = SnapshotPlace {
                        event_number: event.event_number,
                        as_of: event.seq,
                        reason: snapshot_reason(*reason),
                        skip,
                        at: &resume_at,
                        done,
                    };
                    self.deliver_snapshot(&event.subscription, &ask, &permit, place, None)
                        .await
                }
                (EventKind::Change, Some(Ok((ask, permit)))) => {
                    let versions = persons
                        .get(permit.person().as_storage())
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    self.deliver_change(event, &ask, &permit, facts.get(&event.seq), versions, done)
                        .await
                }
            };
            skip = 0;
            match flow {
                Flow::Continue => {}
                Flow::Full => {
                    self.flush().await?;
                    return Err(Flow::Full);
                }
                stop @ Flow::Stop(_) => return Err(stop),
            }
            self.position = done;
        }
        self.flush().await?;
        // A page shorter than asked for held every event up to the head read before it: caught up,
        // with no need to read the (empty) next page. What commits meanwhile has woken the stream.
        if page.len() < PAGE as usize {
            self.caught_up_to(head);
            return Ok(false);
        }
        Ok(true)
    }

    /// Every event up to `head` has been read and delivered: a later resume may start from there.
    fn caught_up_to(&mut self, head: u64) {
        if let Position::History { seq, .. } = self.position
            && seq < head
        {
            self.position = Position::History {
                seq: head,
                ord: u64::MAX,
                records_sent: 0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> PersonData {
        PersonData {
            name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn the_person_cache_is_emptied_before_it_grows_past_its_bound() {
        let mut cache = PersonCache::default();
        for i in 0..PERSON_CACHE {
            cache.remember(format!("p{i}"), named("a"));
        }
        // Updating a person it holds keeps the others.
        cache.remember("p0".to_string(), named("b"));
        assert_eq!(cache.get("p0"), Some(&named("b")));
        assert!(cache.contains(&format!("p{}", PERSON_CACHE - 1)));
        // One more person empties it first.
        cache.remember("new".to_string(), named("c"));
        assert!(!cache.contains("p0"));
        assert_eq!(cache.get("new"), Some(&named("c")));
    }
}
