//! Consents and case references through the real party API, consent oversight and the
//! hash-chained disclosure log through the real admin API.

use lefi::domain::disclosure::{Channel, Decision, NewDisclosure};
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, reason};

backend_tests!(
    consent_lifecycle,
    consent_registration_is_checked_against_the_agreement,
    consents_are_private_to_their_party,
    agency_oversees_consents,
    cases_are_opened_by_use_and_closed_for_good,
    disclosure_chain_verifies_and_names_a_tampered_entry,
    disclosure_log_answers_who_received_what_about_a_person,
);

const PERSON: &str = "19900704-2386";
const PERSON_12: &str = "199007042386";

fn today_plus(app: &TestApp, days: i64) -> String {
    lefi::domain::clock::format_date(app.clock.today() + time::Duration::days(days))
}

fn consent_request(app: &TestApp, basis: &str, evidence: &str) -> pb::RegisterConsentRequest {
    pb::RegisterConsentRequest {
        person_id: PERSON.to_string(),
        legal_basis: basis.to_string(),
        given_on: today_plus(app, -10),
        expires_on: today_plus(app, 365),
        evidence_reference: evidence.to_string(),
    }
}

async fn consents(
    app: &TestApp,
    who: &lefi::dev::certs::Issued,
) -> pb::consent_service_client::ConsentServiceClient<tonic::transport::Channel> {
    pb::consent_service_client::ConsentServiceClient::new(app.party_channel(who).await)
}

