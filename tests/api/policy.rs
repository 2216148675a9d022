//! The access policy, proved through the real party API: a table of party kind × legal basis ×
//! consent state × case reference × agreement, each a real QueryPerson call whose decision must
//! match and must be in the disclosure log; and "if the log cannot be written, nothing leaves".

use lefi::domain::disclosure::{Channel as LogChannel, Decision};
use lefi::domain::{OrgNumber, PartyKind};
use lefi::grpc::pb::lefi::v1 as pb;
use lefi::store::consents::{ConsentRegistration, NewConsent};
use time::Duration;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, connected_party, onboard, reason};
use crate::register::{P1, accepted, ingest, payment};

backend_tests!(
    every_combination_is_decided_as_the_law_and_agreement_say,
    nothing_is_disclosed_when_the_log_cannot_be_written,
    an_operator_viewing_a_person_is_logged,
);

const P1_12: &str = "199007042386";

/// Which consent a query names.
#[derive(Debug, Clone, Copy)]
enum ConsentCase {
    None,
    Valid,
    Expired,
    Revoked,
    OtherPurpose,
    OtherParty,
}

struct Row {
    who: &'static str,
    basis: &'static str,
    consent: ConsentCase,
    case: bool,
    /// `None` = allowed; else the ErrorInfo reason.
    expect: Option<&'static str>,
}

fn query(basis: &str, consent_id: &str, case: bool) -> pb::QueryPersonRequest {
    pb::QueryPersonRequest {
        person_id: P1.to_string(),
        benefit_type_codes: vec!["SJP".to_string()],
        period: Some(pb::DateRange {
            from: "2020-01-01".to_string(),
            to: String::new(),
        }),
        legal_basis: basis.to_string(),
        case_reference: if case {
            "DNR-2026-1".to_string()
        } else {
            String::new()
        },
        consent_id: consent_id.to_string(),
        as_of_sequence: 0,
    }
}

async fn run(channel: Channel, request: pb::QueryPersonRequest) -> Result<usize, tonic::Status> {
    let mut stream = pb::query_service_client::QueryServiceClient::new(channel)
        .query_person(request)
        .await?
        .into_inner();
    let mut records = 0;
    while let Some(message) = stream.message().await? {
        if let Some(pb::query_person_response::Content::Records(r)) = message.content {
            records += r.records.len();
        }
    }
    Ok(records)
}

pub(crate) async fn extra_party(
    app: &TestApp,
    org: &str,
    name: &str,
    kind: PartyKind,
    bases: &[&str],
    valid_from: time::Date,
) -> lefi::dev::certs::Issued {
    let cert = app.certs.ca.issue_client(name, Some(org)).unwrap();
    let mut party = connected_party(&cert, org, name, kind, bases);
    party.agreement.valid_from = valid_from;
    party.application.benefit_codes = vec!["SJP".to_string()];
    party.agreement.benefit_codes = vec!["SJP".to_string()];
    // Onboarded in mid-2015, when every catalogue basis was in force: one of them has been out
    // of force since, as happens to agreements that outlive a statute.
    let onboarded = time::macros::datetime!(2015-06-01 12:00 UTC);
    onboard(&app.store, &party, lefi::domain::clock::to_micros(onboarded)).await;
    cert
}

async fn consent(app: &TestApp, party_id: &str, basis: &str, evidence: &str, expires_in_days: i64) -> String {
    let today = app.clock.today();
    match app
        .store
        .register_consent(
            &NewConsent {
                party_id: party_id.to_string(),
                person: lefi::domain::Personnummer::from_storage(P1_12).unwrap(),
                basis_code: basis.to_string(),
                given_on: today - Duration::days(30),
                expires_on: today + Duration::days(expires_in_days),
                evidence_reference: evidence.to_string(),
            },
            app.clock.now_micros(),
        )
        .await
        .unwrap()
    {
        ConsentRegistration::Created(c) => c.consent_id,
        other => panic!("{other:?}"),
    }
}

