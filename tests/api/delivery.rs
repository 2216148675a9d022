//! Subscriptions and the delivery stream: snapshot then changes, resumption from any cursor,
//! restarts, losing the right mid-stream, expiry and full refresh, replicas.

use std::time::Duration;

use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::helpers::{Backend, SpawnOptions, TestApp, reason};
use crate::register::{P1, P2, accepted, case, ingest, payment};

/// A payment whose gross (öre) is `extra` above the tax the fixture withholds.
pub(crate) fn pay(
    person: &str,
    id: &str,
    version: u64,
    kind: pb::RecordKind,
    extra: i64,
) -> lefi::grpc::pb::lefi::admin::v1::Fact {
    payment(person, id, version, kind, 100_000 + extra)
}

backend_tests!(
    snapshot_then_changes_with_retroactive_corrections,
    resume_from_every_cursor_gives_the_exact_remainder,
    restart_mid_stream_then_resume_loses_nothing,
    change_committed_during_the_snapshot_is_delivered_exactly_once,
    consent_revoked_mid_stream_suspends_and_a_new_consent_resumes,
    case_closed_mid_stream_ends_the_subscription,
    party_terminated_ends_the_stream,
    expired_cursor_then_full_refresh,
    forged_and_foreign_cursors_are_refused,
    subscriptions_are_idempotent_and_checked_item_by_item,
    a_full_batch_with_repeated_references_is_answered_item_by_item,
    slow_client_holds_the_server_back,
);

pub(crate) type Events = tonic::Streaming<pb::StreamEvent>;

pub(crate) fn new_sub(reference: &str, person: &str, basis: &str) -> pb::NewSubscription {
    pb::NewSubscription {
        client_reference: reference.to_string(),
        person_id: person.to_string(),
        benefit_type_codes: vec!["SJP".to_string()],
        from_date: "2024-01-01".to_string(),
        legal_basis: basis.to_string(),
        ..Default::default()
    }
}

pub(crate) async fn subscribe(
    channel: Channel,
    items: Vec<pb::NewSubscription>,
) -> pb::CreateSubscriptionsResponse {
    pb::subscription_service_client::SubscriptionServiceClient::new(channel)
        .create_subscriptions(pb::CreateSubscriptionsRequest { items })
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn open(channel: Channel, cursor: &str, batch: u32) -> Events {
    pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .stream(pb::StreamRequest {
            cursor: cursor.to_string(),
            max_batch_records: batch,
            heartbeat_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        })
        .await
        .unwrap()
        .into_inner()
}

fn is_heartbeat(e: &pb::StreamEvent) -> bool {
    matches!(e.event, Some(pb::stream_event::Event::Heartbeat(_)))
}

/// The next `n` messages that are not heartbeats.
pub(crate) async fn take(stream: &mut Events, n: usize) -> Vec<pb::StreamEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} events: {out:#?}", out.len()))
            .unwrap()
            .expect("stream ended early");
        if !is_heartbeat(&next) {
            out.push(next);
        }
    }
    out
}

/// Reads until the stream is idle (a heartbeat after at least one quiet interval): everything it
/// had to say.
pub(crate) async fn drain(stream: &mut Events) -> Vec<pb::StreamEvent> {
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("stream went silent")
            .unwrap()
            .expect("stream ended");
        if is_heartbeat(&next) {
            if !out.is_empty()
                || matches!(&next.event, Some(pb::stream_event::Event::Heartbeat(h)) if h.register_sequence == h.head_sequence)
            {
                return out;
            }
            continue;
        }
        out.push(next);
    }
}

/// Reads until the stream ends with a status.
pub(crate) async fn end_status(stream: &mut Events) -> (Vec<pb::StreamEvent>, tonic::Status) {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .expect("stream did not end")
        {
            Ok(Some(e)) => {
                if !is_heartbeat(&e) {
                    seen.push(e);
                }
            }
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => return (seen, status),
        }
    }
}

