//! The delivery streams open in this process: whose, since when, from where and how far each has
//! come. A stream holds a [`StreamSlot`] while it runs; the party's stream limit is enforced when
//! the slot is taken, and operators list the slots (`lefi admin consumers`).
//!
//! The registry is per process: with several replicas each knows the streams it serves (the
//! consumers listing says which replica answered), and a party's stream limit holds per replica.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::domain::clock::Micros;
use crate::metrics::{Metrics, OpenStream};

/// The delivery streams open in this process.
#[derive(Debug, Default)]
pub struct OpenStreams {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<StreamInfo>>>,
}

/// One open stream, as operators see it.
#[derive(Debug)]
pub struct StreamInfo {
    pub party_id: String,
    /// The client's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
    pub opened_at: Micros,
    /// The register sequence the stream resumed after; 0 for a stream that began with the start
    /// snapshots.
    pub from_sequence: u64,
    /// The highest register sequence the stream has delivered (a change's, or a heartbeat's
    /// "everything up to here").
    delivered_sequence: AtomicU64,
}

impl StreamInfo {
    pub fn delivered_sequence(&self) -> u64 {
        self.delivered_sequence.load(Ordering::Relaxed)
    }
}

/// A party already has as many streams open as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the party already has {open} delivery streams open on this server, its limit is {limit}")]
pub struct TooManyStreams {
    pub open: usize,
    pub limit: u32,
}

/// Who opens a stream, and where it starts.
#[derive(Debug, Clone)]
pub struct NewStream<'a> {
    pub party_id: &'a str,
    pub peer: Option<SocketAddr>,
    pub opened_at: Micros,
    pub from_sequence: u64,
}

impl OpenStreams {
    /// Takes a slot for a new stream of `stream.party_id`, unless the party already has `limit`
    /// streams open here. The slot counts the stream in the metrics until it is dropped.
    pub fn open(
        self: &Arc<Self>,
        stream: NewStream<'_>,
        limit: u32,
        metrics: &Arc<Metrics>,
    ) -> Result<StreamSlot, TooManyStreams> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let of_party = open.values().filter(|s| s.party_id == stream.party_id).count();
        if of_party >= limit as usize {
            return Err(TooManyStreams {
                open: of_party,
                limit,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(StreamInfo {
            party_id: stream.party_id.to_string(),
            peer: stream.peer,
            opened_at: stream.opened_at,
            from_sequence: stream.from_sequence,
            delivered_sequence: AtomicU64::new(stream.from_sequence),
        });
        open.insert(id, Arc::clone(&info));
        Ok(StreamSlot {
            streams: Arc::clone(self),
            id,
            info,
            counted: metrics.stream_opened(stream.party_id),
        })
    }

    /// The open streams, oldest first.
    pub fn list(&self) -> Vec<Arc<StreamInfo>> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut streams: Vec<(u64, Arc<StreamInfo>)> =
            open.iter().map(|(id, s)| (*id, Arc::clone(s))).collect();
        streams.sort_by_key(|(id, _)| *id);
        streams.into_iter().map(|(_, s)| s).collect()
    }
}

/// A running stream's place in the registry; dropping it removes the stream.
#[derive(Debug)]
pub struct StreamSlot {
    streams: Arc<OpenStreams>,
    id: u64,
    info: Arc<StreamInfo>,
    counted: OpenStream,
}

impl StreamSlot {
    /// Notes `records` records delivered and that the stream has reached register sequence `seq`.
    pub fn delivered(&self, records: u64, seq: u64) {
        self.counted.delivered(records);
        self.info.delivered_sequence.fetch_max(seq, Ordering::Relaxed);
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(party_id: &str) -> NewStream<'_> {
        NewStream {
            party_id,
            peer: None,
            opened_at: 0,
            from_sequence: 7,
        }
    }

    #[test]
    fn a_party_gets_its_limit_and_others_are_unaffected() {
        let streams = Arc::new(OpenStreams::default());
        let metrics = Arc::new(Metrics::new());
        let a1 = streams.open(new("a"), 2, &metrics).unwrap();
        let _a2 = streams.open(new("a"), 2, &metrics).unwrap();
        assert_eq!(
            streams.open(new("a"), 2, &metrics).unwrap_err(),
            TooManyStreams { open: 2, limit: 2 }
        );
        let _b = streams.open(new("b"), 2, &metrics).unwrap();
        assert_eq!(streams.list().len(), 3);
        drop(a1);
        let _a3 = streams.open(new("a"), 2, &metrics).unwrap();
        assert_eq!(streams.list().len(), 3);
    }

    #[test]
    fn the_delivered_sequence_only_moves_forward() {
        let streams = Arc::new(OpenStreams::default());
        let metrics = Arc::new(Metrics::new());
        let slot = streams.open(new("a"), 1, &metrics).unwrap();
        slot.delivered(3, 12);
        slot.delivered(0, 9);
        assert_eq!(streams.list()[0].delivered_sequence(), 12);
    }
}
