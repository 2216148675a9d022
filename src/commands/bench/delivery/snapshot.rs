//! Reading start snapshots off a fresh stream, and the snapshot timed with the policy check on
//! and stubbed out.

#[cfg(feature = "bench-policy-stub")]
use std::time::Instant;

use tonic::Streaming;
use tonic::transport::Channel;

use crate::grpc::pb::lefi::v1 as pb;

/// Opens a stream with an empty cursor: every subscription's start snapshot, then changes.
pub(super) async fn fresh_stream(
    channel: Channel,
    max_batch_records: u32,
) -> anyhow::Result<Streaming<pb::StreamEvent>> {
    Ok(pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .stream(pb::StreamRequest {
            cursor: String::new(),
            max_batch_records,
            heartbeat_interval: None,
        })
        .await?
        .into_inner())
}

/// The records and the ended start snapshots read so far from a stream.
#[derive(Debug, Default)]
pub(super) struct SnapshotCount {
    pub(super) records: u64,
    pub(super) snapshots: usize,
}

impl SnapshotCount {
    /// Reads the stream's next event and counts it; a stream that ends is an error, `during`
    /// says what it interrupted.
    pub(super) async fn next(
        &mut self,
        stream: &mut Streaming<pb::StreamEvent>,
        during: &str,
    ) -> anyhow::Result<pb::StreamEvent> {
        let Some(event) = stream.message().await? else {
            anyhow::bail!("the stream ended during {during}");
        };
        match &event.event {
            Some(pb::stream_event::Event::Records(b)) => self.records += b.records.len() as u64,
            Some(pb::stream_event::Event::SnapshotEnd(_)) => self.snapshots += 1,
            _ => {}
        }
        Ok(event)
    }
}

/// Opens a fresh stream (empty cursor) and reads every start snapshot; returns the records
/// received and the seconds it took.
#[cfg(feature = "bench-policy-stub")]
async fn time_snapshot(channel: &Channel, subscriptions: usize) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut stream = fresh_stream(channel.clone(), 1_000).await?;
    let mut count = SnapshotCount::default();
    while count.snapshots < subscriptions {
        count.next(&mut stream, "the snapshot").await?;
    }
    Ok((count.records, started.elapsed().as_secs_f64()))
}

/// Snapshot rates (records/s) with the policy check on and stubbed out, two runs each,
/// alternating: (on, stubbed).
#[cfg(feature = "bench-policy-stub")]
pub(super) async fn compare_policy_stub(
    channel: &Channel,
    subscriptions: usize,
) -> anyhow::Result<(f64, f64)> {
    let (mut on, mut stubbed) = (Vec::new(), Vec::new());
    for round in 0..4 {
        let stub = round % 2 == 0;
        crate::policy::bench_stub::set(stub);
        let (records, secs) = time_snapshot(channel, subscriptions).await?;
        if stub { &mut stubbed } else { &mut on }.push(records as f64 / secs);
    }
    crate::policy::bench_stub::set(false);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok((mean(&on), mean(&stubbed)))
}

#[cfg(not(feature = "bench-policy-stub"))]
pub(super) async fn compare_policy_stub(
    _channel: &Channel,
    _subscriptions: usize,
) -> anyhow::Result<(f64, f64)> {
    anyhow::bail!(
        "--compare-policy-stub needs a build with the benchmark-only stub: \
         cargo run --release --features bench-policy-stub -- bench delivery …"
    )
}