fn kind(e: &pb::StreamEvent) -> &'static str {
    match &e.event {
        Some(pb::stream_event::Event::SnapshotBegin(_)) => "begin",
        Some(pb::stream_event::Event::Records(_)) => "records",
        Some(pb::stream_event::Event::SnapshotEnd(_)) => "end",
        Some(pb::stream_event::Event::Change(_)) => "change",
        Some(pb::stream_event::Event::Notice(_)) => "notice",
        Some(pb::stream_event::Event::Heartbeat(_)) => "heartbeat",
        None => "none",
    }
}

pub(crate) fn records_of(events: &[pb::StreamEvent]) -> Vec<pb::BenefitRecord> {
    events
        .iter()
        .flat_map(|e| match &e.event {
            Some(pb::stream_event::Event::Records(b)) => b.records.clone(),
            Some(pb::stream_event::Event::Change(c)) => c.records.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// A cursor positioned at the current head, before any subscription exists.
pub(crate) async fn head_cursor(app: &TestApp, who: &lefi::dev::certs::Issued) -> String {
    let mut stream = open(app.party_channel(who).await, "", 0).await;
    let first = stream.message().await.unwrap().unwrap();
    assert!(is_heartbeat(&first));
    first.cursor
}

async fn snapshot_then_changes_with_retroactive_corrections(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(
        &ingest(
            &app,
            vec![
                case(P1, "C1", 1),
                pay(P1, "PAY1", 1, pb::RecordKind::New, 250_000),
            ],
        )
        .await,
    );
    let created = subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("ref-1", P1, "INS_COORDINATION")],
    )
    .await;
    assert_eq!(created.created_count, 1);
    let sub_id = created.results[0]
        .subscription
        .as_ref()
        .unwrap()
        .subscription_id
        .clone();

    // A stream opened now starts with a snapshot of the subscription as of the head.
    let mut stream = open(app.party_channel(&app.certs.insurer).await, "", 0).await;
    let snapshot = take(&mut stream, 3).await;
    assert_eq!(
        snapshot.iter().map(kind).collect::<Vec<_>>(),
        ["begin", "records", "end"]
    );
    let Some(pb::stream_event::Event::SnapshotBegin(begin)) = &snapshot[0].event else {
        unreachable!()
    };
    assert_eq!(begin.subscription_id, sub_id);
    assert_eq!(begin.event_number, 1);
    assert_eq!(begin.reason, pb::SnapshotReason::StreamStart as i32);
    assert_eq!(records_of(&snapshot).len(), 2);

    // A retroactive correction committed afterwards arrives as the next event, flagged.
    let mut correction = pay(P1, "PAY1", 2, pb::RecordKind::Correction, 260_000);
    correction.retroactive = true;
    accepted(&ingest(&app, vec![correction]).await);
    let change = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Change(c)) = &change[0].event else {
        panic!("{change:?}")
    };
    assert_eq!(c.subscription_id, sub_id);
    assert_eq!(c.event_number, 2);
    assert_eq!(c.records.len(), 1);
    assert_eq!(c.records[0].kind, pb::RecordKind::Correction as i32);
    assert!(c.records[0].retroactive);
    let Some(pb::benefit_record::Fact::Payment(p)) = &c.records[0].fact else {
        panic!()
    };
    assert_eq!(p.gross_ore, 360_000);
    // Facts about other persons or other benefits are not delivered.
    accepted(&ingest(&app, vec![pay(P2, "PAY9", 1, pb::RecordKind::New, 1_000)]).await);
    let mut other_benefit = pay(P1, "PAY-FP", 1, pb::RecordKind::New, 1_000);
    other_benefit.benefit_type = "FP".to_string();
    accepted(
        &ingest(
            &app,
            vec![other_benefit, pay(P1, "PAY2", 1, pb::RecordKind::New, 5_000)],
        )
        .await,
    );
    let next = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Change(c)) = &next[0].event else {
        panic!("{next:?}")
    };
    assert!(!c.records[0].record_id.is_empty());
    assert_eq!(
        c.event_number, 3,
        "the FP payment and the other person's were not counted"
    );
    // A change of the person's own data is a change without records; later changes carry it too,
    // and a protected person's name is never sent.
    accepted(
        &ingest(
            &app,
            vec![crate::register::person_update(
                P1,
                1,
                "Tolvan Tolvansson",
                false,
                "",
            )],
        )
        .await,
    );
    let renamed = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Change(c)) = &renamed[0].event else {
        panic!("{renamed:?}")
    };
    assert!(c.records.is_empty());
    assert_eq!(c.person.as_ref().unwrap().name, "Tolvan Tolvansson");
    accepted(&ingest(&app, vec![pay(P1, "PAY3", 1, pb::RecordKind::New, 7_000)]).await);
    let next = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Change(c)) = &next[0].event else {
        panic!("{next:?}")
    };
    assert_eq!(c.person.as_ref().unwrap().name, "Tolvan Tolvansson");
    accepted(
        &ingest(
            &app,
            vec![crate::register::person_update(
                P1,
                2,
                "Tolvan Tolvansson",
                true,
                "",
            )],
        )
        .await,
    );
    let protected = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Change(c)) = &protected[0].event else {
        panic!("{protected:?}")
    };
    assert_eq!(c.person.as_ref().unwrap().name, "");
    assert!(c.person.as_ref().unwrap().protected_identity);
    app.stop().await;
}

