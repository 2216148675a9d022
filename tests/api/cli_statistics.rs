//! Statistics orders from the command line (issue 13): the real `lefi` binary, as the orderer
//! (`lefi orders …`, a state authority holding STAT_INDIVIDUAL_DATA) and as two statisticians
//! (`lefi admin orders …`), takes an order from submission to download on both backends: the
//! four-eyes refusal, a bad population file answered by line numbers without identity numbers,
//! the extract and its check, a resumed download checked against the manifest (and a damaged file
//! named), the invoice, the coverage table and plot, and a dry-run purge; tables and `--json`.

use std::path::Path;
use std::process::Output;

use lefi::dev::certs::Issued;
use lefi::domain::onboarding::NewOperator;
use lefi::domain::{OperatorRole, PartyKind};
use lefi::grpc::pb::lefi::v1 as pb;
use lefi::identity::certificate_facts;
use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::backend_tests;
use crate::dev_server::LEFI;
use crate::helpers::{Backend, TestApp, connected_party, onboard};
use crate::register::{P1, P2, P3, case, ingest, payment};

backend_tests!(an_order_from_submission_to_download_with_the_cli);

/// The test's certificates as files: the orderer's and the two statisticians'.
struct Desk {
    dir: tempfile::TempDir,
    party: String,
    admin: String,
    orderer_id: String,
}

