//! The admin service (`lefi.admin.v1.PartyAdminService`) through the real admin listener: onboarding
//! both kinds of party, certificates, termination, idempotency, roles, listing and the audit history.

use std::collections::HashSet;
use std::time::Duration;

use lefi::dev::certs::Issued;
use lefi::domain::clock::format_date;
use lefi::domain::onboarding::NewOperator;
use lefi::grpc::pb::lefi::admin::v1 as pb;
use lefi::grpc::pb::lefi::v1 as common;
use time::Date;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::helpers::{Applicant, Backend, PartyAdmin, SpawnOptions, TestApp, idempotency_key, reason};

backend_tests!(
    insurer_full_lifecycle,
    authority_full_lifecycle,
    illegal_transitions_report_current_state,
    basis_not_allowed_for_kind_is_refused,
    termination_with_mismatched_number_or_name_changes_nothing,
    insurer_notice_period_with_and_without_override,
    termination_effective_today_or_earlier_is_immediate,
    future_termination_works_until_its_effective_date,
    termination_takes_effect_at_swedish_midnight,
    withdrawal_returns_to_the_earlier_state,
    revoked_certificate_is_refused_and_its_open_stream_ends,
    idempotent_retry_returns_the_same_answer_and_acts_once,
    concurrent_calls_with_one_key_act_once,
    idempotency_key_reused_for_another_request_is_refused,
    auditor_reads_but_cannot_mutate_and_ingest_cannot_either,
    party_certificate_is_refused_on_the_admin_listener,
    certificates_are_checked_before_registration,
    applications_are_validated,
    list_parties_pages_and_filters,
    history_shows_every_step_with_before_and_after_states,
    get_party_by_org_number_prefers_the_live_party,
);

const INSURER: Applicant = Applicant {
    org: "556000-0019",
    name: "Exempel Försäkring AB",
    kind: common::PartyKind::Insurer,
};
const AUTHORITY: Applicant = Applicant {
    org: "202000-0010",
    name: "Exempelmyndigheten",
    kind: common::PartyKind::StateAuthority,
};

fn day(d: Date) -> String {
    format_date(d)
}

/// The admin calls only these tests make; the onboarding steps are in `helpers`.
impl PartyAdmin {
    async fn revoke(&self, party_id: &str, fingerprint: &str, why: &str) -> Result<pb::Certificate, Status> {
        let response = self
            .0
            .clone()
            .revoke_certificate(pb::RevokeCertificateRequest {
                idempotency_key: idempotency_key(),
                party_id: party_id.to_string(),
                fingerprint: fingerprint.to_string(),
                reason: why.to_string(),
            })
            .await?
            .into_inner();
        Ok(response.certificate.expect("certificate"))
    }

    /// A complete, correct termination notice for the party, effective on `effective`.
    fn notice(party: &pb::Party, effective: Date) -> pb::ScheduleTerminationRequest {
        pb::ScheduleTerminationRequest {
            idempotency_key: idempotency_key(),
            party_id: party.party_id.clone(),
            is_termination: true,
            org_number: party.org_number.clone(),
            organisation_name: party.name.clone(),
            effective_date: day(effective),
            notice_received_on: String::new(),
            override_reason: String::new(),
        }
    }

    async fn terminate(&self, request: pb::ScheduleTerminationRequest) -> Result<pb::Party, Status> {
        let response = self.0.clone().schedule_termination(request).await?.into_inner();
        Ok(response.party.expect("party"))
    }

    async fn withdraw(&self, party_id: &str, why: &str) -> Result<pb::Party, Status> {
        let response = self
            .0
            .clone()
            .withdraw_termination(pb::WithdrawTerminationRequest {
                idempotency_key: idempotency_key(),
                party_id: party_id.to_string(),
                reason: why.to_string(),
            })
            .await?
            .into_inner();
        Ok(response.party.expect("party"))
    }

