//! What the proto promises and the server once did otherwise (issue 14): batch numbering,
//! CommitCursor, call-level refusals, what the disclosure log records, full-refresh checks, list
//! filters, the request id in every error.

use lefi::domain::disclosure::{Channel as LogChannel, Decision};
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::delivery::{head_cursor, new_sub, open, pay, subscribe, take};
use crate::helpers::{Backend, TestApp, reason};
use crate::policy::extra_party;
use crate::register::{P1, P2, accepted, ingest};

backend_tests!(
    snapshot_batches_are_numbered_from_one,
    commit_cursor_reports_the_position_the_head_and_the_lag,
    a_party_whose_agreement_is_not_in_force_is_refused_the_whole_call,
    an_allowed_order_is_logged_naming_its_subscription,
    refusals_about_a_valid_person_are_logged_and_invalid_numbers_are_not,
    full_refresh_checks_its_request_and_records_the_reason,
    unknown_enum_numbers_in_list_filters_are_refused_naming_the_field,
    every_error_names_its_request_id,
);

const P1_12: &str = "199007042386";

fn metadata(status: &Status, key: &str) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, expected: &str) -> Status {
    let status = result.expect_err("the call must be refused");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (code, expected),
        "{status:?}"
    );
    status
}

fn delivery(channel: Channel) -> pb::delivery_service_client::DeliveryServiceClient<Channel> {
    pb::delivery_service_client::DeliveryServiceClient::new(channel)
}

fn subscriptions(channel: Channel) -> pb::subscription_service_client::SubscriptionServiceClient<Channel> {
    pb::subscription_service_client::SubscriptionServiceClient::new(channel)
}

fn query(person: &str, benefit: &str, basis: &str) -> pb::QueryPersonRequest {
    pb::QueryPersonRequest {
        person_id: person.to_string(),
        benefit_type_codes: vec![benefit.to_string()],
        period: Some(pb::DateRange {
            from: "2020-01-01".to_string(),
            to: String::new(),
        }),
        legal_basis: basis.to_string(),
        ..Default::default()
    }
}

async fn run_query(channel: Channel, request: pb::QueryPersonRequest) -> Result<(), Status> {
    let mut stream = pb::query_service_client::QueryServiceClient::new(channel)
        .query_person(request)
        .await?
        .into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

async fn snapshot_batches_are_numbered_from_one(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let facts = (1..=5)
        .map(|i| pay(P1, &format!("PAY{i}"), 1, pb::RecordKind::New, i))
        .collect();
    accepted(&ingest(&app, facts).await);
    let channel = app.party_channel(&app.certs.insurer).await;
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    let mut stream = open(channel.clone(), &start, 2).await;
    let events = take(&mut stream, 5).await;
    let batches: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::stream_event::Event::Records(b)) => Some(b.batch_index),
            _ => None,
        })
        .collect();
    assert_eq!(batches, [1, 2, 3]);
    let Some(pb::stream_event::Event::SnapshotEnd(end)) = &events[4].event else {
        panic!("{events:?}")
    };
    assert_eq!((end.record_count, end.batch_count), (5, 3));
    // Resumed after the first batch, the numbering continues.
    let mut resumed = open(channel, &events[1].cursor, 2).await;
    let rest = take(&mut resumed, 3).await;
    let Some(pb::stream_event::Event::Records(b)) = &rest[0].event else {
        panic!("{rest:?}")
    };
    assert_eq!(b.batch_index, 2);
    app.stop().await;
}

async fn commit_cursor_reports_the_position_the_head_and_the_lag(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let start = head_cursor(&app, &app.certs.insurer).await;
    subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 1)]).await);
    let mut stream = open(channel.clone(), &start, 0).await;
    let events = take(&mut stream, 3).await;
    let Some(pb::stream_event::Event::Change(change)) = &events[2].event else {
        panic!("{events:?}")
    };
    let commit = |cursor: &str, consumer: &str| {
        let request = pb::CommitCursorRequest {
            cursor: cursor.to_string(),
            consumer: consumer.to_string(),
        };
        let mut client = delivery(channel.clone());
        async move { client.commit_cursor(request).await }
    };
    // At the head: no lag.
    let at_head = commit(&events[2].cursor, "").await.unwrap().into_inner();
    assert_eq!(at_head.register_sequence, change.register_sequence);
    assert_eq!(at_head.head_sequence, app.store.head_seq().await.unwrap());
    assert!(at_head.cursor_recorded_at.is_none());
    // Behind: the head moved on, and the time of the event at the cursor tells the lag.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    let behind = commit(&events[2].cursor, "claims-prod")
        .await
        .unwrap()
        .into_inner();
    assert_eq!(behind.register_sequence, change.register_sequence);
    assert!(behind.head_sequence > behind.register_sequence);
    assert!(behind.cursor_recorded_at.is_some());
    // Both consumers' positions are recorded, for the agency's lag monitoring.
    let commits = app.store.cursor_commits(&app.insurer_id).await.unwrap();
    let recorded: Vec<(&str, u64)> = commits
        .iter()
        .map(|c| (c.consumer.as_str(), c.register_sequence))
        .collect();
    assert_eq!(
        recorded,
        [
            ("claims-prod", change.register_sequence),
            ("default", change.register_sequence)
        ]
    );
    let long = "x".repeat(65);
    refused(
        commit(&events[2].cursor, &long).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    refused(
        commit("forged", "").await,
        Code::InvalidArgument,
        "CURSOR_INVALID",
    );
    app.stop().await;
}

