//! Stored versions of facts, and the pure rules of the register's versioning: what the next
//! version of a fact is ([`plan_version`]), what a re-sent version means ([`repeated_version`]),
//! and what a person's snapshot holds as of a sequence ([`person_snapshot`]). The store runs these
//! inside its transactions; they do no I/O.

use std::collections::HashMap;

use super::{DateRange, FactBody, FactError, FactType, NewFact, PersonData, RecordKind, RejectReason};
use crate::domain::Personnummer;
use crate::domain::clock::Micros;

/// One stored version of a fact (a benefit fact, or a person update with fact type `PERSON`), as
/// the register log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The register sequence: strictly increasing, in commit order.
    pub seq: u64,
    pub recorded_at: Micros,
    pub person: Personnummer,
    /// Stable id of the fact across its versions; `person:<source_system>` for person updates.
    pub record_id: String,
    /// 1 for the first version, +1 for every later one.
    pub version: u32,
    pub kind: RecordKind,
    pub retroactive: bool,
    /// `None` for person updates and for person events that concern no single benefit.
    pub benefit_type: Option<String>,
    pub fact_type: FactType,
    /// The business period; `None` for person updates.
    pub valid: Option<DateRange>,
    /// For a retraction, the content of the version it retracts.
    pub body: FactBody,
    pub source_system: String,
    /// `None` for person updates.
    pub source_id: Option<String>,
    pub source_version: u64,
}

impl StoredRecord {
    /// Whether this version is an update of the person's own data (not a benefit record).
    pub fn is_person_update(&self) -> bool {
        self.fact_type == FactType::Person
    }
}

/// A version as a delivery sends it. With the encoding the register stored at ingest, only what
/// choosing the version needs is read, and the encoding is sent as it is (`grpc::wire`); without
/// one (a person update, or a version stored by a lefi that kept none), the whole version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveredVersion {
    Encoded(EncodedVersion),
    Parsed(StoredRecord),
}

/// A benefit version with its stored encoding (see [`DeliveredVersion`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVersion {
    pub seq: u64,
    pub recorded_at: Micros,
    pub record_id: String,
    pub kind: RecordKind,
    pub benefit_type: Option<String>,
    pub valid: Option<DateRange>,
    pub fact_type: FactType,
    /// The fact's topic ([`crate::domain::register::FactBody::topic`]).
    pub topic: String,
    /// The record's encoding without its sequence and recording instant, opaque here (shared, not
    /// copied, when one change goes to several subscriptions).
    pub encoded: bytes::Bytes,
}

/// What choosing a person's snapshot reads of each version ([`person_snapshot`]).
pub trait Version {
    fn seq(&self) -> u64;
    fn record_id(&self) -> &str;
    fn kind(&self) -> RecordKind;
    fn benefit_type(&self) -> Option<&str>;
    fn valid(&self) -> Option<DateRange>;
    fn is_person_update(&self) -> bool;
    /// The person's own data, for a person update.
    fn into_person_data(self) -> Option<PersonData>;
    fn fact_type(&self) -> FactType;
    /// The kind of a decision or person event, empty for other facts.
    fn topic(&self) -> &str;
}

/// The [`Version`] accessors that read a field of the same name, for the version types that have
/// them all.
macro_rules! version_fields {
    () => {
        fn seq(&self) -> u64 {
            self.seq
        }
        fn record_id(&self) -> &str {
            &self.record_id
        }
        fn kind(&self) -> RecordKind {
            self.kind
        }
        fn benefit_type(&self) -> Option<&str> {
            self.benefit_type.as_deref()
        }
        fn valid(&self) -> Option<DateRange> {
            self.valid
        }
        fn fact_type(&self) -> FactType {
            self.fact_type
        }
    };
}

impl Version for StoredRecord {
    version_fields!();
    fn is_person_update(&self) -> bool {
        StoredRecord::is_person_update(self)
    }
    fn topic(&self) -> &str {
        self.body.topic()
    }
    fn into_person_data(self) -> Option<PersonData> {
        match self.body {
            FactBody::Person(data) => Some(data),
            _ => None,
        }
    }
}

impl Version for EncodedVersion {
    version_fields!();
    fn is_person_update(&self) -> bool {
        // Person updates are never encoded.
        false
    }
    fn into_person_data(self) -> Option<PersonData> {
        None
    }
    fn topic(&self) -> &str {
        &self.topic
    }
}

