//! Pulling the delivery history (`DeliveryService.FetchEvents`): the same messages and cursors as
//! the stream from every cursor, mixed with the stream, long poll, disclosure logging of exactly
//! what an answer held, bounds, and the endings the stream has.

use std::time::{Duration, Instant};

use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::delivery::{drain, head_cursor, new_sub, open, pay, records_of, subscribe, take};
use crate::helpers::{Backend, SpawnOptions, TestApp, reason};
use crate::register::{P1, P2, accepted, case, ingest};

backend_tests!(
    pulling_gives_the_stream_messages_from_every_cursor,
    pulling_and_streaming_alternate_without_loss,
    a_pull_from_an_empty_cursor_starts_like_the_stream,
    long_poll_wakes_on_a_commit_and_otherwise_answers_a_bookmark,
    an_answer_logs_exactly_the_records_it_holds,
    bad_pull_requests_are_refused_with_the_field,
    a_terminated_party_pulls_its_notices_then_is_refused,
);

fn client(channel: Channel) -> pb::delivery_service_client::DeliveryServiceClient<Channel> {
    pb::delivery_service_client::DeliveryServiceClient::new(channel)
}

/// One pull of at most `max_events` messages, one record per batch, no waiting.
async fn fetch(channel: &Channel, cursor: &str, max_events: u32) -> pb::FetchEventsResponse {
    fetch_with(channel, cursor, max_events, None).await.unwrap()
}

