//! Graceful shutdown: open streams end with the documented status, and the server stops.

use std::time::Duration;

use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;

use crate::backend_tests;
use crate::helpers::{Backend, SpawnOptions, TestApp, reason};

backend_tests!(
    shutdown_ends_open_stream_with_resumable_status,
    stream_on_revoked_certificate_ends
);

async fn shutdown_ends_open_stream_with_resumable_status(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut stream =
        pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .stream(pb::StreamRequest::default())
            .await
            .unwrap()
            .into_inner();
    // The first message of every stream is a heartbeat, sent once the call is authorised.
    let first = stream.message().await.unwrap().unwrap();
    assert!(
        matches!(first.event, Some(pb::stream_event::Event::Heartbeat(_))),
        "{first:?}"
    );

    app.begin_shutdown();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream did not end within 10 s of shutdown");
    assert_eq!(end.code(), Code::Unavailable);
    assert_eq!(reason(&end), "SERVER_SHUTTING_DOWN");
    // And the server itself finishes (stop() asserts a clean exit within its deadline).
    app.stop().await;
}

async fn stream_on_revoked_certificate_ends(backend: Backend) {
    let options = SpawnOptions {
        heartbeat_interval: Some(Duration::from_secs(1)),
        ..SpawnOptions::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let mut stream =
        pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .stream(pb::StreamRequest::default())
            .await
            .unwrap()
            .into_inner();
    stream.message().await.unwrap().unwrap();
    app.revoke_certificate(&app.insurer_id, &app.certs.insurer).await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream did not end after the certificate was revoked");
    assert_eq!(end.code(), Code::Unauthenticated);
    assert_eq!(reason(&end), "CERTIFICATE_REVOKED");
    app.stop().await;
}
