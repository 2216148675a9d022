//! `lefi.v1.DeliveryService`: the resumable delivery stream.
//!
//! Today the stream carries heartbeats only (the register and subscriptions arrive with later
//! work); its lifecycle is already the real one: a bounded channel fed by one task per stream,
//! which stops when the client leaves, when the caller loses the right to call (certificate
//! revoked, party terminated), or when the server drains (ending the call with UNAVAILABLE
//! `SERVER_SHUTTING_DOWN` so the client resumes elsewhere).

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::grpc::party::{heartbeat_interval, shutting_down};
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{error, invalid_field};
use crate::grpc::{party_of, status::store_error};
use crate::identity::PartyPrincipal;

/// Events buffered per stream before the producer waits for the client (HTTP/2 flow control
/// pushes back from there).
const STREAM_BUFFER: usize = 16;

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

#[tonic::async_trait]
impl pb::delivery_service_server::DeliveryService for DeliveryApi {
    #[tracing::instrument(skip_all)]
    async fn stream(&self, request: Request<pb::StreamRequest>) -> Result<Response<EventStream>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        if !req.cursor.is_empty() {
            return Err(invalid_field(
                ErrorReason::CursorInvalid,
                "cursor",
                "this cursor was not issued by this server; start with an empty cursor",
            ));
        }
        let interval = heartbeat_interval(req.heartbeat_interval.as_ref(), self.state.heartbeat_interval)?;
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let state = self.state.clone();
        tokio::spawn(async move {
            let end = run_stream(&state, &party, interval, &tx).await;
            if let Some(status) = end {
                // The client may already be gone; then there is nobody to tell.
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Feeds one stream until it ends; returns the status to end it with, or `None` when the client
/// left.
async fn run_stream(
    state: &AppState,
    party: &PartyPrincipal,
    interval: std::time::Duration,
    tx: &mpsc::Sender<Result<pb::StreamEvent, Status>>,
) -> Option<Status> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => return Some(shutting_down()),
            () = tx.closed() => return None,
            _ = ticker.tick() => {
                if let Err(status) = still_allowed(state, party).await {
                    return Some(status);
                }
                let event = pb::StreamEvent {
                    cursor: String::new(),
                    event: Some(pb::stream_event::Event::Heartbeat(pb::Heartbeat {
                        register_sequence: 0,
                        head_sequence: 0,
                        server_time: Some(prost_types::Timestamp::from(std::time::SystemTime::from(state.clock.now()))),
                    })),
                };
                if tx.send(Ok(event)).await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Re-checks, before each delivery, that the certificate the stream was opened with is still
/// registered and unrevoked and that the party may still receive data.
async fn still_allowed(state: &AppState, party: &PartyPrincipal) -> Result<(), Status> {
    let current = state
        .store
        .party_by_certificate(&party.fingerprint)
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
        &party.fingerprint,
        state.clock.now_micros(),
        state.clock.today(),
    )
    .map(|_| ())
}