impl Version for DeliveredVersion {
    fn seq(&self) -> u64 {
        match self {
            Self::Encoded(e) => e.seq,
            Self::Parsed(r) => r.seq,
        }
    }
    fn record_id(&self) -> &str {
        match self {
            Self::Encoded(e) => &e.record_id,
            Self::Parsed(r) => &r.record_id,
        }
    }
    fn kind(&self) -> RecordKind {
        match self {
            Self::Encoded(e) => e.kind,
            Self::Parsed(r) => r.kind,
        }
    }
    fn benefit_type(&self) -> Option<&str> {
        match self {
            Self::Encoded(e) => e.benefit_type.as_deref(),
            Self::Parsed(r) => r.benefit_type.as_deref(),
        }
    }
    fn valid(&self) -> Option<DateRange> {
        match self {
            Self::Encoded(e) => e.valid,
            Self::Parsed(r) => r.valid,
        }
    }
    fn is_person_update(&self) -> bool {
        // Person updates are never encoded.
        matches!(self, Self::Parsed(r) if r.is_person_update())
    }
    fn into_person_data(self) -> Option<PersonData> {
        match self {
            Self::Encoded(_) => None,
            Self::Parsed(r) => r.into_person_data(),
        }
    }
    fn fact_type(&self) -> FactType {
        match self {
            Self::Encoded(e) => e.fact_type,
            Self::Parsed(r) => r.fact_type,
        }
    }
    fn topic(&self) -> &str {
        match self {
            Self::Encoded(e) => &e.topic,
            Self::Parsed(r) => r.body.topic(),
        }
    }
}

/// A person in the register, as of some sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPerson {
    pub person: Personnummer,
    /// Name, protection and death; the default (no name) when only benefit facts named the person.
    pub data: PersonData,
    /// The sequence of the first fact that named the person.
    pub created_seq: u64,
    /// The sequence of the person-data version shown (0 when there is none).
    pub latest_seq: u64,
}

/// What happened to one fact given to the store's ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResult {
    /// Stored as a new version.
    Accepted(IngestedVersion),
    /// This exact version was stored before; nothing changed.
    Unchanged(IngestedVersion),
    /// Not stored.
    Rejected(FactError),
}

/// The version an ingested fact is stored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestedVersion {
    pub seq: u64,
    /// The stable record id (for person updates `person:<source_system>`).
    pub record_id: String,
    pub version: u32,
    /// Whether this is a person update (the API reports no record id for those).
    pub person_update: bool,
}

/// What the planner needs to know about the latest stored version of a benefit fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactHead {
    pub record_id: String,
    pub person: Personnummer,
    pub latest_version: u32,
    pub latest_source_version: u64,
    pub retracted: bool,
    pub fact_type: FactType,
    /// Empty when the fact concerns no single benefit.
    pub benefit_type: String,
    pub valid: Option<DateRange>,
    /// The latest version's body in its storage form.
    pub body_json: String,
}

/// The next version of a benefit fact, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVersion {
    pub record_id: String,
    pub version: u32,
    pub kind: RecordKind,
    pub fact_type: FactType,
    pub benefit_type: String,
    pub valid: Option<DateRange>,
    pub body_json: String,
    /// True for the first version of a fact.
    pub new_record: bool,
}

/// Plans the version `fact` becomes, given the fact's latest stored version (`None`: unknown
/// fact). `first_seq` names a new fact's record id (opaque and stable: the sequence of its first
/// version). Re-sent versions (a source version at or below the latest) are the caller's to answer
/// with [`repeated_version`] before planning.
///
/// A NEW for an unknown fact is its first version; a CORRECTION or RETRACTION of an unknown fact
/// is refused. For a known fact a NEW or CORRECTION becomes a CORRECTION and a RETRACTION keeps the
/// last content unless it brings its own; the fact type, the benefit type and the person stay.
pub fn plan_version(
    fact: &NewFact,
    head: Option<&FactHead>,
    first_seq: u64,
) -> Result<PlannedVersion, FactError> {
    let Some(head) = head else {
        let body = match (fact.kind(), fact.body()) {
            (RecordKind::New, Some(body)) => body,
            _ => {
                return Err(FactError::new(
                    RejectReason::RecordNotFound,
                    "source_id",
                    "the register holds no fact with this source_system and source_id; send its first \
                     version as NEW",
                ));
            }
        };
        return Ok(PlannedVersion {
            record_id: format!("rec_{first_seq:016x}"),
            version: 1,
            kind: RecordKind::New,
            fact_type: body.fact_type(),
            benefit_type: fact.benefit_type().to_string(),
            valid: fact.valid().or_else(|| body.derived_valid()),
            body_json: fact.body_json().to_string(),
            new_record: true,
        });
    };
    if &head.person != fact.person() {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            "person_id",
            "this source_id belongs to a fact about another person; a correction cannot move a fact to \
             another person: retract it and send a new fact",
        ));
    }
    let retraction = fact.kind() == RecordKind::Retraction;
    if retraction && head.retracted {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            "kind",
            "the fact is already retracted; send a CORRECTION to restore it",
        ));
    }
    let (fact_type, body_json) = match fact.body() {
        Some(body) => (body.fact_type(), fact.body_json().to_string()),
        None => (head.fact_type, head.body_json.clone()),
    };
    if fact_type != head.fact_type {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            fact_type.field_name(),
            format!(
                "this fact is a {} and a later version cannot change that; retract it and send a new fact",
                head.fact_type.field_name()
            ),
        ));
    }
    let benefit_type = if retraction && fact.benefit_type().is_empty() {
        head.benefit_type.clone()
    } else {
        fact.benefit_type().to_string()
    };
    if benefit_type != head.benefit_type {
        return Err(FactError::new(
            RejectReason::InvalidArgument,
            "benefit_type",
            "a later version cannot change the benefit type; retract the fact and send a new one",
        ));
    }
    let valid = match (fact.valid(), fact.body()) {
        (Some(v), _) => Some(v),
        (None, Some(body)) => body.derived_valid(),
        (None, None) => head.valid,
    };
    Ok(PlannedVersion {
        record_id: head.record_id.clone(),
        version: head.latest_version.saturating_add(1),
        kind: if retraction {
            RecordKind::Retraction
        } else {
            RecordKind::Correction
        },
        fact_type,
        benefit_type,
        valid,
        body_json,
        new_record: false,
    })
}

