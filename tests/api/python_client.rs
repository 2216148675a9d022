//! The Python example client (examples/python) against the real server, over both transports: it
//! subscribes, mirrors its subscriptions into its own SQLite database, survives a crash in the
//! middle of a transaction, resumes from its stored cursor, recovers from an expired cursor, and
//! stops on a revoked certificate. After every run its database must equal the register.
//!
//! Needs python3 with the packages of examples/python/requirements.txt; without them the tests
//! fail and say how to install them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use lefi::grpc::pb::lefi::v1 as pb;
use prost::Message as _;
use sqlx::Connection as _;

use crate::backend_tests;
use crate::delivery::pay;
use crate::helpers::{Backend, TestApp};
use crate::register::{P1, P2, P3, accepted, case, ingest, person_update};

backend_tests!(
    stream_client_mirrors_the_register,
    pull_client_mirrors_the_register
);

async fn stream_client_mirrors_the_register(backend: Backend) {
    mirrors_the_register(backend, "stream").await
}

async fn pull_client_mirrors_the_register(backend: Backend) {
    mirrors_the_register(backend, "pull").await
}

/// The exit status of `--crash-after` (the client dies inside a transaction, before its commit).
const CRASHED: i32 = 75;
/// The exit status when the server refuses the client (UNAUTHENTICATED, PERMISSION_DENIED).
const REFUSED: i32 = 3;
/// How long one run of the client may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The client's subscriptions: both persons, sickness benefit from 2024, as the insurer.
const SUBSCRIPTIONS: &str = r#"{"clientReference":"py-p1","personId":"19900704-2386","benefitTypeCodes":["SJP"],"fromDate":"2024-01-01","legalBasis":"INS_COORDINATION"}
{"clientReference":"py-p2","personId":"19950113-2386","benefitTypeCodes":["SJP"],"fromDate":"2024-01-01","legalBasis":"INS_COORDINATION"}
"#;

async fn mirrors_the_register(backend: Backend, transport: &str) {
    let python = python_with_packages().await;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    // Enough records that a snapshot sent one record per message spans several messages.
    let mut facts = vec![case(P1, "C1", 1), case(P2, "C2", 1)];
    facts.extend((1..=6).map(|i| pay(P1, &format!("PAY-A{i}"), 1, pb::RecordKind::New, i)));
    facts.extend((1..=3).map(|i| pay(P2, &format!("PAY-B{i}"), 1, pb::RecordKind::New, 10 * i)));
    accepted(&ingest(&app, facts).await);

    let client = Client::new(&app, &python, transport);
    std::fs::write(client.dir.path().join("subs.jsonl"), SUBSCRIPTIONS).unwrap();
    let subs_file = client.dir.path().join("subs.jsonl");
    let subs_file = subs_file.to_str().unwrap();

    // Subscribing twice places each subscription once (idempotent by client_reference).
    let out = client.ok(&["subscribe", "--file", subs_file]).await;
    assert_eq!(count_lines(&out, "created "), 2, "{}", text(&out));
    let out = client.ok(&["subscribe", "--file", subs_file]).await;
    assert_eq!(count_lines(&out, "unchanged "), 2, "{}", text(&out));
    let subs = client.subscriptions().await;
    assert_eq!(subs.len(), 2, "{subs:?}");

    // The first run dies in the middle of the P1 snapshot, inside the transaction of its 5th event
    // (pulling two events per answer, so that answers before it were committed).
    let out = client
        .run(&[
            "--max-batch-records",
            "1",
            "--max-events",
            "2",
            "--crash-after",
            "5",
        ])
        .await;
    assert_eq!(out.status.code(), Some(CRASHED), "{}", text(&out));
    // Four events were committed, each with its cursor: the first snapshot's beginning and three
    // of its batches; the fifth was rolled back with the transaction it died in.
    assert!(
        !client.cursor().await.is_empty(),
        "the committed events' cursor was stored"
    );
    assert_eq!(client.snapshot_in_progress().await, (1, 3, 3));

    // While the client is down: a retroactive correction, a retraction, a new payment, a person's
    // new name, and a fact about a person nobody subscribed to.
    let mut correction = pay(P1, "PAY-A1", 2, pb::RecordKind::Correction, 500);
    correction.retroactive = true;
    accepted(
        &ingest(
            &app,
            vec![
                correction,
                pay(P1, "PAY-A2", 2, pb::RecordKind::Retraction, 2),
                pay(P2, "PAY-B4", 1, pb::RecordKind::New, 40),
                person_update(P2, 1, "Tolvan Tolvansson", false, ""),
                pay(P3, "PAY-C1", 1, pb::RecordKind::New, 30),
            ],
        )
        .await,
    );
    let summary = client
        .until_caught_up(&["--max-batch-records", "1", "--max-events", "2"])
        .await;
    assert_eq!(summary["resumed_from_cursor"], true, "{summary}");
    assert_eq!(summary["caught_up"], true, "{summary}");
    client.assert_mirrors_register(&app, &subs).await;
    assert_eq!(client.person_name("py-p2").await, "Tolvan Tolvansson");

    assert_eq!(client.state("py-p2").await, ("ACTIVE".to_string(), None));

    // A restart resumes from the stored cursor: only what is new arrives, no snapshot. The P2
    // subscription is cancelled after a last correction: its notice marks it ENDED, and the client
    // keeps what it received.
    accepted(&ingest(&app, vec![pay(P2, "PAY-B4", 2, pb::RecordKind::Correction, 45)]).await);
    pb::subscription_service_client::SubscriptionServiceClient::new(
        app.party_channel(&app.certs.insurer).await,
    )
    .cancel_subscription(pb::CancelSubscriptionRequest {
        subscription_id: subs["py-p2"].clone(),
    })
    .await
    .unwrap();
    let summary = client.until_caught_up(&[]).await;
    assert_eq!(summary["snapshots"], 0, "{summary}");
    assert_eq!(summary["changes"], 1, "{summary}");
    assert_eq!(summary["notices"], 1, "{summary}");
    let ended = (
        "ENDED".to_string(),
        Some("SUBSCRIPTION_STATE_REASON_CANCELLED".to_string()),
    );
    assert_eq!(client.state("py-p2").await, ended);
    client.assert_mirrors_register(&app, &subs).await;

    // The history behind the stored cursor is pruned: CURSOR_EXPIRED, a full refresh, and a fresh
    // snapshot of the one ACTIVE subscription replaces what the client holds for it; the ENDED one
    // keeps its state (the client reconciles with ListSubscriptions).
    accepted(&ingest(&app, vec![pay(P1, "PAY-A7", 1, pb::RecordKind::New, 7)]).await);
    app.store
        .prune_delivery_history(app.clock.now_micros() + 1)
        .await
        .unwrap();
    let summary = client.until_caught_up(&[]).await;
    assert_eq!(summary["full_refreshes"], 1, "{summary}");
    assert_eq!(summary["snapshots"], 1, "{summary}");
    client.assert_mirrors_register(&app, &subs).await;
    assert_eq!(client.state("py-p2").await, ended);

    // A revoked certificate stops the client with a clear message, not a retry loop.
    app.revoke_certificate(&app.insurer_id, &app.certs.insurer).await;
    let out = client.run(&["--until-caught-up"]).await;
    assert_eq!(out.status.code(), Some(REFUSED), "{}", text(&out));
    assert!(text(&out).contains("CERTIFICATE_REVOKED"), "{}", text(&out));
    app.stop().await;
}

