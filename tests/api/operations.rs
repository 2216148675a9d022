//! Operations: each party's limits (streams at once, request rate) hold for that party and no
//! other, operators set a party's own limits (audited), and the consumers listing shows each
//! party's open streams, confirmed cursors, lag, cursor expiry and last full refresh.

use std::time::Duration;

use lefi::domain::limits::PartyLimits;
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::delivery::{Events, drain, new_sub, open, pay, records_of, subscribe, take};
use crate::helpers::{Backend, SpawnOptions, TestApp, idempotency_key, reason};
use crate::register::{P1, P2, accepted, case, ingest};

backend_tests!(
    a_party_over_its_stream_limit_is_refused_and_another_is_not,
    a_party_over_its_rate_waits_as_told_and_another_is_not,
    operators_set_a_partys_own_limits_and_the_change_is_audited,
    consumers_show_streams_confirmations_lag_expiry_and_refreshes,
    a_reloaded_crl_ends_the_revoked_partys_streams_and_calls,
    the_agency_suspends_resumes_and_ends_subscriptions_on_a_live_stream,
);

fn metadata(status: &tonic::Status, key: &str) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_else(|| panic!("no metadata {key:?} in {status:?}"))
}

async fn try_open(channel: Channel) -> Result<Events, tonic::Status> {
    pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .stream(pb::StreamRequest {
            heartbeat_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Opens a stream of `channel`'s party, retrying while the server has not yet noticed that a
/// stream the test closed is gone (its slot is freed when its task sees the client leave).
async fn open_when_free(channel: Channel) -> Events {
    for _ in 0..100 {
        match try_open(channel.clone()).await {
            Ok(stream) => return stream,
            Err(e) if reason(&e) == "TOO_MANY_STREAMS" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the closed stream's slot was never freed");
}

fn limits(max_streams: u32, requests_per_second: u32, burst: u32) -> SpawnOptions {
    SpawnOptions {
        party_limits: Some(PartyLimits {
            max_streams,
            requests_per_second,
            burst,
        }),
        ..SpawnOptions::default()
    }
}

async fn a_party_over_its_stream_limit_is_refused_and_another_is_not(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, limits(2, 1000, 1000)).await else {
        return;
    };
    let insurer = app.party_channel(&app.certs.insurer).await;
    let first = try_open(insurer.clone()).await.unwrap();
    let _second = try_open(insurer.clone()).await.unwrap();
    let refused = try_open(insurer.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused), "TOO_MANY_STREAMS");
    assert_eq!(metadata(&refused, "max"), "2");

    // The municipality's streams are its own.
    let municipality = app.party_channel(&app.certs.municipality).await;
    let _m1 = try_open(municipality.clone()).await.unwrap();
    let _m2 = try_open(municipality.clone()).await.unwrap();

    // A stream that ends gives its slot back.
    drop(first);
    let _third = open_when_free(insurer).await;
    app.stop().await;
}

async fn a_party_over_its_rate_waits_as_told_and_another_is_not(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, limits(10, 1, 4)).await else {
        return;
    };
    let mut insurer =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.insurer).await);
    let mut municipality =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.municipality).await);
    // A burst of 4, then 1 a second: 16 calls at once cannot all pass.
    let mut refused = None;
    let mut answered = 0;
    for _ in 0..16 {
        match insurer.who_am_i(pb::WhoAmIRequest {}).await {
            Ok(_) => answered += 1,
            Err(e) => refused = Some(e),
        }
    }
    let refused = refused.expect("16 calls at once passed a burst of 4");
    assert!(answered >= 4, "the burst was not honoured: {answered} answered");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused), "RATE_LIMITED");
    let wait = refused
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("a RetryInfo delay");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    let seconds: u64 = metadata(&refused, "retry_after_seconds").parse().unwrap();
    assert!(seconds >= 1, "{seconds}");

    // The other party was not slowed down by the first one's excess.
    for _ in 0..4 {
        municipality.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    }
    // Having waited as told, the party is answered again.
    tokio::time::sleep(wait).await;
    insurer.who_am_i(pb::WhoAmIRequest {}).await.unwrap();

    // Health and the admin API are not the party's budget.
    for _ in 0..8 {
        tonic_health::pb::health_client::HealthClient::new(app.party_channel(&app.certs.insurer).await)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .unwrap();
    }
    app.stop().await;
}

