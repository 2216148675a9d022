//! The bare tonic baseline the snapshot rate is read against, measured in the same run: a stream of
//! the same messages over the same mTLS (the plain sqlx read is [`super::super::sqlx_read`]).

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::snapshot::fresh_stream;
use crate::client::ClientPem;
use crate::config::TlsMaterial;
use crate::grpc::pb::lefi::v1 as pb;

/// A bare DeliveryService that streams prepared messages: the tonic-over-mTLS baseline.
struct Bare {
    events: Arc<Vec<pb::StreamEvent>>,
    /// Records to move in all: the prepared messages are replayed until this many went out.
    records: u64,
}

type BareStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::StreamEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::delivery_service_server::DeliveryService for Bare {
    async fn stream(&self, _request: Request<pb::StreamRequest>) -> Result<Response<BareStream>, Status> {
        let events = self.events.clone();
        let total = self.records;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut sent = 0u64;
            while sent < total && !events.is_empty() {
                for e in events.iter() {
                    if let Some(pb::stream_event::Event::Records(b)) = &e.event {
                        sent += b.records.len() as u64;
                    }
                    if tx.send(Ok(e.clone())).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// A bare tonic stream of `events` over the same mTLS, replayed until `records` records went
/// out; returns its rate in records per second. The events are shared, not copied, by every
/// round that replays them.
pub(super) async fn bare_baseline(
    tls: &TlsMaterial,
    pem: &ClientPem,
    events: Arc<Vec<pb::StreamEvent>>,
    records: u64,
) -> anyhow::Result<f64> {
    let config = crate::tls::server_config(
        &tls.server_cert_pem,
        &tls.server_key_pem,
        "bench CA",
        &tls.party_ca_pem,
        &[],
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let stop = CancellationToken::new();
    let incoming = crate::tls::incoming(listener, config, stop.clone(), Arc::new(|_| {}));
    let service = pb::delivery_service_server::DeliveryServiceServer::new(Bare { events, records })
        .max_encoding_message_size(64 * 1024 * 1024);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
    );
    let channel = crate::client::connect(&format!("https://localhost:{port}"), pem, None).await?;
    let started = Instant::now();
    let mut stream = fresh_stream(channel, 0).await?;
    let mut seen = 0u64;
    while let Some(e) = stream.message().await? {
        if let Some(pb::stream_event::Event::Records(b)) = &e.event {
            seen += b.records.len() as u64;
        }
    }
    let rate = seen as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    Ok(rate)
}
