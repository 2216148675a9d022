//! `lefi.v1.DeliveryService`: the resumable delivery stream, full refreshes and cursor commits.
//!
//! A stream is three tasks: the [`producer`] reads the party's delivery history
//! (`store::delivery`) in (sequence, ord) order, a page at a time, runs the policy for every
//! delivery and prepares batches of messages with their disclosure-log entries; the [`outlet`]
//! appends each batch's entries and only then sends its messages through a small bounded channel
//! (HTTP/2 flow control pushes back from the client); a stream opened without a cursor first gets
//! its start snapshots from a reader task ([`start`]) that stays a few chunks ahead.
//!
//! The stream ends when the client leaves; with UNAUTHENTICATED when its certificate is revoked;
//! with PERMISSION_DENIED `PARTY_TERMINATED` once the party's termination takes effect (after the
//! ENDED notices); and with UNAVAILABLE `SERVER_SHUTTING_DOWN` when the server drains.

mod messages;
mod outlet;
mod producer;
mod pull;
mod start;

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::authorize::{Ask, CallContext, Gate, Refusal};
use crate::domain::cursor::{CursorKey, Position};
use crate::domain::delivery::EndReason;
use crate::domain::disclosure::Channel;
use crate::grpc::fields::{self, FieldError, FieldProblem};
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Missing};
use crate::identity::PartyPrincipal;
use crate::policy::Permit;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::delivery::{EndSelector, Subscription};
use crate::streams::NewStream;

/// Messages buffered per stream before the producer waits for the client.
const STREAM_BUFFER: usize = 16;
/// Records per RecordBatch unless the client asks for fewer.
const DEFAULT_BATCH: usize = 500;
/// The most records per RecordBatch.
const MAX_BATCH: usize = 5_000;
/// The longest reason a full refresh may give.
const MAX_REFRESH_REASON: usize = 200;
/// The longest consumer name of CommitCursor.
const MAX_CONSUMER: usize = 64;
/// The consumer a CommitCursor without one reports for.
const DEFAULT_CONSUMER: &str = "default";

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEvent, Status>> + Send>>;

/// Messages in a pull's answer unless the client asks for fewer.
const DEFAULT_PULL: usize = 500;
/// The most messages a client may ask for in one pull.
const MAX_PULL: usize = 5_000;
/// A pull's answer stops growing at about this size, well under the 4 MiB clients accept by
/// default (one message always goes in, and a RecordBatch is kept well under 4 MiB).
const PULL_BYTES: usize = 3 * 1024 * 1024;

/// Records per RecordBatch for a client's `max_batch_records`.
fn batch_size(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_BATCH,
        n => (n as usize).min(MAX_BATCH),
    }
}

/// The key that signs and checks the cursors of every party.
async fn cursor_key(state: &AppState) -> Result<CursorKey, StoreError> {
    Ok(CursorKey::new(state.store.cursor_key().await?))
}

/// Decodes a client's cursor, refusing forged, foreign and expired ones.
async fn read_cursor(
    state: &AppState,
    key: &CursorKey,
    party_id: &str,
    cursor: &str,
) -> Result<Position, Status> {
    let position = key.decode(party_id, cursor).map_err(|e| {
        FieldError::new(
            FieldProblem::Cursor,
            "cursor",
            format!("{e}; resume with a cursor this service gave your party, or start with an empty cursor"),
        )
    })?;
    let floor = match position {
        Position::History { seq, .. } => seq,
        Position::Start { head, .. } => head,
    };
    let horizon = state.store.delivery_horizon(party_id).await?;
    if horizon > 0 && floor < horizon {
        return Err(status::cursor_expired(horizon));
    }
    // A genuine cursor past the head: the register was restored from a backup taken before the
    // cursor was given. What the party was sent after the head may differ from what the register
    // now holds, and the sequences after it will be given again to other facts: resuming would
    // skip them silently.
    let head = state.store.head_seq().await?;
    if floor > head {
        return Err(status::cursor_ahead(head));
    }
    Ok(position)
}

/// The policy request a subscription's delivery makes.
fn ask_for(subscription: &Subscription) -> Ask {
    Ask {
        basis_code: subscription.asked.legal_basis.clone(),
        person: subscription.asked.person.clone(),
        benefit_codes: subscription.asked.benefit_types.clone(),
        case_reference: subscription.asked.case_reference.clone(),
        consent_id: subscription.asked.consent_id.clone(),
        period: (Some(subscription.asked.from_date), None),
        subscription_id: Some(subscription.subscription_id.clone()),
    }
}

/// The decision about one delivery of a subscription: its permit, or the refusal to handle.
type Decided = Result<(Ask, Permit), Refusal>;

