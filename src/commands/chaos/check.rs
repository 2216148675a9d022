//! The checker of a chaos run: from what the register acknowledged and what the reader received,
//! does the delivery contract hold? Pure: it reads the recording and nothing else.
//!
//! Per subscription, the events' numbers run 1, 2, 3, … without gap or repeat (a stream-start
//! snapshot may begin higher); a snapshot's messages come back to back; each snapshot holds
//! exactly the latest, unretracted version of every acknowledged fact of the person as of its
//! sequence; after the subscription's first snapshot every acknowledged fact of the person is
//! delivered exactly once, in commit order, with the body that was acknowledged; nothing is
//! delivered that the register did not acknowledge; and the reader reached the last
//! acknowledged sequence.
//!
//! [`damages`] spoils a good recording in every way the checker must catch; `lefi chaos
//! --self-test` and the unit tests below show that it catches each.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::record::{Acked, Placed, Received, Seen, SeenRecord};

/// What kind of promise a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Broken {
    /// An event for a subscription that was never placed.
    UnknownSubscription,
    /// Event numbers of a subscription with a gap, a repeat or going back.
    Numbering,
    /// A snapshot's messages not back to back, or not matching each other.
    SnapshotShape,
    /// A snapshot that does not hold the register as of its sequence.
    SnapshotContent,
    /// An acknowledged fact never delivered.
    Lost,
    /// A fact delivered twice.
    Duplicated,
    /// Changes of a subscription out of commit order.
    OutOfOrder,
    /// A delivered version the register never acknowledged (or at another sequence).
    NotCommitted,
    /// A delivered version whose body is not the acknowledged one.
    WrongBody,
    /// The reader never reached the last acknowledged sequence.
    NotCaughtUp,
}

/// One broken promise, with what shows it (subscription and record ids, sequences; never an
/// identity number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub broken: Broken,
    pub detail: String,
}

/// A run's recording.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub acked: Vec<Acked>,
    pub placed: Vec<Placed>,
    pub received: Vec<Received>,
}

/// One event of a subscription, with its snapshot's records gathered.
#[derive(Debug)]
enum Event {
    Snapshot {
        number: u64,
        as_of: u64,
        stream_start: bool,
        records: Vec<SeenRecord>,
    },
    Change {
        number: u64,
        seq: u64,
        records: Vec<SeenRecord>,
    },
    Notice {
        number: u64,
    },
}

impl Event {
    fn number(&self) -> u64 {
        match self {
            Event::Snapshot { number, .. } | Event::Change { number, .. } | Event::Notice { number } => {
                *number
            }
        }
    }
}

