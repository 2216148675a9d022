//! Filtered subscriptions (issue 17): only the record kinds a subscription names are delivered, in
//! its snapshot and in its changes, with contiguous event numbers; a correction that leaves the
//! filter is still sent; the disclosure log counts only what was sent; bad filters are refused.

use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;

use crate::backend_tests;
use crate::delivery::{head_cursor, new_sub, open, pay, records_of, subscribe, take};
use crate::helpers::{Backend, TestApp};
use crate::register::{P1, accepted, case, fact, ingest};

backend_tests!(
    a_filter_limits_the_snapshot_and_the_changes,
    bad_filters_are_refused_and_filters_are_part_of_the_order,
);

fn decision(source_id: &str, version: u64, kind: pb::DecisionKind, record: pb::RecordKind) -> admin_pb::Fact {
    admin_pb::Fact {
        body: Some(admin_pb::fact::Body::Decision(pb::Decision {
            case_id: "FALL-1".into(),
            kind: kind as i32,
            effective_from: "2024-01-09".into(),
            decided_on: "2024-01-20".into(),
        })),
        ..fact(P1, source_id, version, record)
    }
}

fn event(source_id: &str, kind: pb::PersonEventKind) -> admin_pb::Fact {
    admin_pb::Fact {
        benefit_type: String::new(),
        body: Some(admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
            kind: kind as i32,
            event_date: "2024-03-01".into(),
        })),
        ..fact(P1, source_id, 1, pb::RecordKind::New)
    }
}

/// Only blocked/unblocked decisions and deaths: the example of the issue.
fn watchful(reference: &str) -> pb::NewSubscription {
    pb::NewSubscription {
        filter: Some(pb::RecordFilter {
            decision_kinds: vec![
                pb::DecisionKind::Blocked as i32,
                pb::DecisionKind::Unblocked as i32,
            ],
            person_event_kinds: vec![pb::PersonEventKind::DeathRegistered as i32],
            ..Default::default()
        }),
        ..new_sub(reference, P1, "INS_COORDINATION")
    }
}

/// What a record is: its fact's field name and, for decisions and events, its kind.
fn what(r: &pb::BenefitRecord) -> String {
    match &r.fact {
        Some(pb::benefit_record::Fact::Decision(d)) => {
            format!(
                "decision {}",
                pb::DecisionKind::try_from(d.kind).unwrap().as_str_name()
            )
        }
        Some(pb::benefit_record::Fact::PersonEvent(e)) => {
            format!(
                "event {}",
                pb::PersonEventKind::try_from(e.kind).unwrap().as_str_name()
            )
        }
        Some(pb::benefit_record::Fact::Payment(_)) => "payment".to_string(),
        Some(pb::benefit_record::Fact::Case(_)) => "case".to_string(),
        other => format!("{other:?}"),
    }
}