/// Records a stream with two subscriptions' snapshots and several changes, then checks that a
/// stream resumed from each cursor yields exactly the rest.
async fn resume_from_every_cursor_gives_the_exact_remainder(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(
        &ingest(
            &app,
            vec![case(P1, "C1", 1), pay(P1, "PAY1", 1, pb::RecordKind::New, 100)],
        )
        .await,
    );
    let start = head_cursor(&app, &app.certs.insurer).await;
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
            &app,
            vec![
                pay(P1, "PAY2", 1, pb::RecordKind::New, 200),
                pay(P2, "PAY3", 1, pb::RecordKind::New, 300),
            ],
        )
        .await,
    );
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 2, pb::RecordKind::Retraction, 100)]).await);

    // One record per batch, so snapshots span several messages and cursors fall inside them.
    let mut stream = open(app.party_channel(&app.certs.insurer).await, &start, 1).await;
    let recording = drain(&mut stream).await;
    let kinds: Vec<&str> = recording.iter().map(kind).collect();
    assert_eq!(
        kinds,
        [
            "begin", "records", "records", "end", "begin", "end", "change", "change", "change"
        ],
        "{recording:#?}"
    );
    for i in 0..recording.len() {
        let mut resumed = open(
            app.party_channel(&app.certs.insurer).await,
            &recording[i].cursor,
            1,
        )
        .await;
        let rest = take(&mut resumed, recording.len() - i - 1).await;
        assert_eq!(
            rest,
            recording[i + 1..].to_vec(),
            "resuming after message {i} ({})",
            kinds[i]
        );
    }
    app.stop().await;
}

async fn restart_mid_stream_then_resume_loses_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("a", P1, "INS_COORDINATION")],
    )
    .await;
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let mut stream = open(app.party_channel(&app.certs.insurer).await, &start, 0).await;
    let before = take(&mut stream, 2).await; // begin, end of the (empty) creation snapshot
    let last_cursor = before[1].cursor.clone();
    drop(stream);

    let app = app.restart().await;
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    let mut resumed = open(app.party_channel(&app.certs.insurer).await, &last_cursor, 0).await;
    let after = take(&mut resumed, 2).await;
    let numbers: Vec<u64> = after
        .iter()
        .map(|e| match &e.event {
            Some(pb::stream_event::Event::Change(c)) => c.event_number,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(numbers, [2, 3]);
    assert_eq!(records_of(&after).len(), 2);
    app.stop().await;
}

async fn change_committed_during_the_snapshot_is_delivered_exactly_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let facts: Vec<_> = (0..60)
        .map(|i| pay(P1, &format!("PAY{i}"), 1, pb::RecordKind::New, 100 + i))
        .collect();
    accepted(&ingest(&app, facts).await);
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("a", P1, "INS_COORDINATION")],
    )
    .await;
    // Stream the snapshot one record per message while more facts are committed.
    let mut stream = open(app.party_channel(&app.certs.insurer).await, "", 1).await;
    let writer = {
        let more: Vec<_> = (60..90)
            .map(|i| pay(P1, &format!("PAY{i}"), 1, pb::RecordKind::New, 100 + i))
            .collect();
        let app_ref = &app;
        async move {
            for chunk in more.chunks(5) {
                accepted(&ingest(app_ref, chunk.to_vec()).await);
            }
        }
    };
    let reader = async {
        let mut seen = Vec::new();
        while records_of(&seen).len() < 90 {
            seen.extend(take(&mut stream, 1).await);
        }
        seen
    };
    let (_, seen) = tokio::join!(writer, reader);
    let mut ids: Vec<String> = records_of(&seen)
        .into_iter()
        .map(|r| r.record_id.clone())
        .collect();
    assert_eq!(ids.len(), 90);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 90, "every payment exactly once");
    app.stop().await;
}