impl Desk {
    async fn set_up(app: &TestApp) -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        put("ca.pem", app.certs.ca.cert_pem());
        let write = |stem: &str, issued: &Issued| {
            put(&format!("{stem}.pem"), &issued.cert_pem);
            put(&format!("{stem}.key"), &issued.key_pem);
        };
        let scb = app
            .certs
            .ca
            .issue_client("Statistikmyndigheten", Some("202100-0837"))
            .unwrap();
        let party = connected_party(
            &scb,
            "202100-0837",
            "Statistikmyndigheten",
            PartyKind::StateAuthority,
            &["STAT_INDIVIDUAL_DATA"],
        );
        let orderer_id = onboard(&app.store, &party, app.clock.now_micros()).await;
        write("scb", &scb);
        for (stem, name) in [("anna", "Anna Statistiker"), ("bo", "Bo Granskare")] {
            let cert = app.certs.ca.issue_client(name, None).unwrap();
            let (facts, _) = certificate_facts(cert.cert_pem.as_bytes()).unwrap();
            app.store
                .upsert_operator(
                    &NewOperator {
                        fingerprint: &facts.fingerprint,
                        name,
                        role: OperatorRole::Statistician,
                    },
                    app.clock.now_micros(),
                )
                .await
                .unwrap();
            write(stem, &cert);
        }
        Desk {
            dir,
            party: format!("https://localhost:{}", app.party_addr.port()),
            admin: format!("https://localhost:{}", app.admin_addr.port()),
            orderer_id,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `lefi TOOL… --addr ADDR --cert STEM.pem --key STEM.key --ca ca.pem ARGS…` in the directory.
    async fn run(&self, tool: &[&str], addr: &str, stem: &str, args: &[&str]) -> Output {
        let file = |name: String| self.path(&name).display().to_string();
        Command::new(LEFI)
            .args(tool)
            .args(["--addr", addr, "--cert", &file(format!("{stem}.pem"))])
            .args([
                "--key",
                &file(format!("{stem}.key")),
                "--ca",
                &file("ca.pem".into()),
            ])
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .output()
            .await
            .unwrap()
    }

    /// `lefi orders ARGS…` as the orderer.
    async fn orders(&self, args: &[&str]) -> Output {
        self.run(&["orders"], &self.party, "scb", args).await
    }

    /// `lefi admin orders ARGS…` as the statistician `who`.
    async fn unit(&self, who: &str, args: &[&str]) -> Output {
        self.run(&["admin", "orders"], &self.admin, who, args).await
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one JSON object a successful `--json` command printed.
fn json(out: &Output) -> serde_json::Value {
    let text = stdout(out);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every written form of the population's identity numbers.
fn identity_forms() -> Vec<String> {
    let mut forms = Vec::new();
    for p in [P1, P2, P3] {
        let digits: String = p.chars().filter(char::is_ascii_digit).collect();
        forms.push(digits[2..].to_string());
        forms.push(format!("{}-{}", &digits[2..8], &digits[8..]));
    }
    // The number with a wrong check digit in the bad file.
    forms.extend(["9007042387".to_string(), "900704-2387".to_string()]);
    forms
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

async fn an_order_from_submission_to_download_with_the_cli(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let facts = vec![
        case(P1, "C1", 1),
        payment(P1, "U1", 1, pb::RecordKind::New, 150_000),
    ];
    for r in ingest(&app, facts).await {
        assert!(r.message.is_empty(), "{r:?}");
    }
    let desk = Desk::set_up(&app).await;

    // Submitted with every field; the reference makes a resubmission safe.
    let submit = [
        "submit",
        "--reference",
        "SCB-2026-17",
        "--project",
        "Sjukfrånvaro och föräldraskap",
        "--purpose",
        "Officiell statistik om sjukfrånvaro",
        "--legal-ground",
        "24 kap. 8 § OSL",
        "--population",
        "Personer i urvalet",
        "--benefit",
        "SJP",
        "--benefit",
        "FP",
        "--variables",
        "episoder och paneler",
        "--from",
        "2024-01-01",
        "--to",
        "2024-12-31",
        "--wished-delivery",
        "2027-03-01",
        "--contact-name",
        "Eva Statistiker",
        "--contact-email",
        "eva@scb.example",
    ];
    let submitted = json(&desk.orders(&[&submit[..], &["--json"][..]].concat()).await);
    assert_eq!(submitted["state"], "ORDER_SUBMITTED");
    assert_eq!(submitted["partyId"], desk.orderer_id.as_str());
    assert_eq!(
        submitted["submitted"]["benefitTypeCodes"],
        serde_json::json!(["SJP", "FP"])
    );
    assert_eq!(submitted["submitted"]["period"]["to"], "2024-12-31");
    let id = submitted["orderId"].as_str().unwrap().to_string();
    let again = stdout(&desk.orders(&submit).await);
    assert!(again.contains(&id) && again.contains("SUBMITTED"), "{again}");
    assert!(
        again.contains("next: the statistics unit confirms receipt by"),
        "{again}"
    );

    // The statistics unit: the new order in its list, receipt confirmed (twice with one key: once).
    let listed = stdout(&desk.unit("anna", &["list", "--state", "submitted"]).await);
    assert!(listed.contains(&id) && listed.contains("(1 order)"), "{listed}");
    let confirm = ["confirm", &id, "--idempotency-key", "confirm-1"];
    let confirmed = stdout(&desk.unit("anna", &confirm).await);
    assert!(confirmed.contains("IN_REVIEW"), "{confirmed}");
    assert!(confirmed.contains("next: draft the quote"), "{confirmed}");
    stdout(&desk.unit("anna", &confirm).await);
    let quoted = json(
        &desk
            .unit(
                "anna",
                &[
                    "quote",
                    &id,
                    "--hours",
                    "12.5",
                    "--spec",
                    "Episoder och paneler 2024",
                    "--json",
                ],
            )
            .await,
    );
    assert_eq!(quoted["state"], "ORDER_QUOTE_DRAFTED");
    assert_eq!(quoted["quote"]["centihours"], "1250");
    let bad_hours = desk
        .unit("anna", &["quote", &id, "--hours", "1.234", "--spec", "x"])
        .await;
    assert_eq!(
        bad_hours.status.code(),
        Some(64),
        "a usage error: {}",
        stderr(&bad_hours)
    );
    let agreed = stdout(&desk.orders(&["agree", &id]).await);
    assert!(agreed.contains("CONTENT_AGREED"), "{agreed}");

    // Four eyes: the quote's author cannot release; another statistician can.
    let refused = desk.unit("anna", &["release", &id, "--conditions", "ok"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("FOUR_EYES_REQUIRED"),
        "{}",
        stderr(&refused)
    );
    let released = stdout(
        &desk
            .unit(
                "bo",
                &["release", &id, "--conditions", "Minst fem personer per cell"],
            )
            .await,
    );
    assert!(released.contains("released by Bo Granskare"), "{released}");

    // A bad population file: every bad line by number and reason, no identity number, nothing
    // stored; with --json the lines are objects on stdout and the error one line on stderr.
    let bad = format!("personnummer;lopnr\n19900704-2387;1\n{P2};2\n{P2};3\n");
    std::fs::write(desk.path("bad.csv"), &bad).unwrap();
    let out = desk.orders(&["upload", &id, "bad.csv"]).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("the population file was refused and nothing was stored"),
        "{text}"
    );
    assert!(text.contains("line 2: ") && text.contains("line 4: "), "{text}");
    assert!(text.contains("POPULATION_FILE_INVALID"), "{text}");
    for form in identity_forms() {
        assert!(!text.contains(&form), "an identity number in the output: {text}");
    }
    let out = desk.orders(&["upload", &id, "bad.csv", "--json"]).await;
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![2, 4]
    );
    let error: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["error"]["reason"], "POPULATION_FILE_INVALID");

    // The good file, then the quote accepted.
    let population =
        format!("personnummer;lopnr;indexdatum\n{P1};1;2024-01-01\n{P2};2;2024-01-01\n{P3};3;2024-01-01\n");
    std::fs::write(desk.path("urval.csv"), population).unwrap();
    let uploaded = stdout(&desk.orders(&["upload", &id, "urval.csv"]).await);
    assert!(
        uploaded.contains("population file received: 3 persons (further columns: indexdatum)"),
        "{uploaded}"
    );
    let accepted = json(&desk.orders(&["accept", &id, "--json"]).await);
    assert_eq!(accepted["state"], "ORDER_QUOTE_ACCEPTED");

    // The extract, checked by the unit before delivery.
    let manifest = json(&desk.unit("anna", &["extract", &id, "--json"]).await);
    let files: Vec<(String, String)> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().into(),
                f["sha256"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Episodes, panels and the dictionary, each as CSV and as Parquet.
    assert_eq!(files.len(), 6, "{manifest}");
    assert!(
        files.iter().any(|(name, _)| name == "episodes.parquet"),
        "{manifest}"
    );
    let checked = stdout(&desk.unit("anna", &["download", &id, "--dir", "checked"]).await);
    assert!(checked.contains("all 6 files"), "{checked}");
    let delivered = stdout(&desk.unit("anna", &["deliver", &id]).await);
    assert!(
        delivered.contains("DELIVERED") && delivered.contains("files kept until"),
        "{delivered}"
    );

    // The orderer's view: the history names every step and who took it.
    let shown = stdout(&desk.orders(&["show", &id]).await);
    for step in [
        "SUBMIT",
        "CONFIRM_RECEIPT",
        "DRAFT_QUOTE",
        "RELEASE",
        "RECEIVE_POPULATION",
        "EXTRACT",
        "DELIVER",
    ] {
        assert!(shown.contains(step), "{step}: {shown}");
    }
    assert!(
        shown.contains("Bo Granskare") && shown.contains("next: download the files"),
        "{shown}"
    );
    let history = json(&desk.orders(&["show", &id, "--json"]).await);
    // Nine steps: the repeated confirmation and the refused attempts left no trace.
    assert_eq!(history["history"].as_array().unwrap().len(), 9, "{history}");
    let listed: Vec<serde_json::Value> = stdout(&desk.orders(&["list", "--json"]).await)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "ORDER_DELIVERED");
    let party_manifest = json(&desk.orders(&["manifest", &id, "--json"]).await);
    assert_eq!(party_manifest["files"], manifest["files"]);

    // The download, every file checked against the manifest.
    let first = stdout(&desk.orders(&["download", &id, "--dir", "extract"]).await);
    assert_eq!(
        first.matches("SHA-256 matches the manifest").count(),
        6,
        "{first}"
    );
    for (name, sha) in &files {
        assert_eq!(&sha256_of(&desk.path("extract").join(name)), sha, "{name}");
        assert_eq!(
            std::fs::read(desk.path("extract").join(name)).unwrap(),
            std::fs::read(desk.path("checked").join(name)).unwrap()
        );
    }
    // Interrupted half-way (a CSV and a Parquet file): the next run resumes from what is on disk.
    let episodes = desk.path("extract").join(&files[0].0);
    let whole = std::fs::read(&episodes).unwrap();
    let half = whole.len() / 2;
    std::fs::write(&episodes, &whole[..half]).unwrap();
    let parquet = desk.path("extract").join("episodes.parquet");
    let whole_parquet = std::fs::read(&parquet).unwrap();
    let parquet_half = whole_parquet.len() / 2;
    std::fs::write(&parquet, &whole_parquet[..parquet_half]).unwrap();
    let resumed = stdout(&desk.orders(&["download", &id, "--dir", "extract"]).await);
    for from in [half, parquet_half] {
        assert!(
            resumed.contains(&format!(
                "SHA-256 matches the manifest (resumed from byte {from})"
            )),
            "{resumed}"
        );
    }
    assert_eq!(std::fs::read(&episodes).unwrap(), whole);
    assert_eq!(std::fs::read(&parquet).unwrap(), whole_parquet);
    let resumed = json_lines(
        &desk
            .orders(&["download", &id, "--dir", "extract", "--json"])
            .await,
    );
    assert!(resumed.iter().all(|f| f["verified"] == true), "{resumed:?}");
    // A file damaged on disk (same size) is named, with what to do.
    let mut damaged = whole.clone();
    damaged[0] ^= 0x20;
    std::fs::write(&episodes, &damaged).unwrap();
    let out = desk.orders(&["download", &id, "--dir", "extract"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SHA-256 MISMATCH"));
    let text = stderr(&out);
    assert!(
        text.contains("do not match the manifest's SHA-256")
            && text.contains("delete them and run the download again"),
        "{text}"
    );

    // Delivered and not invoiced yet: on the unit's list of invoices to record, until recorded.
    let awaiting = || async {
        stdout(&desk.unit("anna", &["list", "--awaiting-invoice", "--json"]).await)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["orderId"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(awaiting().await, [serde_json::Value::from(id.as_str())]);

    // The invoice: the actual hours.
    let invoiced = json(
        &desk
            .unit("anna", &["invoice", &id, "--hours", "11.75", "--json"])
            .await,
    );
    assert_eq!(invoiced["invoiceNetOre"], "998750");
    assert!(awaiting().await.is_empty());

    // Coverage: the table, the plot, the JSON.
    let coverage = stdout(
        &desk
            .unit("bo", &["coverage", "--benefit", "SJP", "--svg", "sjp.svg"])
            .await,
    );
    assert!(
        coverage.contains("MONTH") && coverage.contains("ORDERABLE"),
        "{coverage}"
    );
    assert!(
        coverage.contains("wrote the completion curve to sjp.svg"),
        "{coverage}"
    );
    let svg = std::fs::read_to_string(desk.path("sjp.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("<polyline") && svg.contains("95 %"),
        "{svg}"
    );
    let coverage = json(&desk.unit("bo", &["coverage", "--benefit", "SJP", "--json"]).await);
    assert_eq!(coverage["benefitType"], "SJP");

    // Purge: the retention passed (moved back in the database); a dry run lists, deletes nothing.
    let nothing = stdout(&desk.unit("anna", &["purge", "--dry-run"]).await);
    assert!(nothing.contains("nothing to delete"), "{nothing}");
    app.execute_sql(&format!(
        "UPDATE statistics_orders SET retain_until = '2026-01-01' WHERE order_id = '{id}'"
    ))
    .await;
    let dry = stdout(&desk.unit("anna", &["purge", "--dry-run"]).await);
    assert!(dry.contains(&id) && dry.contains("nothing was deleted"), "{dry}");
    let dry = json(&desk.unit("anna", &["purge", "--dry-run", "--json"]).await);
    assert_eq!(dry["orders"][0]["orderId"], id.as_str());
    let still = json(&desk.orders(&["show", &id, "--json"]).await);
    assert_eq!(still["order"]["state"], "ORDER_DELIVERED");

    app.stop().await;
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_help_speaks_of_orders_population_files_and_retention() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(LEFI).args(args).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let orders = help(&["orders", "--help"]);
    assert!(
        orders.contains("population (key) file") && orders.contains("six months"),
        "{orders}"
    );
    let upload = help(&["orders", "upload", "--help"]);
    assert!(
        upload.contains("line N: reason") && upload.contains("löpnummer"),
        "{upload}"
    );
    let unit = help(&["admin", "orders", "--help"]);
    assert!(
        unit.contains("confidentiality review") && unit.contains("purge --dry-run"),
        "{unit}"
    );
}
