//! `lefi admin sandbox` (issue 17): every scenario played with the real binary against a real
//! `lefi serve --dev`, with a subscriber's stream opened before it, and the stream showing what
//! docs/SANDBOX.md says it shows. Also: refused against a server that does not run `--dev`, and
//! the development-only RPC refused there.

use std::process::Output;
use std::time::Duration;

use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use pb::benefit_record::Fact;
use pb::stream_event::Event;
use tonic::Code;
use tonic::transport::Channel;

use crate::dev_server::{DevServer, LEFI};
use crate::helpers::{Backend, TestApp, reason};

type Events = tonic::Streaming<pb::StreamEvent>;

/// A `serve --dev` with the demo person it suggests.
struct Sandbox {
    server: DevServer,
    person: String,
}

impl Sandbox {
    fn start() -> Sandbox {
        let server = DevServer::start();
        let person = server
            .demo_person
            .clone()
            .expect("serve --dev suggests a demo person");
        Sandbox { server, person }
    }

    /// A party API channel with a demo party's certificates from certs-dev/.
    async fn party(&self, stem: &str) -> Channel {
        let certs = self.server.path().join("certs-dev");
        let pem = lefi::client::ClientPem::read(
            &certs.join(format!("{stem}.pem")),
            &certs.join(format!("{stem}.key")),
            &certs.join("ca.pem"),
        )
        .unwrap();
        lefi::client::connect(&self.server.party_addr, &pem, None)
            .await
            .unwrap()
    }

    /// `lefi admin sandbox play SCENARIO EXTRA…` in the server's directory.
    async fn play_output(&self, scenario: &str, extra: &[&str]) -> Output {
        tokio::process::Command::new(LEFI)
            .args([
                "admin",
                "--addr",
                &self.server.admin_addr,
                "sandbox",
                "play",
                scenario,
            ])
            .args(["--party-addr", &self.server.party_addr])
            .args(extra)
            .current_dir(self.server.path())
            .output()
            .await
            .unwrap()
    }