async fn fetch_with(
    channel: &Channel,
    cursor: &str,
    max_events: u32,
    wait: Option<Duration>,
) -> Result<pb::FetchEventsResponse, tonic::Status> {
    client(channel.clone())
        .fetch_events(pb::FetchEventsRequest {
            cursor: cursor.to_string(),
            max_events,
            max_batch_records: 1,
            wait: wait.map(|w| prost_types::Duration {
                seconds: w.as_secs() as i64,
                nanos: w.subsec_nanos() as i32,
            }),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Pulls from `cursor` until caught up; every answer's events, in order.
async fn pull_all(channel: &Channel, cursor: &str, max_events: u32) -> (Vec<pb::StreamEvent>, String) {
    let mut cursor = cursor.to_string();
    let mut events = Vec::new();
    for _ in 0..1_000 {
        let answer = fetch(channel, &cursor, max_events).await;
        assert!(
            answer.events.len() <= max_events as usize,
            "{} events in an answer of at most {max_events}",
            answer.events.len()
        );
        if let Some(last) = answer.events.last() {
            assert_eq!(
                answer.cursor, last.cursor,
                "the answer's cursor is its last event's"
            );
        }
        events.extend(answer.events);
        cursor = answer.cursor;
        if answer.caught_up {
            return (events, cursor);
        }
    }
    panic!("never caught up")
}

/// Two subscriptions whose snapshots span several messages, then changes (one a retraction):
/// the party's cursor before it all, and the stream's recording from it.
async fn history(app: &TestApp) -> (String, Vec<pb::StreamEvent>) {
    accepted(
        &ingest(
            app,
            vec![case(P1, "C1", 1), pay(P1, "PAY1", 1, pb::RecordKind::New, 100)],
        )
        .await,
    );
    let start = head_cursor(app, &app.certs.insurer).await;
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![
            new_sub("a", P1, "INS_COORDINATION"),
            new_sub("b", P2, "INS_COORDINATION"),
        ],
    )
    .await;
    accepted(
        &ingest(
            app,
            vec![
                pay(P1, "PAY2", 1, pb::RecordKind::New, 200),
                pay(P2, "PAY3", 1, pb::RecordKind::New, 300),
            ],
        )
        .await,
    );
    accepted(&ingest(app, vec![pay(P1, "PAY1", 2, pb::RecordKind::Retraction, 100)]).await);
    let mut stream = open(app.party_channel(&app.certs.insurer).await, &start, 1).await;
    let recording = drain(&mut stream).await;
    assert_eq!(recording.len(), 9, "{recording:#?}");
    (start, recording)
}

async fn pulling_gives_the_stream_messages_from_every_cursor(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (start, recording) = history(&app).await;
    let channel = app.party_channel(&app.certs.insurer).await;
    // Whatever the answer size, the answers put together are the stream, cursors included.
    for max_events in [1, 2, 3, 500] {
        let (pulled, _) = pull_all(&channel, &start, max_events).await;
        assert_eq!(pulled, recording, "pulled {max_events} at a time");
    }
    // From every cursor of the stream, a pull gives exactly the rest.
    for i in 0..recording.len() {
        let (rest, _) = pull_all(&channel, &recording[i].cursor, 4).await;
        assert_eq!(rest, recording[i + 1..].to_vec(), "pulling after message {i}");
    }
    app.stop().await;
}

async fn pulling_and_streaming_alternate_without_loss(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (start, recording) = history(&app).await;
    let channel = app.party_channel(&app.certs.insurer).await;
    // Pull two, stream two, pull two, ... with each one's last cursor.
    let mut cursor = start;
    let mut seen = Vec::new();
    while seen.len() < recording.len() {
        let answer = fetch(&channel, &cursor, 2).await;
        cursor = answer.cursor;
        seen.extend(answer.events);
        if seen.len() >= recording.len() {
            break;
        }
        let mut stream = open(channel.clone(), &cursor, 1).await;
        let streamed = take(&mut stream, 2.min(recording.len() - seen.len())).await;
        cursor = streamed.last().unwrap().cursor.clone();
        seen.extend(streamed);
    }
    assert_eq!(seen, recording);
    // Caught up: the answer is empty, says so, and its cursor is a bookmark at the head.
    let answer = fetch(&channel, &cursor, 10).await;
    assert!(answer.events.is_empty() && answer.caught_up, "{answer:?}");
    assert_eq!(answer.register_sequence, answer.head_sequence);
    let mut from_bookmark = open(channel.clone(), &answer.cursor, 1).await;
    accepted(&ingest(&app, vec![pay(P2, "PAY4", 1, pb::RecordKind::New, 400)]).await);
    let next = take(&mut from_bookmark, 1).await;
    assert_eq!(records_of(&next).len(), 1, "{next:?}");
    assert_eq!(fetch(&channel, &answer.cursor, 10).await.events, next);
    app.stop().await;
}

async fn a_pull_from_an_empty_cursor_starts_like_the_stream(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, _) = history(&app).await;
    let channel = app.party_channel(&app.certs.insurer).await;
    let mut stream = open(channel.clone(), "", 1).await;
    let streamed = drain(&mut stream).await;
    // Start snapshots of both subscriptions (P1 holds the case and PAY2; P2 holds PAY3).
    let kinds: Vec<bool> = streamed
        .iter()
        .map(|e| matches!(e.event, Some(pb::stream_event::Event::SnapshotBegin(_))))
        .collect();
    assert_eq!(kinds.iter().filter(|b| **b).count(), 2, "{streamed:#?}");
    for max_events in [1, 3, 500] {
        let (pulled, _) = pull_all(&channel, "", max_events).await;
        assert_eq!(
            pulled, streamed,
            "pulled {max_events} at a time from an empty cursor"
        );
    }
    app.stop().await;
}

async fn long_poll_wakes_on_a_commit_and_otherwise_answers_a_bookmark(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (_, recording) = history(&app).await;
    let channel = app.party_channel(&app.certs.insurer).await;
    let at_head = recording.last().unwrap().cursor.clone();

    // Nothing arrives: the answer comes after the wait, empty, with a bookmark.
    let asked = Instant::now();
    let quiet = fetch_with(&channel, &at_head, 10, Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "answered before the wait was over"
    );
    assert!(quiet.events.is_empty() && quiet.caught_up, "{quiet:?}");
    assert!(!quiet.cursor.is_empty());

    // A commit for the party's person wakes the waiting pull with the change.
    let waiting = tokio::spawn({
        let channel = channel.clone();
        let cursor = quiet.cursor.clone();
        async move { fetch_with(&channel, &cursor, 10, Some(Duration::from_secs(60))).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the pull did not wait");
    let committed = Instant::now();
    accepted(&ingest(&app, vec![pay(P1, "PAY5", 1, pb::RecordKind::New, 500)]).await);
    let woken = waiting.await.unwrap().unwrap();
    assert!(
        committed.elapsed() < Duration::from_secs(30),
        "the pull waited for its deadline instead of waking on the commit"
    );
    assert_eq!(records_of(&woken.events).len(), 1, "{woken:?}");
    assert!(woken.caught_up);
    // The stream from the earlier bookmark gives the same change with the same cursor.
    let mut stream = open(channel, &quiet.cursor, 1).await;
    assert_eq!(take(&mut stream, 1).await, woken.events);
    app.stop().await;
}

async fn an_answer_logs_exactly_the_records_it_holds(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(
        &ingest(
            &app,
            vec![
                case(P1, "C1", 1),
                pay(P1, "PAY1", 1, pb::RecordKind::New, 100),
                pay(P1, "PAY2", 1, pb::RecordKind::New, 200),
            ],
        )
        .await,
    );
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("a", P1, "INS_COORDINATION")],
    )
    .await;
    let before = app.disclosures_by(&app.insurer_id).await.len();
    let channel = app.party_channel(&app.certs.insurer).await;
    // The snapshot (begin, three batches of one record, end) over answers of two messages.
    let first = fetch(&channel, &start, 2).await;
    assert_eq!(first.events.len(), 2);
    assert!(!first.caught_up);
    let logged = app.disclosures_by(&app.insurer_id).await;
    let new: Vec<_> = logged[before..].iter().map(|d| &d.entry).collect();
    assert_eq!(new.len(), 1, "{new:#?}");
    assert_eq!(new[0].rpc, "/lefi.v1.DeliveryService/FetchEvents");
    assert_eq!(new[0].record_count, records_of(&first.events).len() as u64);
    assert_eq!(new[0].record_count, 1, "begin + one batch of one record");
    let (rest, _) = pull_all(&channel, &first.cursor, 2).await;
    let logged = app.disclosures_by(&app.insurer_id).await;
    let counted: u64 = logged[before..].iter().map(|d| d.entry.record_count).sum();
    let returned = records_of(&first.events).len() + records_of(&rest).len();
    assert_eq!(
        counted, returned as u64,
        "the log counts exactly what the answers held"
    );
    assert_eq!(returned, 3);
    // A caught-up answer with nothing in it discloses nothing.
    let count = logged.len();
    let empty = fetch(&channel, &rest.last().unwrap().cursor, 2).await;
    assert!(empty.events.is_empty());
    assert_eq!(app.disclosures_by(&app.insurer_id).await.len(), count);
    app.stop().await;
}

async fn bad_pull_requests_are_refused_with_the_field(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let too_many = fetch_with(&channel, "", 5_001, None).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(too_many.message().contains("max_events"), "{too_many:?}");
    let too_long = fetch_with(&channel, "", 10, Some(Duration::from_secs(61)))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert!(too_long.message().contains("wait"), "{too_long:?}");
    let forged = fetch_with(&channel, "bm90LWEtY3Vyc29y", 10, None)
        .await
        .unwrap_err();
    assert_eq!(reason(&forged), "CURSOR_INVALID");
    // A cursor of another party is refused as well.
    let theirs = head_cursor(&app, &app.certs.municipality).await;
    let foreign = fetch_with(&channel, &theirs, 10, None).await.unwrap_err();
    assert_eq!(reason(&foreign), "CURSOR_INVALID");
    app.stop().await;
}

async fn a_terminated_party_pulls_its_notices_then_is_refused(backend: Backend) {
    let options = SpawnOptions {
        heartbeat_interval: Some(Duration::from_secs(1)),
        ..SpawnOptions::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    let (events, cursor) = pull_all(&channel, &start, 10).await;
    assert_eq!(events.len(), 2, "the creation snapshot: {events:#?}");
    // Termination takes effect while a pull waits: it answers with the ENDED notice.
    let waiting = tokio::spawn({
        let channel = channel.clone();
        async move { fetch_with(&channel, &cursor, 10, Some(Duration::from_secs(30))).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.schedule_termination(&app.insurer_id, app.clock.today() + time::Duration::days(1))
        .await;
    // Nothing is committed to the register: the server wakes every stream and waiting pull when
    // the day changes, and the pull notices.
    app.clock.advance(time::Duration::days(1));
    let last = waiting.await.unwrap().unwrap();
    assert_eq!(last.events.len(), 1, "{last:?}");
    let Some(pb::stream_event::Event::Notice(n)) = &last.events[0].event else {
        panic!("{last:?}")
    };
    assert_eq!(n.reason, pb::SubscriptionStateReason::PartyTerminated as i32);
    // Every later call is refused, as a new stream would be.
    let refused = fetch_with(&channel, &last.cursor, 10, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "PARTY_TERMINATED");
    app.stop().await;
}
