//! What one history event becomes on the stream: a snapshot's SnapshotBegin, record batches and
//! SnapshotEnd, a change, or a subscription notice, each message queued on the producer's outbox
//! with the disclosure-log entry that names what it discloses (see [`super::producer`], which
//! decides every delivery before anything here reads or sends).

use super::producer::{DeliveryStream, Flow};
use crate::domain::cursor::Position;
use crate::domain::delivery::{Notice, SnapshotReason, SubscriptionState};
use crate::domain::register::versions::{DeliveredVersion, StoredRecord, Version as _};
use crate::domain::register::{DateRange, FactBody, PersonData};
use crate::grpc::convert::{self, Audience, timestamp};
use crate::grpc::party_api::authorize::{Ask, allowed_entry};
use crate::grpc::pb::lefi::v1 as pb;
use crate::policy::Permit;
use crate::store::delivery::{DeliveryEvent, Subscription};
use crate::store::register::Snapshot;

/// Where a snapshot stands in the stream, for its messages' cursors.
pub(super) struct SnapshotPlace<'a> {
    pub event_number: u64,
    pub as_of: u64,
    pub reason: pb::SnapshotReason,
    /// Records of it already delivered, plus one for its SnapshotBegin (0: nothing yet).
    pub skip: u64,
    /// The position inside the snapshot after `records_sent` records.
    pub at: &'a (dyn Fn(u64) -> Position + Sync),
    /// The position after the whole snapshot.
    pub done: Position,
}

impl DeliveryStream {
    /// Delivers one snapshot: SnapshotBegin, the records in batches, SnapshotEnd. `prefetched` is
    /// the snapshot when it was read ahead (start snapshots); otherwise it is read here, as of its
    /// sequence, under the delivery's permit.
    pub(super) async fn deliver_snapshot(
        &mut self,
        subscription: &Subscription,
        ask: &Ask,
        permit: &Permit,
        place: SnapshotPlace<'_>,
        prefetched: Option<Snapshot>,
    ) -> Flow {
        let (data, mut records) = match prefetched {
            Some(found) => found,
            None => {
                let period = DateRange {
                    from: subscription.asked.from_date,
                    to: None,
                };
                match self.state.store.snapshot_of(permit, period, place.as_of).await {
                    Ok(found) => found,
                    Err(e) => return e.into(),
                }
            }
        };
        // Only the records the subscription asked for (its filter; changes are filtered at fan-out).
        let filter = &subscription.asked.filter;
        if !filter.is_everything() {
            records.retain(|r| filter.admits(r.fact_type(), r.topic()));
        }
        let person = convert::person(permit.person(), &data, Audience::Party);
        self.persons
            .remember(permit.person().as_storage().to_string(), data);
        // `skip` counts SnapshotBegin as 1 and each record after it as 1 more.
        let already = (place.skip.saturating_sub(1) as usize).min(records.len());
        let id = &subscription.subscription_id;
        // The snapshot's messages still to send, each with the records it holds.
        let mut messages = Vec::new();
        if place.skip == 0 {
            let begin = pb::stream_event::Event::SnapshotBegin(pb::SnapshotBegin {
                subscription_id: id.clone(),
                event_number: place.event_number,
                as_of_sequence: place.as_of,
                reason: place.reason as i32,
                person: Some(person.clone()),
            });
            messages.push((self.message((place.at)(1), begin), 0));
        }
        let record_count = records.len() as u64;
        records.drain(..already);
        let mut sent = already;
        // Batches are numbered from 1; a resume inside the snapshot continues the numbering.
        let mut batches = (already / self.batch.max(1)) as u32;
        for batch in convert::record_batches(records, self.batch) {
            let held = batch.len();
            sent += held;
            batches += 1;
            let records = pb::stream_event::Event::Records(pb::RecordBatch {
                subscription_id: id.clone(),
                event_number: place.event_number,
                batch_index: batches,
                person: Some(person.clone()),
                records: batch,
            });
            messages.push((self.message((place.at)(sent as u64 + 1), records), held));
        }
        // The end marker carries the position after the whole event.
        let end = pb::stream_event::Event::SnapshotEnd(pb::SnapshotEnd {
            subscription_id: id.clone(),
            event_number: place.event_number,
            as_of_sequence: place.as_of,
            record_count,
            batch_count: batches,
        });
        messages.push((self.message(place.done, end), 0));
        // A pull takes what its answer has room for; the log names exactly the records taken.
        let total = messages.len();
        let admitted: Vec<_> = messages
            .into_iter()
            .map_while(|(message, held)| self.admit(&message.1).then_some((message, held)))
            .collect();
        if admitted.is_empty() {
            return Flow::Full;
        }
        let full = admitted.len() < total;
        let taken = admitted.iter().map(|(_, held)| held).sum();
        let entry = allowed_entry(&self.party, &self.call, ask, permit, taken, (0, place.as_of));
        self.outbox.log.push(entry);
        for (message, _) in admitted {
            self.push(message);
        }
        if full {
            return Flow::Full;
        }
        self.maybe_flush().await
    }

