//! Delivery history is kept for the configured retention (30 days by default, never under the 7
//! the contract promises) and pruned by the server itself: a cursor within it resumes, one older
//! gets CURSOR_EXPIRED and the full-refresh path.

use std::time::Duration;

use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;

use crate::backend_tests;
use crate::delivery::{drain, new_sub, open, pay, subscribe};
use crate::helpers::{Backend, TestApp, reason};
use crate::register::{P1, accepted, ingest};

backend_tests!(
    the_server_prunes_history_past_its_retention_and_old_cursors_expire,
    a_cursor_past_a_restored_register_is_refused_not_skipped,
);

/// One payment to P1, then the insurer's subscription to P1.
async fn paid_and_subscribed(app: &TestApp) {
    accepted(&ingest(app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 1)]).await);
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("a", P1, "INS_COORDINATION")],
    )
    .await;
}

async fn stream_from(app: &TestApp, cursor: &str) -> Result<crate::delivery::Events, tonic::Status> {
    pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await)
        .stream(pb::StreamRequest {
            cursor: cursor.to_string(),
            heartbeat_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn the_server_prunes_history_past_its_retention_and_old_cursors_expire(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    assert_eq!(
        app.settings.history_retention,
        Duration::from_secs(30 * 24 * 3600)
    );
    paid_and_subscribed(&app).await;
    let mut stream = open(app.party_channel(&app.certs.insurer).await, "", 0).await;
    // The client's position after the snapshot; a change follows the same day.
    let old_cursor = drain(&mut stream).await.last().unwrap().cursor.clone();
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    assert!(!drain(&mut stream).await.is_empty());
    drop(stream);

    // 29 days later, after a restart (the pruner runs at start): the cursor still resumes, with
    // that day's change and a new one.
    app.clock.advance(time::Duration::days(29));
    let app = app.restart().await;
    accepted(&ingest(&app, vec![pay(P1, "PAY3", 1, pb::RecordKind::New, 3)]).await);
    let mut resumed = stream_from(&app, &old_cursor).await.unwrap();
    let changes = drain(&mut resumed).await;
    assert!(changes.len() >= 2, "{changes:#?}");
    drop(resumed);

    // 31 days after the first change the restarted server prunes it: the old cursor expires.
    app.clock.advance(time::Duration::days(2));
    let app = app.restart().await;
    let mut refused = None;
    for _ in 0..100 {
        match stream_from(&app, &old_cursor).await {
            Err(status) => {
                refused = Some(status);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let status = refused.expect("the old cursor was never refused: the history was not pruned");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "CURSOR_EXPIRED");
    let (_, body) = crate::metrics::http(app.metrics_addr, "GET", "/metrics").await;
    assert!(
        crate::metrics::sample(&body, "lefi_delivery_history_pruned_events_total").is_some_and(|n| n >= 1.0),
        "{body}"
    );

    // The full refresh brings the party back, from where the contract says.
    let refresh =
        pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .request_full_refresh(pb::FullRefreshRequest::default())
            .await
            .unwrap()
            .into_inner();
    assert_eq!(refresh.subscription_count, 1);
    let mut fresh = stream_from(&app, &refresh.cursor).await.unwrap();
    assert!(!drain(&mut fresh).await.is_empty());
    app.stop().await;
}

async fn a_cursor_past_a_restored_register_is_refused_not_skipped(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    paid_and_subscribed(&app).await;
    let mut stream = open(app.party_channel(&app.certs.insurer).await, "", 0).await;
    let cursor = drain(&mut stream).await.last().unwrap().cursor.clone();
    drop(stream);
    // The backup is taken here.
    let head = app.store.head_seq().await.unwrap();
    let (app, backup) = app.backup().await;
    let mut stream = open(app.party_channel(&app.certs.insurer).await, &cursor, 0).await;
    // The party goes on receiving two changes after the backup point.
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    accepted(&ingest(&app, vec![pay(P1, "PAY3", 1, pb::RecordKind::New, 3)]).await);
    let late_cursor = drain(&mut stream).await.last().unwrap().cursor.clone();
    drop(stream);

    let app = app.restore(backup).await;
    assert_eq!(app.store.head_seq().await.unwrap(), head);
    // Resuming would skip whatever the restored register commits at the sequences the party has
    // already passed: refused, with the way back.
    let refused = stream_from(&app, &late_cursor).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), "CURSOR_EXPIRED");
    assert!(refused.message().contains("restored"), "{refused:?}");
    let mut delivery =
        pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await);
    let commit = delivery
        .commit_cursor(pb::CommitCursorRequest {
            cursor: late_cursor,
            consumer: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&commit), "CURSOR_EXPIRED");
    let refresh = delivery
        .request_full_refresh(pb::FullRefreshRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut fresh = stream_from(&app, &refresh.cursor).await.unwrap();
    assert!(!drain(&mut fresh).await.is_empty());
    app.stop().await;
}

/// With several replicas on one PostgreSQL database, one prunes at a time: while another holds
/// the pruner's advisory lock (mid-prune), a replica's pruner deletes nothing and says so; once
/// the lock is released, the next run prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    lefi_no_test_postgres,
    ignore = "LEFI_TEST_POSTGRES_URL was not set when the tests were built (see README)"
)]
async fn replicas_prune_one_at_a_time() {
    use sqlx::Connection as _;
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    paid_and_subscribed(&app).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    accepted(&ingest(&app, vec![pay(P1, "PAY3", 1, pb::RecordKind::New, 3)]).await);
    let tomorrow = app.clock.now_micros() + 24 * 3600 * 1_000_000;

    // Another replica is pruning: it holds the lock in its transaction.
    let mut other = sqlx::PgConnection::connect(&app.db_url).await.unwrap();
    let mut pruning = other.begin().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(lefi::store::delivery::PRUNE_LOCK)
        .fetch_one(&mut *pruning)
        .await
        .unwrap();
    assert!(locked);
    let replica = lefi::store::Store::connect(&app.db_url, 2).await.unwrap();
    assert_eq!(replica.prune_delivery_history(tomorrow).await.unwrap(), 0);
    assert_eq!(app.store.prune_delivery_history(tomorrow).await.unwrap(), 0);
    pruning.rollback().await.unwrap();

    // Released: one run prunes everything but each subscription's latest event; the next finds
    // nothing left.
    let deleted = replica.prune_delivery_history(tomorrow).await.unwrap();
    assert!(deleted >= 2, "{deleted}");
    assert_eq!(app.store.prune_delivery_history(tomorrow).await.unwrap(), 0);
    replica.close().await;
    app.stop().await;
}
