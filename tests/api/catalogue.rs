//! The legal-basis and benefit catalogues are data, seeded by migration, readable by parties.

use lefi::grpc::pb::lefi::v1 as pb;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

backend_tests!(
    catalogue_is_seeded_and_listed,
    granted_only_narrows_to_the_agreement,
    operators_list_the_catalogue_too
);

async fn catalogue_is_seeded_and_listed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut client =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.insurer).await);
    let all = client
        .list_legal_bases(pb::ListLegalBasesRequest {
            granted_only: false,
            include_not_in_force: true,
        })
        .await
        .unwrap()
        .into_inner()
        .legal_bases;
    let codes: Vec<&str> = all.iter().map(|b| b.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "AUTH_CHILD_CARE_ALLOWANCE",
            "AUTH_DUTY_1980_995",
            "AUTH_SOCIAL_SERVICES",
            "INS_CLAIMS",
            "INS_COORDINATION",
            "INS_PENSION_FORECAST",
            "INS_RISK_ASSESSMENT",
            "STAT_INDIVIDUAL_DATA"
        ]
    );
    let risk = all.iter().find(|b| b.code == "INS_RISK_ASSESSMENT").unwrap();
    assert!(risk.requires_consent && !risk.requires_open_case);
    assert_eq!(risk.allowed_party_kinds, vec![pb::PartyKind::Insurer as i32]);
    let social = all.iter().find(|b| b.code == "AUTH_SOCIAL_SERVICES").unwrap();
    assert!(social.requires_open_case && !social.requires_consent);
    assert_eq!(
        social.allowed_party_kinds,
        vec![pb::PartyKind::MunicipalAuthority as i32]
    );
    let duty = all.iter().find(|b| b.code == "AUTH_DUTY_1980_995").unwrap();
    assert_eq!(duty.allowed_party_kinds.len(), 2);

    // The abolished child-care allowance basis is out of force and hidden by default.
    let in_force = client
        .list_legal_bases(pb::ListLegalBasesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .legal_bases;
    assert_eq!(in_force.len(), all.len() - 1);
    assert!(in_force.iter().all(|b| b.code != "AUTH_CHILD_CARE_ALLOWANCE"));

    let types = client
        .list_benefit_types(pb::ListBenefitTypesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .benefit_types;
    assert!(types.iter().any(|t| t.code == "SJP" && t.paying_agency == "FK"));
    assert!(types.iter().any(|t| t.code == "AP" && t.paying_agency == "PM"));
    assert!(types.len() >= 18);
    app.stop().await;
}

async fn granted_only_narrows_to_the_agreement(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut client =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.municipality).await);
    let granted = client
        .list_legal_bases(pb::ListLegalBasesRequest {
            granted_only: true,
            include_not_in_force: false,
        })
        .await
        .unwrap()
        .into_inner()
        .legal_bases;
    assert_eq!(
        granted.iter().map(|b| b.code.as_str()).collect::<Vec<_>>(),
        ["AUTH_SOCIAL_SERVICES"]
    );
    let types = client
        .list_benefit_types(pb::ListBenefitTypesRequest { granted_only: true })
        .await
        .unwrap()
        .into_inner()
        .benefit_types;
    assert_eq!(
        types.iter().map(|t| t.code.as_str()).collect::<Vec<_>>(),
        ["FP", "SJP"]
    );
    app.stop().await;
}

async fn operators_list_the_catalogue_too(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut operator = lefi::grpc::pb::lefi::admin::v1::operator_service_client::OperatorServiceClient::new(
        app.admin_channel(&app.certs.auditor).await,
    );
    let all = operator
        .list_legal_bases(pb::ListLegalBasesRequest {
            granted_only: false,
            include_not_in_force: true,
        })
        .await
        .unwrap()
        .into_inner()
        .legal_bases;
    assert_eq!(all.len(), 8);
    let in_force = operator
        .list_legal_bases(pb::ListLegalBasesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .legal_bases;
    assert_eq!(in_force.len(), 7);
    app.stop().await;
}