    /// Delivers one change. `fact` is the log row at the change's sequence and `versions` the
    /// person's recorded data (when the stream does not remember it), both read with the page.
    pub(super) async fn deliver_change(
        &mut self,
        event: &DeliveryEvent,
        ask: &Ask,
        permit: &Permit,
        fact: Option<&DeliveredVersion>,
        versions: &[(u64, PersonData)],
        done: Position,
    ) -> Flow {
        // The person's data as of this change: a person update is itself the change; otherwise the
        // stream's cache holds it (every person update of a subscribed person reaches this stream
        // as a change, and snapshots fill the cache), or the latest version recorded at or before
        // the change's sequence.
        let key = permit.person().as_storage().to_string();
        let data = match fact {
            Some(DeliveredVersion::Parsed(StoredRecord {
                body: FactBody::Person(data),
                ..
            })) => data.clone(),
            _ => match self.persons.get(&key) {
                Some(data) => data.clone(),
                None => versions
                    .iter()
                    .rev()
                    .find(|(seq, _)| *seq <= event.seq)
                    .map(|(_, data)| data.clone())
                    .unwrap_or_default(),
            },
        };
        let person = convert::person(permit.person(), &data, Audience::Party);
        self.persons.remember(key, data);
        // Person-data changes carry no records: the new Person is the change.
        let records: Vec<pb::BenefitRecord> = fact
            .filter(|r| !r.is_person_update())
            .map(|r| pb::BenefitRecord::from(r.clone()))
            .into_iter()
            .collect();
        let range = (event.seq.saturating_sub(1), event.seq);
        let count = records.len();
        let change = pb::stream_event::Event::Change(pb::Change {
            subscription_id: event.subscription.subscription_id.clone(),
            event_number: event.event_number,
            person: Some(person),
            records,
            register_sequence: event.seq,
        });
        let message = self.message(done, change);
        if !self.admit(&message.1) {
            return Flow::Full;
        }
        let entry = allowed_entry(&self.party, &self.call, ask, permit, count, range);
        self.outbox.log.push(entry);
        self.push(message);
        self.maybe_flush().await
    }

    pub(super) async fn deliver_notice(
        &mut self,
        event: &DeliveryEvent,
        notice: &Notice,
        done: Position,
    ) -> Flow {
        let state = match notice.state {
            SubscriptionState::Active => pb::SubscriptionState::Active,
            SubscriptionState::Suspended => pb::SubscriptionState::Suspended,
            SubscriptionState::Ended => pb::SubscriptionState::Ended,
        };
        let notice = pb::stream_event::Event::Notice(pb::SubscriptionNotice {
            subscription_id: event.subscription.subscription_id.clone(),
            event_number: event.event_number,
            state: state as i32,
            reason: convert::state_reason(Some(notice.reason)) as i32,
            message: notice.message.clone(),
            effective_at: Some(timestamp(event.recorded_at)),
        });
        if let Flow::Full = self.queue(done, notice) {
            return Flow::Full;
        }
        self.maybe_flush().await
    }
}

pub(super) fn snapshot_reason(reason: SnapshotReason) -> pb::SnapshotReason {
    match reason {
        SnapshotReason::SubscriptionCreated => pb::SnapshotReason::SubscriptionCreated,
        SnapshotReason::FullRefresh => pb::SnapshotReason::FullRefresh,
        SnapshotReason::Resumed => pb::SnapshotReason::SubscriptionResumed,
    }
}