fn risk_consent(app: &TestApp, evidence: &str) -> pb::RegisterConsentRequest {
    pb::RegisterConsentRequest {
        person_id: P1.to_string(),
        legal_basis: "INS_RISK_ASSESSMENT".to_string(),
        given_on: lefi::domain::clock::format_date(app.clock.today()),
        expires_on: lefi::domain::clock::format_date(app.clock.today() + time::Duration::days(30)),
        evidence_reference: evidence.to_string(),
    }
}

async fn consent_revoked_mid_stream_suspends_and_a_new_consent_resumes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let consents = pb::consent_service_client::ConsentServiceClient::new(channel.clone());
    let consent = consents
        .clone()
        .register_consent(risk_consent(&app, "FORM-7"))
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    let start = head_cursor(&app, &app.certs.insurer).await;
    let mut with_consent = new_sub("risk", P1, "INS_RISK_ASSESSMENT");
    with_consent.consent_id = consent.consent_id.clone();
    let created = subscribe(
        channel.clone(),
        vec![with_consent, new_sub("coord", P1, "INS_COORDINATION")],
    )
    .await;
    assert_eq!(created.created_count, 2, "{created:?}");
    let risk_id = created.results[0]
        .subscription
        .as_ref()
        .unwrap()
        .subscription_id
        .clone();
    let mut stream = open(channel.clone(), &start, 0).await;
    take(&mut stream, 4).await; // two empty creation snapshots

    let revoked = consents
        .clone()
        .revoke_consent(pb::RevokeConsentRequest {
            consent_id: consent.consent_id.clone(),
            reason: "withdrawn".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.suspended_subscription_count, 1);
    let notice = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Notice(n)) = &notice[0].event else {
        panic!("{notice:?}")
    };
    assert_eq!(n.subscription_id, risk_id);
    assert_eq!(n.state, pb::SubscriptionState::Suspended as i32);
    assert_eq!(n.reason, pb::SubscriptionStateReason::ConsentEnded as i32);
    // Later facts reach only the subscription that still holds.
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let after = drain(&mut stream).await;
    assert_eq!(after.len(), 1, "{after:?}");
    let Some(pb::stream_event::Event::Change(c)) = &after[0].event else {
        panic!()
    };
    assert_ne!(c.subscription_id, risk_id);
    let listed = pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
        .list_subscriptions(pb::ListSubscriptionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let risk = listed
        .subscriptions
        .iter()
        .find(|s| s.subscription_id == risk_id)
        .expect("listed");
    assert_eq!(risk.state, pb::SubscriptionState::Suspended as i32);

    // A stream started from scratch now gives the suspended subscription a notice, no snapshot.
    let mut fresh = open(channel.clone(), "", 0).await;
    let from_scratch = drain(&mut fresh).await;
    let about_risk: Vec<_> = from_scratch
        .iter()
        .filter(|e| format!("{:?}", e.event).contains(&risk_id))
        .collect();
    assert_eq!(about_risk.len(), 1, "{from_scratch:#?}");
    let Some(pb::stream_event::Event::Notice(n)) = &about_risk[0].event else {
        panic!("{about_risk:?}")
    };
    assert_eq!(n.state, pb::SubscriptionState::Suspended as i32);
    assert!(
        from_scratch
            .iter()
            .any(|e| matches!(&e.event, Some(pb::stream_event::Event::SnapshotEnd(_)))),
        "the other subscription still gets its snapshot"
    );

    // A new consent for the same person and basis resumes it: ACTIVE notice, then a snapshot as of
    // now (which holds the payment committed while it was suspended).
    let renewed = consents
        .clone()
        .register_consent(risk_consent(&app, "FORM-8"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.resumed_subscription_count, 1);
    let mut resumed = take(&mut stream, 2).await;
    while !matches!(
        resumed.last().and_then(|e| e.event.as_ref()),
        Some(pb::stream_event::Event::SnapshotEnd(_))
    ) {
        resumed.extend(take(&mut stream, 1).await);
    }
    let Some(pb::stream_event::Event::Notice(n)) = &resumed[0].event else {
        panic!("{resumed:?}")
    };
    assert_eq!(n.subscription_id, risk_id);
    assert_eq!(n.state, pb::SubscriptionState::Active as i32);
    assert_eq!(n.reason, pb::SubscriptionStateReason::Resumed as i32);
    let Some(pb::stream_event::Event::SnapshotBegin(b)) = &resumed[1].event else {
        panic!("{resumed:?}")
    };
    assert_eq!(b.subscription_id, risk_id);
    assert_eq!(b.reason, pb::SnapshotReason::SubscriptionResumed as i32);
    assert_eq!(b.event_number, n.event_number + 1, "numbers run on without a gap");
    assert!(matches!(
        &resumed.last().unwrap().event,
        Some(pb::stream_event::Event::SnapshotEnd(e)) if e.subscription_id == risk_id
    ));
    // From here, changes reach both subscriptions again.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    let both = take(&mut stream, 2).await;
    let mut to: Vec<&str> = both
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::stream_event::Event::Change(c)) => Some(c.subscription_id.as_str()),
            _ => None,
        })
        .collect();
    to.sort_unstable();
    to.dedup();
    assert_eq!(to.len(), 2, "one change to each subscription: {both:?}");
    app.stop().await;
}