    /// Every page of a listing.
    async fn list_all(&self, mut request: pb::ListPartiesRequest) -> Result<Vec<pb::Party>, Status> {
        let mut all = Vec::new();
        loop {
            let page = self.0.clone().list_parties(request.clone()).await?.into_inner();
            assert!(page.parties.len() <= request.page_size.max(1) as usize || request.page_size == 0);
            all.extend(page.parties);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// Every entry of a party's history.
    async fn history(&self, party_id: &str) -> Result<Vec<pb::AuditEntry>, Status> {
        let mut request = pb::ListPartyHistoryRequest {
            party_id: party_id.to_string(),
            page_size: 0,
            page_token: String::new(),
        };
        let mut all = Vec::new();
        loop {
            let page = self
                .0
                .clone()
                .list_party_history(request.clone())
                .await?
                .into_inner();
            all.extend(page.entries);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }
}

fn metadata(status: &Status, key: &str) -> String {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_else(|| panic!("no metadata {key:?} in {status:?}"))
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, Status>, code: Code, expected_reason: &str) -> Status {
    let status = result.expect_err("the call must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status), expected_reason, "{status:?}");
    status
}

#[track_caller]
fn assert_illegal(result: Result<impl std::fmt::Debug, Status>, current: common::PartyState) {
    let status = assert_refused(result, Code::FailedPrecondition, "ILLEGAL_STATE_TRANSITION");
    assert_eq!(
        metadata(&status, "current_state"),
        current.as_str_name(),
        "{status:?}"
    );
}

fn state(party: &pb::Party) -> common::PartyState {
    common::PartyState::try_from(party.state).unwrap()
}

async fn who_am_i(channel: Channel) -> Result<common::WhoAmIResponse, Status> {
    common::party_service_client::PartyServiceClient::new(channel)
        .who_am_i(common::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
}

fn fingerprint_of(issued: &Issued) -> String {
    lefi::identity::certificate_facts(issued.cert_pem.as_bytes())
        .unwrap()
        .0
        .fingerprint
}

async fn insurer_full_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let today = app.clock.today();

    let applied = admin
        .apply(&INSURER, &["INS_COORDINATION", "INS_CLAIMS"])
        .await
        .unwrap();
    assert_eq!(state(&applied), common::PartyState::Applied);
    assert!(applied.party_id.starts_with("pty_"));
    assert_eq!(applied.org_number, INSURER.org);
    assert_eq!(
        applied.requested_basis_codes,
        vec!["INS_COORDINATION", "INS_CLAIMS"]
    );
    assert!(applied.agreement.is_none());
    let id = applied.party_id.clone();

    let sent = admin
        .send_agreement(&id, &["INS_COORDINATION"], 90)
        .await
        .unwrap();
    assert_eq!(state(&sent), common::PartyState::AgreementSent);
    let agreement = sent.agreement.clone().unwrap();
    assert_eq!(agreement.agreement_type, common::AgreementType::Avtal as i32);
    assert_eq!(agreement.granted_basis_codes, vec!["INS_COORDINATION"]);
    assert_eq!(agreement.notice_period_days, 90);

    // Both signatures, in either order; one is not enough.
    let one = admin.sign(&id, pb::Signer::Agency, "Bo Berg").await.unwrap();
    assert_eq!(state(&one), common::PartyState::AgreementSent);
    let both = admin
        .sign(&id, pb::Signer::Party, "Anna Andersson")
        .await
        .unwrap();
    assert_eq!(state(&both), common::PartyState::Signed);
    assert_eq!(both.signatures.len(), 2);
    assert!(both.signatures.iter().all(|s| s.recorded_by == "Test Operatör"));

    // The new certificate is not usable before it is registered...
    let cert = INSURER.certificate(&app);
    let party_channel = app.party_channel(&cert).await;
    let refused = who_am_i(party_channel.clone()).await;
    assert_refused(refused, Code::Unauthenticated, "CERTIFICATE_NOT_REGISTERED");

    // ...and at once after.
    let added = admin.add_certificate(&id, &cert.cert_pem).await.unwrap();
    assert_eq!(added.party_state, common::PartyState::Connected as i32);
    let registered = added.certificate.unwrap();
    assert_eq!(registered.fingerprint, fingerprint_of(&cert));
    assert_eq!(registered.state, pb::CertificateState::Active as i32);
    assert_eq!(registered.added_by, "Test Operatör");
    assert!(
        registered.subject.contains(INSURER.name),
        "{}",
        registered.subject
    );
    let me = who_am_i(party_channel.clone()).await.unwrap();
    assert_eq!(me.party_id, id);
    assert_eq!(me.state, common::PartyState::Connected as i32);
    assert_eq!(me.agreement_type, common::AgreementType::Avtal as i32);
    assert_eq!(me.granted_basis_codes, vec!["INS_COORDINATION"]);

    // Termination respecting the 90-day notice period: works until the date, refused from it.
    let connected = admin.get(&id).await.unwrap();
    let effective = today + time::Duration::days(90);
    let scheduled = admin
        .terminate(PartyAdmin::notice(&connected, effective))
        .await
        .unwrap();
    assert_eq!(state(&scheduled), common::PartyState::TerminationScheduled);
    let termination = scheduled.termination.clone().unwrap();
    assert_eq!(termination.effective_date, day(effective));
    assert_eq!(termination.notice_received_on, day(today));
    assert_eq!(termination.scheduled_by, "Test Operatör");
    let me = who_am_i(party_channel.clone()).await.unwrap();
    assert_eq!(me.termination_effective_date, day(effective));
    app.clock.advance(time::Duration::days(90));
    assert_refused(
        who_am_i(party_channel).await,
        Code::PermissionDenied,
        "PARTY_TERMINATED",
    );
    assert_eq!(
        state(&admin.get(&id).await.unwrap()),
        common::PartyState::Terminated
    );

    // A terminated party that applies again is a new party.
    let again = admin.apply(&INSURER, &["INS_COORDINATION"]).await.unwrap();
    assert_ne!(again.party_id, id);
    assert_eq!(state(&again), common::PartyState::Applied);
    app.stop().await;
}

async fn authority_full_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let applied = admin.apply(&AUTHORITY, &["AUTH_DUTY_1980_995"]).await.unwrap();
    let id = applied.party_id.clone();
    // An överenskommelse has no notice period.
    let refused = admin.send_agreement(&id, &["AUTH_DUTY_1980_995"], 30).await;
    let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(metadata(&status, "field"), "notice_period_days");
    let sent = admin
        .send_agreement(&id, &["AUTH_DUTY_1980_995"], 0)
        .await
        .unwrap();
    let agreement = sent.agreement.unwrap();
    assert_eq!(
        agreement.agreement_type,
        common::AgreementType::Overenskommelse as i32
    );
    assert_eq!(agreement.notice_period_days, 0);
    admin.sign(&id, pb::Signer::Party, "Cecilia Chef").await.unwrap();
    let signed = admin.sign(&id, pb::Signer::Agency, "Bo Berg").await.unwrap();
    assert_eq!(state(&signed), common::PartyState::Signed);
    let cert = AUTHORITY.certificate(&app);
    let added = admin.add_certificate(&id, &cert.cert_pem).await.unwrap();
    assert_eq!(added.party_state, common::PartyState::Connected as i32);
    let channel = app.party_channel(&cert).await;
    let me = who_am_i(channel.clone()).await.unwrap();
    assert_eq!(me.party_id, id);
    assert_eq!(me.kind, common::PartyKind::StateAuthority as i32);
    assert_eq!(me.agreement_type, common::AgreementType::Overenskommelse as i32);

    // The authority's notice: matter, number, name, date; effective today → terminated at once.
    let party = admin.get(&id).await.unwrap();
    let mut notice = PartyAdmin::notice(&party, app.clock.today());
    notice.organisation_name = "  exempelMYNDIGHETEN ".to_string();
    let terminated = admin.terminate(notice).await.unwrap();
    assert_eq!(state(&terminated), common::PartyState::Terminated);
    assert_refused(
        who_am_i(channel).await,
        Code::PermissionDenied,
        "PARTY_TERMINATED",
    );
    app.stop().await;
}

async fn illegal_transitions_report_current_state(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    use common::PartyState as S;
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let cert_pem = INSURER.certificate(&app).cert_pem;
    let party = admin.apply(&INSURER, &["INS_CLAIMS"]).await.unwrap();
    let id = party.party_id.clone();

    // APPLIED
    assert_illegal(admin.sign(&id, pb::Signer::Party, "A").await, S::Applied);
    assert_illegal(admin.add_certificate(&id, &cert_pem).await, S::Applied);
    assert_illegal(admin.withdraw(&id, "no").await, S::Applied);

    // AGREEMENT_SENT
    admin.send_agreement(&id, &["INS_CLAIMS"], 30).await.unwrap();
    assert_illegal(
        admin.send_agreement(&id, &["INS_CLAIMS"], 30).await,
        S::AgreementSent,
    );
    assert_illegal(admin.add_certificate(&id, &cert_pem).await, S::AgreementSent);
    admin.sign(&id, pb::Signer::Party, "A").await.unwrap();
    // The same side cannot sign twice.
    assert_illegal(admin.sign(&id, pb::Signer::Party, "A").await, S::AgreementSent);
    assert_illegal(admin.withdraw(&id, "no").await, S::AgreementSent);

    // SIGNED
    admin.sign(&id, pb::Signer::Agency, "B").await.unwrap();
    assert_illegal(admin.sign(&id, pb::Signer::Agency, "B").await, S::Signed);
    assert_illegal(admin.send_agreement(&id, &["INS_CLAIMS"], 30).await, S::Signed);
    assert_illegal(admin.withdraw(&id, "no").await, S::Signed);

    // CONNECTED
    admin.add_certificate(&id, &cert_pem).await.unwrap();
    assert_illegal(admin.send_agreement(&id, &["INS_CLAIMS"], 30).await, S::Connected);
    assert_illegal(admin.sign(&id, pb::Signer::Party, "A").await, S::Connected);
    assert_illegal(admin.withdraw(&id, "no").await, S::Connected);

    // TERMINATION_SCHEDULED
    let party = admin.get(&id).await.unwrap();
    let future = app.clock.today() + time::Duration::days(60);
    admin.terminate(PartyAdmin::notice(&party, future)).await.unwrap();
    assert_illegal(
        admin.terminate(PartyAdmin::notice(&party, future)).await,
        S::TerminationScheduled,
    );
    assert_illegal(
        admin.send_agreement(&id, &["INS_CLAIMS"], 30).await,
        S::TerminationScheduled,
    );
    assert_illegal(
        admin.sign(&id, pb::Signer::Party, "A").await,
        S::TerminationScheduled,
    );

    // TERMINATED (from the effective date, without anyone writing it down first)
    app.clock.advance(time::Duration::days(60));
    let other_cert = app.certs.ca.issue_client("Annan", Some(INSURER.org)).unwrap();
    assert_illegal(
        admin.add_certificate(&id, &other_cert.cert_pem).await,
        S::Terminated,
    );
    assert_illegal(
        admin.terminate(PartyAdmin::notice(&party, future)).await,
        S::Terminated,
    );
    assert_illegal(admin.withdraw(&id, "too late").await, S::Terminated);
    assert_illegal(admin.sign(&id, pb::Signer::Party, "A").await, S::Terminated);
    assert_illegal(
        admin.send_agreement(&id, &["INS_CLAIMS"], 30).await,
        S::Terminated,
    );
    app.stop().await;
}

async fn basis_not_allowed_for_kind_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    // An insurer cannot apply under an authority's basis; nothing is registered.
    let refused = admin
        .apply(&INSURER, &["INS_COORDINATION", "AUTH_SOCIAL_SERVICES"])
        .await;
    let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(metadata(&status, "legal_basis"), "AUTH_SOCIAL_SERVICES");
    assert_eq!(metadata(&status, "field"), "requested_basis_codes[1]");
    assert!(
        status.message().contains("AUTH_SOCIAL_SERVICES"),
        "{}",
        status.message()
    );
    assert_refused(
        admin.get_by_org(INSURER.org).await,
        Code::NotFound,
        "PARTY_NOT_FOUND",
    );

    // A state authority cannot be granted a municipal-only basis; the party stays APPLIED.
    let party = admin.apply(&AUTHORITY, &["AUTH_DUTY_1980_995"]).await.unwrap();
    let refused = admin
        .send_agreement(
            &party.party_id,
            &["AUTH_DUTY_1980_995", "AUTH_SOCIAL_SERVICES"],
            0,
        )
        .await;
    let status = assert_refused(refused, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(metadata(&status, "legal_basis"), "AUTH_SOCIAL_SERVICES");
    assert_eq!(metadata(&status, "field"), "granted_basis_codes[1]");
    let unchanged = admin.get(&party.party_id).await.unwrap();
    assert_eq!(state(&unchanged), common::PartyState::Applied);
    assert!(unchanged.agreement.is_none());

    // Insurers' bases for an authority, unknown codes and repealed bases are refused as well.
    let status = assert_refused(
        admin.send_agreement(&party.party_id, &["INS_CLAIMS"], 0).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "legal_basis"), "INS_CLAIMS");
    let status = assert_refused(
        admin.send_agreement(&party.party_id, &["NO_SUCH_BASIS"], 0).await,
        Code::InvalidArgument,
        "UNKNOWN_BASIS",
    );
    assert_eq!(metadata(&status, "legal_basis"), "NO_SUCH_BASIS");
    let mut unknown_benefit = PartyAdmin::agreement_request(&party.party_id, &["AUTH_DUTY_1980_995"], 0);
    unknown_benefit.granted_benefit_type_codes = vec!["SJP".to_string(), "XYZ".to_string()];
    let status = assert_refused(
        admin.send_agreement_with(unknown_benefit).await,
        Code::InvalidArgument,
        "UNKNOWN_BENEFIT_TYPE",
    );
    assert_eq!(metadata(&status, "benefit_type"), "XYZ");
    assert_eq!(metadata(&status, "field"), "granted_benefit_type_codes[1]");
    let municipality = admin
        .apply(
            &Applicant {
                org: "212000-0019",
                name: "Exempelby kommun",
                kind: common::PartyKind::MunicipalAuthority,
            },
            &[],
        )
        .await
        .unwrap();
    let status = assert_refused(
        admin
            .send_agreement(&municipality.party_id, &["AUTH_CHILD_CARE_ALLOWANCE"], 0)
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert!(status.message().contains("not in force"), "{}", status.message());
    app.stop().await;
}

async fn termination_with_mismatched_number_or_name_changes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let party = admin.get(&app.municipality_id).await.unwrap();
    let history = admin.history(&app.municipality_id).await.unwrap();
    let effective = app.clock.today() + time::Duration::days(30);

    let mut wrong_number = PartyAdmin::notice(&party, effective);
    wrong_number.org_number = "212000-0019".to_string();
    let status = assert_refused(
        admin.terminate(wrong_number).await,
        Code::FailedPrecondition,
        "TERMINATION_MISMATCH",
    );
    assert_eq!(metadata(&status, "field"), "org_number");

    let mut wrong_name = PartyAdmin::notice(&party, effective);
    wrong_name.organisation_name = "Testkommunen".to_string();
    let status = assert_refused(
        admin.terminate(wrong_name).await,
        Code::FailedPrecondition,
        "TERMINATION_MISMATCH",
    );
    assert_eq!(metadata(&status, "field"), "organisation_name");

    let mut not_a_termination = PartyAdmin::notice(&party, effective);
    not_a_termination.is_termination = false;
    let status = assert_refused(
        admin.terminate(not_a_termination).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "is_termination");

    let mut malformed_number = PartyAdmin::notice(&party, effective);
    malformed_number.org_number = "222000-0001".to_string();
    assert_refused(
        admin.terminate(malformed_number).await,
        Code::InvalidArgument,
        "ORG_NUMBER_INVALID",
    );

    // Nothing changed: same state, no termination, no audit entry, the party still works.
    let after = admin.get(&app.municipality_id).await.unwrap();
    assert_eq!(state(&after), common::PartyState::Connected);
    assert!(after.termination.is_none());
    assert_eq!(admin.history(&app.municipality_id).await.unwrap(), history);
    who_am_i(app.party_channel(&app.certs.municipality).await)
        .await
        .unwrap();
    app.stop().await;
}

async fn insurer_notice_period_with_and_without_override(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let today = app.clock.today();
    // The test insurer has a signed avtal with a 90-day notice period.
    let party = admin.get(&app.insurer_id).await.unwrap();
    assert_eq!(party.agreement.as_ref().unwrap().notice_period_days, 90);

    let too_early = PartyAdmin::notice(&party, today + time::Duration::days(30));
    let status = assert_refused(
        admin.terminate(too_early.clone()).await,
        Code::FailedPrecondition,
        "NOTICE_PERIOD_NOT_MET",
    );
    assert_eq!(
        metadata(&status, "earliest_effective_date"),
        day(today + time::Duration::days(90))
    );
    assert_eq!(
        state(&admin.get(&app.insurer_id).await.unwrap()),
        common::PartyState::Connected
    );

    // A notice received long enough ago meets the period.
    let mut received_earlier = PartyAdmin::notice(&party, today + time::Duration::days(30));
    received_earlier.notice_received_on = day(today - time::Duration::days(60));
    let scheduled = admin.terminate(received_earlier).await.unwrap();
    assert_eq!(state(&scheduled), common::PartyState::TerminationScheduled);
    admin.withdraw(&app.insurer_id, "test").await.unwrap();

    // A notice cannot have arrived in the future.
    let mut from_the_future = PartyAdmin::notice(&party, today + time::Duration::days(200));
    from_the_future.notice_received_on = day(today + time::Duration::days(1));
    let status = assert_refused(
        admin.terminate(from_the_future).await,
        Code::InvalidArgument,
        "INVALID_DATE",
    );
    assert_eq!(metadata(&status, "field"), "notice_received_on");

    // With an override reason the early date is accepted, and the reason is recorded.
    let mut overridden = too_early;
    overridden.idempotency_key = idempotency_key();
    overridden.override_reason = "agreed with the insurer in writing".to_string();
    let scheduled = admin.terminate(overridden).await.unwrap();
    assert_eq!(state(&scheduled), common::PartyState::TerminationScheduled);
    assert_eq!(
        scheduled.termination.unwrap().override_reason,
        "agreed with the insurer in writing"
    );
    let last = admin.history(&app.insurer_id).await.unwrap().pop().unwrap();
    assert_eq!(last.action, pb::PartyAction::ScheduleTermination as i32);
    let details: serde_json::Value = serde_json::from_str(&last.details_json).unwrap();
    assert_eq!(details["notice_period_overridden"], true);
    assert_eq!(details["override_reason"], "agreed with the insurer in writing");

    // An authority has no notice period to override.
    let municipality = admin.get(&app.municipality_id).await.unwrap();
    let mut needless = PartyAdmin::notice(&municipality, today + time::Duration::days(5));
    needless.override_reason = "why not".to_string();
    let status = assert_refused(
        admin.terminate(needless).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "override_reason");
    app.stop().await;
}

async fn termination_effective_today_or_earlier_is_immediate(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let today = app.clock.today();
    let municipality_channel = app.party_channel(&app.certs.municipality).await;
    who_am_i(municipality_channel.clone()).await.unwrap();

    // A notice that arrived late, stating a date already past: terminated at once.
    let municipality = admin.get(&app.municipality_id).await.unwrap();
    let terminated = admin
        .terminate(PartyAdmin::notice(&municipality, today - time::Duration::days(3)))
        .await
        .unwrap();
    assert_eq!(state(&terminated), common::PartyState::Terminated);
    assert_eq!(
        terminated.termination.unwrap().effective_date,
        day(today - time::Duration::days(3))
    );
    assert_refused(
        who_am_i(municipality_channel).await,
        Code::PermissionDenied,
        "PARTY_TERMINATED",
    );

    // Effective today (the insurer's notice arrived long ago): terminated at once too.
    let insurer = admin.get(&app.insurer_id).await.unwrap();
    let mut notice = PartyAdmin::notice(&insurer, today);
    notice.notice_received_on = day(today - time::Duration::days(120));
    let terminated = admin.terminate(notice).await.unwrap();
    assert_eq!(state(&terminated), common::PartyState::Terminated);
    assert_refused(
        who_am_i(app.party_channel(&app.certs.insurer).await).await,
        Code::PermissionDenied,
        "PARTY_TERMINATED",
    );
    let history = admin.history(&app.insurer_id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.before_state, common::PartyState::Connected as i32);
    assert_eq!(last.after_state, common::PartyState::Terminated as i32);
    app.stop().await;
}

/// Moves the test clock to the given instant.
fn set_clock(app: &TestApp, instant: time::OffsetDateTime) {
    app.clock.advance(instant - app.clock.now());
}

async fn termination_takes_effect_at_swedish_midnight(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let channel = app.party_channel(&app.certs.municipality).await;
    // Effective on the 1st of a summer month (CEST, UTC+2) at least 10 days ahead.
    let mut effective = app.clock.today() + time::Duration::days(10);
    while effective.day() != 1 || !(5..=9).contains(&u8::from(effective.month())) {
        effective = effective.next_day().unwrap();
    }
    let party = admin.get(&app.municipality_id).await.unwrap();
    admin
        .terminate(PartyAdmin::notice(&party, effective))
        .await
        .unwrap();
    let swedish_midnight = effective.midnight().assume_utc() - time::Duration::hours(2);

    // 23:59 in Stockholm the evening before: still works.
    set_clock(&app, swedish_midnight - time::Duration::minutes(1));
    let me = who_am_i(channel.clone()).await.unwrap();
    assert_eq!(me.state, common::PartyState::TerminationScheduled as i32);

    // 00:01 in Stockholm, 22:01 UTC on the day before: the termination has taken effect, though
    // the UTC date has not yet turned.
    set_clock(&app, swedish_midnight + time::Duration::minutes(1));
    assert!(
        app.clock.now().date() < effective,
        "UTC is still on the previous day"
    );
    assert_refused(
        who_am_i(channel).await,
        Code::PermissionDenied,
        "PARTY_TERMINATED",
    );
    let after = admin.get(&app.municipality_id).await.unwrap();
    assert_eq!(state(&after), common::PartyState::Terminated);
    app.stop().await;
}

async fn future_termination_works_until_its_effective_date(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let effective = app.clock.today() + time::Duration::days(10);
    let channel = app.party_channel(&app.certs.municipality).await;
    let party = admin.get(&app.municipality_id).await.unwrap();
    let scheduled = admin
        .terminate(PartyAdmin::notice(&party, effective))
        .await
        .unwrap();
    assert_eq!(state(&scheduled), common::PartyState::TerminationScheduled);

    // The day before, the party still works.
    app.clock.advance(time::Duration::days(9));
    let me = who_am_i(channel.clone()).await.unwrap();
    assert_eq!(me.state, common::PartyState::TerminationScheduled as i32);
    assert_eq!(me.termination_effective_date, day(effective));
    let listed = admin
        .list_all(pb::ListPartiesRequest {
            states: vec![common::PartyState::TerminationScheduled as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    // From the effective date, calls are refused and the admin API shows TERMINATED, with no
    // background job involved.
    app.clock.advance(time::Duration::days(1));
    assert_refused(
        who_am_i(channel).await,
        Code::PermissionDenied,
        "PARTY_TERMINATED",
    );
    let after = admin.get(&app.municipality_id).await.unwrap();
    assert_eq!(state(&after), common::PartyState::Terminated);
    let listed = admin
        .list_all(pb::ListPartiesRequest {
            states: vec![common::PartyState::Terminated as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|p| p.party_id.as_str()).collect::<Vec<_>>(),
        vec![app.municipality_id.as_str()]
    );
    let history = admin.history(&app.municipality_id).await.unwrap();
    let took_effect = history.last().unwrap();
    assert_eq!(took_effect.action, pb::PartyAction::TerminationTookEffect as i32);
    assert_eq!(took_effect.operator_name, "");
    assert_eq!(
        took_effect.before_state,
        common::PartyState::TerminationScheduled as i32
    );
    assert_eq!(took_effect.after_state, common::PartyState::Terminated as i32);
    // Recorded once, however often it is read.
    let again = admin.history(&app.municipality_id).await.unwrap();
    assert_eq!(again.len(), history.len());
    assert_illegal(
        admin.withdraw(&app.municipality_id, "too late").await,
        common::PartyState::Terminated,
    );
    app.stop().await;
}

async fn withdrawal_returns_to_the_earlier_state(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let effective = app.clock.today() + time::Duration::days(20);
    let channel = app.party_channel(&app.certs.municipality).await;
    let party = admin.get(&app.municipality_id).await.unwrap();
    admin
        .terminate(PartyAdmin::notice(&party, effective))
        .await
        .unwrap();

    let status = assert_refused(
        admin.withdraw(&app.municipality_id, " ").await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "reason");
    let withdrawn = admin
        .withdraw(&app.municipality_id, "party withdrew its notice")
        .await
        .unwrap();
    assert_eq!(state(&withdrawn), common::PartyState::Connected);
    assert!(withdrawn.termination.is_none());
    app.clock.advance(time::Duration::days(30));
    let me = who_am_i(channel).await.unwrap();
    assert_eq!(me.state, common::PartyState::Connected as i32);
    assert_eq!(me.termination_effective_date, "");

    // A party terminated during onboarding returns to where it was.
    let sent = admin
        .onboard_until(
            &AUTHORITY,
            &["AUTH_DUTY_1980_995"],
            common::PartyState::AgreementSent,
        )
        .await;
    let later = app.clock.today() + time::Duration::days(5);
    admin.terminate(PartyAdmin::notice(&sent, later)).await.unwrap();
    // A party whose termination was registered before it was connected cannot be connected.
    let cert = AUTHORITY.certificate(&app);
    assert_illegal(
        admin.add_certificate(&sent.party_id, &cert.cert_pem).await,
        common::PartyState::TerminationScheduled,
    );
    let back = admin.withdraw(&sent.party_id, "sent in error").await.unwrap();
    assert_eq!(state(&back), common::PartyState::AgreementSent);
    let history = admin.history(&sent.party_id).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.action, pb::PartyAction::WithdrawTermination as i32);
    assert_eq!(last.before_state, common::PartyState::TerminationScheduled as i32);
    assert_eq!(last.after_state, common::PartyState::AgreementSent as i32);
    app.stop().await;
}

async fn revoked_certificate_is_refused_and_its_open_stream_ends(backend: Backend) {
    let options = SpawnOptions {
        heartbeat_interval: Some(Duration::from_millis(100)),
        ..SpawnOptions::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    // Rotation: a successor certificate first.
    let successor = app
        .certs
        .ca
        .issue_client("Testförsäkring AB (ny)", Some("556677-8899"))
        .unwrap();
    let added = admin
        .add_certificate(&app.insurer_id, &successor.cert_pem)
        .await
        .unwrap();
    assert_eq!(added.party_state, common::PartyState::Connected as i32);

    let channel = app.party_channel(&app.certs.insurer).await;
    let mut stream = common::delivery_service_client::DeliveryServiceClient::new(channel.clone())
        .stream(common::StreamRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a heartbeat")
        .unwrap();
    assert!(first.is_some());

    let old = fingerprint_of(&app.certs.insurer);
    let revoked = admin
        .revoke(&app.insurer_id, &old.to_uppercase(), "key compromised")
        .await
        .unwrap();
    assert_eq!(revoked.state, pb::CertificateState::Revoked as i32);
    assert_eq!(revoked.revocation_reason, "key compromised");

    // The open stream ends with CERTIFICATE_REVOKED at once.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream must end soon after the revocation");
    assert_eq!(ended.code(), Code::Unauthenticated);
    assert_eq!(reason(&ended), "CERTIFICATE_REVOKED");
    // New calls on the same connection are refused too.
    assert_refused(
        who_am_i(channel).await,
        Code::Unauthenticated,
        "CERTIFICATE_REVOKED",
    );
    // The successor works; the party's state is unchanged.
    let me = who_am_i(app.party_channel(&successor).await).await.unwrap();
    assert_eq!(me.party_id, app.insurer_id);
    assert_eq!(me.state, common::PartyState::Connected as i32);

    // Revoking again leaves it as it was; an unknown fingerprint is NOT_FOUND.
    let again = admin.revoke(&app.insurer_id, &old, "second time").await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(again.revocation_reason, "key compromised");
    assert_refused(
        admin.revoke(&app.insurer_id, &"ab".repeat(32), "x").await,
        Code::NotFound,
        "CERTIFICATE_NOT_FOUND",
    );
    // Another party's certificate is not this party's to revoke.
    assert_refused(
        admin
            .revoke(&app.insurer_id, &fingerprint_of(&app.certs.municipality), "x")
            .await,
        Code::NotFound,
        "CERTIFICATE_NOT_FOUND",
    );
    app.stop().await;
}

async fn idempotent_retry_returns_the_same_answer_and_acts_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let request = PartyAdmin::apply_request(&INSURER, &["INS_COORDINATION"]);
    let first = admin.apply_with(request.clone()).await.unwrap();
    let retry = admin.apply_with(request.clone()).await.unwrap();
    assert_eq!(first, retry);
    let parties = admin.list_all(pb::ListPartiesRequest::default()).await.unwrap();
    assert_eq!(parties.iter().filter(|p| p.org_number == INSURER.org).count(), 1);

    let agreement = PartyAdmin::agreement_request(&first.party_id, &["INS_COORDINATION"], 60);
    let sent = admin.send_agreement_with(agreement.clone()).await.unwrap();
    // A retry after the party moved on still gets the first answer, not a state error.
    let sign = PartyAdmin::sign_request(&first.party_id, pb::Signer::Party, "Anna Andersson");
    let signed = admin.sign_with(sign.clone()).await.unwrap();
    admin
        .sign(&first.party_id, pb::Signer::Agency, "Bo Berg")
        .await
        .unwrap();
    assert_eq!(admin.send_agreement_with(agreement).await.unwrap(), sent);
    let signed_again = admin.sign_with(sign).await.unwrap();
    assert_eq!(signed_again, signed);
    assert_eq!(state(&signed_again), common::PartyState::AgreementSent);

    // Every action appears once in the audit history.
    let history = admin.history(&first.party_id).await.unwrap();
    let actions: Vec<i32> = history.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        vec![
            pb::PartyAction::Apply as i32,
            pb::PartyAction::SendAgreement as i32,
            pb::PartyAction::RecordSignature as i32,
            pb::PartyAction::RecordSignature as i32,
        ]
    );
    assert_eq!(history[0].idempotency_key, request.idempotency_key);

    // The same key and request from another operator is a retry of the same change: it gets the
    // first answer (keys are global, not per operator).
    let colleague_cert = app.certs.ca.issue_client("Andra Operatör", None).unwrap();
    app.store
        .upsert_operator(
            &NewOperator {
                fingerprint: &fingerprint_of(&colleague_cert),
                name: "Andra Operatör",
                role: lefi::domain::OperatorRole::Operator,
            },
            app.clock.now_micros(),
        )
        .await
        .unwrap();
    let colleague = PartyAdmin::new(&app, &colleague_cert).await;
    assert_eq!(colleague.apply_with(request).await.unwrap(), first);

    // A refused request is not remembered: the corrected retry with the same key is judged anew.
    let mut bad = PartyAdmin::apply_request(&AUTHORITY, &["INS_CLAIMS"]);
    assert_refused(
        admin.apply_with(bad.clone()).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    bad.requested_basis_codes = vec!["AUTH_DUTY_1980_995".to_string()];
    let good = admin.apply_with(bad).await.unwrap();
    assert_eq!(state(&good), common::PartyState::Applied);
    app.stop().await;
}

async fn concurrent_calls_with_one_key_act_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let request = PartyAdmin::apply_request(&INSURER, &["INS_COORDINATION"]);
    let calls = (0..6).map(|_| {
        let admin = admin.clone();
        let request = request.clone();
        tokio::spawn(async move { admin.apply_with(request).await })
    });
    let answers: Vec<pb::Party> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    assert!(answers.iter().all(|p| *p == answers[0]), "{answers:?}");
    let history = admin.history(&answers[0].party_id).await.unwrap();
    assert_eq!(history.len(), 1);

    // Different keys for the same organisation: one application wins, the others are told which.
    let calls = (0..4).map(|_| {
        let admin = admin.clone();
        tokio::spawn(async move { admin.apply(&AUTHORITY, &["AUTH_DUTY_1980_995"]).await })
    });
    let results: Vec<Result<pb::Party, Status>> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    let winners: Vec<&pb::Party> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(reason(refused), "PARTY_ALREADY_EXISTS", "{refused:?}");
        assert_eq!(metadata(refused, "party_id"), winners[0].party_id);
    }
    app.stop().await;
}

async fn idempotency_key_reused_for_another_request_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let request = PartyAdmin::apply_request(&INSURER, &["INS_COORDINATION"]);
    let first = admin.apply_with(request.clone()).await.unwrap();

    let mut other = PartyAdmin::apply_request(&AUTHORITY, &[]);
    other.idempotency_key = request.idempotency_key.clone();
    assert_refused(
        admin.apply_with(other).await,
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_refused(
        admin.get_by_org(AUTHORITY.org).await,
        Code::NotFound,
        "PARTY_NOT_FOUND",
    );

    // The same key for another method is another request too.
    let mut agreement = PartyAdmin::agreement_request(&first.party_id, &["INS_COORDINATION"], 90);
    agreement.idempotency_key = request.idempotency_key.clone();
    assert_refused(
        admin.send_agreement_with(agreement).await,
        Code::AlreadyExists,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_eq!(
        state(&admin.get(&first.party_id).await.unwrap()),
        common::PartyState::Applied
    );

    // A key is required.
    let mut keyless = PartyAdmin::apply_request(&AUTHORITY, &[]);
    keyless.idempotency_key = String::new();
    let status = assert_refused(
        admin.apply_with(keyless).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "idempotency_key");
    app.stop().await;
}

async fn auditor_reads_but_cannot_mutate_and_ingest_cannot_either(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let auditor = PartyAdmin::new(&app, &app.certs.auditor).await;
    // The insurer's onboarding, as the test set-up recorded it.
    let history = auditor.history(&app.insurer_id).await.unwrap();
    let status = assert_refused(
        auditor.apply(&INSURER, &["INS_COORDINATION"]).await,
        Code::PermissionDenied,
        "ROLE_NOT_PERMITTED",
    );
    assert_eq!(metadata(&status, "role"), "auditor");
    assert_eq!(metadata(&status, "required_roles"), "operator");
    let insurer = auditor.get(&app.insurer_id).await.unwrap();
    assert_refused(
        auditor
            .terminate(PartyAdmin::notice(&insurer, app.clock.today()))
            .await,
        Code::PermissionDenied,
        "ROLE_NOT_PERMITTED",
    );
    assert_refused(
        auditor
            .revoke(&app.insurer_id, &fingerprint_of(&app.certs.insurer), "x")
            .await,
        Code::PermissionDenied,
        "ROLE_NOT_PERMITTED",
    );
    // Nothing changed, and the auditor can read all of it.
    assert_eq!(
        state(&auditor.get(&app.insurer_id).await.unwrap()),
        common::PartyState::Connected
    );
    assert_eq!(
        auditor
            .list_all(pb::ListPartiesRequest::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(auditor.history(&app.insurer_id).await.unwrap(), history);
    assert_refused(
        auditor.get_by_org(INSURER.org).await,
        Code::NotFound,
        "PARTY_NOT_FOUND",
    );

    // The register feed's role has no business with parties at all.
    let ingest = app.certs.ca.issue_client("Registerflöde", None).unwrap();
    app.store
        .upsert_operator(
            &NewOperator {
                fingerprint: &fingerprint_of(&ingest),
                name: "midas-feed",
                role: lefi::domain::OperatorRole::Ingest,
            },
            app.clock.now_micros(),
        )
        .await
        .unwrap();
    let feed = PartyAdmin::new(&app, &ingest).await;
    let status = assert_refused(
        feed.get(&app.insurer_id).await,
        Code::PermissionDenied,
        "ROLE_NOT_PERMITTED",
    );
    assert_eq!(metadata(&status, "required_roles"), "operator,auditor");
    assert_refused(
        feed.withdraw(&app.insurer_id, "x").await,
        Code::PermissionDenied,
        "ROLE_NOT_PERMITTED",
    );
    app.stop().await;
}

async fn party_certificate_is_refused_on_the_admin_listener(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let as_party = PartyAdmin::new(&app, &app.certs.insurer).await;
    let status = assert_refused(
        as_party.get(&app.insurer_id).await,
        Code::PermissionDenied,
        "NOT_AN_OPERATOR",
    );
    assert!(status.message().contains("operator"), "{}", status.message());
    assert_refused(
        as_party.withdraw(&app.insurer_id, "x").await,
        Code::PermissionDenied,
        "NOT_AN_OPERATOR",
    );
    app.stop().await;
}

async fn certificates_are_checked_before_registration(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let id = app.insurer_id.clone();
    let invalid = |result| {
        let status = assert_refused(result, Code::InvalidArgument, "CERTIFICATE_INVALID");
        assert_eq!(metadata(&status, "field"), "certificate_pem");
        status.message().to_string()
    };
    invalid(admin.add_certificate(&id, "not a certificate").await);
    let message = invalid(admin.add_certificate(&id, &app.certs.foreign.cert_pem).await);
    assert!(message.contains("party CA"), "{message}");
    let now = time::OffsetDateTime::now_utc();
    let expired = app
        .certs
        .ca
        .issue_client_valid(
            "Utgånget",
            None,
            Some((now - time::Duration::days(30), now - time::Duration::days(1))),
        )
        .unwrap();
    let message = invalid(admin.add_certificate(&id, &expired.cert_pem).await);
    assert!(message.contains("expired"), "{message}");
    let not_yet = app
        .certs
        .ca
        .issue_client_valid(
            "Framtida",
            None,
            Some((now + time::Duration::days(1), now + time::Duration::days(30))),
        )
        .unwrap();
    let message = invalid(admin.add_certificate(&id, &not_yet.cert_pem).await);
    assert!(message.contains("not valid yet"), "{message}");
    let message = invalid(admin.add_certificate(&id, &app.certs.server.cert_pem).await);
    assert!(message.contains("client authentication"), "{message}");
    let two = format!("{}{}", app.certs.stranger.cert_pem, app.certs.auditor.cert_pem);
    let message = invalid(admin.add_certificate(&id, &two).await);
    assert!(message.contains("2 certificates"), "{message}");

    // Already registered elsewhere: refused; already registered here: returned unchanged.
    assert_refused(
        admin.add_certificate(&id, &app.certs.municipality.cert_pem).await,
        Code::AlreadyExists,
        "CERTIFICATE_ALREADY_REGISTERED",
    );
    assert_refused(
        admin.add_certificate(&id, &app.certs.operator.cert_pem).await,
        Code::AlreadyExists,
        "CERTIFICATE_ALREADY_REGISTERED",
    );
    let same = admin
        .add_certificate(&id, &app.certs.insurer.cert_pem)
        .await
        .unwrap();
    assert_eq!(
        same.certificate.unwrap().fingerprint,
        fingerprint_of(&app.certs.insurer)
    );
    assert_eq!(admin.get(&id).await.unwrap().certificates.len(), 1);
    app.stop().await;
}

async fn applications_are_validated(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let status = assert_refused(
        admin
            .apply(
                &Applicant {
                    org: "556000-0018",
                    ..INSURER
                },
                &[],
            )
            .await,
        Code::InvalidArgument,
        "ORG_NUMBER_INVALID",
    );
    assert_eq!(metadata(&status, "field"), "org_number");
    let status = assert_refused(
        admin
            .apply(
                &Applicant {
                    kind: common::PartyKind::Unspecified,
                    ..INSURER
                },
                &[],
            )
            .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "kind");
    let mut no_email = PartyAdmin::apply_request(&INSURER, &[]);
    no_email.contact_email = "anna.exempel.se".to_string();
    let status = assert_refused(
        admin.apply_with(no_email).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "contact_email");
    let mut no_name = PartyAdmin::apply_request(&INSURER, &[]);
    no_name.name = "  ".to_string();
    let status = assert_refused(
        admin.apply_with(no_name).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_eq!(metadata(&status, "field"), "name");
    // A second application for a live organisation number names the existing party.
    let status = assert_refused(
        admin
            .apply(
                &Applicant {
                    org: "5566778899",
                    name: "Testförsäkring AB",
                    kind: common::PartyKind::Insurer,
                },
                &["INS_COORDINATION"],
            )
            .await,
        Code::AlreadyExists,
        "PARTY_ALREADY_EXISTS",
    );
    assert_eq!(metadata(&status, "party_id"), app.insurer_id);
    app.stop().await;
}

async fn list_parties_pages_and_filters(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    use common::PartyKind::{Insurer, MunicipalAuthority, StateAuthority};
    for (org, name, kind, basis) in [
        ("556000-0027", "Alfa Försäkring AB", Insurer, "INS_CLAIMS"),
        (
            "212000-0027",
            "Beta kommun",
            MunicipalAuthority,
            "AUTH_SOCIAL_SERVICES",
        ),
        ("556000-0035", "Delta Försäkring AB", Insurer, "INS_CLAIMS"),
        (
            "202000-0028",
            "Epsilonverket",
            StateAuthority,
            "AUTH_DUTY_1980_995",
        ),
        ("556000-0043", "Gamma Liv AB", Insurer, "INS_COORDINATION"),
    ] {
        admin
            .apply(&Applicant { org, name, kind }, &[basis])
            .await
            .unwrap();
    }
    let all = admin
        .list_all(pb::ListPartiesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "Alfa Försäkring AB",
            "Beta kommun",
            "Delta Försäkring AB",
            "Epsilonverket",
            "Gamma Liv AB",
            "Testförsäkring AB",
            "Testkommun",
        ]
    );
    let unique: HashSet<&str> = all.iter().map(|p| p.party_id.as_str()).collect();
    assert_eq!(unique.len(), 7);

    let insurers = admin
        .list_all(pb::ListPartiesRequest {
            page_size: 1,
            kinds: vec![common::PartyKind::Insurer as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(insurers.len(), 4);
    assert!(
        insurers
            .iter()
            .all(|p| p.kind == common::PartyKind::Insurer as i32)
    );

    let applied_authorities = admin
        .list_all(pb::ListPartiesRequest {
            kinds: vec![
                common::PartyKind::StateAuthority as i32,
                common::PartyKind::MunicipalAuthority as i32,
            ],
            states: vec![common::PartyState::Applied as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = applied_authorities.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["Beta kommun", "Epsilonverket"]);

    // A token only works for the listing that issued it.
    let first_page = admin
        .0
        .clone()
        .list_parties(pb::ListPartiesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first_page.next_page_token.is_empty());
    let other_filter = admin
        .0
        .clone()
        .list_parties(pb::ListPartiesRequest {
            page_size: 2,
            page_token: first_page.next_page_token.clone(),
            kinds: vec![common::PartyKind::Insurer as i32],
            ..Default::default()
        })
        .await;
    assert_refused(other_filter, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let garbage = admin
        .0
        .clone()
        .list_parties(pb::ListPartiesRequest {
            page_token: "garbage".to_string(),
            ..Default::default()
        })
        .await;
    assert_refused(garbage, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    let bad_kind = admin
        .0
        .clone()
        .list_parties(pb::ListPartiesRequest {
            kinds: vec![0],
            ..Default::default()
        })
        .await;
    let status = assert_refused(bad_kind, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(metadata(&status, "field"), "kinds[0]");
    app.stop().await;
}

async fn history_shows_every_step_with_before_and_after_states(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let (party, cert) = admin.onboard(&app, &INSURER, &["INS_COORDINATION"]).await;
    admin
        .revoke(&party.party_id, &fingerprint_of(&cert), "replaced")
        .await
        .unwrap();
    let history = admin.history(&party.party_id).await.unwrap();
    use common::PartyState as S;
    use pb::PartyAction as A;
    let steps: Vec<(i32, i32, i32)> = history
        .iter()
        .map(|e| (e.action, e.before_state, e.after_state))
        .collect();
    assert_eq!(
        steps,
        vec![
            (A::Apply as i32, S::Unspecified as i32, S::Applied as i32),
            (
                A::SendAgreement as i32,
                S::Applied as i32,
                S::AgreementSent as i32
            ),
            (
                A::RecordSignature as i32,
                S::AgreementSent as i32,
                S::AgreementSent as i32
            ),
            (
                A::RecordSignature as i32,
                S::AgreementSent as i32,
                S::Signed as i32
            ),
            (A::AddCertificate as i32, S::Signed as i32, S::Connected as i32),
            (
                A::RevokeCertificate as i32,
                S::Connected as i32,
                S::Connected as i32
            ),
        ]
    );
    let operator_fp = fingerprint_of(&app.certs.operator);
    for (i, e) in history.iter().enumerate() {
        assert_eq!(e.party_id, party.party_id);
        assert_eq!(e.operator_name, "Test Operatör");
        assert_eq!(e.operator_fingerprint, operator_fp);
        assert!(!e.idempotency_key.is_empty());
        assert!(e.time.is_some());
        let details: serde_json::Value = serde_json::from_str(&e.details_json).unwrap();
        assert!(details.is_object());
        if i > 0 {
            assert!(e.entry_id > history[i - 1].entry_id);
        }
    }
    let sent: serde_json::Value = serde_json::from_str(&history[1].details_json).unwrap();
    assert_eq!(
        sent["granted_basis_codes"],
        serde_json::json!(["INS_COORDINATION"])
    );
    let added: serde_json::Value = serde_json::from_str(&history[4].details_json).unwrap();
    assert_eq!(added["fingerprint"], fingerprint_of(&cert));

    // Paged: two entries at a time, same entries.
    let mut paged = Vec::new();
    let mut request = pb::ListPartyHistoryRequest {
        party_id: party.party_id.clone(),
        page_size: 2,
        page_token: String::new(),
    };
    loop {
        let page = admin
            .0
            .clone()
            .list_party_history(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        paged.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(paged, history);
    // A token is bound to its party.
    let first = admin
        .0
        .clone()
        .list_party_history(pb::ListPartyHistoryRequest {
            party_id: party.party_id.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let foreign = admin
        .0
        .clone()
        .list_party_history(pb::ListPartyHistoryRequest {
            party_id: app.insurer_id.clone(),
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await;
    assert_refused(foreign, Code::InvalidArgument, "PAGE_TOKEN_INVALID");
    assert_refused(
        admin.history("pty_missing").await,
        Code::NotFound,
        "PARTY_NOT_FOUND",
    );
    app.stop().await;
}

async fn get_party_by_org_number_prefers_the_live_party(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let admin = PartyAdmin::new(&app, &app.certs.operator).await;
    let party = admin.get_by_org("222000-0000").await.unwrap();
    assert_eq!(party.party_id, app.municipality_id);
    assert_eq!(state(&party), common::PartyState::Connected);
    assert_eq!(party.certificates.len(), 1);
    assert_refused(admin.get("pty_missing").await, Code::NotFound, "PARTY_NOT_FOUND");
    assert_refused(
        admin.get_by_org("12").await,
        Code::InvalidArgument,
        "ORG_NUMBER_INVALID",
    );

    // Terminated, then applied again: the number finds the new party; the old one by its id.
    admin
        .terminate(PartyAdmin::notice(&party, app.clock.today()))
        .await
        .unwrap();
    assert_eq!(
        admin.get_by_org("222000-0000").await.unwrap().party_id,
        app.municipality_id,
        "the most recently terminated party when none is live"
    );
    let again = admin
        .apply(
            &Applicant {
                org: "222000-0000",
                name: "Testkommun",
                kind: common::PartyKind::MunicipalAuthority,
            },
            &["AUTH_SOCIAL_SERVICES"],
        )
        .await
        .unwrap();
    assert_eq!(
        admin.get_by_org("2220000000").await.unwrap().party_id,
        again.party_id
    );
    assert_eq!(
        state(&admin.get(&app.municipality_id).await.unwrap()),
        common::PartyState::Terminated
    );
    app.stop().await;
}