async fn every_combination_is_decided_as_the_law_and_agreement_say(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(&ingest(&app, vec![payment(P1, "PAY1", 1, pb::RecordKind::New, 250_000)]).await);
    let today = app.clock.today();
    // An insurer whose agreement is not in force yet, a second insurer (for other-party consents),
    // and a municipality granted a basis that is no longer in force.
    let future = extra_party(
        &app,
        "556000-0001",
        "Framtida Försäkring AB",
        PartyKind::Insurer,
        &["INS_COORDINATION"],
        today + Duration::days(30),
    )
    .await;
    let other_insurer = extra_party(
        &app,
        "556677-0003",
        "Annan Försäkring AB",
        PartyKind::Insurer,
        &["INS_RISK_ASSESSMENT"],
        today - Duration::days(30),
    )
    .await;
    let old_municipality = extra_party(
        &app,
        "212000-0142",
        "Kommun med gammalt avtal",
        PartyKind::MunicipalAuthority,
        &["AUTH_CHILD_CARE_ALLOWANCE", "AUTH_SOCIAL_SERVICES"],
        today - Duration::days(30),
    )
    .await;
    let other_insurer_id = app
        .store
        .live_party_id_by_org_number(&OrgNumber::parse("556677-0003").unwrap())
        .await
        .unwrap()
        .unwrap();

    // The consents the table names.
    let valid = consent(&app, &app.insurer_id, "INS_RISK_ASSESSMENT", "valid", 100).await;
    let expired = consent(&app, &app.insurer_id, "INS_RISK_ASSESSMENT", "expired", -1).await;
    let revoked = consent(&app, &app.insurer_id, "INS_RISK_ASSESSMENT", "revoked", 100).await;
    pb::consent_service_client::ConsentServiceClient::new(app.party_channel(&app.certs.insurer).await)
        .revoke_consent(pb::RevokeConsentRequest {
            consent_id: revoked.clone(),
            reason: "withdrawn".to_string(),
        })
        .await
        .unwrap();
    let other_purpose = consent(&app, &app.insurer_id, "INS_CLAIMS", "claims", 100).await;
    let other_party = consent(&app, &other_insurer_id, "INS_RISK_ASSESSMENT", "theirs", 100).await;
    let consent_id = |c: ConsentCase| match c {
        ConsentCase::None => String::new(),
        ConsentCase::Valid => valid.clone(),
        ConsentCase::Expired => expired.clone(),
        ConsentCase::Revoked => revoked.clone(),
        ConsentCase::OtherPurpose => other_purpose.clone(),
        ConsentCase::OtherParty => other_party.clone(),
    };

    use ConsentCase::*;
    let table = [
        // Insurer, basis without consent: allowed with or without a case reference.
        Row {
            who: "insurer",
            basis: "INS_COORDINATION",
            consent: None,
            case: false,
            expect: Option::None,
        },
        Row {
            who: "insurer",
            basis: "INS_COORDINATION",
            consent: None,
            case: true,
            expect: Option::None,
        },
        // A consent named although not required is still checked.
        Row {
            who: "insurer",
            basis: "INS_COORDINATION",
            consent: Valid,
            case: false,
            expect: Some("CONSENT_NOT_VALID"),
        },
        // Insurer, basis requiring consent, every consent state.
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: None,
            case: false,
            expect: Some("CONSENT_REQUIRED"),
        },
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: Valid,
            case: false,
            expect: Option::None,
        },
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: Valid,
            case: true,
            expect: Option::None,
        },
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: Expired,
            case: false,
            expect: Some("CONSENT_NOT_VALID"),
        },
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: Revoked,
            case: false,
            expect: Some("CONSENT_NOT_VALID"),
        },
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: OtherPurpose,
            case: false,
            expect: Some("CONSENT_NOT_VALID"),
        },
        Row {
            who: "insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: OtherParty,
            case: false,
            expect: Some("CONSENT_NOT_VALID"),
        },
        // Insurer, bases not granted or not for insurers.
        Row {
            who: "insurer",
            basis: "INS_CLAIMS",
            consent: OtherPurpose,
            case: false,
            expect: Some("BASIS_NOT_IN_AGREEMENT"),
        },
        Row {
            who: "insurer",
            basis: "AUTH_SOCIAL_SERVICES",
            consent: None,
            case: true,
            expect: Some("BASIS_NOT_FOR_PARTY_KIND"),
        },
        Row {
            who: "insurer",
            basis: "NO_SUCH_BASIS",
            consent: None,
            case: false,
            expect: Some("UNKNOWN_BASIS"),
        },
        // Insurer whose agreement is not yet in force.
        Row {
            who: "future",
            basis: "INS_COORDINATION",
            consent: None,
            case: false,
            expect: Some("AGREEMENT_NOT_IN_FORCE"),
        },
        // Municipality: the open-case requirement.
        Row {
            who: "municipality",
            basis: "AUTH_SOCIAL_SERVICES",
            consent: None,
            case: false,
            expect: Some("CASE_REFERENCE_REQUIRED"),
        },
        Row {
            who: "municipality",
            basis: "AUTH_SOCIAL_SERVICES",
            consent: None,
            case: true,
            expect: Option::None,
        },
        Row {
            who: "municipality",
            basis: "AUTH_SOCIAL_SERVICES",
            consent: Valid,
            case: true,
            expect: Some("CONSENT_NOT_VALID"),
        },
        Row {
            who: "municipality",
            basis: "AUTH_DUTY_1980_995",
            consent: None,
            case: true,
            expect: Some("BASIS_NOT_IN_AGREEMENT"),
        },
        Row {
            who: "municipality",
            basis: "INS_COORDINATION",
            consent: None,
            case: true,
            expect: Some("BASIS_NOT_FOR_PARTY_KIND"),
        },
        // A basis that has gone out of force, although granted.
        Row {
            who: "old_municipality",
            basis: "AUTH_CHILD_CARE_ALLOWANCE",
            consent: None,
            case: true,
            expect: Some("BASIS_NOT_IN_FORCE"),
        },
        Row {
            who: "old_municipality",
            basis: "AUTH_SOCIAL_SERVICES",
            consent: None,
            case: true,
            expect: Option::None,
        },
        // The other insurer's own consent works for it.
        Row {
            who: "other_insurer",
            basis: "INS_RISK_ASSESSMENT",
            consent: OtherParty,
            case: false,
            expect: Option::None,
        },
    ];

    let before = app.disclosures_about(P1_12).await.len();
    for (i, row) in table.iter().enumerate() {
        let cert = match row.who {
            "insurer" => &app.certs.insurer,
            "municipality" => &app.certs.municipality,
            "future" => &future,
            "other_insurer" => &other_insurer,
            "old_municipality" => &old_municipality,
            other => panic!("{other}"),
        };
        let result = run(
            app.party_channel(cert).await,
            query(row.basis, &consent_id(row.consent), row.case),
        )
        .await;
        match (row.expect, result) {
            (Option::None, Ok(records)) => assert_eq!(records, 1, "row {i}"),
            (Some(expected), Err(status)) => assert_eq!(reason(&status), expected, "row {i}: {status:?}"),
            (expected, got) => panic!(
                "row {i} ({} {} {:?} case={}): expected {expected:?}, got {got:?}",
                row.who, row.basis, row.consent, row.case
            ),
        }
    }

    // Every decision about the (valid) person, allowed or denied, is in the disclosure log, in
    // order: also the refusal of a code that names no basis, a malformed field refused before the
    // policy runs.
    let decided: Vec<&Row> = table.iter().collect();
    let logged = app.disclosures_about(P1_12).await;
    let logged = &logged[before..];
    assert_eq!(logged.len(), decided.len());
    for (row, entry) in decided.iter().zip(logged) {
        assert_eq!(entry.entry.channel, LogChannel::Query);
        assert_eq!(entry.entry.legal_basis.as_deref(), Some(row.basis));
        match row.expect {
            Option::None => {
                assert_eq!(entry.entry.decision, Decision::Allowed);
                assert_eq!(entry.entry.record_count, 1);
            }
            Some(expected) => {
                assert_eq!(entry.entry.decision, Decision::Denied);
                assert_eq!(entry.entry.denial_reason.as_deref(), Some(expected));
                assert_eq!(entry.entry.record_count, 0);
            }
        }
    }
    // And the chain over all of it verifies.
    assert!(matches!(
        app.store.verify_disclosure_chain(0, 0).await.unwrap(),
        lefi::domain::disclosure::ChainVerdict::Intact { .. }
    ));
    app.stop().await;
}