async fn case_closed_mid_stream_ends_the_subscription(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.municipality).await;
    // Without a case reference the basis refuses.
    let refused = subscribe(channel.clone(), vec![new_sub("x", P1, "AUTH_SOCIAL_SERVICES")]).await;
    assert_eq!(refused.rejected_count, 1);
    assert_eq!(
        refused.results[0].error.as_ref().unwrap().reason,
        pb::ErrorReason::CaseReferenceRequired as i32
    );
    let start = head_cursor(&app, &app.certs.municipality).await;
    let mut item = new_sub("sn-1", P1, "AUTH_SOCIAL_SERVICES");
    item.case_reference = "SN-2026-17".to_string();
    let created = subscribe(channel.clone(), vec![item]).await;
    assert_eq!(created.created_count, 1, "{created:?}");
    let mut stream = open(channel.clone(), &start, 0).await;
    take(&mut stream, 2).await;
    let closed = pb::case_service_client::CaseServiceClient::new(channel.clone())
        .close_case(pb::CloseCaseRequest {
            case_reference: "SN-2026-17".to_string(),
            reason: "decided".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.ended_subscription_count, 1);
    let notice = take(&mut stream, 1).await;
    let Some(pb::stream_event::Event::Notice(n)) = &notice[0].event else {
        panic!("{notice:?}")
    };
    assert_eq!(n.reason, pb::SubscriptionStateReason::CaseClosed as i32);
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    assert!(
        drain(&mut stream).await.is_empty(),
        "nothing after the case closed"
    );
    // And the closed case cannot be used again.
    let mut again = new_sub("sn-2", P1, "AUTH_SOCIAL_SERVICES");
    again.case_reference = "SN-2026-17".to_string();
    let refused = subscribe(channel, vec![again]).await;
    assert_eq!(
        refused.results[0].error.as_ref().unwrap().reason,
        pb::ErrorReason::CaseClosed as i32
    );
    app.stop().await;
}