/// Checks a recording; an empty list means every promise held.
pub fn check(recording: &Recording) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut broken = |broken: Broken, detail: String| out.push(Violation { broken, detail });

    // The acknowledged versions, once each (a resent fact is acknowledged again, identically).
    let mut versions: HashMap<(&str, u32), &Acked> = HashMap::new();
    for a in &recording.acked {
        if let Some(before) = versions.insert((&a.record_id, a.version), a) {
            if before.seq != a.seq || before.gross != a.gross {
                broken(
                    Broken::NotCommitted,
                    format!(
                        "record {} version {} was acknowledged at sequences {} and {}",
                        a.record_id, a.version, before.seq, a.seq
                    ),
                );
            }
        }
    }
    let mut by_person: HashMap<&str, Vec<&Acked>> = HashMap::new();
    for a in versions.values() {
        by_person.entry(a.person.as_str()).or_default().push(a);
    }
    for facts in by_person.values_mut() {
        facts.sort_by_key(|a| a.seq);
    }
    let last_acked = versions.values().map(|a| a.seq).max().unwrap_or(0);
    let person_of: HashMap<&str, &str> = recording
        .placed
        .iter()
        .map(|p| (p.subscription_id.as_str(), p.person.as_str()))
        .collect();

    let (events, reached) = gather(&recording.received, &mut broken);
    if reached < last_acked {
        broken(
            Broken::NotCaughtUp,
            format!("the reader reached sequence {reached}; the last acknowledged is {last_acked}"),
        );
    }

    for (sub, events) in &events {
        let Some(person) = person_of.get(sub.as_str()) else {
            broken(
                Broken::UnknownSubscription,
                format!("events for {sub}, which was never placed"),
            );
            continue;
        };
        let facts = by_person.get(person).map(Vec::as_slice).unwrap_or_default();
        check_numbers(sub, events, &mut broken);
        let mut first_as_of = None;
        let mut delivered: HashSet<(&str, u32)> = HashSet::new();
        let mut last_seq = 0;
        for event in events {
            match event {
                Event::Snapshot { as_of, records, .. } => {
                    first_as_of.get_or_insert(*as_of);
                    check_snapshot(sub, *as_of, records, facts, &mut broken);
                }
                Event::Change { seq, records, .. } => {
                    if *seq <= last_seq {
                        broken(
                            Broken::OutOfOrder,
                            format!("{sub}: a change at sequence {seq} after one at {last_seq}"),
                        );
                    }
                    last_seq = last_seq.max(*seq);
                    for r in records {
                        check_delivered(sub, r, &versions, &mut broken);
                        if !delivered.insert((&r.record_id, r.version)) {
                            broken(
                                Broken::Duplicated,
                                format!(
                                    "{sub}: record {} version {} delivered twice",
                                    r.record_id, r.version
                                ),
                            );
                        }
                    }
                }
                Event::Notice { .. } => {}
            }
        }
        // Every acknowledged fact after the first snapshot, delivered.
        let Some(from) = first_as_of else {
            broken(Broken::Lost, format!("{sub}: no snapshot was ever delivered"));
            continue;
        };
        for a in facts.iter().filter(|a| a.seq > from) {
            if !delivered.contains(&(a.record_id.as_str(), a.version)) {
                broken(
                    Broken::Lost,
                    format!(
                        "{sub}: record {} version {} (sequence {}) never delivered",
                        a.record_id, a.version, a.seq
                    ),
                );
            }
        }
    }
    // A placed subscription that got nothing at all.
    for p in &recording.placed {
        if !events.contains_key(&p.subscription_id) {
            broken(
                Broken::Lost,
                format!("{}: no event was ever delivered", p.subscription_id),
            );
        }
    }
    out.sort_by_key(|v| v.broken);
    out
}