async fn a_filter_limits_the_snapshot_and_the_changes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    accepted(
        &ingest(
            &app,
            vec![
                case(P1, "C1", 1),
                pay(P1, "PAY1", 1, pb::RecordKind::New, 100),
                decision("D1", 1, pb::DecisionKind::Granted, pb::RecordKind::New),
                decision("D2", 1, pb::DecisionKind::Blocked, pb::RecordKind::New),
                event("E1", pb::PersonEventKind::SicknessCaseClosed),
            ],
        )
        .await,
    );
    let start = head_cursor(&app, &app.certs.insurer).await;
    let created = subscribe(
        channel.clone(),
        vec![watchful("watch"), new_sub("all", P1, "INS_COORDINATION")],
    )
    .await;
    assert_eq!(created.created_count, 2, "{created:?}");
    let filtered = created.results[0].subscription.clone().unwrap();
    let everything = created.results[1].subscription.clone().unwrap();
    // The filter comes back in its canonical form.
    let shown = filtered.filter.clone().expect("the filter is shown");
    assert_eq!(shown.decision_kinds.len(), 2);
    assert_eq!(
        shown.person_event_kinds,
        [pb::PersonEventKind::DeathRegistered as i32]
    );
    assert!(everything.filter.is_none());

    let before = app.disclosures_by(&app.insurer_id).await.len();
    let mut stream = open(channel.clone(), &start, 0).await;
    // Two snapshots: the filtered one holds only the blocked decision.
    let snapshots = take(&mut stream, 6).await;
    let of = |id: &str, events: &[pb::StreamEvent]| -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match &e.event {
                Some(pb::stream_event::Event::Records(b)) if b.subscription_id == id => {
                    Some(b.records.clone())
                }
                Some(pb::stream_event::Event::Change(c)) if c.subscription_id == id => {
                    Some(c.records.clone())
                }
                _ => None,
            })
            .flatten()
            .map(|r| what(&r))
            .collect()
    };
    assert_eq!(of(&filtered.subscription_id, &snapshots), ["decision BLOCKED"]);
    assert_eq!(
        of(&everything.subscription_id, &snapshots).len(),
        5,
        "{snapshots:#?}"
    );
    let end_of = |id: &str| {
        snapshots
            .iter()
            .find_map(|e| match &e.event {
                Some(pb::stream_event::Event::SnapshotEnd(end)) if end.subscription_id == id => {
                    Some(end.record_count)
                }
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(end_of(&filtered.subscription_id), 1);
    // The disclosure log counts what each snapshot sent.
    let logged = app.disclosures_by(&app.insurer_id).await;
    let counts: Vec<(String, u64)> = logged[before..]
        .iter()
        .map(|e| {
            (
                e.entry.subscription_id.clone().unwrap_or_default(),
                e.entry.record_count,
            )
        })
        .collect();
    assert!(
        counts.contains(&(filtered.subscription_id.clone(), 1)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&(everything.subscription_id.clone(), 5)),
        "{counts:?}"
    );

    // Changes: a payment and a granted decision pass it by; the block is lifted (a correction
    // that leaves the filter, still sent); a death; an unblocked decision.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    accepted(
        &ingest(
            &app,
            vec![decision("D3", 1, pb::DecisionKind::Granted, pb::RecordKind::New)],
        )
        .await,
    );
    accepted(
        &ingest(
            &app,
            vec![decision(
                "D2",
                2,
                pb::DecisionKind::Granted,
                pb::RecordKind::Correction,
            )],
        )
        .await,
    );
    accepted(&ingest(&app, vec![event("E2", pb::PersonEventKind::DeathRegistered)]).await);
    accepted(
        &ingest(
            &app,
            vec![decision(
                "D4",
                1,
                pb::DecisionKind::Unblocked,
                pb::RecordKind::New,
            )],
        )
        .await,
    );
    // Everything: five changes; the filtered one: three, numbered on without a gap.
    let changes = take(&mut stream, 8).await;
    assert_eq!(of(&everything.subscription_id, &changes).len(), 5);
    assert_eq!(
        of(&filtered.subscription_id, &changes),
        ["decision GRANTED", "event DEATH_REGISTERED", "decision UNBLOCKED"]
    );
    let numbers: Vec<u64> = changes
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::stream_event::Event::Change(c)) if c.subscription_id == filtered.subscription_id => {
                Some(c.event_number)
            }
            _ => None,
        })
        .collect();
    assert_eq!(numbers, [2, 3, 4]);
    let kinds: Vec<i32> = records_of(&changes[..])
        .iter()
        .filter(|r| what(r) == "decision GRANTED" && r.version == 2)
        .map(|r| r.kind)
        .collect();
    assert!(kinds.contains(&(pb::RecordKind::Correction as i32)));
    app.stop().await;
}

async fn bad_filters_are_refused_and_filters_are_part_of_the_order(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let mut unspecified = new_sub("bad-type", P1, "INS_COORDINATION");
    unspecified.filter = Some(pb::RecordFilter {
        record_types: vec![pb::RecordType::Payment as i32, 0],
        ..Default::default()
    });
    let mut unknown = new_sub("bad-kind", P1, "INS_COORDINATION");
    unknown.filter = Some(pb::RecordFilter {
        decision_kinds: vec![99],
        ..Default::default()
    });
    let refused = subscribe(channel.clone(), vec![unspecified, unknown]).await;
    let fields: Vec<String> = refused
        .results
        .iter()
        .map(|r| {
            let error = r.error.as_ref().expect("refused");
            assert_eq!(error.reason, pb::ErrorReason::InvalidArgument as i32);
            error.metadata["field"].clone()
        })
        .collect();
    assert_eq!(fields, ["filter.record_types[1]", "filter.decision_kinds[0]"]);
    // The same filter in another order is the same order; another filter is another order.
    let created = subscribe(channel.clone(), vec![watchful("watch")]).await;
    assert_eq!(created.created_count, 1);
    let mut reordered = watchful("watch");
    if let Some(f) = reordered.filter.as_mut() {
        f.decision_kinds.reverse();
        f.decision_kinds.push(pb::DecisionKind::Blocked as i32);
    }
    assert_eq!(
        subscribe(channel.clone(), vec![reordered]).await.unchanged_count,
        1
    );
    let mut other = watchful("watch");
    other.filter = Some(pb::RecordFilter {
        record_types: vec![pb::RecordType::Payment as i32],
        ..Default::default()
    });
    let conflict = subscribe(channel, vec![other]).await;
    assert_eq!(
        conflict.results[0].error.as_ref().map(|e| e.reason),
        Some(pb::ErrorReason::IdempotencyKeyReused as i32)
    );
    app.stop().await;
}