async fn nothing_is_disclosed_when_the_log_cannot_be_written(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(&ingest(&app, vec![payment(P1, "PAY1", 1, pb::RecordKind::New, 250_000)]).await);
    let channel = app.party_channel(&app.certs.insurer).await;
    assert_eq!(
        run(channel.clone(), query("INS_COORDINATION", "", false))
            .await
            .unwrap(),
        1
    );

    // The log table refuses every write.
    match backend {
        Backend::Sqlite => {
            app.execute_sql(
                "CREATE TRIGGER refuse_log BEFORE INSERT ON disclosure_log BEGIN SELECT RAISE(ABORT, 'log unavailable'); END;",
            )
            .await
        }
        Backend::Postgres => {
            app.execute_sql(
                "CREATE FUNCTION refuse_log() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'log unavailable'; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_log BEFORE INSERT ON disclosure_log FOR EACH ROW EXECUTE FUNCTION refuse_log();",
            )
            .await
        }
    }
    let status = run(channel.clone(), query("INS_COORDINATION", "", false))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::Internal | tonic::Code::Unavailable),
        "{status:?}"
    );
    // Denials need the log too: they are refused as errors, not silently unlogged.
    let status = run(channel.clone(), query("INS_CLAIMS", "", false))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::Internal | tonic::Code::Unavailable),
        "{status:?}"
    );

    // A subscription cannot be placed either, and nothing was stored.
    let created = pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
        .create_subscriptions(pb::CreateSubscriptionsRequest {
            items: vec![pb::NewSubscription {
                client_reference: "r".to_string(),
                person_id: P1.to_string(),
                benefit_type_codes: vec!["SJP".to_string()],
                from_date: "2024-01-01".to_string(),
                legal_basis: "INS_COORDINATION".to_string(),
                ..Default::default()
            }],
        })
        .await;
    assert!(created.is_err());
    app.stop().await;
}

async fn an_operator_viewing_a_person_is_logged(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(&ingest(&app, vec![payment(P1, "PAY1", 1, pb::RecordKind::New, 250_000)]).await);
    let admin =
        lefi::grpc::pb::lefi::admin::v1::register_admin_service_client::RegisterAdminServiceClient::new(
            app.admin_channel(&app.certs.auditor).await,
        );
    admin
        .clone()
        .show_person(lefi::grpc::pb::lefi::admin::v1::ShowPersonRequest {
            person_id: P1.to_string(),
            as_of_sequence: 0,
        })
        .await
        .unwrap();
    let logged = app.disclosures_about(P1_12).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].entry.channel, LogChannel::OperatorView);
    assert_eq!(logged[0].entry.operator_name.as_deref(), Some("Test Revisor"));
    assert_eq!(logged[0].entry.decision, Decision::Allowed);
    app.stop().await;
}
