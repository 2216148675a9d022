//! The pull form of the stream (`FetchEvents`): the producer runs with a [`super::producer::Budget`]
//! and hands its batches to [`collect`], which logs each batch's disclosures and only then keeps
//! its messages for the answer: what is returned was logged first, exactly as on the stream.

use tokio::sync::mpsc;
use tonic::Status;

use super::outlet::Outgoing;
use crate::domain::cursor::Position;
use crate::grpc::pb::lefi::v1 as pb;
use crate::state::AppState;

/// Logs and gathers what the producer hands over, until it is dropped. Fails (and stops taking
/// batches, which stops the producer) when a log write fails or the producer ends with an error.
pub(super) async fn collect(
    state: &AppState,
    mut incoming: mpsc::Receiver<Outgoing>,
) -> Result<Vec<pb::StreamEvent>, Status> {
    let mut events = Vec::new();
    while let Some(outgoing) = incoming.recv().await {
        match outgoing {
            Outgoing::Batch { log, messages } => {
                state.append_disclosures(&log, state.clock.now_micros()).await?;
                events.extend(messages);
            }
            // A pull's answer says where it stands itself.
            Outgoing::Standing(_) => {}
            Outgoing::End(status) => return Err(status),
        }
    }
    Ok(events)
}

/// The register sequence everything up to which an answer has delivered. A caught-up answer read
/// every event up to its position's sequence (as a heartbeat reports it); a full one may have
/// stopped among the events of that sequence, so it completes only the one before.
pub(super) fn completed_sequence(position: Position, full: bool) -> u64 {
    match position {
        Position::History { seq, ord, .. } if !full || ord == u64::MAX => seq,
        Position::History { seq, .. } => seq.saturating_sub(1),
        Position::Start { .. } => 0,
    }
}
