//! A stream's outlet: writes each batch's disclosure-log entries, then sends its messages to the
//! client, in the order the producer handed them over.
//!
//! Running it beside the producer overlaps the log's commit with reading and building the next
//! batch. When the log cannot be written, the client gets the error and nothing of that batch;
//! when the client leaves, the outlet ends, which the producer notices at its next hand-over.

use tokio::sync::mpsc;
use tonic::Status;

use crate::domain::disclosure::NewDisclosure;
use crate::grpc::pb::lefi::v1 as pb;
use crate::state::AppState;

/// Batches handed to the outlet but not yet logged and sent. With one being written, this lets
/// the producer prepare the next batch while the previous one is logged and sent.
pub(super) const OUTLET_BATCHES: usize = 4;

/// What a stream's producer hands its outlet, in order.
pub(super) enum Outgoing {
    /// Append these disclosure-log entries (one transaction), then send these messages. Nothing is
    /// sent unless the entries were written.
    Batch {
        log: Vec<NewDisclosure>,
        messages: Vec<pb::StreamEvent>,
    },
    /// End the stream with this status, after everything handed over before it.
    End(Status),
}

/// Logs and sends what the producer hands over until it ends, the client leaves, or the log
/// cannot be written.
pub(super) async fn run(
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
                if let Err(e) = state
                    .store
                    .append_disclosures(&log, state.clock.now_micros())
                    .await
                {
                    let _ = tx.send(Err(e.into())).await;
                    return;
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
