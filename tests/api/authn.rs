//! Who may connect: mTLS on both listeners, registered certificates only, identity from the
//! certificate alone.

use lefi::client::ClientPem;
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;

use crate::backend_tests;
use crate::helpers::{Backend, SpawnOptions, TestApp, reason};

backend_tests!(
    handshake_without_client_certificate_fails,
    certificate_from_untrusted_ca_fails_handshake,
    unregistered_certificate_is_refused,
    party_certificate_is_refused_on_admin_listener,
    operator_certificate_is_refused_on_party_listener,
    identity_is_the_registered_party,
    operator_identity_on_admin_listener,
    certificate_in_crl_fails_handshake,
    revoked_certificate_is_refused,
    terminated_party_is_refused,
);

async fn who_am_i(channel: tonic::transport::Channel) -> Result<pb::WhoAmIResponse, tonic::Status> {
    pb::party_service_client::PartyServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

/// The call failed in the transport (the TLS handshake), not with an answer from a service: no
/// gRPC service ran, so there is no ErrorInfo. (With TLS 1.3 the client may see either the
/// server's alert or just the closed connection, so the code varies.)
fn assert_handshake_refused(status: &tonic::Status) {
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled),
        "{status:?}"
    );
    assert!(lefi::grpc::status::reason_of(status).is_none(), "{status:?}");
}

/// A TLS client that presents no certificate at all.
pub(crate) fn anonymous_channel(app: &TestApp, port: u16) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(app.certs.ca.cert_pem()))
        .domain_name("localhost");
    tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_lazy()
}

async fn handshake_without_client_certificate_fails(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for port in [app.party_addr.port(), app.admin_addr.port()] {
        let channel = anonymous_channel(&app, port);
        let result = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await;
        let status = result.expect_err("a connection without a client certificate must fail");
        assert_handshake_refused(&status);
    }
    app.stop().await;
}

async fn certificate_from_untrusted_ca_fails_handshake(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let pem = app.client_pem(&app.certs.foreign);
    for addr in [app.party_addr, app.admin_addr] {
        let channel = app.lazy_channel(addr, &pem);
        let status = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect_err("a certificate from an untrusted CA must fail the handshake");
        assert_handshake_refused(&status);
    }
    // The same server accepts a trusted, registered certificate.
    who_am_i(app.party_channel(&app.certs.insurer).await)
        .await
        .unwrap();
    app.stop().await;
}

async fn unregistered_certificate_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = who_am_i(app.party_channel(&app.certs.stranger).await)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "CERTIFICATE_NOT_REGISTERED");
    assert!(
        status.message().contains("not registered"),
        "{}",
        status.message()
    );
    app.stop().await;
}

async fn party_certificate_is_refused_on_admin_listener(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.admin_channel(&app.certs.insurer).await;
    let status = admin_pb::operator_service_client::OperatorServiceClient::new(channel)
        .who_am_i(admin_pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "NOT_AN_OPERATOR");
    app.stop().await;
}

async fn operator_certificate_is_refused_on_party_listener(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let status = who_am_i(app.party_channel(&app.certs.operator).await)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "CERTIFICATE_NOT_REGISTERED");
    app.stop().await;
}

async fn identity_is_the_registered_party(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let insurer = who_am_i(app.party_channel(&app.certs.insurer).await)
        .await
        .unwrap();
    assert_eq!(insurer.party_id, app.insurer_id);
    assert_eq!(insurer.org_number, "556677-8899");
    assert_eq!(insurer.kind, pb::PartyKind::Insurer as i32);
    assert_eq!(insurer.state, pb::PartyState::Connected as i32);
    assert_eq!(insurer.agreement_type, pb::AgreementType::Avtal as i32);
    assert_eq!(
        insurer.granted_basis_codes,
        vec!["INS_COORDINATION", "INS_RISK_ASSESSMENT"]
    );
    let (facts, _) = lefi::identity::certificate_facts(app.certs.insurer.cert_pem.as_bytes()).unwrap();
    assert_eq!(insurer.certificate_fingerprint, facts.fingerprint);

    let municipality = who_am_i(app.party_channel(&app.certs.municipality).await)
        .await
        .unwrap();
    assert_eq!(municipality.party_id, app.municipality_id);
    assert_eq!(municipality.kind, pb::PartyKind::MunicipalAuthority as i32);
    assert_eq!(
        municipality.agreement_type,
        pb::AgreementType::Overenskommelse as i32
    );
    assert_ne!(insurer.party_id, municipality.party_id);
    app.stop().await;
}

async fn operator_identity_on_admin_listener(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for (who, name, role) in [
        (
            &app.certs.operator,
            "Test Operatör",
            admin_pb::OperatorRole::Operator,
        ),
        (
            &app.certs.auditor,
            "Test Revisor",
            admin_pb::OperatorRole::Auditor,
        ),
    ] {
        let me = admin_pb::operator_service_client::OperatorServiceClient::new(app.admin_channel(who).await)
            .who_am_i(admin_pb::WhoAmIRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(me.name, name);
        assert_eq!(me.role, role as i32);
    }
    app.stop().await;
}

async fn certificate_in_crl_fails_handshake(backend: Backend) {
    let options = SpawnOptions {
        crl_revokes: vec![|c| &c.municipality],
        ..SpawnOptions::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    // The insurer, not in the CRL, still gets through.
    who_am_i(app.party_channel(&app.certs.insurer).await)
        .await
        .unwrap();
    let pem: ClientPem = app.client_pem(&app.certs.municipality);
    let status = who_am_i(app.lazy_channel(app.party_addr, &pem))
        .await
        .unwrap_err();
    assert_handshake_refused(&status);
    app.stop().await;
}

async fn revoked_certificate_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    who_am_i(channel.clone()).await.unwrap();
    app.revoke_certificate(&app.insurer_id, &app.certs.insurer).await;
    // The same, already open connection is refused from the next call on.
    let status = who_am_i(channel).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(reason(&status), "CERTIFICATE_REVOKED");
    // The other party is unaffected.
    who_am_i(app.party_channel(&app.certs.municipality).await)
        .await
        .unwrap();
    app.stop().await;
}

async fn terminated_party_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.municipality).await;
    let today = app.clock.today();
    app.schedule_termination(&app.municipality_id, today + time::Duration::days(10))
        .await;
    // Until the effective date the party works normally.
    let me = who_am_i(channel.clone()).await.unwrap();
    assert_eq!(me.state, pb::PartyState::TerminationScheduled as i32);
    // From it, every call is refused, with no background job involved.
    app.clock.advance(time::Duration::days(10));
    let status = who_am_i(channel).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "PARTY_TERMINATED");
    app.stop().await;
}