async fn party_terminated_ends_the_stream(backend: Backend) {
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
    let mut stream = open(channel.clone(), &start, 0).await;
    take(&mut stream, 2).await;
    app.schedule_termination(&app.insurer_id, app.clock.today() + time::Duration::days(1))
        .await;
    app.clock.advance(time::Duration::days(1));
    let (seen, status) = end_status(&mut stream).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let Some(pb::stream_event::Event::Notice(n)) = &seen[0].event else {
        panic!("{seen:?}")
    };
    assert_eq!(n.reason, pb::SubscriptionStateReason::PartyTerminated as i32);
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "PARTY_TERMINATED");
    app.stop().await;
}

async fn expired_cursor_then_full_refresh(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    // The history kept is pruned past the client's cursor.
    app.store
        .prune_delivery_history(app.clock.now_micros() + 1)
        .await
        .unwrap();
    let status = pb::delivery_service_client::DeliveryServiceClient::new(channel.clone())
        .stream(pb::StreamRequest {
            cursor: start.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "CURSOR_EXPIRED");
    let refresh = pb::delivery_service_client::DeliveryServiceClient::new(channel.clone())
        .request_full_refresh(pb::FullRefreshRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refresh.subscription_count, 1);
    let mut stream = open(channel, &refresh.cursor, 0).await;
    let events = take(&mut stream, 3).await;
    let Some(pb::stream_event::Event::SnapshotBegin(b)) = &events[0].event else {
        panic!("{events:?}")
    };
    assert_eq!(b.reason, pb::SnapshotReason::FullRefresh as i32);
    assert_eq!(b.event_number, 3, "creation snapshot 1, change 2, refresh 3");
    assert_eq!(records_of(&events).len(), 2);
    app.stop().await;
}

async fn forged_and_foreign_cursors_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let insurer_cursor = head_cursor(&app, &app.certs.insurer).await;
    let mut forged = insurer_cursor.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    for (who, cursor) in [
        (&app.certs.municipality, insurer_cursor.clone()),
        (&app.certs.insurer, String::from_utf8(forged).unwrap()),
        (&app.certs.insurer, "bm90IGEgY3Vyc29y".to_string()),
    ] {
        let status = pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(who).await)
            .stream(pb::StreamRequest {
                cursor,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason(&status), "CURSOR_INVALID");
    }
    app.stop().await;
}

/// A batch of the largest size, with references repeated inside it and references already
/// stored: every item is answered in order, as if the items had been sent one by one.
async fn a_full_batch_with_repeated_references_is_answered_item_by_item(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let stored = subscribe(channel.clone(), vec![new_sub("r1", P1, "INS_COORDINATION")]).await;
    assert_eq!(stored.created_count, 1);
    let stored_id = stored.results[0]
        .subscription
        .as_ref()
        .unwrap()
        .subscription_id
        .clone();
    let mut items: Vec<_> = (0..9_997)
        .map(|i| new_sub(&format!("r{i}"), P1, "INS_COORDINATION"))
        .collect();
    // r5 again with the same content, r6 again with other content, and r1 (stored) again.
    items.push(new_sub("r5", P1, "INS_COORDINATION"));
    let mut changed = new_sub("r6", P2, "INS_COORDINATION");
    changed.from_date = "2020-01-01".to_string();
    items.push(changed);
    items.push(new_sub("r1", P1, "INS_COORDINATION"));
    assert_eq!(items.len(), 10_000);
    let answer = subscribe(channel.clone(), items).await;
    assert_eq!(answer.results.len(), 10_000);
    assert_eq!(
        (
            answer.created_count,
            answer.unchanged_count,
            answer.rejected_count
        ),
        (9_996, 3, 1)
    );
    let id = |i: usize| {
        answer.results[i]
            .subscription
            .as_ref()
            .unwrap()
            .subscription_id
            .clone()
    };
    assert_eq!(id(1), stored_id, "r1 was stored before the batch");
    assert_eq!(
        id(9_997),
        id(5),
        "r5 repeated inside the batch is the one created"
    );
    assert_eq!(
        answer.results[9_998].error.as_ref().unwrap().reason,
        pb::ErrorReason::IdempotencyKeyReused as i32
    );
    assert_eq!(id(9_999), stored_id);
    let ids: std::collections::HashSet<String> = (0..9_997).map(id).collect();
    assert_eq!(ids.len(), 9_997, "every new reference got its own subscription");
    // The whole batch again: nothing new.
    let items: Vec<_> = (0..9_997)
        .map(|i| new_sub(&format!("r{i}"), P1, "INS_COORDINATION"))
        .collect();
    let again = subscribe(channel.clone(), items).await;
    assert_eq!((again.created_count, again.unchanged_count), (0, 9_997));
    assert_eq!(
        again.results[42].subscription.as_ref().unwrap().subscription_id,
        id(42)
    );
}