    /// Plays a scenario that must succeed; returns what it printed.
    async fn play(&self, scenario: &str, extra: &[&str]) -> String {
        let out = self.play_output(scenario, extra).await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{scenario}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("what your client should see on its stream:"),
            "{stdout}"
        );
        stdout
    }

    /// Creates one subscription about the demo person (SJP from 2020) and returns its id.
    async fn subscribe(&self, stem: &str, reference: &str, basis: &str, ground: (&str, &str)) -> String {
        let (case_reference, consent_id) = ground;
        let created = pb::subscription_service_client::SubscriptionServiceClient::new(self.party(stem).await)
            .create_subscriptions(pb::CreateSubscriptionsRequest {
                items: vec![pb::NewSubscription {
                    client_reference: reference.to_string(),
                    person_id: self.person.clone(),
                    benefit_type_codes: vec!["SJP".to_string()],
                    from_date: "2020-01-01".to_string(),
                    legal_basis: basis.to_string(),
                    case_reference: case_reference.to_string(),
                    consent_id: consent_id.to_string(),
                    ..Default::default()
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let result = created.results.first().cloned().unwrap();
        let subscription = result
            .subscription
            .unwrap_or_else(|| panic!("not created: {:?}", result.error));
        subscription.subscription_id
    }
}

/// Opens the party's stream from `cursor` (heartbeats every second).
async fn open(channel: Channel, cursor: &str) -> Result<Events, tonic::Status> {
    let mut stream = pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .stream(pb::StreamRequest {
            cursor: cursor.to_string(),
            max_batch_records: 0,
            heartbeat_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        })
        .await?
        .into_inner();
    // The first message is a heartbeat once the call is authorised, or the refusal.
    match tokio::time::timeout(Duration::from_secs(15), stream.message()).await {
        Ok(Ok(Some(first))) => {
            assert!(matches!(first.event, Some(Event::Heartbeat(_))), "{first:?}");
            Ok(stream)
        }
        Ok(Ok(None)) => panic!("the stream ended at once"),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("the stream said nothing"),
    }
}

/// Reads events (heartbeats left out) until `done` holds for what was read since the call.
async fn read_until(
    stream: &mut Events,
    what: &str,
    done: impl Fn(&[pb::StreamEvent]) -> bool,
) -> Vec<pb::StreamEvent> {
    let mut seen = Vec::new();
    while !done(&seen) {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 30 s; saw {seen:#?}"))
            .unwrap_or_else(|status| panic!("the stream ended waiting for {what}: {status:?}; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("the stream ended waiting for {what}"));
        if !matches!(next.event, Some(Event::Heartbeat(_))) {
            seen.push(next);
        }
    }
    seen
}

/// Reads until the snapshots of every subscription so far ended.
async fn past_snapshots(stream: &mut Events) -> Vec<pb::StreamEvent> {
    read_until(stream, "the snapshot's end", |seen| {
        seen.iter()
            .any(|e| matches!(e.event, Some(Event::SnapshotEnd(_))))
    })
    .await
}

/// The records of the Change events read.
fn changed(events: &[pb::StreamEvent]) -> Vec<pb::BenefitRecordFields> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Change(c)) => Some(c.records.iter().map(|r| r.fields().clone()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn event_of(record: &pb::BenefitRecordFields) -> Option<pb::PersonEventKind> {
    match &record.fact {
        Some(Fact::PersonEvent(e)) => pb::PersonEventKind::try_from(e.kind).ok(),
        _ => None,
    }
}

fn decision_of(record: &pb::BenefitRecordFields) -> Option<pb::DecisionKind> {
    match &record.fact {
        Some(Fact::Decision(d)) => pb::DecisionKind::try_from(d.kind).ok(),
        _ => None,
    }
}

fn has_event(events: &[pb::StreamEvent], kind: pb::PersonEventKind) -> bool {
    changed(events).iter().any(|r| event_of(r) == Some(kind))
}

fn has_decision(events: &[pb::StreamEvent], kind: pb::DecisionKind) -> bool {
    changed(events).iter().any(|r| decision_of(r) == Some(kind))
}

/// The notices read, as (subscription, state, reason).
fn notices(events: &[pb::StreamEvent]) -> Vec<(String, pb::SubscriptionState, pb::SubscriptionStateReason)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Notice(n)) => Some((
                n.subscription_id.clone(),
                pb::SubscriptionState::try_from(n.state).unwrap_or_default(),
                pb::SubscriptionStateReason::try_from(n.reason).unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn list_shows_every_scenario_on_one_line() {
    let out = std::process::Command::new(LEFI)
        .args(["admin", "sandbox", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    for scenario in [
        "retroactive-payment",
        "correction-and-retraction",
        "sickness-case-closed",
        "life-certificate-missing",
        "life-certificate-received",
        "death-registered",
        "consent-lapsing",
        "case-closed-by-authority",
        "cursor-expiring",
        "party-termination",
    ] {
        let lines: Vec<&str> = listed.lines().filter(|l| l.starts_with(scenario)).collect();
        assert_eq!(lines.len(), 1, "{scenario}: {listed}");
        assert!(
            lines[0].len() > scenario.len() + 10,
            "{scenario} has no description"
        );
    }
    // docs/SANDBOX.md documents each one.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SANDBOX.md")).unwrap();
    for line in listed
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("play "))
    {
        let name = line.split_whitespace().next().unwrap();
        assert!(
            docs.contains(&format!("## `{name}`")),
            "docs/SANDBOX.md lacks {name}"
        );
    }
}

/// The register scenarios, in the order an integrator would play them, on one stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_scenarios_show_on_a_subscribers_stream() {
    let sandbox = Sandbox::start();
    sandbox
        .subscribe("insurer", "sandbox-1", "INS_COORDINATION", ("", ""))
        .await;
    let mut stream = open(sandbox.party("insurer").await, "").await.unwrap();
    past_snapshots(&mut stream).await;

    // retroactive-payment: a NEW, retroactive payment for a period months ago.
    let printed = sandbox.play("retroactive-payment", &[]).await;
    let seen = read_until(&mut stream, "the retroactive payment", |seen| {
        changed(seen)
            .iter()
            .any(|r| matches!(r.fact, Some(Fact::Payment(_))) && r.retroactive)
    })
    .await;
    let payment = changed(&seen)
        .into_iter()
        .find(|r| matches!(r.fact, Some(Fact::Payment(_))))
        .unwrap();
    assert_eq!(payment.kind, pb::RecordKind::New as i32);
    let valid = payment.valid.clone().unwrap();
    assert!(
        printed.contains(&valid.from) && printed.contains(&valid.to),
        "{printed}"
    );
    let today = lefi::domain::clock::business_date(time::OffsetDateTime::now_utc());
    assert!(
        valid.to < lefi::domain::clock::format_date(today - time::Duration::days(100)),
        "{valid:?}"
    );

    // correction-and-retraction: a CORRECTION of one payment, a RETRACTION of another.
    sandbox.play("correction-and-retraction", &[]).await;
    let seen = read_until(&mut stream, "the correction and the retraction", |seen| {
        let records = changed(seen);
        let kind = |k: pb::RecordKind| records.iter().any(|r| r.kind == k as i32);
        kind(pb::RecordKind::Correction) && kind(pb::RecordKind::Retraction)
    })
    .await;
    let records = changed(&seen);
    let corrected = records
        .iter()
        .find(|r| r.kind == pb::RecordKind::Correction as i32)
        .unwrap();
    let retracted = records
        .iter()
        .find(|r| r.kind == pb::RecordKind::Retraction as i32)
        .unwrap();
    assert!(matches!(corrected.fact, Some(Fact::Payment(_))));
    assert!(matches!(retracted.fact, Some(Fact::Payment(_))));
    assert_ne!(corrected.record_id, retracted.record_id);
    assert!(corrected.version >= 2 && retracted.version >= 2);

    // sickness-case-closed: the case CLOSED (a correction) and SICKNESS_CASE_CLOSED.
    sandbox.play("sickness-case-closed", &[]).await;
    let seen = read_until(&mut stream, "the closed case and SICKNESS_CASE_CLOSED", |seen| {
        let closed = changed(seen).iter().any(|r| {
            matches!(&r.fact, Some(Fact::Case(c)) if c.status == pb::BenefitCaseStatus::Closed as i32)
                && r.kind == pb::RecordKind::Correction as i32
        });
        closed && has_event(seen, pb::PersonEventKind::SicknessCaseClosed)
    })
    .await;
    assert!(!seen.is_empty());

    // life-certificate-missing, then life-certificate-received.
    sandbox.play("life-certificate-missing", &[]).await;
    let seen = read_until(&mut stream, "LIFE_CERTIFICATE_MISSING and BLOCKED", |seen| {
        has_event(seen, pb::PersonEventKind::LifeCertificateMissing)
            && has_decision(seen, pb::DecisionKind::Blocked)
    })
    .await;
    let missing = changed(&seen)
        .into_iter()
        .find(|r| event_of(r).is_some())
        .unwrap();
    assert_eq!(
        missing.benefit_type, "",
        "the event concerns every subscription on the person"
    );
    sandbox.play("life-certificate-received", &[]).await;
    read_until(&mut stream, "LIFE_CERTIFICATE_RECEIVED and UNBLOCKED", |seen| {
        has_event(seen, pb::PersonEventKind::LifeCertificateReceived)
            && has_decision(seen, pb::DecisionKind::Unblocked)
    })
    .await;

    // death-registered: the person's date of death, and DEATH_REGISTERED.
    sandbox.play("death-registered", &[]).await;
    let seen = read_until(&mut stream, "the date of death and DEATH_REGISTERED", |seen| {
        let dead = seen.iter().any(|e| {
            matches!(&e.event, Some(Event::Change(c)) if c.person.as_ref().is_some_and(|p| !p.date_of_death.is_empty()))
        });
        dead && has_event(seen, pb::PersonEventKind::DeathRegistered)
    })
    .await;
    let died = lefi::domain::clock::format_date(today - time::Duration::days(1));
    assert!(seen.iter().any(|e| matches!(&e.event,
        Some(Event::Change(c)) if c.person.as_ref().is_some_and(|p| p.date_of_death == died))));

    // Nothing else happened to the subscription: no notice on the way.
    drop(stream);
    sandbox.server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_lapsing_suspends_the_subscription_relying_on_it() {
    let sandbox = Sandbox::start();
    // Without a consent there is nothing to lapse: the command says how to set one up.
    let out = sandbox.play_output("consent-lapsing", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("consent register"), "{stderr}");
    assert!(
        !stderr.contains(&sandbox.person),
        "no identity number in an error: {stderr}"
    );
    // A number that could be a real person's is refused: sandbox facts only for the test range.
    let out = sandbox
        .play_output("retroactive-payment", &["--person", "19900704-2386"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("test range") && !stderr.contains("19900704"),
        "{stderr}"
    );

    let today = lefi::domain::clock::business_date(time::OffsetDateTime::now_utc());
    let consent = pb::consent_service_client::ConsentServiceClient::new(sandbox.party("insurer").await)
        .register_consent(pb::RegisterConsentRequest {
            person_id: sandbox.person.clone(),
            legal_basis: "INS_RISK_ASSESSMENT".to_string(),
            given_on: lefi::domain::clock::format_date(today),
            expires_on: lefi::domain::clock::format_date(today + time::Duration::days(200)),
            evidence_reference: "sandbox-consent-1".to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    let subscription = sandbox
        .subscribe(
            "insurer",
            "sandbox-risk",
            "INS_RISK_ASSESSMENT",
            ("", &consent.consent_id),
        )
        .await;
    let mut stream = open(sandbox.party("insurer").await, "").await.unwrap();
    past_snapshots(&mut stream).await;

    let printed = sandbox.play("consent-lapsing", &[]).await;
    assert!(printed.contains(&consent.consent_id), "{printed}");
    let seen = read_until(&mut stream, "the SUSPENDED notice", |seen| {
        !notices(seen).is_empty()
    })
    .await;
    assert_eq!(
        notices(&seen),
        vec![(
            subscription,
            pb::SubscriptionState::Suspended,
            pb::SubscriptionStateReason::ConsentEnded
        )]
    );
    drop(stream);
    sandbox.server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_closed_by_the_municipality_ends_its_subscription() {
    let sandbox = Sandbox::start();
    let subscription = sandbox
        .subscribe(
            "municipality",
            "sandbox-case",
            "AUTH_SOCIAL_SERVICES",
            ("DNR-SANDBOX-1", ""),
        )
        .await;
    let mut stream = open(sandbox.party("municipality").await, "").await.unwrap();
    past_snapshots(&mut stream).await;

    let printed = sandbox.play("case-closed-by-authority", &[]).await;
    assert!(printed.contains("DNR-SANDBOX-1"), "{printed}");
    let seen = read_until(&mut stream, "the ENDED notice", |seen| !notices(seen).is_empty()).await;
    assert_eq!(
        notices(&seen),
        vec![(
            subscription,
            pb::SubscriptionState::Ended,
            pb::SubscriptionStateReason::CaseClosed
        )]
    );
    // The case is closed for good: a second play finds nothing left to close.
    let again = sandbox.play_output("case-closed-by-authority", &[]).await;
    assert_eq!(again.status.code(), Some(1));
    drop(stream);
    sandbox.server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_expiring_refuses_an_old_cursor_and_a_full_refresh_recovers() {
    let sandbox = Sandbox::start();
    sandbox
        .subscribe("insurer", "sandbox-1", "INS_COORDINATION", ("", ""))
        .await;
    let mut stream = open(sandbox.party("insurer").await, "").await.unwrap();
    let snapshot = past_snapshots(&mut stream).await;
    let old = snapshot.last().unwrap().cursor.clone();

    sandbox.play("cursor-expiring", &[]).await;
    // The open stream gets the new payment and goes on.
    let seen = read_until(&mut stream, "the new payment", |seen| {
        changed(seen)
            .iter()
            .any(|r| matches!(r.fact, Some(Fact::Payment(_))))
    })
    .await;
    let current = seen.last().unwrap().cursor.clone();
    drop(stream);

    // A client that saved its cursor before the scenario: CURSOR_EXPIRED.
    let Err(refused) = open(sandbox.party("insurer").await, &old).await else {
        panic!("the old cursor is accepted");
    };
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), "CURSOR_EXPIRED");
    // The cursor after the payment still works.
    assert!(open(sandbox.party("insurer").await, &current).await.is_ok());
    // Recovery: a full refresh, and a stream from its cursor starts with a FULL_REFRESH snapshot.
    let refresh = pb::delivery_service_client::DeliveryServiceClient::new(sandbox.party("insurer").await)
        .request_full_refresh(pb::FullRefreshRequest {
            reason: "sandbox: cursor expired".to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = open(sandbox.party("insurer").await, &refresh.cursor)
        .await
        .unwrap();
    let seen = past_snapshots(&mut stream).await;
    assert!(seen.iter().any(|e| matches!(&e.event,
        Some(Event::SnapshotBegin(b)) if b.reason == pb::SnapshotReason::FullRefresh as i32)));
    drop(stream);
    sandbox.server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_termination_needs_yes_then_ends_every_subscription_and_the_stream() {
    let sandbox = Sandbox::start();
    let subscription = sandbox
        .subscribe("insurer", "sandbox-1", "INS_COORDINATION", ("", ""))
        .await;
    let mut stream = open(sandbox.party("insurer").await, "").await.unwrap();
    past_snapshots(&mut stream).await;

    let refused = sandbox.play_output("party-termination", &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--yes") && stderr.contains("lefi.db"), "{stderr}");

    let printed = sandbox.play("party-termination", &["--yes"]).await;
    assert!(printed.contains("lefi.db"), "says how to start over: {printed}");
    let mut seen = Vec::new();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the stream did not end")
        {
            Ok(Some(e)) => {
                if !matches!(e.event, Some(Event::Heartbeat(_))) {
                    seen.push(e);
                }
            }
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(
        notices(&seen),
        vec![(
            subscription,
            pb::SubscriptionState::Ended,
            pb::SubscriptionStateReason::PartyTerminated
        )]
    );
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(reason(&status), "PARTY_TERMINATED");
    sandbox.server.terminate();
}

/// A server without `--dev` (the in-process test server): the command refuses before it changes
/// anything, and the development-only RPC is refused.
#[tokio::test]
async fn refused_against_a_server_not_in_dev_mode() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    put("ca.pem", app.certs.ca.cert_pem());
    put("operator.pem", &app.certs.operator.cert_pem);
    put("operator.key", &app.certs.operator.key_pem);
    let admin = format!("https://localhost:{}", app.admin_addr.port());
    let out = tokio::process::Command::new(LEFI)
        .args([
            "admin",
            "--addr",
            &admin,
            "--cert",
            "operator.pem",
            "--key",
            "operator.key",
        ])
        .args(["--ca", "ca.pem", "sandbox", "play", "retroactive-payment"])
        .args(["--person", "18991223-9812"])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not run in development mode"), "{stderr}");

    let channel = app.admin_channel(&app.certs.operator).await;
    let mut operations =
        admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(channel);
    let info = operations
        .get_server_info(admin_pb::GetServerInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!info.dev_mode);
    assert!(info.demo_person_id.is_empty());
    let refused = operations
        .prune_delivery_history(admin_pb::PruneDeliveryHistoryRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);
    assert_eq!(reason(&refused), "NOT_IMPLEMENTED");
    app.stop().await;
}