/// The Python interpreter (`LEFI_TEST_PYTHON`, else `python3`), checked to have the client's
/// packages: a missing one fails the test with the command that installs them.
async fn python_with_packages() -> String {
    let python = std::env::var("LEFI_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let check = tokio::process::Command::new(&python)
        .args([
            "-c",
            "import grpc, grpc_tools.protoc, grpc_status.rpc_status, google.rpc.error_details_pb2",
        ])
        .output()
        .await;
    match check {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{python} lacks the Python client's packages ({}): install them with \
             `{python} -m pip install -r examples/python/requirements.txt`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run {python} ({e}): the Python client's test needs Python 3 with \
             `python3 -m pip install -r examples/python/requirements.txt` (or set LEFI_TEST_PYTHON)"
        ),
    }
}

/// The Python client as one test runs it: its credentials and database in a directory of its own.
struct Client {
    python: String,
    script: PathBuf,
    transport: String,
    common: Vec<String>,
    dir: tempfile::TempDir,
}

impl Client {
    fn new(app: &TestApp, python: &str, transport: &str) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let pem = app.client_pem(&app.certs.insurer);
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path.to_str().unwrap().to_string()
        };
        let common = vec![
            "--addr".to_string(),
            format!("127.0.0.1:{}", app.party_addr.port()),
            "--server-name".to_string(),
            "localhost".to_string(),
            "--cert".to_string(),
            write("insurer.pem", &pem.cert),
            "--key".to_string(),
            write("insurer.key", &pem.key),
            "--ca".to_string(),
            write("ca.pem", &pem.ca),
            "--db".to_string(),
            dir.path().join("client.db").to_str().unwrap().to_string(),
        ];
        Client {
            python: python.to_string(),
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/lefi_client.py"),
            transport: transport.to_string(),
            common,
            dir,
        }
    }

    /// Runs the client with `args` after the common options; killed if it outlives RUN_TIMEOUT.
    async fn exec(&self, args: &[&str]) -> Output {
        let child = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .args(&self.common)
            .args(args)
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(RUN_TIMEOUT, child)
            .await
            .unwrap_or_else(|_| panic!("the Python client did not finish within {RUN_TIMEOUT:?}: {args:?}"))
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> Output {
        let out = self.exec(args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    }

    /// `run --transport T` with short heartbeats and long polls, plus `args`.
    async fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "run",
            "--transport",
            &self.transport,
            "--heartbeat",
            "1",
            "--wait",
            "2",
        ];
        all.extend_from_slice(args);
        self.exec(&all).await
    }

    /// Runs until caught up; returns the run's summary (its last line on stdout).
    async fn until_caught_up(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--until-caught-up"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8(out.stdout.clone()).unwrap();
        let last = stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no summary: {}", text(&out)));
        serde_json::from_str(last).unwrap_or_else(|e| panic!("summary {last:?}: {e}"))
    }

    async fn db(&self) -> sqlx::SqliteConnection {
        let url = format!("sqlite://{}?mode=ro", self.dir.path().join("client.db").display());
        sqlx::SqliteConnection::connect(&url).await.unwrap()
    }

    async fn cursor(&self) -> String {
        sqlx::query_scalar("SELECT cursor FROM delivery_position")
            .fetch_optional(&mut self.db().await)
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// The client's snapshots in progress: how many, their batches so far, their records so far.
    async fn snapshot_in_progress(&self) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM snapshot_progress), \
                    (SELECT coalesce(sum(batches), 0) FROM snapshot_progress), \
                    (SELECT count(*) FROM snapshot_seen)",
        )
        .fetch_one(&mut self.db().await)
        .await
        .unwrap()
    }

    /// client_reference → subscription_id, from the client's database.
    async fn subscriptions(&self) -> BTreeMap<String, String> {
        sqlx::query_as::<_, (String, String)>("SELECT client_reference, subscription_id FROM subscriptions")
            .fetch_all(&mut self.db().await)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// A subscription's state and reason in the client's database.
    async fn state(&self, reference: &str) -> (String, Option<String>) {
        sqlx::query_as("SELECT state, state_reason FROM subscriptions WHERE client_reference = ?")
            .bind(reference)
            .fetch_one(&mut self.db().await)
            .await
            .unwrap()
    }

    async fn person_name(&self, reference: &str) -> String {
        sqlx::query_scalar("SELECT person_name FROM subscriptions WHERE client_reference = ?")
            .bind(reference)
            .fetch_one(&mut self.db().await)
            .await
            .unwrap()
    }

    /// The live records the client holds for a subscription, by record_id.
    async fn records(&self, subscription_id: &str) -> BTreeMap<String, pb::BenefitRecord> {
        let rows: Vec<(String, i64, Vec<u8>)> =
            sqlx::query_as("SELECT record_id, version, record FROM live_records WHERE subscription_id = ?")
                .bind(subscription_id)
                .fetch_all(&mut self.db().await)
                .await
                .unwrap();
        rows.into_iter()
            .map(|(id, version, bytes)| {
                let record = pb::BenefitRecord::decode(bytes.as_slice()).unwrap();
                assert_eq!(
                    (record.record_id.as_str(), i64::from(record.version)),
                    (id.as_str(), version)
                );
                (id, record)
            })
            .collect()
    }

    /// Each subscription's records in the client's database equal what the register holds for it
    /// now (a QueryPerson with the subscription's person, benefits, from-date and basis).
    async fn assert_mirrors_register(&self, app: &TestApp, subs: &BTreeMap<String, String>) {
        for (reference, person) in [("py-p1", P1), ("py-p2", P2)] {
            let held = self.records(&subs[reference]).await;
            let register = register_records(app, person).await;
            assert!(!register.is_empty());
            assert_eq!(
                held.keys().collect::<Vec<_>>(),
                register.keys().collect::<Vec<_>>(),
                "{reference}: the record ids differ"
            );
            assert_eq!(held, register, "{reference}: the records differ");
        }
    }
}

/// What the register holds now for the insurer's subscription on `person`, by record_id.
async fn register_records(app: &TestApp, person: &str) -> BTreeMap<String, pb::BenefitRecord> {
    let mut client =
        pb::query_service_client::QueryServiceClient::new(app.party_channel(&app.certs.insurer).await);
    let request = pb::QueryPersonRequest {
        person_id: person.to_string(),
        benefit_type_codes: vec!["SJP".to_string()],
        period: Some(pb::DateRange {
            from: "2024-01-01".to_string(),
            to: String::new(),
        }),
        legal_basis: "INS_COORDINATION".to_string(),
        ..Default::default()
    };
    let mut stream = client.query_person(request).await.unwrap().into_inner();
    let mut records = BTreeMap::new();
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::query_person_response::Content::Records(batch)) = message.content {
            records.extend(batch.records.into_iter().map(|r| (r.record_id.clone(), r)));
        }
    }
    records
}

fn count_lines(out: &Output, prefix: &str) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// Everything the client printed, for failure messages.
fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
