//! Commit-to-delivery latency: facts ingested one per transaction through the admin API at a
//! fixed rate, timed until they arrive on a stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::commands::bench::measure::percentile;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// Commit-to-delivery figures, in milliseconds.
pub(super) struct Latency {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) delivered: usize,
    /// Sending a fact to the ingest API's answer that it is committed.
    pub(super) ack_p50: f64,
    pub(super) ack_p99: f64,
    /// The answer's arrival to the fact's delivery (zero where the delivery came first): the
    /// answer is sent after the commit, so this is a lower bound of commit-to-delivery.
    pub(super) after_ack_p50: f64,
    pub(super) after_ack_p99: f64,
}

/// Ingests `commits` facts one per transaction at `rate` per second through the admin API (the
/// real path: commit, notify, stream) and measures, per fact, the time from sending it to
/// receiving it on the stream. The figure includes the ingest call itself, so it is an upper
/// bound on commit-to-delivery.
pub(super) async fn latency(
    admin: tonic::transport::Channel,
    persons: &[String],
    stream: &mut tonic::Streaming<pb::StreamEvent>,
    commits: usize,
    rate: u64,
) -> anyhow::Result<Latency> {
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(commits)));
    let (tx, rx) = tokio::sync::mpsc::channel::<admin_pb::IngestRequest>(16);
    let mut answers = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(admin)
        .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let writer = {
        let sent = sent.clone();
        let persons = persons.to_vec();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            for i in 0..commits {
                tick.tick().await;
                let fact = admin_pb::Fact {
                    source_system: "BENCH".to_string(),
                    source_id: format!("L{i}"),
                    source_version: 1,
                    person_id: persons[i % persons.len()].clone(),
                    benefit_type: "SJP".to_string(),
                    kind: pb::RecordKind::New as i32,
                    body: Some(admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                        kind: pb::PersonEventKind::LifeCertificateReceived as i32,
                        event_date: "2025-06-01".to_string(),
                    })),
                    ..Default::default()
                };
                if let Ok(mut s) = sent.lock() {
                    s.push(Instant::now());
                }
                if tx
                    .send(admin_pb::IngestRequest { fact: Some(fact) })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let answered = tokio::spawn(async move {
        let mut seq_of_index = HashMap::new();
        while let Ok(Some(answer)) = answers.message().await {
            seq_of_index.insert(answer.register_sequence, (answer.index as usize, Instant::now()));
            if seq_of_index.len() == commits {
                break;
            }
        }
        seq_of_index
    });
    let mut received: Vec<(u64, Instant)> = Vec::with_capacity(commits);
    let deadline = Instant::now() + Duration::from_secs(60 + commits as u64 / rate.max(1));
    while received.len() < commits && Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .context("waiting for a change")??;
        let Some(event) = next else { break };
        if let Some(pb::stream_event::Event::Change(c)) = &event.event {
            received.push((c.register_sequence, Instant::now()));
        }
    }
    let _ = writer.await;
    let seq_of_index = answered.await.unwrap_or_default();
    let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
    // Per fact: sent, answered (committed), received on the stream.
    let latencies = sorted_millis(received.iter().filter_map(|(seq, at)| {
        let (index, _) = seq_of_index.get(seq)?;
        Some((*sent.get(*index)?, *at))
    }));
    let after_ack = sorted_millis(received.iter().filter_map(|(seq, at)| {
        let (_, answered) = seq_of_index.get(seq)?;
        Some((*answered, *at))
    }));
    let acks = sorted_millis(
        seq_of_index
            .values()
            .filter_map(|(index, at)| Some((*sent.get(*index)?, *at))),
    );
    Ok(Latency {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        delivered: latencies.len(),
        ack_p50: percentile(&acks, 0.5),
        ack_p99: percentile(&acks, 0.99),
        after_ack_p50: percentile(&after_ack, 0.5),
        after_ack_p99: percentile(&after_ack, 0.99),
    })
}

/// The milliseconds from each start to its end (zero where the end came first), sorted.
fn sorted_millis(spans: impl Iterator<Item = (Instant, Instant)>) -> Vec<f64> {
    let mut millis: Vec<f64> = spans
        .map(|(start, end)| end.saturating_duration_since(start).as_secs_f64() * 1_000.0)
        .collect();
    millis.sort_by(|a, b| a.total_cmp(b));
    millis
}