/// A version stored before, found by its source version: its sequence, version and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierVersion {
    pub seq: u64,
    pub version: u32,
    pub content_hash: String,
}

/// The answer to a source version at or below the latest accepted one: the same content again is
/// unchanged; other content under an accepted source version is a conflict; a source version that
/// was never accepted is out of order.
pub fn repeated_version(
    found: Option<&EarlierVersion>,
    content_hash: &str,
    record_id: &str,
    person_update: bool,
    latest_source_version: u64,
) -> IngestResult {
    match found {
        Some(earlier) if earlier.content_hash == content_hash => IngestResult::Unchanged(IngestedVersion {
            seq: earlier.seq,
            record_id: record_id.to_string(),
            version: earlier.version,
            person_update,
        }),
        Some(_) => IngestResult::Rejected(FactError::new(
            RejectReason::SourceVersionConflict,
            "source_version",
            "this source_version was accepted before with different content; give a changed fact a \
             higher source_version",
        )),
        None => IngestResult::Rejected(FactError::new(
            RejectReason::SourceVersionOutOfOrder,
            "source_version",
            format!(
                "source_version must be higher than the latest accepted version ({latest_source_version}) \
                 of this fact"
            ),
        )),
    }
}

/// What the register holds about one person as of the sequence `rows` were read up to: the
/// person's own data (the latest person update; the default, no name, when there is none) and the
/// latest version of each benefit fact whose benefit type is one of `benefit_codes` (person events
/// that concern no single benefit are always included) and whose valid period overlaps
/// `overlapping`, retracted facts left out; ordered by benefit type, valid from, record id.
/// `rows` are every log row of the person up to that sequence, in any order.
pub fn person_snapshot<R: Version>(
    rows: Vec<R>,
    benefit_codes: &[String],
    overlapping: DateRange,
) -> (PersonData, Vec<R>) {
    snapshot_of_current(current_versions(rows), benefit_codes, overlapping)
}

/// A person's current state from every log row of theirs up to some sequence (in any order): the
/// latest person update's data (the default, no name, when there is none) and the latest version
/// of each benefit fact, retracted facts left out, in no particular order.
pub fn current_versions<R: Version>(rows: Vec<R>) -> (PersonData, Vec<R>) {
    // The latest version of a fact is its row with the highest sequence. Person updates are the
    // person's own data, not records.
    let mut keep = vec![false; rows.len()];
    let mut person_row: Option<usize> = None;
    {
        let mut latest: HashMap<&str, usize> = HashMap::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let newest = if row.is_person_update() {
                person_row.get_or_insert(i)
            } else {
                latest.entry(row.record_id()).or_insert(i)
            };
            if rows[*newest].seq() < row.seq() {
                *newest = i;
            }
        }
        for i in latest.into_values() {
            keep[i] = rows[i].kind() != RecordKind::Retraction;
        }
    }
    let mut data = PersonData::default();
    let mut out = Vec::new();
    for (i, row) in rows.into_iter().enumerate() {
        if Some(i) == person_row {
            if let Some(d) = row.into_person_data() {
                data = d;
            }
        } else if keep[i] {
            out.push(row);
        }
    }
    (data, out)
}

/// A snapshot from a person's current state ([`current_versions`]): the records whose benefit type
/// is one of `benefit_codes` (person events that concern no single benefit always) and whose valid
/// period overlaps `overlapping`, ordered by benefit type, valid from, record id.
pub fn snapshot_of_current<R: Version>(
    (data, records): (PersonData, Vec<R>),
    benefit_codes: &[String],
    overlapping: DateRange,
) -> (PersonData, Vec<R>) {
    let mut out: Vec<R> = records
        .into_iter()
        .filter(|row| {
            let covered = row
                .benefit_type()
                .is_none_or(|b| benefit_codes.iter().any(|c| c == b));
            let in_period = row.valid().is_some_and(|v| v.overlaps(&overlapping));
            covered && in_period
        })
        .collect();
    out.sort_by(|a, b| snapshot_order(a).cmp(&snapshot_order(b)));
    (data, out)
}

