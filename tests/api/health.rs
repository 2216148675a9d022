//! Health and reflection answer on both listeners, so standard tools (grpcurl, grpc-health-probe,
//! load balancers) work.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp};

backend_tests!(
    health_on_both_listeners,
    reflection_v1_and_v1alpha_on_both_listeners,
    every_answer_carries_a_request_id
);

async fn health_on_both_listeners(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let party = app.party_channel(&app.certs.insurer).await;
    let admin = app.admin_channel(&app.certs.operator).await;
    for (channel, services) in [
        (
            party.clone(),
            vec!["", "lefi.v1.PartyService", "lefi.v1.DeliveryService"],
        ),
        (admin, vec!["", "lefi.admin.v1.OperatorService"]),
    ] {
        for service in services {
            let status = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
        }
    }
    // A chain-verified certificate that is not registered may still ask for health (probes),
    // and nothing else.
    let stranger = app.party_channel(&app.certs.stranger).await;
    let status = HealthClient::new(stranger)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    app.stop().await;
}

async fn reflection_v1_and_v1alpha_on_both_listeners(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let party = app.party_channel(&app.certs.insurer).await;
    let admin = app.admin_channel(&app.certs.operator).await;
    for (channel, expected) in [
        (party, "lefi.v1.DeliveryService"),
        (admin, "lefi.admin.v1.PartyAdminService"),
    ] {
        let v1 = list_services_v1(channel.clone()).await;
        assert!(v1.iter().any(|s| s == expected), "v1 lists {v1:?}");
        assert!(v1.iter().any(|s| s == "grpc.health.v1.Health"), "v1 lists {v1:?}");
        // Each listener advertises only its own API.
        let other_api = if expected.starts_with("lefi.admin.") {
            "lefi.v1."
        } else {
            "lefi.admin."
        };
        assert!(!v1.iter().any(|s| s.starts_with(other_api)), "v1 lists {v1:?}");
        let v1alpha = list_services_v1alpha(channel).await;
        assert_eq!(v1, v1alpha);
    }
    app.stop().await;
}

async fn list_services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list
                .service
                .into_iter()
                .map(|s| s.name)
                .filter(|n| !n.starts_with("grpc.reflection."))
                .collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn list_services_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list
                .service
                .into_iter()
                .map(|s| s.name)
                .filter(|n| !n.starts_with("grpc.reflection."))
                .collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn every_answer_carries_a_request_id(backend: Backend) {
    use lefi::grpc::pb::lefi::v1 as pb;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut client =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.insurer).await);
    let ok = client.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    let first = ok
        .metadata()
        .get("x-request-id")
        .expect("x-request-id on success")
        .to_str()
        .unwrap()
        .to_string();
    let again = client.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    assert_ne!(
        again.metadata().get("x-request-id").unwrap().to_str().unwrap(),
        first
    );
    // Refusals carry one too, so a caller can quote it to the agency.
    let mut stranger =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.stranger).await);
    let refused = stranger.who_am_i(pb::WhoAmIRequest {}).await.unwrap_err();
    assert!(refused.metadata().get("x-request-id").is_some(), "{refused:?}");
    // A caller's own id is kept.
    let mut request = tonic::Request::new(pb::WhoAmIRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-123".parse().unwrap());
    let echoed = client.who_am_i(request).await.unwrap();
    assert_eq!(echoed.metadata().get("x-request-id").unwrap(), "trace-me-123");
    app.stop().await;
}
