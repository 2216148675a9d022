//! The pull form of the stream (`FetchEvents`): the stream's producer runs with a [`Budget`] (its
//! `pull` method, here) and hands its batches to [`collect`], which logs each batch's disclosures
//! and only then keeps its messages for the answer: what is returned was logged first, exactly as
//! on the stream.

use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;

use super::outlet::Outgoing;
use super::producer::{DeliveryStream, Flow};
use crate::domain::cursor::Position;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status;
use crate::identity::IdentityError;
use crate::state::AppState;

/// What one pull's answer (FetchEvents) may still hold: a number of messages and of bytes. The
/// first message always fits, so that every pull makes progress.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    messages: usize,
    bytes: usize,
    taken: usize,
}

impl Budget {
    pub fn new(messages: usize, bytes: usize) -> Self {
        Self {
            messages,
            bytes,
            taken: 0,
        }
    }

    /// Takes room for a message of `len` encoded bytes, if there is room.
    pub(super) fn take(&mut self, len: usize) -> bool {
        if self.taken > 0 && (self.messages == 0 || len > self.bytes) {
            return false;
        }
        self.messages = self.messages.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
        self.taken += 1;
        true
    }

    /// Messages taken so far.
    pub fn taken(&self) -> usize {
        self.taken
    }
}

impl DeliveryStream {
    /// Answers one pull (FetchEvents): queues what is due after the position, as much as the
    /// budget has room for, and hands it over to be logged; when nothing is due, waits up to
    /// `wait` for a change that brings something. `Ok(true)` when the answer is full (more is
    /// due at once). The messages go out through `outlet` like a stream's, to the caller's
    /// collector instead of the client.
    pub async fn pull(&mut self, wait: Duration) -> Result<bool, Option<Status>> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.state.wakeups.watch(&self.party.party_id);
        loop {
            changes.mark_unchanged();
            let flow = match Box::pin(self.still_allowed()).await {
                Ok(()) => Box::pin(self.pull_once()).await,
                Err(IdentityError::PartyTerminated) => {
                    match Box::pin(self.deliver_termination()).await {
                        // The last notices went out in earlier answers: now the refusal.
                        Flow::Continue if self.taken() == 0 => {
                            return Err(Some(IdentityError::PartyTerminated.into()));
                        }
                        flow => flow,
                    }
                }
                Err(e) => return Err(Some(e.into())),
            };
            match flow {
                Flow::Full => return Ok(true),
                Flow::Stop(status) => return Err(status),
                Flow::Continue if self.taken() > 0 => return Ok(false),
                Flow::Continue => {}
            }
            // Nothing due: wait for a change, until the deadline.
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::select! {
                biased;
                () = self.state.shutdown.cancelled() => return Err(Some(status::shutting_down())),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Err(Some(status::shutting_down()));
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Ok(false),
            }
        }
    }

    /// One pass of a pull: the start snapshots, if the position is among them, then history
    /// pages until caught up or full; everything queued is handed over.
    async fn pull_once(&mut self) -> Flow {
        if let Position::Start { head, .. } = self.position {
            match self.deliver_start(head).await {
                Flow::Continue => {}
                other => return other,
            }
        }
        loop {
            match self.deliver_page(false).await {
                Ok(true) | Err(Flow::Continue) => continue,
                Ok(false) => return Flow::Continue,
                Err(flow) => return flow,
            }
        }
    }

    /// Messages a pull has taken so far.
    fn taken(&self) -> usize {
        self.budget.map_or(0, |b| b.taken())
    }

    /// The position a pull's answer reaches: after its last message, or where the reading
    /// stopped when it holds none (a bookmark).
    pub fn reached(&self) -> Position {
        self.last_queued.unwrap_or(self.position)
    }
}

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
