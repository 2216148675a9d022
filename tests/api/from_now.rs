//! Subscriptions started from now (issue 17): the first event is a notice instead of the creation
//! snapshot, only later changes follow; the choice is part of the order's content.

use lefi::grpc::pb::lefi::v1 as pb;

use crate::backend_tests;
use crate::delivery::{drain, head_cursor, new_sub, open, pay, records_of, subscribe, take};
use crate::helpers::{Backend, TestApp};
use crate::register::{P1, accepted, ingest};

backend_tests!(a_subscription_from_now_starts_with_a_notice_and_sends_only_later_changes);

fn from_now(reference: &str) -> pb::NewSubscription {
    pb::NewSubscription {
        start_from_now: true,
        ..new_sub(reference, P1, "INS_COORDINATION")
    }
}

async fn a_subscription_from_now_starts_with_a_notice_and_sends_only_later_changes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let start = head_cursor(&app, &app.certs.insurer).await;
    let created = subscribe(channel.clone(), vec![from_now("now")]).await;
    assert_eq!(created.created_count, 1, "{created:?}");
    let subscription = created.results[0].subscription.clone().unwrap();
    assert!(subscription.start_from_now);
    // The same order again is unchanged; the same reference asking for the snapshot is another order.
    let again = subscribe(channel.clone(), vec![from_now("now")]).await;
    assert_eq!(again.unchanged_count, 1, "{again:?}");
    let other = subscribe(channel.clone(), vec![new_sub("now", P1, "INS_COORDINATION")]).await;
    assert_eq!(
        other.results[0].error.as_ref().map(|e| e.reason),
        Some(pb::ErrorReason::IdempotencyKeyReused as i32),
        "{other:?}"
    );

    let before = app.disclosures_by(&app.insurer_id).await.len();
    let mut stream = open(channel.clone(), &start, 0).await;
    let first = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Notice(notice)) = &first[0].event else {
        panic!("the first event is a notice, not a snapshot: {first:?}")
    };
    assert_eq!(notice.event_number, 1);
    assert_eq!(notice.state, pb::SubscriptionState::Active as i32);
    assert_eq!(notice.reason, pb::SubscriptionStateReason::StartedFromNow as i32);
    assert_eq!(notice.subscription_id, subscription.subscription_id);
    // Nothing about the person was disclosed by it.
    assert_eq!(app.disclosures_by(&app.insurer_id).await.len(), before);

    // A new payment and a correction of the one recorded before: both follow as changes.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 2, pb::RecordKind::Correction, 150)]).await);
    let changes = take(&mut stream, 2).await;
    let numbers: Vec<u64> = changes
        .iter()
        .map(|e| match &e.event {
            Some(pb::stream_event::Event::Change(c)) => c.event_number,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(numbers, [2, 3]);
    let kinds: Vec<i32> = records_of(&changes).iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [pb::RecordKind::New as i32, pb::RecordKind::Correction as i32]
    );

    // A new consumer (empty cursor) still gets the whole register as a stream-start snapshot.
    let mut fresh = open(channel, "", 0).await;
    let snapshot = drain(&mut fresh).await;
    assert!(
        matches!(snapshot[0].event, Some(pb::stream_event::Event::SnapshotBegin(_))),
        "{snapshot:?}"
    );
    assert_eq!(records_of(&snapshot).len(), 2, "PAY1 (corrected) and PAY2");
    app.stop().await;
}
