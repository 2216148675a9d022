//! A stream's outlet: writes each batch's disclosure-log entries, then sends its messages to the
//! client, in the order the producer handed them over.
//!
//! Running it beside the producer overlaps the log's commit with reading and building the next
//! batch. When the log cannot be written, the client gets the error and nothing of that batch;
//! when the client leaves, the outlet ends, which the producer notices at its next hand-over.
//!
//! The outlet sends the idle heartbeats: whenever nothing has gone out for a heartbeat interval,
//! with the latest standing the producer reported. It does so also while the producer (or the
//! outlet's own log write) waits for the database, so a stream never goes silent: it hears a
//! heartbeat every interval until the database answers or the wait fails and the stream ends
//! UNAVAILABLE.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use crate::domain::disclosure::NewDisclosure;
use crate::grpc::convert::timestamp;
use crate::grpc::pb::lefi::v1 as pb;
use crate::state::AppState;
use crate::streams::StreamSlot;

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
    /// Where the stream stands (a heartbeat message, not sent as such): the outlet's next
    /// heartbeat reports it. The producer sends this when it wakes idle; the outlet alone decides
    /// when a heartbeat goes out, so an idle stream hears exactly one per interval.
    Standing(pb::StreamEvent),
    /// End the stream with this status, after everything handed over before it.
    End(Status),
}

/// What the outlet's own heartbeats say: the last resume point sent and the last sequences a
/// heartbeat reported. Both only move forward with what was actually sent.
pub(super) struct Keepalive {
    interval: Duration,
    cursor: String,
    reached: u64,
    head: u64,
}

impl Keepalive {
    /// For a stream that starts at `cursor`, having reached `reached`.
    pub fn new(interval: Duration, cursor: String, reached: u64) -> Self {
        Self {
            interval,
            cursor,
            reached,
            head: reached,
        }
    }

    /// Notes what is about to be sent.
    fn note(&mut self, messages: &[pb::StreamEvent]) {
        for message in messages {
            if let Some(pb::stream_event::Event::Heartbeat(h)) = &message.event {
                self.reached = self.reached.max(h.register_sequence);
                self.head = self.head.max(h.head_sequence);
            }
        }
        if let Some(last) = messages.last() {
            self.cursor.clone_from(&last.cursor);
        }
    }

    fn heartbeat(&self, state: &AppState) -> pb::StreamEvent {
        pb::StreamEvent {
            cursor: self.cursor.clone(),
            event: Some(pb::stream_event::Event::Heartbeat(pb::Heartbeat {
                register_sequence: self.reached,
                head_sequence: self.head.max(self.reached),
                server_time: Some(timestamp(state.clock.now_micros())),
            })),
        }
    }
}

/// Logs and sends what the producer hands over until it ends, the client leaves, or the log
/// cannot be written; sends its own heartbeat whenever nothing went out for an interval.
///
/// `slot` holds the stream's place among the open streams (and in the metrics) while the outlet
/// runs, and hears what it delivers.
pub(super) async fn run(
    state: AppState,
    mut incoming: mpsc::Receiver<Outgoing>,
    tx: mpsc::Sender<Result<pb::StreamEvent, Status>>,
    mut keepalive: Keepalive,
    slot: StreamSlot,
) {
    let mut last_sent = Instant::now();
    loop {
        let due = last_sent + keepalive.interval;
        let next = tokio::select! {
            biased;
            () = tx.closed() => return,
            next = incoming.recv() => next,
            () = tokio::time::sleep_until(due) => {
                if tx.send(Ok(keepalive.heartbeat(&state))).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
                continue;
            }
        };
        match next {
            None => return,
            Some(Outgoing::Standing(heartbeat)) => keepalive.note(std::slice::from_ref(&heartbeat)),
            Some(Outgoing::End(status)) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
            Some(Outgoing::Batch { log, messages }) => {
                let now = state.clock.now_micros();
                // Boxed: the log write's future was most of the outlet task's size (10.8 KiB of it,
                // 1.8 KiB without), room an idle stream's outlet would hold all the time.
                let mut write = Box::pin(state.append_disclosures(&log, now));
                let written = loop {
                    tokio::select! {
                        written = &mut write => break written,
                        () = tokio::time::sleep_until(last_sent + keepalive.interval) => {
                            if tx.send(Ok(keepalive.heartbeat(&state))).await.is_err() {
                                return;
                            }
                            last_sent = Instant::now();
                        }
                    }
                };
                if let Err(e) = written {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
                keepalive.note(&messages);
                let reached = delivered_sequence(&messages).max(keepalive.reached);
                for message in messages {
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                slot.delivered(log.iter().map(|d| d.record_count).sum(), reached);
                last_sent = Instant::now();
            }
        }
    }
}

/// The highest register sequence these messages complete: a change's own, or a heartbeat's
/// "everything up to here".
fn delivered_sequence(messages: &[pb::StreamEvent]) -> u64 {
    messages
        .iter()
        .filter_map(|m| match &m.event {
            Some(pb::stream_event::Event::Change(c)) => Some(c.register_sequence),
            Some(pb::stream_event::Event::Heartbeat(h)) => Some(h.register_sequence),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}
