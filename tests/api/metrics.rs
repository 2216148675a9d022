//! The Prometheus listener: scraped over plain HTTP as Prometheus does, it counts RPCs by method
//! and code, refusals by reason, open streams, delivered records and lag by party, ingest and
//! disclosure-log latencies, and never a person.

use std::net::SocketAddr;
use std::time::Duration;

use lefi::grpc::pb::lefi::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_tests;
use crate::delivery::{drain, new_sub, open, pay, subscribe};
use crate::helpers::{Backend, SpawnOptions, TestApp};
use crate::register::{P1, accepted, case, ingest};

backend_tests!(
    rpcs_streams_and_records_are_counted_without_persons,
    the_listener_answers_only_get_metrics,
    failed_handshakes_are_counted_by_cause,
);

/// One HTTP/1.1 request to the metrics listener: the status code and the body.
pub(crate) async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response))
        .await
        .expect("the metrics listener did not answer")
        .unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// The value of the sample `name{labels}` in a scrape, if present.
pub(crate) fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(name_and_labels)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

/// Scrapes until `check` holds (a stream's end is counted when its task notices), or fails with the
/// last scrape.
async fn scrape_until(addr: SocketAddr, check: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let (status, body) = http(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        if check(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the metrics never showed what was expected; last scrape:\n{last}");
}

async fn rpcs_streams_and_records_are_counted_without_persons(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, before) = http(app.metrics_addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        before.contains(&format!(
            "lefi_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{before}"
    );

    // One answered and one refused RPC, each counted by method and code.
    let mut party =
        pb::party_service_client::PartyServiceClient::new(app.party_channel(&app.certs.insurer).await);
    party.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    party.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    let refused =
        pb::query_service_client::QueryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .query_person(pb::QueryPersonRequest {
                person_id: P1.to_string(),
                legal_basis: "NO_SUCH_BASIS".to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
    let refused_code = refused.code();

    // A stream with a snapshot of two records, then one more record.
    accepted(
        &ingest(
            &app,
            vec![case(P1, "C1", 1), pay(P1, "PAY1", 1, pb::RecordKind::New, 1)],
        )
        .await,
    );
    subscribe(
        app.party_channel(&app.certs.insurer).await,
        vec![new_sub("ref-1", P1, "INS_COORDINATION")],
    )
    .await;
    let mut stream = open(app.party_channel(&app.certs.insurer).await, "", 0).await;
    let snapshot = drain(&mut stream).await;
    // The consumer confirms the snapshot; two changes follow that it has not confirmed.
    let committed =
        pb::delivery_service_client::DeliveryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .commit_cursor(pb::CommitCursorRequest {
                cursor: snapshot.last().unwrap().cursor.clone(),
                consumer: "system-a".to_string(),
            })
            .await
            .unwrap()
            .into_inner();
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 2)]).await);
    accepted(&ingest(&app, vec![pay(P1, "PAY3", 1, pb::RecordKind::New, 3)]).await);
    let changes = drain(&mut stream).await;
    assert!(!changes.is_empty());

    let streams = format!("lefi_delivery_open_streams{{party=\"{}\"}}", app.insurer_id);
    let records = format!("lefi_delivery_records_total{{party=\"{}\"}}", app.insurer_id);
    let scrape = scrape_until(app.metrics_addr, |s| sample(s, &records) == Some(4.0)).await;
    assert_eq!(sample(&scrape, &streams), Some(1.0), "{scrape}");
    let who_am_i =
        "lefi_rpc_requests_total{api=\"party\",method=\"/lefi.v1.PartyService/WhoAmI\",code=\"OK\"}";
    assert_eq!(sample(&scrape, who_am_i), Some(2.0), "{scrape}");
    let code = format!("{:?}", refused_code);
    assert!(
        scrape.lines().any(|l| l.starts_with(
            "lefi_rpc_requests_total{api=\"party\",method=\"/lefi.v1.QueryService/QueryPerson\""
        ) && !l.contains("code=\"OK\"")),
        "the refused query ({code}) is not counted:\n{scrape}"
    );
    let refusal = crate::helpers::reason(&refused);
    assert_eq!(
        sample(
            &scrape,
            &format!("lefi_rpc_refusals_total{{api=\"party\",reason=\"{refusal}\"}}")
        ),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        scrape.contains(
            "lefi_rpc_duration_seconds_count{api=\"party\",method=\"/lefi.v1.PartyService/WhoAmI\"} 2"
        ),
        "{scrape}"
    );
    // Ingest: four facts accepted in three calls, each batch timed; every disclosure-log append timed.
    assert_eq!(
        sample(&scrape, "lefi_ingest_facts_total{outcome=\"accepted\"}"),
        Some(4.0),
        "{scrape}"
    );
    // The server commits what has arrived, so the first call's two facts may be two batches.
    let batches = sample(&scrape, "lefi_ingest_batch_commit_seconds_count").unwrap_or(0.0);
    assert!((3.0..=4.0).contains(&batches), "{scrape}");
    assert!(
        sample(&scrape, "lefi_disclosure_log_append_seconds_count").unwrap_or(0.0) >= 2.0,
        "{scrape}"
    );
    // Read at scrape time: the head, the party's lag behind what its consumer confirmed, the pools.
    let head = sample(&scrape, "lefi_register_head_sequence").unwrap();
    assert!(head >= committed.register_sequence as f64 + 2.0, "{scrape}");
    let lag = format!("lefi_party_lag_sequences{{party=\"{}\"}}", app.insurer_id);
    assert_eq!(
        sample(&scrape, &lag),
        Some(head - committed.register_sequence as f64),
        "{scrape}"
    );
    let age = format!("lefi_party_cursor_age_seconds{{party=\"{}\"}}", app.insurer_id);
    assert!(sample(&scrape, &age).is_some_and(|a| a >= 0.0), "{scrape}");
    assert!(scrape.contains("lefi_db_pool_connections{pool="), "{scrape}");
    // The other party never confirmed anything: it has no lag series.
    assert!(
        !scrape.contains(&format!("party=\"{}\"", app.municipality_id)),
        "{scrape}"
    );

    // A failed handshake, so that every family the dashboard plots has a sample.
    let _ = tonic_health::pb::health_client::HealthClient::new(crate::authn::anonymous_channel(
        &app,
        app.party_addr.port(),
    ))
    .check(tonic_health::pb::HealthCheckRequest::default())
    .await
    .unwrap_err();
    let scrape = scrape_until(app.metrics_addr, |s| {
        s.contains("lefi_tls_handshakes_failed_total")
    })
    .await;
    assert_dashboard_plots_only(&scrape);

    // Labels hold party ids and method names only: no identity number, in any form.
    for form in [P1.to_string(), P1.replace('-', ""), P1[2..].to_string()] {
        assert!(!scrape.contains(&form), "a person in the metrics: {scrape}");
    }

    // The stream's end is counted.
    drop(stream);
    scrape_until(app.metrics_addr, |s| sample(s, &streams) == Some(0.0)).await;
    app.stop().await;
}

async fn the_listener_answers_only_get_metrics(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    assert_eq!(http(app.metrics_addr, "GET", "/").await.0, 404);
    assert_eq!(http(app.metrics_addr, "POST", "/metrics").await.0, 405);
    let (status, body) = http(app.metrics_addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text: {body}");
    app.stop().await;
}

async fn failed_handshakes_are_counted_by_cause(backend: Backend) {
    let options = SpawnOptions {
        crl_revokes: vec![|c| &c.municipality],
        ..SpawnOptions::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    let health = |channel| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
    };
    // No certificate, one from a CA the server does not trust, one the CRL revokes.
    health(crate::authn::anonymous_channel(&app, app.party_addr.port()))
        .await
        .unwrap_err();
    health(app.lazy_channel(app.party_addr, &app.client_pem(&app.certs.foreign)))
        .await
        .unwrap_err();
    health(app.lazy_channel(app.party_addr, &app.client_pem(&app.certs.municipality)))
        .await
        .unwrap_err();
    let failed = |cause: &str| format!("lefi_tls_handshakes_failed_total{{api=\"party\",cause=\"{cause}\"}}");
    let scrape = scrape_until(app.metrics_addr, |s| {
        ["no_certificate", "unknown_issuer", "revoked"]
            .iter()
            .all(|cause| sample(s, &failed(cause)).is_some_and(|n| n >= 1.0))
    })
    .await;
    // The admin listener saw none of it.
    assert!(
        !scrape.contains("lefi_tls_handshakes_failed_total{api=\"admin\""),
        "{scrape}"
    );
    app.stop().await;
}

/// Every metric the Grafana dashboard in docs/ plots is one the server has (in `scrape`, which must
/// show every family: empty ones are not listed).
fn assert_dashboard_plots_only(scrape: &str) {
    let body = scrape;
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json"),
    )
    .unwrap();
    let mut plotted = 0;
    for (at, _) in dashboard.match_indices("lefi_") {
        let name: String = dashboard[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let family = ["_bucket", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name);
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "the dashboard plots {name}, which the server does not have:\n{body}"
        );
        plotted += 1;
    }
    assert!(plotted >= 10, "{plotted}");
}