async fn consent_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut client = consents(&app, &app.certs.insurer).await;
    let first = client
        .register_consent(consent_request(&app, "INS_RISK_ASSESSMENT", "FORM-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);
    let consent = first.consent.unwrap();
    assert_eq!(consent.person_id, PERSON_12);
    assert_eq!(consent.state, pb::ConsentState::Valid as i32);

    // Registering the same consent again returns it; other dates under the same reference conflict.
    let again = client
        .register_consent(consent_request(&app, "INS_RISK_ASSESSMENT", "FORM-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.consent.unwrap().consent_id, consent.consent_id);
    let mut other_dates = consent_request(&app, "INS_RISK_ASSESSMENT", "FORM-1");
    other_dates.expires_on = today_plus(&app, 200);
    let status = client.register_consent(other_dates).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(reason(&status), "IDEMPOTENCY_KEY_REUSED");

    // It expires with the clock, and revocation is recorded and idempotent.
    let listed = client
        .list_consents(pb::ListConsentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert_eq!(listed.len(), 1);
    let revoked = client
        .revoke_consent(pb::RevokeConsentRequest {
            consent_id: consent.consent_id.clone(),
            reason: "withdrawn by the individual".to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    assert_eq!(revoked.state, pb::ConsentState::Revoked as i32);
    assert!(!revoked.revoked_by_agency);
    let second = client
        .revoke_consent(pb::RevokeConsentRequest {
            consent_id: consent.consent_id.clone(),
            reason: "again".to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    assert_eq!(second.revocation_reason, "withdrawn by the individual");

    let expiring = client
        .register_consent(pb::RegisterConsentRequest {
            expires_on: today_plus(&app, 5),
            ..consent_request(&app, "INS_RISK_ASSESSMENT", "FORM-2")
        })
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    app.clock.advance(time::Duration::days(6));
    let valid_now = client
        .list_consents(pb::ListConsentsRequest {
            states: vec![pb::ConsentState::Expired as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert_eq!(valid_now.len(), 1);
    assert_eq!(valid_now[0].consent_id, expiring.consent_id);
    app.stop().await;
}

async fn consent_registration_is_checked_against_the_agreement(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut insurer = consents(&app, &app.certs.insurer).await;
    // Claims settlement requires consent but is not in the test insurer's agreement.
    let status = insurer
        .register_consent(consent_request(&app, "INS_CLAIMS", "F"))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::PermissionDenied, "BASIS_NOT_IN_AGREEMENT")
    );
    // Coordination does not rest on consent.
    let status = insurer
        .register_consent(consent_request(&app, "INS_COORDINATION", "F"))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::InvalidArgument, "INVALID_ARGUMENT")
    );
    let status = insurer
        .register_consent(consent_request(&app, "NO_SUCH_BASIS", "F"))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "UNKNOWN_BASIS");
    // An authority cannot use an insurer's basis.
    let mut municipality = consents(&app, &app.certs.municipality).await;
    let status = municipality
        .register_consent(consent_request(&app, "INS_RISK_ASSESSMENT", "F"))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "BASIS_NOT_FOR_PARTY_KIND");
    // Too long a consent period.
    let status = insurer
        .register_consent(pb::RegisterConsentRequest {
            expires_on: today_plus(&app, 5000),
            ..consent_request(&app, "INS_RISK_ASSESSMENT", "F")
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "CONSENT_PERIOD_TOO_LONG");
    // A bad identity number is refused without being echoed.
    let status = insurer
        .register_consent(pb::RegisterConsentRequest {
            person_id: "19541011-3606".to_string(),
            ..consent_request(&app, "INS_RISK_ASSESSMENT", "F")
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "PERSON_ID_INVALID");
    assert!(
        !status.message().contains("3606") && !status.message().contains("541011"),
        "{}",
        status.message()
    );
    // Dates.
    let status = insurer
        .register_consent(pb::RegisterConsentRequest {
            given_on: today_plus(&app, 1),
            ..consent_request(&app, "INS_RISK_ASSESSMENT", "F")
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "INVALID_DATE");
    let status = insurer
        .register_consent(pb::RegisterConsentRequest {
            expires_on: "2026-02-30".to_string(),
            ..consent_request(&app, "INS_RISK_ASSESSMENT", "F")
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "INVALID_DATE");
    app.stop().await;
}

async fn consents_are_private_to_their_party(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut insurer = consents(&app, &app.certs.insurer).await;
    let consent = insurer
        .register_consent(consent_request(&app, "INS_RISK_ASSESSMENT", "F"))
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    let mut municipality = consents(&app, &app.certs.municipality).await;
    let status = municipality
        .revoke_consent(pb::RevokeConsentRequest {
            consent_id: consent.consent_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::NotFound, "CONSENT_NOT_FOUND")
    );
    let theirs = municipality
        .list_consents(pb::ListConsentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert!(theirs.is_empty());
    app.stop().await;
}

async fn agency_oversees_consents(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut insurer = consents(&app, &app.certs.insurer).await;
    let consent = insurer
        .register_consent(consent_request(&app, "INS_RISK_ASSESSMENT", "F"))
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    let mut auditor = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(
        app.admin_channel(&app.certs.auditor).await,
    );
    let listed = auditor
        .list_consents(admin_pb::ListConsentsRequest {
            person_id: PERSON.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].party_id, app.insurer_id);
    let revoke = admin_pb::RevokeConsentRequest {
        idempotency_key: "k1".to_string(),
        consent_id: consent.consent_id.clone(),
        reason: "the individual withdrew consent by letter".to_string(),
    };
    let status = auditor.revoke_consent(revoke.clone()).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::PermissionDenied, "ROLE_NOT_PERMITTED")
    );
    let mut operator = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(
        app.admin_channel(&app.certs.operator).await,
    );
    let revoked = operator
        .revoke_consent(revoke)
        .await
        .unwrap()
        .into_inner()
        .consent
        .unwrap();
    let revoked = revoked.consent.unwrap();
    assert_eq!(revoked.state, pb::ConsentState::Revoked as i32);
    assert!(revoked.revoked_by_agency);
    // The party sees the agency's revocation.
    let seen = insurer
        .list_consents(pb::ListConsentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .consents;
    assert_eq!(seen[0].state, pb::ConsentState::Revoked as i32);
    app.stop().await;
}

async fn cases_are_opened_by_use_and_closed_for_good(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut cases =
        pb::case_service_client::CaseServiceClient::new(app.party_channel(&app.certs.municipality).await);
    let status = cases
        .close_case(pb::CloseCaseRequest {
            case_reference: "SN-2026-0001".to_string(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::NotFound, "CASE_NOT_FOUND")
    );
    app.store
        .touch_cases(
            &app.municipality_id,
            &["SN-2026-0001".to_string()],
            app.clock.now_micros(),
        )
        .await
        .unwrap();
    let open = cases
        .list_cases(pb::ListCasesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, pb::CaseState::Open as i32);
    let closed = cases
        .close_case(pb::CloseCaseRequest {
            case_reference: "SN-2026-0001".to_string(),
            reason: "matter decided".to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .case
        .unwrap();
    assert_eq!(closed.state, pb::CaseState::Closed as i32);
    assert!(closed.closed_at.is_some());
    // Using it again does not reopen it.
    app.store
        .touch_cases(
            &app.municipality_id,
            &["SN-2026-0001".to_string()],
            app.clock.now_micros(),
        )
        .await
        .unwrap();
    let still = cases
        .list_cases(pb::ListCasesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(still[0].state, pb::CaseState::Closed as i32);
    // Another party's cases are not visible.
    let mut insurer_cases =
        pb::case_service_client::CaseServiceClient::new(app.party_channel(&app.certs.insurer).await);
    assert!(
        insurer_cases
            .list_cases(pb::ListCasesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .cases
            .is_empty()
    );
    app.stop().await;
}

fn sample_entry(app: &TestApp, i: u64) -> NewDisclosure {
    NewDisclosure {
        party_id: Some(app.insurer_id.clone()),
        party_org_number: Some("556677-8899".to_string()),
        system_identity: "fp".to_string(),
        request_id: Some(format!("r{i}")),
        legal_basis: Some("INS_COORDINATION".to_string()),
        person: Some(lefi::domain::Personnummer::from_storage(PERSON_12).unwrap()),
        benefit_types: vec!["SJP".to_string()],
        record_count: i,
        ..NewDisclosure::new(
            Channel::Query,
            Decision::Allowed,
            "/lefi.v1.QueryService/QueryPerson",
        )
    }
}

async fn disclosure_chain_verifies_and_names_a_tampered_entry(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    for i in 1..=5 {
        app.store
            .append_disclosures(&[sample_entry(&app, i)], app.clock.now_micros())
            .await
            .unwrap();
    }
    let mut audit = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(
        app.admin_channel(&app.certs.auditor).await,
    );
    let intact = audit
        .verify_disclosure_log(admin_pb::VerifyDisclosureLogRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(intact.ok, "{intact:?}");
    assert_eq!(intact.entries_checked, 5);

    // Someone changes what entry 3 says was returned.
    app.execute_sql("UPDATE disclosure_log SET record_count = 999 WHERE entry_id = 3")
        .await;
    let broken = audit
        .verify_disclosure_log(admin_pb::VerifyDisclosureLogRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!broken.ok);
    assert_eq!(broken.first_broken_entry_id, 3);
    assert_eq!(broken.problem, admin_pb::ChainProblem::HashMismatch as i32);
    assert_eq!(broken.entries_checked, 2);

    // Someone deletes entry 4 (after restoring 3 to what it was): the gap is named.
    app.execute_sql("UPDATE disclosure_log SET record_count = 3 WHERE entry_id = 3")
        .await;
    app.execute_sql("DELETE FROM disclosure_log WHERE entry_id = 4")
        .await;
    let gap = audit
        .verify_disclosure_log(admin_pb::VerifyDisclosureLogRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!gap.ok);
    assert_eq!(gap.first_broken_entry_id, 4);
    assert_eq!(gap.problem, admin_pb::ChainProblem::EntryMissing as i32);
    app.stop().await;
}

async fn disclosure_log_answers_who_received_what_about_a_person(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut other = sample_entry(&app, 7);
    other.person = Some(lefi::domain::Personnummer::from_storage("199501132386").unwrap());
    app.store
        .append_disclosures(
            &[sample_entry(&app, 1), other, sample_entry(&app, 2)],
            app.clock.now_micros(),
        )
        .await
        .unwrap();
    let mut audit = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(
        app.admin_channel(&app.certs.operator).await,
    );
    let first_page = audit
        .list_disclosures_for_person(admin_pb::ListDisclosuresForPersonRequest {
            person_id: PERSON.to_string(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first_page.entries.len(), 1);
    assert_eq!(first_page.entries[0].record_count, 1);
    assert_eq!(first_page.entries[0].party_id, app.insurer_id);
    let second_page = audit
        .list_disclosures_for_person(admin_pb::ListDisclosuresForPersonRequest {
            person_id: PERSON.to_string(),
            page_size: 1,
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second_page.entries.len(), 1);
    assert_eq!(second_page.entries[0].record_count, 2);
    let by_party = audit
        .list_disclosures_for_party(admin_pb::ListDisclosuresForPartyRequest {
            party_id: app.insurer_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(by_party.len(), 3);
    assert_eq!(by_party[1].previous_hash, by_party[0].hash);
    // A party certificate cannot read the log.
    let status = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(
        app.admin_channel(&app.certs.insurer).await,
    )
    .verify_disclosure_log(admin_pb::VerifyDisclosureLogRequest::default())
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "NOT_AN_OPERATOR");
    app.stop().await;
}