async fn subscriptions_are_idempotent_and_checked_item_by_item(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let mut bad_person = new_sub("bad", "19541011-3606", "INS_COORDINATION");
    bad_person.benefit_type_codes = vec!["SJP".to_string()];
    let mut not_granted = new_sub("fp-ap", P1, "INS_COORDINATION");
    not_granted.benefit_type_codes = vec!["AP".to_string()];
    let first = subscribe(
        channel.clone(),
        vec![
            new_sub("ok", P1, "INS_COORDINATION"),
            bad_person,
            not_granted,
            new_sub("risk", P1, "INS_RISK_ASSESSMENT"),
        ],
    )
    .await;
    let reasons: Vec<i32> = first
        .results
        .iter()
        .map(|r| r.error.as_ref().map_or(0, |e| e.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            0,
            pb::ErrorReason::PersonIdInvalid as i32,
            pb::ErrorReason::BenefitNotCovered as i32,
            pb::ErrorReason::ConsentRequired as i32
        ]
    );
    assert_eq!((first.created_count, first.rejected_count), (1, 3));
    assert!(!first.results[1].error.as_ref().unwrap().message.contains("3606"));
    // The same item again is UNCHANGED; the same reference with other content is refused.
    let again = subscribe(channel.clone(), vec![new_sub("ok", P1, "INS_COORDINATION")]).await;
    assert_eq!(again.unchanged_count, 1);
    assert_eq!(
        again.results[0].subscription.as_ref().unwrap().subscription_id,
        first.results[0].subscription.as_ref().unwrap().subscription_id
    );
    let mut changed = new_sub("ok", P2, "INS_COORDINATION");
    changed.from_date = "2020-01-01".to_string();
    let conflict = subscribe(channel.clone(), vec![changed]).await;
    assert_eq!(
        conflict.results[0].error.as_ref().unwrap().reason,
        pb::ErrorReason::IdempotencyKeyReused as i32
    );
    // Too large a batch is refused as a whole.
    let huge: Vec<_> = (0..10_001)
        .map(|i| new_sub(&format!("r{i}"), P1, "INS_COORDINATION"))
        .collect();
    let status = pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
        .create_subscriptions(pb::CreateSubscriptionsRequest { items: huge })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "BATCH_TOO_LARGE");
    // Listing and cancelling.
    let mut list = pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
        .list_subscriptions(pb::ListSubscriptionsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let page = list.message().await.unwrap().unwrap();
    assert_eq!(page.subscriptions.len(), 1);
    let id = page.subscriptions[0].subscription_id.clone();
    let cancelled = pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
        .cancel_subscription(pb::CancelSubscriptionRequest {
            subscription_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subscription
        .unwrap();
    assert_eq!(cancelled.state, pb::SubscriptionState::Ended as i32);
    assert_eq!(
        cancelled.state_reason,
        pb::SubscriptionStateReason::Cancelled as i32
    );
    // Another party cannot see it.
    let status = pb::subscription_service_client::SubscriptionServiceClient::new(
        app.party_channel(&app.certs.municipality).await,
    )
    .get_subscription(pb::GetSubscriptionRequest { subscription_id: id })
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "SUBSCRIPTION_NOT_FOUND");
    // Every decision was logged: 1 allowed + 2 policy denials in the first call (the malformed
    // person never reached the policy), 1 allowed for the replay.
    let logged = app.disclosures_by(&app.insurer_id).await;
    assert!(
        logged
            .iter()
            .filter(|e| e.entry.channel == lefi::domain::disclosure::Channel::SubscriptionOrder)
            .count()
            >= 4
    );
    app.stop().await;
}

/// Two server processes on one PostgreSQL database: a change ingested through one is delivered on
/// a stream held by the other, woken by LISTEN/NOTIFY (or at worst the replicas' 2 s head check;
/// the stream's heartbeat is far longer than the wait, so its own wake-up cannot explain it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lefi_no_test_postgres,
    ignore = "LEFI_TEST_POSTGRES_URL was not set when the tests were built (see README)"
)]
async fn replicas_on_one_postgres_deliver_each_others_changes() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let (_, replica_admin, replica_stop, replica_task) = app.start_replica().await;
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("a", P1, "INS_COORDINATION")],
    )
    .await;
    let mut stream =
        pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .stream(pb::StreamRequest {
                cursor: start,
                max_batch_records: 0,
                heartbeat_interval: Some(prost_types::Duration {
                    seconds: 300,
                    nanos: 0,
                }),
            })
            .await
            .unwrap()
            .into_inner();
    take(&mut stream, 2).await;

    // Ingest through the replica's admin API.
    let mut client =
        lefi::grpc::pb::lefi::admin::v1::register_admin_service_client::RegisterAdminServiceClient::new(
            app.channel_to(replica_admin, &app.certs.ingest).await,
        );
    let request = lefi::grpc::pb::lefi::admin::v1::IngestRequest {
        fact: Some(pay(P1, "PAY-R", 1, pb::RecordKind::New, 1)),
    };
    let mut answers = client
        .ingest(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    answers.message().await.unwrap().unwrap();

    let change = tokio::time::timeout(Duration::from_secs(10), take(&mut stream, 1))
        .await
        .expect("the other replica's change was not delivered");
    assert_eq!(kind(&change[0]), "change");
    replica_stop.cancel();
    replica_task.await.unwrap().unwrap();
    app.stop().await;
}