/// Groups the messages into each subscription's events (a snapshot's messages into one) and
/// returns them with the highest sequence a heartbeat reported reached.
fn gather(
    received: &[Received],
    broken: &mut impl FnMut(Broken, String),
) -> (BTreeMap<String, Vec<Event>>, u64) {
    let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut open: Option<(String, Event)> = None;
    let mut reached = 0;
    for r in received {
        match &r.seen {
            Seen::Heartbeat { reached: at, .. } => reached = reached.max(*at),
            Seen::SnapshotBegin {
                sub,
                number,
                as_of,
                stream_start,
            } => {
                if let Some((other, _)) = &open {
                    broken(
                        Broken::SnapshotShape,
                        format!("{sub}: a snapshot began inside {other}'s snapshot"),
                    );
                }
                open = Some((
                    sub.clone(),
                    Event::Snapshot {
                        number: *number,
                        as_of: *as_of,
                        stream_start: *stream_start,
                        records: Vec::new(),
                    },
                ));
            }
            Seen::Records { sub, number, records } => match &mut open {
                Some((
                    s,
                    Event::Snapshot {
                        number: n,
                        records: held,
                        ..
                    },
                )) if s == sub && n == number => {
                    held.extend(records.iter().cloned());
                }
                _ => broken(
                    Broken::SnapshotShape,
                    format!("{sub}: records of snapshot {number} outside it"),
                ),
            },
            Seen::SnapshotEnd {
                sub,
                number,
                as_of,
                record_count,
            } => match open.take() {
                Some((
                    s,
                    Event::Snapshot {
                        number: n,
                        as_of: a,
                        stream_start,
                        records,
                    },
                )) if &s == sub && n == *number && a == *as_of => {
                    if records.len() as u64 != *record_count {
                        broken(
                            Broken::SnapshotShape,
                            format!(
                                "{sub}: snapshot {number} says {record_count} records and sent {}",
                                records.len()
                            ),
                        );
                    }
                    events.entry(s).or_default().push(Event::Snapshot {
                        number: n,
                        as_of: a,
                        stream_start,
                        records,
                    });
                }
                _ => broken(
                    Broken::SnapshotShape,
                    format!("{sub}: the end of snapshot {number} without its beginning"),
                ),
            },
            Seen::Change {
                sub,
                number,
                seq,
                records,
            } => {
                if open.is_some() {
                    broken(
                        Broken::SnapshotShape,
                        format!("{sub}: a change inside a snapshot"),
                    );
                }
                if records.iter().any(|r| r.seq != *seq) {
                    broken(
                        Broken::NotCommitted,
                        format!(
                            "{sub}: change {number} at sequence {seq} holds a record of another sequence"
                        ),
                    );
                }
                events.entry(sub.clone()).or_default().push(Event::Change {
                    number: *number,
                    seq: *seq,
                    records: records.clone(),
                });
            }
            Seen::Notice { sub, number } => {
                if open.is_some() {
                    broken(
                        Broken::SnapshotShape,
                        format!("{sub}: a notice inside a snapshot"),
                    );
                }
                events
                    .entry(sub.clone())
                    .or_default()
                    .push(Event::Notice { number: *number });
            }
        }
    }
    if let Some((sub, _)) = open {
        broken(Broken::SnapshotShape, format!("{sub}: a snapshot never ended"));
    }
    (events, reached)
}

/// 1, 2, 3, … (a stream-start snapshot first may begin higher).
fn check_numbers(sub: &str, events: &[Event], broken: &mut impl FnMut(Broken, String)) {
    let mut expected = match events.first() {
        Some(Event::Snapshot {
            stream_start: true,
            number,
            ..
        }) => *number,
        _ => 1,
    };
    for event in events {
        if event.number() != expected {
            broken(
                Broken::Numbering,
                format!("{sub}: event {} where {expected} was due", event.number()),
            );
        }
        expected = event.number() + 1;
    }
}

/// The snapshot holds the latest, unretracted version of each of the person's facts as of
/// `as_of`, each with its acknowledged sequence and body.
fn check_snapshot(
    sub: &str,
    as_of: u64,
    records: &[SeenRecord],
    facts: &[&Acked],
    broken: &mut impl FnMut(Broken, String),
) {
    let mut latest: HashMap<&str, &Acked> = HashMap::new();
    for a in facts.iter().filter(|a| a.seq <= as_of) {
        let entry = latest.entry(&a.record_id).or_insert(a);
        if a.version > entry.version {
            *entry = a;
        }
    }
    let expected: BTreeMap<&str, (u32, u64, Option<i64>)> = latest
        .into_iter()
        .filter(|(_, a)| !a.retraction)
        .map(|(id, a)| (id, (a.version, a.seq, a.gross)))
        .collect();
    let got: BTreeMap<&str, (u32, u64, Option<i64>)> = records
        .iter()
        .map(|r| (r.record_id.as_str(), (r.version, r.seq, r.gross)))
        .collect();
    if got.len() != records.len() {
        broken(
            Broken::SnapshotContent,
            format!("{sub}: the snapshot as of {as_of} holds a record twice"),
        );
    }
    if expected != got {
        let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        let differ: Vec<_> = expected
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .map(|(k, _)| k)
            .collect();
        broken(
            Broken::SnapshotContent,
            format!(
                "{sub}: the snapshot as of {as_of} is not the register then: missing {missing:?}, \
                 not in the register {extra:?}, another version or body {differ:?}"
            ),
        );
    }
}