/// The order of a snapshot's records: benefit type, valid from, record id.
pub fn snapshot_order<R: Version>(r: &R) -> (Option<&str>, Option<time::Date>, &str) {
    (r.benefit_type(), r.valid().map(|v| v.from), r.record_id())
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::domain::register::{FactParts, PersonEvent, PersonEventKind};

    fn person() -> Personnummer {
        Personnummer::from_storage("199007042386").unwrap()
    }

    fn event_fact(kind: RecordKind, source_version: u64, on: time::Date) -> NewFact {
        NewFact::new(FactParts {
            source_system: "SRC".into(),
            source_id: "e1".into(),
            source_version,
            person: person(),
            benefit_type: "SJP".into(),
            kind,
            valid: None,
            retroactive: false,
            body: (kind != RecordKind::Retraction).then_some(FactBody::Event(PersonEvent {
                kind: PersonEventKind::SicknessCaseClosed,
                event_date: on,
            })),
        })
        .unwrap()
    }

    /// Plans the test event of `kind` (see [`event_fact`]) on `head`.
    fn plan_event(
        kind: RecordKind,
        source_version: u64,
        on: time::Date,
        head: Option<&FactHead>,
        first_seq: u64,
    ) -> Result<PlannedVersion, FactError> {
        plan_version(&event_fact(kind, source_version, on), head, first_seq)
    }

    fn head_of(planned: &PlannedVersion, source_version: u64) -> FactHead {
        FactHead {
            record_id: planned.record_id.clone(),
            person: person(),
            latest_version: planned.version,
            latest_source_version: source_version,
            retracted: planned.kind == RecordKind::Retraction,
            fact_type: planned.fact_type,
            benefit_type: planned.benefit_type.clone(),
            valid: planned.valid,
            body_json: planned.body_json.clone(),
        }
    }

    #[test]
    fn versions_follow_new_correction_retraction() {
        let first = plan_event(RecordKind::New, 1, date!(2026 - 01 - 05), None, 41).unwrap();
        assert_eq!(
            (first.version, first.kind, first.new_record),
            (1, RecordKind::New, true)
        );
        assert_eq!(first.record_id, "rec_0000000000000029");
        // A NEW for a known fact is a correction.
        let head = head_of(&first, 1);
        let second = plan_event(RecordKind::New, 2, date!(2026 - 01 - 06), Some(&head), 99).unwrap();
        assert_eq!((second.version, second.kind), (2, RecordKind::Correction));
        assert_eq!(second.record_id, first.record_id);
        // A retraction without a body keeps the last content.
        let head = head_of(&second, 2);
        let third = plan_event(RecordKind::Retraction, 3, date!(2026 - 01 - 06), Some(&head), 0).unwrap();
        assert_eq!((third.version, third.kind), (3, RecordKind::Retraction));
        assert_eq!(third.body_json, second.body_json);
        // Retracting twice is refused; a correction restores.
        let head = head_of(&third, 3);
        let again = plan_event(RecordKind::Retraction, 4, date!(2026 - 01 - 06), Some(&head), 0);
        assert_eq!(again.unwrap_err().field, "kind");
        assert!(plan_event(RecordKind::Correction, 4, date!(2026 - 01 - 07), Some(&head), 0).is_ok());
    }

    #[test]
    fn an_unknown_fact_cannot_be_corrected() {
        let err = plan_event(RecordKind::Correction, 1, date!(2026 - 01 - 05), None, 1).unwrap_err();
        assert_eq!(err.reason, RejectReason::RecordNotFound);
    }

    #[test]
    fn repeated_versions_are_unchanged_conflicting_or_out_of_order() {
        let earlier = EarlierVersion {
            seq: 7,
            version: 2,
            content_hash: "h".into(),
        };
        assert!(matches!(
            repeated_version(Some(&earlier), "h", "r", false, 3),
            IngestResult::Unchanged(IngestedVersion {
                seq: 7,
                version: 2,
                ..
            })
        ));
        let conflict = repeated_version(Some(&earlier), "other", "r", false, 3);
        assert!(
            matches!(conflict, IngestResult::Rejected(e) if e.reason == RejectReason::SourceVersionConflict)
        );
        let late = repeated_version(None, "h", "r", false, 3);
        assert!(
            matches!(late, IngestResult::Rejected(e) if e.reason == RejectReason::SourceVersionOutOfOrder)
        );
    }
}
