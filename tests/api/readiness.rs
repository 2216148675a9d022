//! Readiness and liveness: health follows the database. With a PostgreSQL cluster of the test's own
//! stopped, both listeners report NOT_SERVING (the server as a whole and each API service) while
//! `liveness` stays SERVING; started again, the server is ready and answers calls without a restart.

use std::time::Duration;

use lefi::dev::pg_cluster::Cluster;
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Backend, SpawnOptions, TestApp};
use crate::metrics::{http, sample};

async fn status(channel: &Channel, service: &str) -> ServingStatus {
    let answer = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("health of {service:?} did not answer: {e}"))
        .into_inner();
    ServingStatus::try_from(answer.status).unwrap()
}

/// Waits (up to 20 s) until readiness is `ready` on both channels and in the metrics, then checks
/// every readiness name and that liveness is SERVING throughout.
async fn until_ready_is(app: &TestApp, channels: &[(Channel, &[&str])], ready: bool) {
    let wanted = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    let mut last = None;
    for _ in 0..200 {
        let (_, scrape) = http(app.metrics_addr, "GET", "/metrics").await;
        let mut all = sample(&scrape, "lefi_ready") == Some(if ready { 1.0 } else { 0.0 });
        for (channel, services) in channels {
            for service in services.iter() {
                let now = status(channel, service).await;
                all &= now == wanted;
                last = Some((*service, now));
            }
            assert_eq!(
                status(channel, lefi::app::LIVENESS_SERVICE).await,
                ServingStatus::Serving,
                "liveness must not follow the database"
            );
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness never became {wanted:?}; last seen {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lefi_no_test_postgres,
    ignore = "LEFI_TEST_POSTGRES_URL was not set when the tests were built (see README)"
)]
async fn health_follows_the_database_and_liveness_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::create(dir.path(), None)
        .await
        .expect("a PostgreSQL cluster of the test's own (initdb, pg_ctl)");
    let options = SpawnOptions {
        database_url: Some(cluster.url()),
        ..SpawnOptions::default()
    };
    let app = TestApp::spawn_with(Backend::Postgres, options).await.unwrap();
    let party = app.party_channel(&app.certs.insurer).await;
    let admin = app.admin_channel(&app.certs.operator).await;
    let channels: [(Channel, &[&str]); 2] = [
        (
            party.clone(),
            &["", "lefi.v1.PartyService", "lefi.v1.DeliveryService"],
        ),
        (admin, &["", "lefi.admin.v1.RegisterAdminService"]),
    ];
    until_ready_is(&app, &channels, true).await;

    cluster.stop().await;
    until_ready_is(&app, &channels, false).await;
    // A call that needs the database says to retry; it is not an internal error.
    let refused = pb::party_service_client::PartyServiceClient::new(party.clone())
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");

    cluster.start().await.unwrap();
    until_ready_is(&app, &channels, true).await;
    pb::party_service_client::PartyServiceClient::new(party)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .expect("the server answers again once its database is back");
    app.stop().await;
    cluster.stop().await;
}