/// A delivered change record is an acknowledged version, at its sequence, with its body.
fn check_delivered(
    sub: &str,
    r: &SeenRecord,
    versions: &HashMap<(&str, u32), &Acked>,
    broken: &mut impl FnMut(Broken, String),
) {
    match versions.get(&(r.record_id.as_str(), r.version)) {
        None => broken(
            Broken::NotCommitted,
            format!(
                "{sub}: record {} version {} was never acknowledged",
                r.record_id, r.version
            ),
        ),
        Some(a) if a.seq != r.seq => broken(
            Broken::NotCommitted,
            format!(
                "{sub}: record {} version {} delivered at sequence {}, acknowledged at {}",
                r.record_id, r.version, r.seq, a.seq
            ),
        ),
        Some(a) if a.gross != r.gross || a.retraction != r.retraction => broken(
            Broken::WrongBody,
            format!(
                "{sub}: record {} version {} delivered with another body than acknowledged",
                r.record_id, r.version
            ),
        ),
        Some(_) => {}
    }
}

/// Ways to spoil a good recording, each with the promise the checker must then find broken.
pub fn damages(good: &Recording) -> Vec<(&'static str, Broken, Recording)> {
    let mut out = Vec::new();
    let changes: Vec<usize> = good
        .received
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(&r.seen, Seen::Change { records, .. } if !records.is_empty()))
        .map(|(i, _)| i)
        .collect();
    let sub_of = |i: usize| match &good.received[i].seen {
        Seen::Change { sub, .. } => sub.clone(),
        _ => String::new(),
    };
    if let Some(&first) = changes.first() {
        let mut r = good.clone();
        r.received.remove(first);
        out.push(("a change dropped", Broken::Lost, r));

        let mut r = good.clone();
        r.received.insert(first + 1, good.received[first].clone());
        out.push(("a change delivered twice", Broken::Duplicated, r));

        let mut r = good.clone();
        if let Seen::Change { records, .. } = &mut r.received[first].seen {
            let altered = &mut records[0];
            match altered.gross {
                Some(gross) => altered.gross = Some(gross + 1),
                None => {
                    altered.retraction = false;
                    altered.gross = Some(1);
                }
            }
        }
        out.push(("a delivered body altered", Broken::WrongBody, r));

        let mut r = good.clone();
        if let Seen::Change { records, .. } = &mut r.received[first].seen {
            let mut forged = records[0].clone();
            forged.record_id = "never-committed".to_string();
            records.push(forged);
        }
        out.push(("a record that was never committed", Broken::NotCommitted, r));
    }
    // Two changes of one subscription swapped.
    'swap: for (k, &a) in changes.iter().enumerate() {
        for &b in &changes[k + 1..] {
            if sub_of(a) == sub_of(b) {
                let mut r = good.clone();
                r.received.swap(a, b);
                out.push(("two changes of a subscription swapped", Broken::OutOfOrder, r));
                break 'swap;
            }
        }
    }
    if let Some(i) = good
        .received
        .iter()
        .position(|r| matches!(&r.seen, Seen::Records { records, .. } if !records.is_empty()))
    {
        let mut r = good.clone();
        if let Seen::Records { records, .. } = &mut r.received[i].seen {
            records.remove(0);
        }
        // The count no longer matches either: SnapshotShape is reported too; content is the point.
        out.push(("a snapshot record dropped", Broken::SnapshotContent, r));
    }
    if let Some(last) = good.acked.iter().map(|a| a.seq).max() {
        let mut r = good.clone();
        let mut unseen = good.acked[0].clone();
        unseen.seq = last + 1_000;
        unseen.record_id = "acknowledged-never-read".to_string();
        r.acked.push(unseen);
        out.push((
            "the reader stopped short of the last acknowledgement",
            Broken::NotCaughtUp,
            r,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(seq: u64, id: &str, version: u32, gross: Option<i64>) -> Acked {
        Acked {
            seq,
            record_id: id.to_string(),
            version,
            person: "P".to_string(),
            source_id: id.to_string(),
            source_version: u64::from(version),
            retraction: gross.is_none(),
            gross,
        }
    }

    fn record(a: &Acked) -> SeenRecord {
        SeenRecord {
            seq: a.seq,
            record_id: a.record_id.clone(),
            version: a.version,
            retraction: a.retraction,
            gross: a.gross,
        }
    }

    fn received(seen: Seen) -> Received {
        Received {
            cursor: "c".to_string(),
            seen,
        }
    }

    /// A good recording: two facts before the subscription, a correction, a new fact and a
    /// retraction after it, all delivered as the contract says.
    fn good() -> Recording {
        let a1 = acked(1, "r1", 1, Some(100));
        let b1 = acked(2, "r2", 1, Some(200));
        let a2 = acked(4, "r1", 2, Some(101));
        let c1 = acked(5, "r3", 1, Some(300));
        let b2 = acked(6, "r2", 2, None);
        let sub = "s1".to_string();
        let change = |number, a: &Acked| {
            received(Seen::Change {
                sub: sub.clone(),
                number,
                seq: a.seq,
                records: vec![record(a)],
            })
        };
        Recording {
            acked: vec![a1.clone(), b1.clone(), a2.clone(), c1.clone(), b2.clone()],
            placed: vec![Placed {
                subscription_id: sub.clone(),
                person: "P".to_string(),
            }],
            received: vec![
                received(Seen::Heartbeat { reached: 0, head: 0 }),
                received(Seen::SnapshotBegin {
                    sub: sub.clone(),
                    number: 1,
                    as_of: 3,
                    stream_start: false,
                }),
                received(Seen::Records {
                    sub: sub.clone(),
                    number: 1,
                    records: vec![record(&a1), record(&b1)],
                }),
                received(Seen::Heartbeat { reached: 3, head: 4 }),
                received(Seen::SnapshotEnd {
                    sub: sub.clone(),
                    number: 1,
                    as_of: 3,
                    record_count: 2,
                }),
                change(2, &a2),
                change(3, &c1),
                change(4, &b2),
                received(Seen::Heartbeat { reached: 6, head: 6 }),
            ],
        }
    }

    #[test]
    fn a_good_recording_passes() {
        assert_eq!(check(&good()), Vec::new());
    }

    #[test]
    fn every_damage_is_caught_as_what_it_breaks() {
        let good = good();
        let damages = damages(&good);
        assert_eq!(
            damages.len(),
            7,
            "every kind of damage applies to the good recording"
        );
        for (what, expected, damaged) in damages {
            let found = check(&damaged);
            assert!(
                found.iter().any(|v| v.broken == expected),
                "{what}: expected {expected:?}, found {found:#?}"
            );
        }
    }

    #[test]
    fn a_snapshot_that_is_not_the_register_then_is_caught() {
        let mut r = good();
        // As of 3 the snapshot must not hold the correction made at 4.
        if let Seen::Records { records, .. } = &mut r.received[2].seen {
            records[0] = record(&acked(4, "r1", 2, Some(101)));
        }
        let found = check(&r);
        assert!(
            found.iter().any(|v| v.broken == Broken::SnapshotContent),
            "{found:#?}"
        );
    }

    #[test]
    fn a_gap_in_the_numbers_and_a_foreign_subscription_are_caught() {
        let mut r = good();
        if let Seen::Change { number, .. } = &mut r.received[6].seen {
            *number = 9;
        }
        r.received.push(received(Seen::Notice {
            sub: "s-unknown".to_string(),
            number: 1,
        }));
        let found: Vec<Broken> = check(&r).into_iter().map(|v| v.broken).collect();
        assert!(found.contains(&Broken::Numbering), "{found:?}");
        assert!(found.contains(&Broken::UnknownSubscription), "{found:?}");
    }
}