async fn a_party_whose_agreement_is_not_in_force_is_refused_the_whole_call(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let future = extra_party(
        &app,
        "556000-0001",
        "Framtida Försäkring AB",
        lefi::domain::PartyKind::Insurer,
        &["INS_COORDINATION"],
        app.clock.today() + time::Duration::days(30),
    )
    .await;
    let channel = app.party_channel(&future).await;
    let items = vec![
        new_sub("a", P1, "INS_COORDINATION"),
        new_sub("b", "19541011-3606", "INS_COORDINATION"),
    ];
    let call = subscriptions(channel.clone())
        .create_subscriptions(pb::CreateSubscriptionsRequest { items })
        .await;
    refused(call, Code::PermissionDenied, "AGREEMENT_NOT_IN_FORCE");
    // Nothing was stored.
    let listed = subscriptions(channel)
        .list_subscriptions(pb::ListSubscriptionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(listed.subscriptions.is_empty());
    // The item about a valid person is a decision about that person, logged; the other names
    // nobody.
    let logged = app.disclosures_about(P1_12).await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].entry.decision, Decision::Denied);
    assert_eq!(
        logged[0].entry.denial_reason.as_deref(),
        Some("AGREEMENT_NOT_IN_FORCE")
    );
    app.stop().await;
}

async fn an_allowed_order_is_logged_naming_its_subscription(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let created = subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    let id = created.results[0]
        .subscription
        .as_ref()
        .unwrap()
        .subscription_id
        .clone();
    // The same reference again with other content is refused, and that is logged too.
    let mut other = new_sub("a", P1, "INS_COORDINATION");
    other.from_date = "2025-01-01".to_string();
    let conflict = subscribe(channel, vec![other]).await;
    assert_eq!(
        conflict.results[0].error.as_ref().unwrap().reason,
        pb::ErrorReason::IdempotencyKeyReused as i32
    );
    let orders: Vec<_> = app
        .disclosures_by(&app.insurer_id)
        .await
        .into_iter()
        .filter(|e| e.entry.channel == LogChannel::SubscriptionOrder)
        .collect();
    assert_eq!(orders.len(), 2, "{orders:?}");
    assert_eq!(orders[0].entry.decision, Decision::Allowed);
    assert_eq!(orders[0].entry.subscription_id.as_deref(), Some(id.as_str()));
    assert_eq!(orders[1].entry.decision, Decision::Denied);
    assert_eq!(
        orders[1].entry.denial_reason.as_deref(),
        Some("IDEMPOTENCY_KEY_REUSED")
    );
    app.stop().await;
}

async fn refusals_about_a_valid_person_are_logged_and_invalid_numbers_are_not(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    for (request, expected) in [
        (query(P1, "NOPE", "INS_COORDINATION"), "UNKNOWN_BENEFIT_TYPE"),
        (query(P1, "SJP", "NO_SUCH_BASIS"), "UNKNOWN_BASIS"),
        (
            query("19541011-3606", "SJP", "INS_COORDINATION"),
            "PERSON_ID_INVALID",
        ),
    ] {
        let status = run_query(channel.clone(), request).await.unwrap_err();
        assert_eq!(reason(&status), expected);
    }
    let mut unknown_benefit = new_sub("x", P2, "INS_COORDINATION");
    unknown_benefit.benefit_type_codes = vec!["NOPE".to_string()];
    let answered = subscribe(
        channel,
        vec![unknown_benefit, new_sub("y", "19541011-3606", "INS_COORDINATION")],
    )
    .await;
    assert_eq!(answered.rejected_count, 2);
    let about_p1 = app.disclosures_about(P1_12).await;
    let reasons: Vec<(LogChannel, Option<&str>)> = about_p1
        .iter()
        .map(|e| (e.entry.channel, e.entry.denial_reason.as_deref()))
        .collect();
    assert_eq!(
        reasons,
        [
            (LogChannel::Query, Some("UNKNOWN_BENEFIT_TYPE")),
            (LogChannel::Query, Some("UNKNOWN_BASIS")),
        ]
    );
    let about_p2 = app.disclosures_about("199501132386").await;
    assert_eq!(about_p2.len(), 1);
    assert_eq!(about_p2[0].entry.channel, LogChannel::SubscriptionOrder);
    assert_eq!(
        about_p2[0].entry.denial_reason.as_deref(),
        Some("UNKNOWN_BENEFIT_TYPE")
    );
    // Nothing names the invalid number: every entry of the party is about P1 or P2.
    let all = app.disclosures_by(&app.insurer_id).await;
    assert_eq!(all.len(), 3, "{all:?}");
    app.stop().await;
}