/// A client that stops reading holds the server to a bounded amount of work in progress: the
/// producer waits on the stream's small channel and HTTP/2 flow control instead of reading ahead.
/// Observable from outside: what was disclosed (logged before sending) stays far below what is
/// pending, until the client reads again, and then everything arrives exactly once.
async fn slow_client_holds_the_server_back(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    let total = 2_000;
    let facts: Vec<_> = (0..total)
        .map(|i| pay(P1, &format!("PAY{i}"), 1, pb::RecordKind::New, i))
        .collect();
    for chunk in facts.chunks(500) {
        accepted(&ingest(&app, chunk.to_vec()).await);
    }
    // A client with small HTTP/2 windows (64 KiB; tonic's defaults are megabytes), so that flow
    // control, not the client's buffer, is what holds the server back.
    let small_window = lefi::client::endpoint(
        &format!("https://localhost:{}", app.party_addr.port()),
        &app.client_pem(&app.certs.insurer),
        None,
    )
    .unwrap()
    .initial_stream_window_size(65_535)
    .initial_connection_window_size(65_535)
    .connect()
    .await
    .unwrap();
    let mut stream = open(small_window, &start, 0).await;
    take(&mut stream, 1).await;
    // Stop reading for a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let disclosed: u64 = app
        .disclosures_by(&app.insurer_id)
        .await
        .iter()
        .filter(|e| e.entry.channel == lefi::domain::disclosure::Channel::StreamDelivery)
        .map(|e| e.entry.record_count)
        .sum();
    assert!(
        disclosed < 1_000,
        "the server ran ahead of a client that does not read: {disclosed} of {total} records prepared"
    );
    // Reading again delivers the rest, each change once.
    let rest = take(&mut stream, total as usize + 1).await;
    let mut ids: Vec<String> = records_of(&rest)
        .into_iter()
        .map(|r| r.record_id.clone())
        .collect();
    assert_eq!(ids.len(), total as usize);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total as usize);
    app.stop().await;
}
