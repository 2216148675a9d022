//! Subscriptions started from now (issue 17): the first event is a notice instead of the creation
//! snapshot, only later changes follow; the choice is part of the order's content. Subscriptions
//! with an end date end by themselves the day after it.

use lefi::grpc::pb::lefi::v1 as pb;

use crate::backend_tests;
use crate::delivery::{drain, head_cursor, new_sub, open, pay, records_of, subscribe, take};
use crate::helpers::{Backend, TestApp};
use crate::register::{P1, accepted, ingest};

backend_tests!(
    a_subscription_from_now_starts_with_a_notice_and_sends_only_later_changes,
    a_subscription_ends_by_itself_the_day_after_its_end_date,
);

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

async fn a_subscription_ends_by_itself_the_day_after_its_end_date(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let today = app.clock.today();
    let date = |d: time::Date| lefi::domain::clock::format_date(d);
    let until = |reference: &str, end: time::Date| pb::NewSubscription {
        end_date: date(end),
        ..new_sub(reference, P1, "INS_COORDINATION")
    };
    // An end date before the from-date or before today is refused.
    let refused = subscribe(
        channel.clone(),
        vec![
            until("before-from", time::macros::date!(2023 - 12 - 31)),
            until("yesterday", today - time::Duration::days(1)),
        ],
    )
    .await;
    for result in &refused.results {
        let error = result.error.as_ref().expect("refused");
        assert_eq!(error.reason, pb::ErrorReason::InvalidDate as i32, "{result:?}");
        assert_eq!(error.metadata.get("field").map(String::as_str), Some("end_date"));
    }
    let start = head_cursor(&app, &app.certs.insurer).await;
    let created = subscribe(
        channel.clone(),
        vec![until("short", today + time::Duration::days(1))],
    )
    .await;
    let subscription = created.results[0].subscription.clone().expect("created");
    assert_eq!(subscription.end_date, date(today + time::Duration::days(1)));
    let mut stream = open(channel.clone(), &start, 0).await;
    take(&mut stream, 2).await; // the creation snapshot (begin, end)
    // On its end date it still runs: a change is delivered.
    app.clock.advance(time::Duration::days(1));
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let change = take(&mut stream, 1).await;
    assert!(
        matches!(change[0].event, Some(pb::stream_event::Event::Change(_))),
        "{change:?}"
    );
    // The day after, it ends by itself with a notice.
    app.clock.advance(time::Duration::days(1));
    let ended = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Notice(notice)) = &ended[0].event else {
        panic!("{ended:?}")
    };
    assert_eq!(notice.state, pb::SubscriptionState::Ended as i32);
    assert_eq!(notice.reason, pb::SubscriptionStateReason::EndDateReached as i32);
    assert_eq!(notice.event_number, 3);
    // Nothing more is delivered for it.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    assert!(drain(&mut stream).await.is_empty());
    app.stop().await;
}