async fn full_refresh_checks_its_request_and_records_the_reason(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let created = subscribe(channel.clone(), vec![new_sub("a", P1, "INS_COORDINATION")]).await;
    let id = created.results[0]
        .subscription
        .as_ref()
        .unwrap()
        .subscription_id
        .clone();
    let refresh = |ids: Vec<String>, reason: String| {
        let mut client = delivery(channel.clone());
        async move {
            client
                .request_full_refresh(pb::FullRefreshRequest {
                    subscription_ids: ids,
                    reason,
                })
                .await
        }
    };
    let head = app.store.head_seq().await.unwrap();
    refused(
        refresh(vec![id.clone(), "sub_not_yours".to_string()], String::new()).await,
        Code::NotFound,
        "SUBSCRIPTION_NOT_FOUND",
    );
    let status = refused(
        refresh(vec![id.clone()], "x".repeat(201)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field").as_deref(), Some("reason"));
    assert_eq!(
        app.store.head_seq().await.unwrap(),
        head,
        "a refused refresh changes nothing"
    );
    let done = refresh(vec![id.clone(), id], "copy damaged after a restore".to_string())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.subscription_count, 1);
    let recorded = app.store.full_refreshes(&app.insurer_id).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].reason.as_deref(),
        Some("copy damaged after a restore")
    );
    app.stop().await;
}

async fn unknown_enum_numbers_in_list_filters_are_refused_naming_the_field(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.municipality).await;
    let field = |status: Status| metadata(&status, "field");
    let listed = subscriptions(channel.clone())
        .list_subscriptions(pb::ListSubscriptionsRequest {
            states: vec![pb::SubscriptionState::Active as i32, 42],
            ..Default::default()
        })
        .await;
    let status = refused(listed, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(field(status).as_deref(), Some("states[1]"));
    let consents = pb::consent_service_client::ConsentServiceClient::new(channel.clone())
        .list_consents(pb::ListConsentsRequest {
            states: vec![99],
            ..Default::default()
        })
        .await;
    assert_eq!(
        field(refused(consents, Code::InvalidArgument, "INVALID_ARGUMENT")).as_deref(),
        Some("states[0]")
    );
    let cases = pb::case_service_client::CaseServiceClient::new(channel)
        .list_cases(pb::ListCasesRequest {
            states: vec![0],
            ..Default::default()
        })
        .await;
    assert_eq!(
        field(refused(cases, Code::InvalidArgument, "INVALID_ARGUMENT")).as_deref(),
        Some("states[0]")
    );
    let admin = app.admin_channel(&app.certs.operator).await;
    let parties = admin_pb::party_admin_service_client::PartyAdminServiceClient::new(admin.clone())
        .list_parties(admin_pb::ListPartiesRequest {
            kinds: vec![77],
            ..Default::default()
        })
        .await;
    assert_eq!(
        field(refused(parties, Code::InvalidArgument, "INVALID_ARGUMENT")).as_deref(),
        Some("kinds[0]")
    );
    let consents = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(admin)
        .list_consents(admin_pb::ListConsentsRequest {
            states: vec![5],
            ..Default::default()
        })
        .await;
    assert_eq!(
        field(refused(consents, Code::InvalidArgument, "INVALID_ARGUMENT")).as_deref(),
        Some("states[0]")
    );
    app.stop().await;
}

async fn every_error_names_its_request_id(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let header = |status: &Status| {
        status
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    // A refused field, a policy denial, a refused identity, a stream refused at its start.
    let field = run_query(channel.clone(), query("19541011-3606", "SJP", "INS_COORDINATION"))
        .await
        .unwrap_err();
    let denial = run_query(channel.clone(), query(P1, "SJP", "AUTH_SOCIAL_SERVICES"))
        .await
        .unwrap_err();
    let stranger =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.stranger).await)
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .unwrap_err();
    let cursor = delivery(channel.clone())
        .stream(pb::StreamRequest {
            cursor: "forged".to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    for status in [&field, &denial, &stranger, &cursor] {
        let id = metadata(status, "request_id");
        assert!(id.is_some(), "{status:?}");
        assert_eq!(id, header(status), "{status:?}");
    }
    // A stream that ends later (here: the server drains) names the stream's request id too.
    let response = delivery(channel)
        .stream(pb::StreamRequest::default())
        .await
        .unwrap();
    let stream_id = response
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut stream = response.into_inner();
    stream.message().await.unwrap();
    app.begin_shutdown();
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(reason(&ended), "SERVER_SHUTTING_DOWN");
    assert!(stream_id.is_some());
    assert_eq!(metadata(&ended, "request_id"), stream_id);
    app.stop().await;
}