/// Runs the policy for one delivery of `subscription` (nothing is logged here; see
/// [`producer`] for what a refusal does).
async fn decide(
    state: &AppState,
    gate: &Gate,
    party: &PartyPrincipal,
    call: &CallContext,
    subscription: &Subscription,
) -> Result<Decided, StoreError> {
    let ask = ask_for(subscription);
    #[cfg(feature = "bench-policy-stub")]
    if crate::policy::bench_stub::enabled() {
        let permit = crate::policy::bench_stub::permit(
            &ask.person,
            &ask.basis_code,
            &ask.benefit_codes,
            ask.consent_id.as_deref(),
            ask.case_reference.as_deref(),
        );
        return Ok(Ok((ask, permit)));
    }
    Ok(gate
        .check(state, party, call, &ask)
        .await?
        .map(|permit| (ask, permit)))
}

impl PartyApi {
    /// Opens the party's delivery stream at the request's cursor (or, without one, with the start
    /// snapshots as of the register's head), and starts its producer and outlet.
    async fn stream(
        &self,
        (party, call, req): (PartyPrincipal, CallContext, pb::StreamRequest),
    ) -> Result<EventStream, Status> {
        let state = self.state.clone();
        let key = cursor_key(&state).await?;
        let position = self.position_of(&party, &key, &req.cursor).await?;
        let interval = fields::heartbeat_interval(req.heartbeat_interval.as_ref(), state.heartbeat_interval)?;
        let batch = batch_size(req.max_batch_records);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (outlet, outgoing) = mpsc::channel(outlet::OUTLET_BATCHES);
        let reached = match position {
            Position::History { seq, .. } => seq,
            Position::Start { .. } => 0,
        };
        let keepalive = outlet::Keepalive::new(interval, key.encode(&party.party_id, position), reached);
        let stream = NewStream {
            party_id: &party.party_id,
            peer: call.peer,
            opened_at: state.clock.now_micros(),
            from_sequence: reached,
        };
        let max_streams = state.rates.limits_of(&party).max_streams;
        let slot = state
            .streams
            .open(stream, max_streams, &state.metrics)
            .map_err(status::too_many_streams)?;
        status::spawn(outlet::run(state.clone(), outgoing, tx, keepalive, slot));
        let producer = producer::DeliveryStream {
            state,
            party,
            call,
            key,
            batch,
            interval,
            outlet,
            position,
            outbox: Default::default(),
            persons: Default::default(),
            budget: None,
            last_queued: None,
        };
        status::spawn(producer.run_to_end());
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// Answers a pull: the messages the stream would send after the request's cursor, as many as
    /// fit in one answer, logged before they are returned (see [`pull`]).
    async fn fetch_events(
        &self,
        (party, call, req): (PartyPrincipal, CallContext, pb::FetchEventsRequest),
    ) -> Result<pb::FetchEventsResponse, Status> {
        let wait = fields::long_poll_wait(req.wait.as_ref())?;
        let max_events = match req.max_events {
            0 => DEFAULT_PULL,
            n if n as usize > MAX_PULL => {
                return Err(FieldError::invalid(
                    "max_events",
                    format!(
                        "max_events must be at most {MAX_PULL} (or 0 for the server default, {DEFAULT_PULL})"
                    ),
                )
                .into());
            }
            n => n as usize,
        };
        let state = self.state.clone();
        let key = cursor_key(&state).await?;
        let position = self.position_of(&party, &key, &req.cursor).await?;
        let (outlet, incoming) = mpsc::channel(outlet::OUTLET_BATCHES);
        let mut producer = producer::DeliveryStream {
            state: state.clone(),
            party,
            call,
            key,
            batch: batch_size(req.max_batch_records),
            interval: state.heartbeat_interval,
            outlet,
            position,
            outbox: Default::default(),
            persons: Default::default(),
            budget: Some(pull::Budget::new(max_events, PULL_BYTES)),
            last_queued: None,
        };
        let read = async move {
            let pulled = producer.pull(wait).await.map(|full| {
                let reached = producer.reached();
                (
                    full,
                    reached,
                    producer.key.encode(&producer.party.party_id, reached),
                )
            });
            // Dropping the producer closes the outlet: the collector ends after the last batch.
            drop(producer);
            pulled
        };
        let (pulled, collected) = tokio::join!(read, pull::collect(&state, incoming));
        // A failed log write ends the collector first; its error is the answer.
        let events = collected?;
        let (full, reached, cursor) =
            pulled.map_err(|status| status.unwrap_or_else(status::shutting_down))?;
        let head = state.store.head_seq().await?;
        Ok(pb::FetchEventsResponse {
            events,
            cursor,
            caught_up: !full,
            register_sequence: pull::completed_sequence(reached, full).min(head),
            head_sequence: head,
        })
    }

    /// Where a request's cursor puts the party in its history: the start, for an empty cursor.
    async fn position_of(
        &self,
        party: &PartyPrincipal,
        key: &CursorKey,
        cursor: &str,
    ) -> Result<Position, Status> {
        if cursor.is_empty() {
            Ok(Position::Start {
                head: self.state.store.head_seq().await?,
                index: 0,
                records_sent: 0,
            })
        } else {
            read_cursor(&self.state, key, &party.party_id, cursor).await
        }
    }

    /// Gives the named subscriptions (or all) a fresh snapshot, and the cursor to stream them from.
    async fn request_full_refresh(
        &self,
        (party, req): (PartyPrincipal, pb::FullRefreshRequest),
    ) -> Result<pb::FullRefreshResponse, Status> {
        let reason = fields::optional_text("reason", &req.reason, MAX_REFRESH_REASON)?;
        let state = &self.state;
        let key = cursor_key(state).await?;
        let refresh = state
            .store
            .full_refresh(
                &party.party_id,
                &req.subscription_ids,
                reason.as_deref().unwrap_or(""),
                state.clock.now_micros(),
            )
            .await
            .map_err(|e| status::or_missing(e, Missing::Subscription))?;
        state.notify_history();
        Ok(pb::FullRefreshResponse {
            cursor: key.encode(
                &party.party_id,
                Position::History {
                    seq: refresh.before,
                    ord: u64::MAX,
                    records_sent: 0,
                },
            ),
            as_of_sequence: refresh.before + 1,
            subscription_count: refresh.refreshed.len() as u64,
            skipped_subscription_ids: refresh.skipped,
        })
    }

    /// Records how far one of the party's consumers has processed the stream (the sequence its
    /// cursor completes), for the agency's view of its progress.
    async fn commit_cursor(
        &self,
        (party, req): (PartyPrincipal, pb::CommitCursorRequest),
    ) -> Result<pb::CommitCursorResponse, Status> {
        let consumer = fields::optional_text("consumer", &req.consumer, MAX_CONSUMER)?
            .unwrap_or_else(|| DEFAULT_CONSUMER.to_string());
        let state = &self.state;
        let key = cursor_key(state).await?;
        let reached = match read_cursor(state, &key, &party.party_id, &req.cursor).await? {
            Position::History { seq, .. } => seq,
            // Inside the start snapshots: no sequence is complete yet.
            Position::Start { .. } => 0,
        };
        let store = &state.store;
        let head = store.head_seq().await?;
        store
            .commit_cursor(&party.party_id, &consumer, reached, state.clock.now_micros())
            .await?;
        let recorded_at = if reached < head {
            store.recorded_at(reached).await?
        } else {
            None
        };
        Ok(pb::CommitCursorResponse {
            register_sequence: reached,
            head_sequence: head,
            cursor_recorded_at: recorded_at.map(crate::grpc::convert::timestamp),
        })
    }
}

crate::grpc::service! {
    impl pb::delivery_service_server::DeliveryService for PartyApi {
        stream(pb::StreamRequest) -> EventStream:
            logged("/lefi.v1.DeliveryService/Stream", Channel::StreamDelivery);
        fetch_events(pb::FetchEventsRequest) -> pb::FetchEventsResponse:
            logged("/lefi.v1.DeliveryService/FetchEvents", Channel::StreamDelivery);
        request_full_refresh(pb::FullRefreshRequest) -> pb::FullRefreshResponse: party;
        commit_cursor(pb::CommitCursorRequest) -> pb::CommitCursorResponse: party;
    }
}

/// Ends every subscription whose end date has passed (reason END_DATE_REACHED; each party's
/// history gets the ENDED notice at its place), at start and then whenever the day changes, until
/// `shutdown`. A check that fails (the database is away) is retried a second later.
pub async fn end_subscriptions_past_their_end_date(
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let clock = state.clock.clone();
    let what = "ending subscriptions past their end date";
    crate::state::on_each_new_day(clock, shutdown, what, |today| {
        let state = state.clone();
        async move {
            let day = crate::domain::clock::format_date(today);
            if !state.store.any_past_end_date(&day).await? {
                return Ok(());
            }
            let selector = EndSelector::EndDateBefore { today: &day };
            let ended = state
                .withdraw_subscriptions(selector, EndReason::EndDateReached, "its end date has passed")
                .await?;
            if !ended.is_empty() {
                tracing::info!(ended = ended.len(), "ended subscriptions past their end date");
            }
            Ok::<(), crate::store::StoreError>(())
        }
    })
    .await
}

/// How often the history pruner runs (it also runs at start).
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes delivery history older than the retention, at start and then every [`PRUNE_EVERY`],
/// until `shutdown`. Each party's horizon moves past what was deleted, so a cursor older than the
/// retention gets CURSOR_EXPIRED and the full-refresh path (never a silent gap).
pub async fn prune_history_on_schedule(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention = i64::try_from(state.history_retention.as_micros()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let before = state.clock.now_micros().saturating_sub(retention);
        match state.store.prune_delivery_history(before).await {
            Ok(0) => {}
            Ok(deleted) => {
                state.metrics.history_pruned(deleted);
                tracing::info!(deleted, retention = ?state.history_retention, "pruned delivery history past its retention");
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning delivery history failed; retrying at the next round")
            }
        }
    }
}
