//! Reading start snapshots off a fresh stream, and the snapshot timed with the policy check on
//! and stubbed out.

use std::time::{Duration, Instant};

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
pub(super) async fn time_snapshot(channel: &Channel, subscriptions: usize) -> anyhow::Result<(u64, f64)> {
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

/// Snapshot rates (records/s) with the metrics listener scraped every second and not scraped,
/// `runs` in all (rounded up to a multiple of four), half each, in the order not, scraped,
/// scraped, not, … (so that a drift over the runs, such as a growing disclosure log, falls on
/// both alike); then the time one scrape takes, the mean of
/// 100 back to back. Each run is (records/s, CPU µs per record in lefi and PostgreSQL together):
/// (scraped, not scraped, scrapes made, seconds per scrape).
pub(super) async fn compare_metrics(
    channel: &Channel,
    subscriptions: usize,
    metrics: std::net::SocketAddr,
    runs: u32,
) -> anyhow::Result<(Vec<(f64, f64)>, Vec<(f64, f64)>, u64, f64)> {
    let (mut scraped, mut quiet) = (Vec::new(), Vec::new());
    let mut scrapes = 0;
    for round in 0..runs.div_ceil(4) * 4 {
        let scrape = matches!(round % 4, 1 | 2);
        let stop = tokio_util::sync::CancellationToken::new();
        let scraper = scrape.then(|| tokio::spawn(scrape_every_second(metrics, stop.clone())));
        let cpu_before = super::super::measure::cpu_secs();
        let (records, secs) = time_snapshot(channel, subscriptions).await?;
        let cpu_after = super::super::measure::cpu_secs();
        stop.cancel();
        if let Some(task) = scraper {
            scrapes += task.await??;
        }
        let cpu = (cpu_after.0 + cpu_after.1 - cpu_before.0 - cpu_before.1) * 1e6 / records.max(1) as f64;
        if scrape { &mut scraped } else { &mut quiet }.push((records as f64 / secs, cpu));
    }
    let started = Instant::now();
    for _ in 0..100 {
        scrape_once(metrics).await?;
    }
    Ok((scraped, quiet, scrapes, started.elapsed().as_secs_f64() / 100.0))
}

/// One GET /metrics on a new connection, as Prometheus makes it.
async fn scrape_once(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut body = Vec::new();
    tcp.read_to_end(&mut body).await?;
    anyhow::ensure!(body.starts_with(b"HTTP/1.1 200"), "a scrape was not answered 200");
    Ok(())
}

/// GETs /metrics every second as Prometheus would (a new connection each time) until `stop`;
/// returns how many scrapes it made.
async fn scrape_every_second(
    addr: std::net::SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<u64> {
    let mut made = 0;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(made),
            _ = ticks.tick() => {}
        }
        scrape_once(addr).await?;
        made += 1;
    }
}
