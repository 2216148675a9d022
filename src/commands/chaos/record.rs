//! What a chaos run records, one JSON object per line, and reads back for the checker: every fact
//! the register acknowledged (`acked.ndjson`), every message the reader received with its cursor
//! (`events.ndjson`), and the subscriptions it placed (`subscriptions.ndjson`).

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::grpc::pb::lefi::v1 as pb;

/// A fact the register acknowledged (ACCEPTED, or UNCHANGED when it was resent after a fault).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// The register sequence of the version.
    pub seq: u64,
    pub record_id: String,
    pub version: u32,
    /// The person, in the storage form (twelve digits). Only test-range numbers are made.
    pub person: String,
    pub source_id: String,
    pub source_version: u64,
    pub retraction: bool,
    /// The payment's gross amount: unique per sent version, so a delivered body names the version
    /// it came from. `None` for a retraction.
    pub gross: Option<i64>,
}

/// A placed subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub subscription_id: String,
    pub person: String,
}

/// One record as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRecord {
    pub seq: u64,
    pub record_id: String,
    pub version: u32,
    pub retraction: bool,
    pub gross: Option<i64>,
}

/// One message of the stream, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Seen {
    SnapshotBegin {
        sub: String,
        number: u64,
        as_of: u64,
        stream_start: bool,
    },
    Records {
        sub: String,
        number: u64,
        records: Vec<SeenRecord>,
    },
    SnapshotEnd {
        sub: String,
        number: u64,
        as_of: u64,
        record_count: u64,
    },
    Change {
        sub: String,
        number: u64,
        seq: u64,
        records: Vec<SeenRecord>,
    },
    Notice {
        sub: String,
        number: u64,
    },
    Heartbeat {
        reached: u64,
        head: u64,
    },
}

/// A received message with the cursor after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub cursor: String,
    pub seen: Seen,
}

impl Received {
    /// The message as recorded, or `None` for an empty event (never sent).
    pub fn of(event: pb::StreamEvent) -> Option<Self> {
        use pb::stream_event::Event;
        let records = |records: Vec<pb::BenefitRecord>| records.into_iter().map(seen_record).collect();
        let seen = match event.event? {
            Event::SnapshotBegin(b) => Seen::SnapshotBegin {
                sub: b.subscription_id,
                number: b.event_number,
                as_of: b.as_of_sequence,
                stream_start: b.reason == pb::SnapshotReason::StreamStart as i32,
            },
            Event::Records(b) => Seen::Records {
                sub: b.subscription_id,
                number: b.event_number,
                records: records(b.records),
            },
            Event::SnapshotEnd(e) => Seen::SnapshotEnd {
                sub: e.subscription_id,
                number: e.event_number,
                as_of: e.as_of_sequence,
                record_count: e.record_count,
            },
            Event::Change(c) => Seen::Change {
                sub: c.subscription_id,
                number: c.event_number,
                seq: c.register_sequence,
                records: records(c.records),
            },
            Event::Notice(n) => Seen::Notice {
                sub: n.subscription_id,
                number: n.event_number,
            },
            Event::Heartbeat(h) => Seen::Heartbeat {
                reached: h.register_sequence,
                head: h.head_sequence,
            },
        };
        Some(Self {
            cursor: event.cursor,
            seen,
        })
    }
}

fn seen_record(r: pb::BenefitRecord) -> SeenRecord {
    let r = r.into_fields();
    let gross = match r.fact {
        Some(pb::benefit_record::Fact::Payment(p)) => Some(p.gross_ore),
        _ => None,
    };
    let retraction = r.kind == pb::RecordKind::Retraction as i32;
    SeenRecord {
        seq: r.register_sequence,
        record_id: r.record_id,
        version: r.version,
        retraction,
        gross: if retraction { None } else { gross },
    }
}

/// Appends one line to `path` with a single write, so that a reader task aborted at any await
/// point never leaves half a line behind.
pub fn append<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&line)?;
    Ok(())
}

/// Reads every complete line of `path` (none when it does not exist yet); a torn last line is
/// left out.
pub fn read_all<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        out.push(serde_json::from_str(line.trim_end())?);
    }
    Ok(out)
}