async fn set_limits(
    app: &TestApp,
    who: &lefi::dev::certs::Issued,
    party_id: &str,
    limits: admin_pb::PartyLimits,
) -> Result<admin_pb::SetPartyLimitsResponse, tonic::Status> {
    admin_pb::party_admin_service_client::PartyAdminServiceClient::new(app.admin_channel(who).await)
        .set_party_limits(admin_pb::SetPartyLimitsRequest {
            idempotency_key: idempotency_key(),
            party_id: party_id.to_string(),
            limits: Some(limits),
            reason: "batch insurer, agreed with the agency".to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn operators_set_a_partys_own_limits_and_the_change_is_audited(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, limits(1, 1000, 1000)).await else {
        return;
    };
    let insurer = app.party_channel(&app.certs.insurer).await;
    let _first = try_open(insurer.clone()).await.unwrap();
    assert_eq!(
        reason(&try_open(insurer.clone()).await.unwrap_err()),
        "TOO_MANY_STREAMS"
    );

    // Only an operator sets limits, each at least 1.
    let three = admin_pb::PartyLimits {
        max_streams: Some(3),
        ..Default::default()
    };
    let denied = set_limits(&app, &app.certs.auditor, &app.insurer_id, three)
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let zero = admin_pb::PartyLimits {
        burst: Some(0),
        ..Default::default()
    };
    let invalid = set_limits(&app, &app.certs.operator, &app.insurer_id, zero)
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
    let unknown = set_limits(&app, &app.certs.operator, "pty_nobody", three)
        .await
        .unwrap_err();
    assert_eq!(reason(&unknown), "PARTY_NOT_FOUND");

    let set = set_limits(&app, &app.certs.operator, &app.insurer_id, three)
        .await
        .unwrap();
    assert_eq!(set.limits, Some(three));
    // In force at the party's next call: two more streams, not three.
    let _second = try_open(insurer.clone()).await.unwrap();
    let _third = try_open(insurer.clone()).await.unwrap();
    let refused = try_open(insurer.clone()).await.unwrap_err();
    assert_eq!(metadata(&refused, "max"), "3");
    // The other party keeps the default.
    let municipality = app.party_channel(&app.certs.municipality).await;
    let _m = try_open(municipality.clone()).await.unwrap();
    assert_eq!(
        reason(&try_open(municipality).await.unwrap_err()),
        "TOO_MANY_STREAMS"
    );

    // The party shows its own limits, and its history says who set what, when and why.
    let mut admin = admin_pb::party_admin_service_client::PartyAdminServiceClient::new(
        app.admin_channel(&app.certs.operator).await,
    );
    let party = admin
        .get_party(admin_pb::GetPartyRequest {
            key: Some(admin_pb::get_party_request::Key::PartyId(app.insurer_id.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(party.limits, Some(three));
    let history = insurer_history(&app).await;
    let entry = history
        .iter()
        .find(|e| e.action == admin_pb::PartyAction::SetLimits as i32)
        .expect("a SET_LIMITS entry");
    assert_eq!(entry.operator_name, "Test Operatör");
    let details: serde_json::Value = serde_json::from_str(&entry.details_json).unwrap();
    assert_eq!(details["after"]["max_streams"], 3);
    assert_eq!(details["before"]["max_streams"], serde_json::Value::Null);
    assert_eq!(details["reason"], "batch insurer, agreed with the agency");

    // An empty set returns the party to the defaults.
    let back = set_limits(&app, &app.certs.operator, &app.insurer_id, Default::default())
        .await
        .unwrap();
    assert_eq!(back.limits, Some(admin_pb::PartyLimits::default()));
    assert_eq!(reason(&try_open(insurer).await.unwrap_err()), "TOO_MANY_STREAMS");
    app.stop().await;
}

async fn list_consumers(
    app: &TestApp,
    party_id: &str,
) -> Result<admin_pb::ListConsumersResponse, tonic::Status> {
    admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(
        app.admin_channel(&app.certs.auditor).await,
    )
    .list_consumers(admin_pb::ListConsumersRequest {
        party_id: party_id.to_string(),
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn consumers_show_streams_confirmations_lag_expiry_and_refreshes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(
        &ingest(
            &app,
            vec![case(P1, "C1", 1), pay(P1, "PAY1", 1, pb::RecordKind::New, 1)],
        )
        .await,
    );
    let insurer = app.party_channel(&app.certs.insurer).await;
    subscribe(insurer.clone(), vec![new_sub("ref-1", P1, "INS_COORDINATION")]).await;
    let mut stream = open(insurer.clone(), "", 0).await;
    let snapshot = drain(&mut stream).await;
    let mut delivery = pb::delivery_service_client::DeliveryServiceClient::new(insurer.clone());
    let committed = delivery
        .commit_cursor(pb::CommitCursorRequest {
            cursor: snapshot.last().unwrap().cursor.clone(),
            consumer: "system-a".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    delivery
        .request_full_refresh(pb::FullRefreshRequest {
            subscription_ids: Vec::new(),
            reason: "our database was restored".to_string(),
        })
        .await
        .unwrap();
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    let changes = drain(&mut stream).await;
    assert!(!changes.is_empty());

    let listing = list_consumers(&app, "").await.unwrap();
    assert!(
        listing.replica.contains(&std::process::id().to_string()),
        "{}",
        listing.replica
    );
    assert_eq!(
        listing.history_retention.map(|d| d.seconds as u64),
        Some(lefi::config::DEFAULT_HISTORY_RETENTION.as_secs())
    );
    let names: Vec<&str> = listing.consumers.iter().map(|c| c.party_id.as_str()).collect();
    assert!(names.contains(&app.municipality_id.as_str()), "{names:?}");
    let c = listing
        .consumers
        .iter()
        .find(|c| c.party_id == app.insurer_id)
        .expect("the insurer is listed");
    assert_eq!(c.open_streams.len(), 1, "{c:?}");
    let s = &c.open_streams[0];
    assert!(s.peer.starts_with("127.0.0.1:"), "{s:?}");
    assert_eq!(s.from_sequence, 0);
    assert!(s.delivered_sequence >= committed.register_sequence, "{s:?}");
    assert_eq!(c.last_delivered_sequence, s.delivered_sequence);
    assert_eq!(c.committed_cursors.len(), 1);
    assert_eq!(c.committed_cursors[0].consumer, "system-a");
    assert_eq!(
        c.committed_cursors[0].register_sequence,
        committed.register_sequence
    );
    assert_eq!(
        c.lag_sequences,
        Some(listing.head_sequence - committed.register_sequence)
    );
    assert!(c.lag_sequences.unwrap() >= 1);
    // Behind by at least one change: its cursor expires one retention after that change.
    let expires = c.cursor_expires_at.expect("an expiry while behind");
    let read_at = listing.read_at.unwrap().seconds;
    let retention = lefi::config::DEFAULT_HISTORY_RETENTION.as_secs() as i64;
    assert!(
        (read_at + retention - 120..=read_at + retention).contains(&expires.seconds),
        "{expires:?} vs read at {read_at}"
    );
    let refresh = c.last_full_refresh.as_ref().expect("the full refresh");
    assert_eq!(refresh.reason, "our database was restored");
    assert_eq!(refresh.subscription_count, 1);
    let limits = c.limits.unwrap();
    assert!(limits.max_streams.is_some() && limits.requests_per_second.is_some() && limits.burst.is_some());

    // The municipality never streamed nor confirmed.
    let m = list_consumers(&app, &app.municipality_id).await.unwrap();
    assert_eq!(m.consumers.len(), 1);
    assert!(m.consumers[0].open_streams.is_empty());
    assert_eq!(m.consumers[0].lag_sequences, None);
    assert_eq!(m.consumers[0].cursor_expires_at, None);

    assert_eq!(
        reason(&list_consumers(&app, "pty_nobody").await.unwrap_err()),
        "PARTY_NOT_FOUND"
    );
    let ingest_role = admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(
        app.admin_channel(&app.certs.ingest).await,
    )
    .list_consumers(admin_pb::ListConsumersRequest::default())
    .await
    .unwrap_err();
    assert_eq!(ingest_role.code(), Code::PermissionDenied);

    // A closed stream leaves the listing.
    drop(stream);
    for _ in 0..100 {
        let now = list_consumers(&app, &app.insurer_id).await.unwrap();
        if now.consumers[0].open_streams.is_empty() {
            app.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the closed stream stayed in the listing");
}

async fn crls(
    app: &TestApp,
    who: &lefi::dev::certs::Issued,
    reload: bool,
) -> Result<admin_pb::ListCrlsResponse, tonic::Status> {
    let mut client = admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(
        app.admin_channel(who).await,
    );
    if reload {
        client.reload_crls(admin_pb::ReloadCrlsRequest {}).await
    } else {
        client.list_crls(admin_pb::ListCrlsRequest {}).await
    }
    .map(tonic::Response::into_inner)
}

/// Reads until the stream ends; its final status.
async fn ended(stream: &mut Events) -> tonic::Status {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream did not end within 10 s")
        {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended OK"),
            Err(status) => return status,
        }
    }
}

async fn a_reloaded_crl_ends_the_revoked_partys_streams_and_calls(backend: Backend) {
    let options = SpawnOptions {
        crl_file: true,
        ..SpawnOptions::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let crl_file = app.settings.tls.crl_files[0].clone();
    // (The same test on the other backend sends this process a SIGHUP too, which reloads this
    // server's file as well: counts are compared, not assumed.)
    let before = crls(&app, &app.certs.auditor, false).await.unwrap();
    assert_eq!(before.crls.len(), 1);
    assert_eq!(before.crls[0].number, "1");
    assert_eq!(before.crls[0].revoked_count, 0);
    let next = before.crls[0].next_update.unwrap().seconds;
    let week = time::OffsetDateTime::now_utc().unix_timestamp() + 7 * 24 * 3600;
    assert!((week - 600..=week + 600).contains(&next), "{next} vs {week}");

    // The insurer streams and keeps a connection open for calls.
    let insurer = app.party_channel(&app.certs.insurer).await;
    subscribe(insurer.clone(), vec![new_sub("ref-1", P1, "INS_COORDINATION")]).await;
    let mut stream = open(insurer.clone(), "", 0).await;
    drain(&mut stream).await;
    let mut party = pb::party_service_client::PartyServiceClient::new(insurer.clone());
    party.who_am_i(pb::WhoAmIRequest {}).await.unwrap();

    // The PKI revokes the insurer's certificate in CRL number 2; only an operator reloads.
    let revoking = app
        .certs
        .ca
        .crl_pem_numbered(std::slice::from_ref(&app.certs.insurer.serial), 2)
        .unwrap();
    std::fs::write(&crl_file, revoking).unwrap();
    let denied = crls(&app, &app.certs.auditor, true).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let reloaded = crls(&app, &app.certs.operator, true).await.unwrap();
    assert!(reloaded.reloads > before.reloads);
    assert_eq!(reloaded.crls[0].number, "2");
    assert_eq!(reloaded.crls[0].revoked_count, 1);

    // Its open stream ends, its open connection is refused, and a new handshake fails.
    let end = ended(&mut stream).await;
    assert_eq!(end.code(), Code::Unauthenticated, "{end:?}");
    assert_eq!(reason(&end), "CERTIFICATE_REVOKED");
    let refused = party.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(reason(&refused), "CERTIFICATE_REVOKED");
    let fresh = app.lazy_channel(app.party_addr, &app.client_pem(&app.certs.insurer));
    pb::party_service_client::PartyServiceClient::new(fresh)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    // The municipality is not affected.
    pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.municipality).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap();
    let (_, scrape) = crate::metrics::http(app.metrics_addr, "GET", "/metrics").await;
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("lefi_crl_number{") && l.ends_with(" 2.0")),
        "{scrape}"
    );
    assert!(
        crate::metrics::sample(&scrape, "lefi_crl_reloads_total{outcome=\"ok\"}").is_some_and(|n| n >= 1.0),
        "{scrape}"
    );

    // A broken file is refused; the CRLs in force stay.
    std::fs::write(
        &crl_file,
        "-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let failed = crls(&app, &app.certs.operator, true).await.unwrap_err();
    assert_eq!(failed.code(), Code::FailedPrecondition, "{failed:?}");
    assert_eq!(reason(&failed), "CRL_RELOAD_FAILED");
    assert_eq!(metadata(&failed, "file"), crl_file.display().to_string());
    assert_eq!(
        crls(&app, &app.certs.auditor, false).await.unwrap().crls[0].number,
        "2"
    );
    assert_eq!(
        reason(&party.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err()),
        "CERTIFICATE_REVOKED"
    );

    // SIGHUP reloads too: CRL number 3 lifts the revocation.
    let lifting = app.certs.ca.crl_pem_numbered(&[], 3).unwrap();
    std::fs::write(&crl_file, lifting).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let mut lifted = false;
    for _ in 0..100 {
        if crls(&app, &app.certs.auditor, false).await.unwrap().crls[0].number == "3" {
            lifted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(lifted, "SIGHUP did not reload the CRLs");
    party.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    app.stop().await;
}

async fn agency(
    app: &TestApp,
    who: &lefi::dev::certs::Issued,
    action: &str,
    party_id: &str,
    scope: Option<admin_pb::agency_subscriptions_request::Scope>,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(
        app.admin_channel(who).await,
    );
    let request = admin_pb::AgencySubscriptionsRequest {
        party_id: party_id.to_string(),
        scope,
        reason: format!("follow-up review 2026/17: {action}"),
    };
    match action {
        "suspend" => client.suspend_subscriptions(request).await,
        "resume" => client.resume_subscriptions(request).await,
        _ => client.end_subscriptions(request).await,
    }
    .map(|r| r.into_inner().subscription_ids)
}

fn notice(event: &pb::StreamEvent) -> &pb::SubscriptionNotice {
    match &event.event {
        Some(pb::stream_event::Event::Notice(n)) => n,
        other => panic!("not a notice: {other:?}"),
    }
}

async fn the_agency_suspends_resumes_and_ends_subscriptions_on_a_live_stream(backend: Backend) {
    use admin_pb::agency_subscriptions_request::Scope;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(
        &ingest(
            &app,
            vec![
                case(P1, "C1", 1),
                pay(P1, "PAY1", 1, pb::RecordKind::New, 1),
                pay(P2, "PAY9", 1, pb::RecordKind::New, 9),
            ],
        )
        .await,
    );
    let insurer = app.party_channel(&app.certs.insurer).await;
    let created = subscribe(
        insurer.clone(),
        vec![
            new_sub("one", P1, "INS_COORDINATION"),
            new_sub("two", P2, "INS_COORDINATION"),
        ],
    )
    .await;
    let id = |i: usize| {
        created.results[i]
            .subscription
            .as_ref()
            .unwrap()
            .subscription_id
            .clone()
    };
    let (s1, s2) = (id(0), id(1));
    let mut stream = open(insurer.clone(), "", 0).await;
    let first = drain(&mut stream).await;
    let p1_records: usize = first
        .iter()
        .map(|e| match &e.event {
            Some(pb::stream_event::Event::Records(b)) if b.subscription_id == s1 => b.records.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(p1_records, 2, "{first:?}");

    // Only an operator acts, on a named scope of a known party.
    let person = || Some(Scope::PersonId(P1.to_string()));
    let denied = agency(&app, &app.certs.auditor, "suspend", &app.insurer_id, person())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let no_scope = agency(&app, &app.certs.operator, "suspend", &app.insurer_id, None)
        .await
        .unwrap_err();
    assert_eq!(no_scope.code(), Code::InvalidArgument);
    let unknown = Some(Scope::SubscriptionId("sub_nothing".to_string()));
    let missing = agency(&app, &app.certs.operator, "suspend", &app.insurer_id, unknown)
        .await
        .unwrap_err();
    assert_eq!(reason(&missing), "SUBSCRIPTION_NOT_FOUND");
    let nobody = agency(&app, &app.certs.operator, "suspend", "pty_nobody", person())
        .await
        .unwrap_err();
    assert_eq!(reason(&nobody), "PARTY_NOT_FOUND");

    // Suspending the person's subscriptions: the stream hears it, with the reason.
    let suspended = agency(&app, &app.certs.operator, "suspend", &app.insurer_id, person())
        .await
        .unwrap();
    assert_eq!(suspended, vec![s1.clone()]);
    let heard = take(&mut stream, 1).await;
    let n = notice(&heard[0]);
    assert_eq!(n.subscription_id, s1);
    assert_eq!(n.state, pb::SubscriptionState::Suspended as i32);
    assert_eq!(n.reason, pb::SubscriptionStateReason::SuspendedByAgency as i32);
    assert_eq!(n.message, "follow-up review 2026/17: suspend");
    // Again: nothing more to suspend.
    let again = agency(&app, &app.certs.operator, "suspend", &app.insurer_id, person())
        .await
        .unwrap();
    assert!(again.is_empty());

    // While suspended nothing about the person is delivered; the other subscription goes on.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    accepted(&ingest(&app, vec![pay(P2, "PAY8", 1, pb::RecordKind::New, 8)]).await);
    let meanwhile = drain(&mut stream).await;
    assert!(!meanwhile.is_empty());
    for event in &meanwhile {
        if let Some(pb::stream_event::Event::Change(c)) = &event.event {
            assert_eq!(
                c.subscription_id, s2,
                "delivered to a suspended subscription: {meanwhile:?}"
            );
        }
    }

    // Resumed: a RESUMED notice and a fresh snapshot that holds what came meanwhile.
    let resumed = agency(&app, &app.certs.operator, "resume", &app.insurer_id, person())
        .await
        .unwrap();
    assert_eq!(resumed, vec![s1.clone()]);
    let mut back = take(&mut stream, 2).await;
    while !matches!(
        back.last().and_then(|e| e.event.as_ref()),
        Some(pb::stream_event::Event::SnapshotEnd(_))
    ) {
        back.extend(take(&mut stream, 1).await);
    }
    let n = notice(&back[0]);
    assert_eq!(n.state, pb::SubscriptionState::Active as i32);
    assert_eq!(n.reason, pb::SubscriptionStateReason::Resumed as i32);
    let Some(pb::stream_event::Event::SnapshotBegin(b)) = &back[1].event else {
        panic!("{back:?}")
    };
    assert_eq!(b.subscription_id, s1);
    assert_eq!(b.reason, pb::SnapshotReason::SubscriptionResumed as i32);
    assert_eq!(b.event_number, n.event_number + 1);
    assert_eq!(records_of(&back).len(), p1_records + 1, "{back:?}");

    // Ended for good, both; ended ones are not resumed.
    let ended = agency(
        &app,
        &app.certs.operator,
        "end",
        &app.insurer_id,
        Some(Scope::AllOfParty(true)),
    )
    .await
    .unwrap();
    assert_eq!(ended.len(), 2);
    for event in take(&mut stream, 2).await {
        let n = notice(&event);
        assert_eq!(n.state, pb::SubscriptionState::Ended as i32);
        assert_eq!(n.reason, pb::SubscriptionStateReason::EndedByAgency as i32);
    }
    let none = agency(
        &app,
        &app.certs.operator,
        "resume",
        &app.insurer_id,
        Some(Scope::AllOfParty(true)),
    )
    .await
    .unwrap();
    assert!(none.is_empty());

    // Each action is in the party's history, with the operator, the subscriptions and the reason,
    // and never the person.
    let history = insurer_history(&app).await;
    let actions: Vec<i32> = history.iter().map(|e| e.action).collect();
    for (action, count) in [
        (admin_pb::PartyAction::SuspendSubscriptions, 2),
        (admin_pb::PartyAction::ResumeSubscriptions, 2),
        (admin_pb::PartyAction::EndSubscriptions, 1),
    ] {
        assert_eq!(
            actions.iter().filter(|a| **a == action as i32).count(),
            count,
            "{action:?} in {history:#?}"
        );
    }
    let suspend = history
        .iter()
        .find(|e| e.action == admin_pb::PartyAction::SuspendSubscriptions as i32)
        .unwrap();
    assert_eq!(suspend.operator_name, "Test Operatör");
    let details: serde_json::Value = serde_json::from_str(&suspend.details_json).unwrap();
    assert_eq!(details["subscription_ids"], serde_json::json!([s1]));
    assert_eq!(details["reason"], "follow-up review 2026/17: suspend");
    for entry in &history {
        assert!(!entry.details_json.contains(&P1[2..8]), "{entry:?}");
    }
    app.stop().await;
}

/// The insurer's audit history (the first page, which holds everything these tests do).
async fn insurer_history(app: &TestApp) -> Vec<admin_pb::AuditEntry> {
    admin_pb::party_admin_service_client::PartyAdminServiceClient::new(
        app.admin_channel(&app.certs.auditor).await,
    )
    .list_party_history(admin_pb::ListPartyHistoryRequest {
        party_id: app.insurer_id.clone(),
        page_size: 0,
        page_token: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .entries
}
