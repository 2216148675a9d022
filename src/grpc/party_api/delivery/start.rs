//! The start snapshots of a stream opened without a cursor, read ahead of their delivery.
//!
//! The start snapshots all stand at one sequence (the head when the stream opened), so a chunk of
//! subscriptions, the policy's decision for each and their snapshots are read together: the
//! subscriptions in one query, the snapshots of those permitted in another. A reader task stays up
//! to [`READ_AHEAD`] chunks ahead of the delivery and reads up to [`PARALLEL_READS`] chunks at
//! once, each on its own task and database connection. Neither side ever holds more than a few
//! chunks.

use std::collections::BTreeMap;

use tokio::sync::mpsc;

use super::{Decided, decide};
use crate::domain::delivery::SubscriptionState;
use crate::domain::register::DateRange;
use crate::grpc::party_api::authorize::{CallContext, Gate};
use crate::identity::PartyPrincipal;
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::delivery::Subscription;
use crate::store::register::{Snapshot, SnapshotAsk};

/// Start snapshots read together in one query.
const PREFETCH: usize = 64;
/// Chunks of start snapshots read ahead of the one being delivered.
pub(super) const READ_AHEAD: usize = 2;
/// Chunks of start snapshots read at the same time.
const PARALLEL_READS: usize = 2;

/// One subscription of the start sequence, ready to deliver.
pub(super) struct StartItem {
    pub subscription: Subscription,
    /// The number of its latest event at the head.
    pub event_number: u64,
    pub start: Start,
}

/// What a subscription's start delivers.
pub(super) enum Start {
    /// Suspended now: a notice, no data.
    Suspended,
    /// The policy's decision, and the snapshot when it permitted one.
    Decided(Box<Decided>, Option<Snapshot>),
}

/// What the reader hands over.
pub(super) enum StartRead {
    Chunk(Vec<StartItem>),
    /// Every subscription was handed over.
    Done,
    Failed(StoreError),
}

/// Everything a reader needs to decide and read as the stream would.
#[derive(Clone)]
pub(super) struct Reader {
    pub state: AppState,
    pub party: PartyPrincipal,
    pub call: CallContext,
    pub gate: Gate,
    pub head: u64,
}

impl Reader {
    /// Reads the start subscriptions from index `from` on, `PREFETCH` at a time, decides and
    /// reads each chunk, and hands the chunks over in order. Stops after `Done`, after the first
    /// error (handed over), or when the stream no longer wants them; reads still running are then
    /// aborted.
    pub async fn run(self, from: u64, tx: mpsc::Sender<StartRead>) {
        let mut reads: tokio::task::JoinSet<(u64, Result<Vec<StartItem>, StoreError>)> =
            tokio::task::JoinSet::new();
        let mut ready: BTreeMap<u64, Vec<StartItem>> = BTreeMap::new();
        let (mut next_read, mut next_send) = (0u64, 0u64);
        let mut after: Option<String> = None;
        let mut exhausted = false;
        loop {
            while !exhausted && reads.len() + ready.len() < PARALLEL_READS {
                let page = self
                    .state
                    .store
                    .start_subscriptions(&self.party.party_id, self.head, after.as_deref(), from, PREFETCH)
                    .await;
                let page = match page {
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
                        let reader = self.clone();
                        let n = next_read;
                        reads.spawn(async move { (n, reader.chunk(page).await) });
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
            let failed = match reads.join_next().await {
                None => {
                    let _ = tx.send(StartRead::Done).await;
                    return;
                }
                Some(Ok((n, Ok(chunk)))) => {
                    ready.insert(n, chunk);
                    continue;
                }
                Some(Ok((_, Err(e)))) => e,
                Some(Err(_)) => StoreError::Corrupt("start snapshot read task failed"),
            };
            let _ = tx.send(StartRead::Failed(failed)).await;
            return;
        }
    }

    /// Decides the deliveries of one page of subscriptions and reads the permitted snapshots as of
    /// the head, in one query.
    async fn chunk(&self, page: Vec<(Subscription, u64)>) -> Result<Vec<StartItem>, StoreError> {
        let mut decided = Vec::with_capacity(page.len());
        for (subscription, _) in &page {
            decided.push(match subscription.state {
                SubscriptionState::Suspended => None,
                SubscriptionState::Active | SubscriptionState::Ended => {
                    Some(decide(&self.state, &self.gate, &self.party, &self.call, subscription).await?)
                }
            });
        }
        let asks: Vec<SnapshotAsk<'_>> = page
            .iter()
            .zip(&decided)
            .filter_map(|((subscription, _), d)| match d {
                Some(Ok((_, permit))) => Some(SnapshotAsk {
                    permit,
                    period: DateRange {
                        from: subscription.asked.from_date,
                        to: None,
                    },
                }),
                _ => None,
            })
            .collect();
        let mut snapshots = self.state.store.snapshots_of(&asks, self.head).await?.into_iter();
        Ok(page
            .into_iter()
            .zip(decided)
            .map(|((subscription, event_number), d)| StartItem {
                subscription,
                event_number,
                start: match d {
                    None => Start::Suspended,
                    Some(Ok(permitted)) => Start::Decided(Box::new(Ok(permitted)), snapshots.next()),
                    Some(Err(refusal)) => Start::Decided(Box::new(Err(refusal)), None),
                },
            })
            .collect())
    }
}
