//! Statistics orders through both APIs (issue 13), on both backends: the orderer (a state
//! authority holding the statistics basis) and two statisticians take an order from submission to
//! deletion; the rules of each step, the extract's content and reproducibility, the population
//! file's line-level answers and the disclosure log are checked on the real server.

use lefi::dev::certs::Issued;
use lefi::domain::onboarding::NewOperator;
use lefi::domain::{OperatorRole, PartyKind};
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use lefi::identity::certificate_facts;
use parquet::basic::{LogicalType, Type as PhysicalType};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::helpers::{Backend, SpawnOptions, TestApp, connected_party, idempotency_key, onboard, reason};
use crate::register::{P1, P2, P3, fact, ingest};

backend_tests!(
    an_order_goes_from_submission_to_deletion_through_both_apis,
    the_extract_is_reproducible_at_its_sequence_and_reflects_later_corrections,
    bad_population_files_get_line_answers_and_change_nothing,
    only_an_authority_with_the_statistics_basis_orders_and_only_its_own,
    retention_is_extended_on_approval_and_deletion_keeps_the_manifest,
    the_running_server_deletes_expired_extracts_when_the_day_changes,
    a_delivery_is_logged_once_however_it_is_retried,
    refusal_withdrawal_and_special_duty_through_the_apis,
    coverage_from_known_lags_decides_which_months_may_be_ordered,
    receipt_is_due_two_working_days_later_around_easter_and_midsummer,
);

type PartyClient = pb::statistics_order_service_client::StatisticsOrderServiceClient<Channel>;
type AdminClient = admin_pb::statistics_admin_service_client::StatisticsAdminServiceClient<Channel>;

const SCB_ORG: &str = "202100-0837";

/// The orderer and the statistics unit's two statisticians (Anna drafts, Bo reviews).
/// The orders the statistics unit sees as overdue for receipt.
async fn overdue_orders(d: &Desk) -> Vec<lefi::grpc::pb::lefi::v1::StatisticsOrder> {
    d.anna
        .clone()
        .list_orders(admin_pb::ListOrdersRequest {
            overdue_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .orders
}

struct Desk {
    orderer: PartyClient,
    anna: AdminClient,
    bo: AdminClient,
    orderer_id: String,
}

async fn statistician(app: &TestApp, name: &str) -> AdminClient {
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
    AdminClient::new(app.admin_channel(&cert).await)
}

async fn authority(app: &TestApp, org: &str, name: &str, bases: &[&str]) -> (Issued, String) {
    let cert = app.certs.ca.issue_client(name, Some(org)).unwrap();
    let party = connected_party(&cert, org, name, PartyKind::StateAuthority, bases);
    let id = onboard(&app.store, &party, app.clock.now_micros()).await;
    (cert, id)
}

async fn desk(app: &TestApp) -> Desk {
    let (cert, orderer_id) = authority(app, SCB_ORG, "Statistikmyndigheten", &["STAT_INDIVIDUAL_DATA"]).await;
    Desk {
        orderer: PartyClient::new(app.party_channel(&cert).await),
        anna: statistician(app, "Anna Statistiker").await,
        bo: statistician(app, "Bo Granskare").await,
        orderer_id,
    }
}

fn submission(reference: &str) -> pb::SubmitOrderRequest {
    pb::SubmitOrderRequest {
        order_reference: reference.to_string(),
        project: "Sjukfrånvaro och föräldraskap".to_string(),
        purpose: "Officiell statistik om sjukfrånvaro".to_string(),
        legal_ground: "OSL 24 kap. 8 §".to_string(),
        population_description: "Personer i urvalet".to_string(),
        benefit_type_codes: vec!["SJP".into(), "FP".into(), "BB".into()],
        variables: "episoder och paneler".to_string(),
        period: Some(pb::DateRange {
            from: "2024-01-01".into(),
            to: "2024-12-31".into(),
        }),
        wished_delivery: "2027-03-01".to_string(),
        contact_name: "Eva Statistiker".to_string(),
        contact_email: "eva@scb.example".to_string(),
        special_duty: false,
    }
}

fn party_step(order_id: &str, step: pb::advance_order_request::Step) -> pb::AdvanceOrderRequest {
    pb::AdvanceOrderRequest {
        order_id: order_id.to_string(),
        idempotency_key: idempotency_key(),
        step: Some(step),
    }
}

fn agency_step(order_id: &str, step: admin_pb::advance_order_request::Step) -> admin_pb::AdvanceOrderRequest {
    admin_pb::AdvanceOrderRequest {
        order_id: order_id.to_string(),
        idempotency_key: idempotency_key(),
        step: Some(step),
    }
}

async fn agency(
    client: &AdminClient,
    order_id: &str,
    step: admin_pb::advance_order_request::Step,
) -> Result<pb::StatisticsOrder, Status> {
    Ok(client
        .clone()
        .advance_order(agency_step(order_id, step))
        .await?
        .into_inner())
}

async fn orderer(
    client: &PartyClient,
    order_id: &str,
    step: pb::advance_order_request::Step,
) -> Result<pb::StatisticsOrder, Status> {
    Ok(client
        .clone()
        .advance_order(party_step(order_id, step))
        .await?
        .into_inner())
}

fn upload_chunks(order_id: &str, bytes: &[u8]) -> Vec<pb::UploadPopulationRequest> {
    let key = idempotency_key();
    let mut chunks: Vec<pb::UploadPopulationRequest> = bytes
        .chunks(64 * 1024)
        .map(|data| pb::UploadPopulationRequest {
            order_id: String::new(),
            data: data.to_vec(),
            idempotency_key: String::new(),
        })
        .collect();
    if chunks.is_empty() {
        chunks.push(pb::UploadPopulationRequest::default());
    }
    chunks[0].order_id = order_id.to_string();
    chunks[0].idempotency_key = key;
    chunks
}

async fn upload(
    client: &PartyClient,
    order_id: &str,
    bytes: &[u8],
) -> Result<pb::UploadPopulationResponse, Status> {
    let chunks = upload_chunks(order_id, bytes);
    Ok(client
        .clone()
        .upload_population(tokio_stream::iter(chunks))
        .await?
        .into_inner())
}

/// The whole file, downloaded from `offset`.
async fn download_party(
    client: &PartyClient,
    order_id: &str,
    name: &str,
    offset: u64,
) -> Result<Vec<u8>, Status> {
    let mut stream = client
        .clone()
        .download_extract(pb::DownloadExtractRequest {
            order_id: order_id.to_string(),
            file_name: name.to_string(),
            offset,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert_eq!(chunk.offset, offset + out.len() as u64, "chunks come in order");
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

async fn download_admin(client: &AdminClient, order_id: &str, name: &str) -> Vec<u8> {
    let mut stream = client
        .clone()
        .download_extract(pb::DownloadExtractRequest {
            order_id: order_id.to_string(),
            file_name: name.to_string(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        out.extend_from_slice(&chunk.data);
    }
    out
}

/// P1, P2, P3 with serial numbers whose order is neither the file's nor the identity numbers'
/// (sorted by serial: P2, P1, P3), so that a serial mapped to the wrong person shows.
const POPULATION: &str = "personnummer;lopnr;indexdatum\n19900704-2386;L7;2024-01-01\n19950113-2386;A3;2024-01-01\n20170101-2393;Z1;2024-01-01\n";

/// A person with facts in the register who is in no population.
const P4: &str = "19121212-1212";

/// The register the orders read: P1 has a sickness case with a sub-case, two compensation periods
/// and a payment; P2 a parental-benefit period and a child-allowance payment (a benefit delivered
/// as payments only); P3 nothing; P4, who is in no population, a period and a payment.
async fn feed_register(app: &TestApp) {
    let case = |person: &str, id: &str, case_id: &str, parent: &str, benefit: &str| admin_pb::Fact {
        benefit_type: benefit.into(),
        body: Some(admin_pb::fact::Body::Case(pb::BenefitCase {
            case_id: case_id.into(),
            parent_case_id: parent.into(),
            opened: "2024-01-08".into(),
            closed: String::new(),
            status: pb::BenefitCaseStatus::Open as i32,
        })),
        ..fact(person, id, 1, pb::RecordKind::New)
    };
    let facts = vec![
        case(P1, "C1", "FALL-1", "", "SJP"),
        case(P1, "C2", "FALL-1-D1", "FALL-1", "SJP"),
        period(
            P1,
            "S1",
            1,
            "FALL-1",
            "SJP",
            ("2024-01-09", "2024-02-15"),
            pb::CompensationExtent::ThreeQuarters,
        ),
        period(
            P1,
            "S2",
            1,
            "FALL-1-D1",
            "SJP",
            ("2024-03-01", "2024-03-10"),
            pb::CompensationExtent::Full,
        ),
        admin_pb::Fact {
            body: Some(admin_pb::fact::Body::Payment(pb::Payment {
                case_id: "FALL-1".into(),
                payment_date: "2024-02-25".into(),
                covered: Some(pb::DateRange {
                    from: "2024-01-09".into(),
                    to: "2024-01-31".into(),
                }),
                gross_ore: 1_500_000,
                tax_ore: 450_000,
                preliminary: true,
                lines: vec![pb::AmountLine {
                    amount_type: "GRUND".into(),
                    amount_ore: 1_500_000,
                }],
                payer: "FK".into(),
            })),
            ..fact(P1, "U1", 1, pb::RecordKind::New)
        },
        period(
            P2,
            "F1",
            1,
            "FP-1",
            "FP",
            ("2024-05-01", "2024-05-31"),
            pb::CompensationExtent::Half,
        ),
        admin_pb::Fact {
            benefit_type: "BB".into(),
            body: Some(admin_pb::fact::Body::Payment(pb::Payment {
                case_id: "BB-1".into(),
                payment_date: "2024-06-20".into(),
                covered: Some(pb::DateRange {
                    from: "2024-06-01".into(),
                    to: "2024-06-30".into(),
                }),
                gross_ore: 125_000,
                tax_ore: 0,
                preliminary: false,
                lines: vec![pb::AmountLine {
                    amount_type: "GRUND".into(),
                    amount_ore: 125_000,
                }],
                payer: "FK".into(),
            })),
            ..fact(P2, "B1", 1, pb::RecordKind::New)
        },
    ];
    let mut facts = facts;
    // P4, in no population: a parental-benefit period in August and a sickness-benefit payment.
    facts.push(period(
        P4,
        "P4-F1",
        1,
        "FP-4",
        "FP",
        ("2024-08-01", "2024-08-31"),
        pb::CompensationExtent::OneQuarter,
    ));
    facts.push(admin_pb::Fact {
        body: Some(admin_pb::fact::Body::Payment(pb::Payment {
            case_id: "SJP-4".into(),
            payment_date: "2024-08-25".into(),
            covered: Some(pb::DateRange {
                from: "2024-08-01".into(),
                to: "2024-08-20".into(),
            }),
            gross_ore: 777_777,
            tax_ore: 0,
            preliminary: false,
            lines: vec![pb::AmountLine {
                amount_type: "GRUND".into(),
                amount_ore: 777_777,
            }],
            payer: "FK".into(),
        })),
        ..fact(P4, "P4-U1", 1, pb::RecordKind::New)
    });
    for r in ingest(app, facts).await {
        assert!(r.message.is_empty() && r.register_sequence > 0, "{r:?}");
    }
}

fn period(
    person: &str,
    id: &str,
    version: u64,
    case_id: &str,
    benefit: &str,
    (from, to): (&str, &str),
    extent: pb::CompensationExtent,
) -> admin_pb::Fact {
    admin_pb::Fact {
        benefit_type: benefit.into(),
        body: Some(admin_pb::fact::Body::CompensationPeriod(pb::CompensationPeriod {
            case_id: case_id.into(),
            from: from.into(),
            to: to.into(),
            extent: extent as i32,
            daily_amount_ore: 80_000,
        })),
        ..fact(
            person,
            id,
            version,
            if version == 1 {
                pb::RecordKind::New
            } else {
                pb::RecordKind::Correction
            },
        )
    }
}

/// Submits an order and takes it to RELEASED (receipt, quote by Anna, agreement, review by Bo).
async fn released_order(d: &Desk, reference: &str) -> String {
    released(d, submission(reference)).await
}

/// Submits `request` and takes the order to RELEASED, as [`released_order`] does.
async fn released(d: &Desk, request: pb::SubmitOrderRequest) -> String {
    use admin_pb::advance_order_request::{self as a, Step as A};
    use pb::advance_order_request::{self as p, Step as P};
    let order = d
        .orderer
        .clone()
        .submit_order(request)
        .await
        .unwrap()
        .into_inner();
    let id = order.order_id.clone();
    agency(&d.anna, &id, A::ConfirmReceipt(a::ConfirmReceipt {}))
        .await
        .unwrap();
    agency(
        &d.anna,
        &id,
        A::DraftQuote(a::DraftQuote {
            specification: "Episoder och paneler, SJP FP BB, 2024".into(),
            centihours: 1_250,
        }),
    )
    .await
    .unwrap();
    orderer(&d.orderer, &id, P::AgreeContent(p::AgreeContent {}))
        .await
        .unwrap();
    agency(
        &d.bo,
        &id,
        A::Release(a::Release {
            conditions: "Inga tabeller med färre än fem personer".into(),
        }),
    )
    .await
    .unwrap();
    id
}

async fn produce(client: &AdminClient, order_id: &str, sequence: u64) -> Result<pb::ExtractManifest, Status> {
    Ok(client
        .clone()
        .produce_extract(admin_pb::ProduceExtractRequest {
            order_id: order_id.to_string(),
            idempotency_key: idempotency_key(),
            register_sequence: sequence,
        })
        .await?
        .into_inner())
}

fn state(order: &pb::StatisticsOrder) -> pb::StatisticsOrderState {
    pb::StatisticsOrderState::try_from(order.state).unwrap()
}

/// A population file's line with a wrong check digit (P1's number, last digit off by one): it
/// must not be echoed either.
const BAD_CHECK_DIGIT: &str = "19900704-2387";

/// Every written form of a population person's identity number, and of [`BAD_CHECK_DIGIT`].
fn identity_forms() -> Vec<String> {
    let mut forms = Vec::new();
    for p in [P1, P2, P3, BAD_CHECK_DIGIT] {
        let digits: String = p.chars().filter(char::is_ascii_digit).collect();
        forms.push(digits.clone());
        forms.push(digits[2..].to_string());
        forms.push(format!("{}-{}", &digits[..8], &digits[8..]));
        forms.push(format!("{}-{}", &digits[2..8], &digits[8..]));
    }
    forms
}

/// A CSV file of an extract: its header and rows.
fn csv_table(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader.headers().unwrap().iter().map(str::to_string).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// A Parquet file of an extract, read with the `parquet` crate's own reader: its columns and rows,
/// each value written as the CSV writes it (dates as YYYY-MM-DD, decimals as "28.5", null as "").
fn parquet_table(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    use lefi::domain::statistics::extract::Value;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let header = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let text = |field: &Field| match field {
        Field::Str(s) => s.clone(),
        Field::Long(n) => n.to_string(),
        Field::Date(days) => time::Date::from_julian_day(days + 2_440_588).unwrap().to_string(),
        Field::Decimal(d) => {
            assert_eq!(d.scale(), 2);
            let hundredths = i64::from_be_bytes(d.data().try_into().unwrap());
            assert_eq!(hundredths % 25, 0, "quarter days");
            Value::QuarterDays(hundredths / 25).to_string()
        }
        Field::Null => String::new(),
        other => panic!("an extract's Parquet holds no {other:?}"),
    };
    let rows = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| row.unwrap().get_column_iter().map(|(_, f)| text(f)).collect())
        .collect();
    (header, rows)
}

/// The column types of a Parquet file: (name, physical type, logical type).
fn parquet_types(bytes: &[u8]) -> Vec<(String, PhysicalType, Option<LogicalType>)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes)).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    schema
        .columns()
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                c.physical_type(),
                c.logical_type_ref().cloned(),
            )
        })
        .collect()
}

/// What a file of an extract says, as text to search: a CSV file's text; a Parquet file's raw
/// bytes (lossy) and every value it decodes to.
fn searchable_text(name: &str, bytes: &[u8]) -> String {
    if name.ends_with(".parquet") {
        let (header, rows) = parquet_table(bytes);
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        text.push('\n');
        text.push_str(&header.join(","));
        for row in rows {
            text.push('\n');
            text.push_str(&row.join(","));
        }
        text
    } else {
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

async fn an_order_goes_from_submission_to_deletion_through_both_apis(backend: Backend) {
    use admin_pb::advance_order_request::{self as a, Step as A};
    use pb::advance_order_request::{self as p, Step as P};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    feed_register(&app).await;
    let d = desk(&app).await;

    // Submitted: receipt is due within two working days, and resubmitting is retry-safe.
    let order = d
        .orderer
        .clone()
        .submit_order(submission("SCB-2026-17"))
        .await
        .unwrap()
        .into_inner();
    let id = order.order_id.clone();
    assert_eq!(state(&order), pb::StatisticsOrderState::OrderSubmitted);
    assert!(!order.receipt_due.is_empty() && !order.overdue);
    let again = d
        .orderer
        .clone()
        .submit_order(submission("SCB-2026-17"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.order_id, id);
    let mut changed = submission("SCB-2026-17");
    changed.project = "Ett annat projekt".into();
    let err = d.orderer.clone().submit_order(changed).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED")
    );

    // No population before the release decision; nothing is stored.
    let err = upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "POPULATION_BEFORE_RELEASE")
    );

    agency(&d.anna, &id, A::ConfirmReceipt(a::ConfirmReceipt {}))
        .await
        .unwrap();
    let asked = agency(
        &d.anna,
        &id,
        A::RequestCompletion(a::RequestCompletion {
            question: "Vilka år avses?".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(state(&asked), pb::StatisticsOrderState::OrderAwaitingCompletion);
    orderer(
        &d.orderer,
        &id,
        P::Supplement(p::Supplement { text: "2024".into() }),
    )
    .await
    .unwrap();
    // A second round: any number of rounds, each kept.
    agency(
        &d.anna,
        &id,
        A::RequestCompletion(a::RequestCompletion {
            question: "Vilka förmåner avses?".into(),
        }),
    )
    .await
    .unwrap();
    orderer(
        &d.orderer,
        &id,
        P::Supplement(p::Supplement {
            text: "SJP, FP och BB".into(),
        }),
    )
    .await
    .unwrap();
    let quoted = agency(
        &d.anna,
        &id,
        A::DraftQuote(a::DraftQuote {
            specification: "Episoder och paneler 2024".into(),
            centihours: 1_250,
        }),
    )
    .await
    .unwrap();
    let quote = quoted.quote.unwrap();
    assert_eq!(
        (quote.net_ore, quote.vat_ore, quote.ore_per_hour),
        (1_062_500, 265_625, 85_000)
    );
    orderer(&d.orderer, &id, P::AgreeContent(p::AgreeContent {}))
        .await
        .unwrap();

    // Four eyes: the quote's author cannot make the review.
    let err = agency(
        &d.anna,
        &id,
        A::Release(a::Release {
            conditions: "ok".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "FOUR_EYES_REQUIRED")
    );
    let released = agency(
        &d.bo,
        &id,
        A::Release(a::Release {
            conditions: "Minst fem per cell".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(state(&released), pb::StatisticsOrderState::OrderReleased);
    assert_eq!(released.decision.as_ref().unwrap().reviewer, "Bo Granskare");

    // No extraction before an accepted quote.
    let accepted = upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    assert_eq!(accepted.persons, 3);
    assert_eq!(accepted.extra_columns, vec!["indexdatum".to_string()]);
    let err = produce(&d.anna, &id, 0).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "NOT_READY_TO_EXTRACT")
    );
    orderer(&d.orderer, &id, P::AcceptQuote(p::AcceptQuote {}))
        .await
        .unwrap();

    let manifest = produce(&d.anna, &id, 0).await.unwrap();
    assert_eq!((manifest.population, manifest.persons_with_data), (3, 2));
    // The coverage used: every ordered month of every benefit, as the rule saw it. 2024 is older
    // than the completion curve, so complete (a recent month's share is checked in
    // coverage_from_known_lags_decides_which_months_may_be_ordered).
    let months_2024: Vec<String> = (1..=12).map(|m| format!("2024-{m:02}")).collect();
    let used: Vec<&str> = manifest
        .coverage_used
        .iter()
        .map(|c| c.benefit_type_code.as_str())
        .collect();
    assert_eq!(used, vec!["SJP", "FP", "BB"]);
    for c in &manifest.coverage_used {
        let months: Vec<String> = c.months.iter().map(|m| m.month.clone()).collect();
        assert_eq!(months, months_2024, "{}", c.benefit_type_code);
        assert!(c.months.iter().all(|m| m.coverage == 1.0), "{c:?}");
        assert_eq!(c.lowest_coverage, 1.0, "{c:?}");
    }
    assert_eq!(
        manifest.benefit_sources.get("BB").map(String::as_str),
        Some("payments only")
    );
    let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "episodes.csv",
            "panels.csv",
            "dictionary.csv",
            "episodes.parquet",
            "panels.parquet",
            "dictionary.parquet"
        ]
    );
    for f in &manifest.files {
        let expected = if f.name.ends_with(".csv") {
            "text/csv"
        } else {
            "application/vnd.apache.parquet"
        };
        assert_eq!(f.media_type, expected, "{}", f.name);
    }

    // Not the orderer's to download before delivery; the unit checks it first.
    let err = download_party(&d.orderer, &id, "episodes.csv", 0)
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "EXTRACT_NOT_AVAILABLE")
    );
    let checked = download_admin(&d.anna, &id, "episodes.csv").await;

    let delivered = agency(&d.anna, &id, A::Deliver(a::Deliver {})).await.unwrap();
    assert_eq!(state(&delivered), pb::StatisticsOrderState::OrderDelivered);
    assert!(!delivered.retain_until.is_empty());

    // Every file matches the manifest, holds no identity number, and serials map to the persons.
    let forms = identity_forms();
    for f in &manifest.files {
        let bytes = download_party(&d.orderer, &id, &f.name, 0).await.unwrap();
        assert_eq!(bytes.len() as u64, f.size_bytes, "{}", f.name);
        assert_eq!(hex::encode(Sha256::digest(&bytes)), f.sha256, "{}", f.name);
        let text = searchable_text(&f.name, &bytes);
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{} holds an identity number",
                f.name
            );
        }
        // A resumed download gives the rest of the same bytes.
        let tail = download_party(&d.orderer, &id, &f.name, 10).await.unwrap();
        assert_eq!(tail, bytes[10..]);
    }
    let episodes_bytes = download_party(&d.orderer, &id, "episodes.csv", 0).await.unwrap();
    assert_eq!(episodes_bytes, checked);
    let episodes = csv_rows(&episodes_bytes);
    assert_eq!(
        episodes,
        vec![
            // In serial order (not the file's): A3 = P2; L7 = P1, the case and its sub-case;
            // Z1 (P3) has no data, and P4 (not in the population) is nowhere.
            vec![
                "A3",
                "FP",
                "1",
                "0",
                "2024-05-01",
                "2024-05-31",
                "1/2",
                "31",
                "15.5"
            ],
            vec![
                "L7",
                "SJP",
                "1",
                "0",
                "2024-01-09",
                "2024-02-15",
                "3/4",
                "38",
                "28.5"
            ],
            vec![
                "L7",
                "SJP",
                "1",
                "1",
                "2024-03-01",
                "2024-03-10",
                "1/1",
                "10",
                "10"
            ],
        ]
    );
    let panels = csv_rows(&download_party(&d.orderer, &id, "panels.csv", 0).await.unwrap());
    assert!(panels.contains(&vec![
        "L7".to_string(),
        "2024-02".into(),
        "SJP".into(),
        "15".into(),
        "11.25".into(),
        "1500000".into(),
        "450000".into()
    ]));
    let dictionary = String::from_utf8(
        download_party(&d.orderer, &id, "dictionary.csv", 0)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(dictionary.contains("payments only"));
    // Each variable with its name, type, meaning and source; every table's variables are there.
    let (header, entries) = csv_table(dictionary.as_bytes());
    assert_eq!(
        header,
        vec!["table", "variable", "type", "parquet_type", "meaning", "source"]
    );
    let entry = |table: &str, variable: &str| {
        entries
            .iter()
            .find(|r| r[0] == table && r[1] == variable)
            .unwrap_or_else(|| panic!("no {table}.{variable} in {entries:?}"))
            .clone()
    };
    let serial = entry("episodes", "serial");
    assert_eq!(serial[2], "text");
    assert!(!serial[4].is_empty() && !serial[5].is_empty(), "{serial:?}");
    assert_eq!(entry("episodes", "net_days")[2], "decimal");
    assert_eq!(entry("panels", "month")[2], "YYYY-MM");
    assert!(
        entries
            .iter()
            .filter(|r| r[0] != "benefits")
            .all(|r| r.iter().all(|field| !field.is_empty())),
        "{entries:?}"
    );
    assert_eq!(entry("benefits", "BB")[2], "payments only");
    assert_eq!(entry("benefits", "SJP")[2], "periods");

    // Each table's Parquet file holds the CSV's columns and rows, typed as the dictionary says, and
    // the manifest counts its rows.
    for table in ["episodes", "panels", "dictionary"] {
        let csv = download_party(&d.orderer, &id, &format!("{table}.csv"), 0)
            .await
            .unwrap();
        let parquet = download_party(&d.orderer, &id, &format!("{table}.parquet"), 0)
            .await
            .unwrap();
        assert!(
            parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"),
            "{table}"
        );
        let (csv_header, csv_rows) = csv_table(&csv);
        let (parquet_header, parquet_rows) = parquet_table(&parquet);
        assert_eq!(parquet_header, csv_header, "{table}");
        assert_eq!(parquet_rows, csv_rows, "{table}");
        assert!(!csv_rows.is_empty(), "{table}");
        let rows = |name: String| manifest.files.iter().find(|f| f.name == name).unwrap().rows;
        assert_eq!(rows(format!("{table}.csv")), csv_rows.len() as u64, "{table}");
        assert_eq!(rows(format!("{table}.parquet")), csv_rows.len() as u64, "{table}");
    }
    let episode_types = parquet_types(
        &download_party(&d.orderer, &id, "episodes.parquet", 0)
            .await
            .unwrap(),
    );
    let typed = |name: &str| {
        let (_, physical, logical) = episode_types.iter().find(|t| t.0 == name).unwrap().clone();
        (physical, logical)
    };
    assert_eq!(
        typed("serial"),
        (PhysicalType::BYTE_ARRAY, Some(LogicalType::String))
    );
    assert_eq!(typed("case_no"), (PhysicalType::INT64, None));
    assert_eq!(
        typed("period_from"),
        (PhysicalType::INT32, Some(LogicalType::Date))
    );
    assert_eq!(
        typed("net_days"),
        (PhysicalType::INT64, Some(LogicalType::decimal(2, 18)))
    );
    let panel_types = parquet_types(
        &download_party(&d.orderer, &id, "panels.parquet", 0)
            .await
            .unwrap(),
    );
    assert_eq!(
        panel_types[1],
        (
            "month".into(),
            PhysicalType::BYTE_ARRAY,
            Some(LogicalType::String)
        )
    );
    assert_eq!(panel_types[3], ("gross_days".into(), PhysicalType::INT64, None));
    // Payments-only benefits leave the panel's days empty: null in Parquet.
    let (_, panel_rows) = parquet_table(
        &download_party(&d.orderer, &id, "panels.parquet", 0)
            .await
            .unwrap(),
    );
    assert!(
        panel_rows.iter().any(|r| r[2] == "BB" && r[3].is_empty()),
        "{panel_rows:?}"
    );

    // Every person of the population is in the disclosure log, naming the order and sequence, and
    // counting the rows about them in the delivered tables (P3 has none).
    let mut delivered_rows = Vec::new();
    for table in ["episodes.csv", "panels.csv"] {
        let bytes = download_party(&d.orderer, &id, table, 0).await.unwrap();
        delivered_rows.extend(csv_table(&bytes).1);
    }
    let rows_about = |serial: &str| delivered_rows.iter().filter(|r| r[0] == serial).count() as u64;
    assert!(rows_about("L7") > 0 && rows_about("A3") > 0 && rows_about("Z1") == 0);
    // Each serial's rows are that person's: P2's (A3) only parental benefit and child allowance,
    // P1's (L7) only sickness benefit; no row has another serial.
    let benefits_of = |serial: &str| {
        let mut b: Vec<String> = delivered_rows
            .iter()
            .filter(|r| r[0] == serial)
            .map(|r| r[if r[1].len() == 7 { 2 } else { 1 }].clone())
            .collect();
        b.sort();
        b.dedup();
        b
    };
    assert_eq!(benefits_of("A3"), vec!["BB".to_string(), "FP".to_string()]);
    assert_eq!(benefits_of("L7"), vec!["SJP".to_string()]);
    assert!(
        delivered_rows
            .iter()
            .all(|r| ["A3", "L7"].contains(&r[0].as_str())),
        "{delivered_rows:?}"
    );
    // P4's facts (not in the population) are in no file: not its August period, not its payment.
    for f in &manifest.files {
        let bytes = download_party(&d.orderer, &id, &f.name, 0).await.unwrap();
        let text = searchable_text(&f.name, &bytes);
        for trace in ["2024-08", "777777", "7777.77", "FP-4", "SJP-4"] {
            assert!(!text.contains(trace), "{} holds P4's {trace}", f.name);
        }
    }
    assert_eq!(
        app.disclosures_about("191212121212").await.len(),
        0,
        "P4 is not released"
    );
    for (person, serial) in [(P1, "L7"), (P2, "A3"), (P3, "Z1")] {
        let digits: String = person.chars().filter(char::is_ascii_digit).collect();
        let entries = app.disclosures_about(&digits).await;
        let release: Vec<_> = entries
            .iter()
            .filter(|e| e.entry.channel == lefi::domain::disclosure::Channel::StatisticsRelease)
            .collect();
        assert_eq!(release.len(), 1, "one release entry per person");
        assert_eq!(release[0].entry.case_reference.as_deref(), Some(id.as_str()));
        assert_eq!(release[0].entry.party_id.as_deref(), Some(d.orderer_id.as_str()));
        assert_eq!(release[0].entry.to_sequence, manifest.register_sequence);
        // It names the purpose and the ordered variables, benefits and period.
        assert_eq!(
            release[0].entry.purpose.as_deref(),
            Some("Officiell statistik om sjukfrånvaro (variables: episoder och paneler)")
        );
        assert_eq!(release[0].entry.benefit_types, vec!["SJP", "FP", "BB"]);
        assert_eq!(
            (release[0].entry.period_from, release[0].entry.period_to),
            (
                Some(time::macros::date!(2024 - 01 - 01)),
                Some(time::macros::date!(2024 - 12 - 31))
            )
        );
        assert_eq!(
            release[0].entry.record_count,
            rows_about(serial),
            "serial {serial}"
        );
    }

    // After delivery: the orderer asked for longer and the agency approved; the invoice follows.
    let extended_until = lefi::domain::clock::parse_date(&delivered.retain_until)
        .unwrap()
        .next_day()
        .unwrap();
    agency(
        &d.anna,
        &id,
        A::ExtendRetention(a::ExtendRetention {
            retain_until: lefi::domain::clock::format_date(extended_until),
        }),
    )
    .await
    .unwrap();
    let invoiced = agency(
        &d.anna,
        &id,
        A::RecordInvoice(a::RecordInvoice { centihours: 1_000 }),
    )
    .await
    .unwrap();
    assert_eq!(state(&invoiced), pb::StatisticsOrderState::OrderDelivered);

    // The history holds every step, with who took it, and what each recorded (both completion
    // rounds' questions and answers).
    let history = d
        .orderer
        .clone()
        .get_order(pb::GetOrderRequest { order_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .history;
    let details = |step: &str| -> Vec<&str> {
        history
            .iter()
            .filter(|e| e.step == step)
            .map(|e| e.detail.as_str())
            .collect()
    };
    assert_eq!(
        details("REQUEST_COMPLETION"),
        vec!["Vilka år avses?", "Vilka förmåner avses?"]
    );
    assert_eq!(details("SUPPLEMENT"), vec!["2024", "SJP, FP och BB"]);
    assert_eq!(
        details("EXTEND_RETENTION"),
        vec![format!(
            "kept until {}",
            lefi::domain::clock::format_date(extended_until)
        )]
    );
    assert_eq!(details("INVOICE"), vec!["850000 öre excluding VAT"]);
    let steps: Vec<String> = history
        .iter()
        .map(|e| format!("{}:{}", e.step, e.actor))
        .collect();
    assert_eq!(
        steps,
        vec![
            format!("SUBMIT:{}", d.orderer_id),
            "CONFIRM_RECEIPT:Anna Statistiker".to_string(),
            "REQUEST_COMPLETION:Anna Statistiker".to_string(),
            format!("SUPPLEMENT:{}", d.orderer_id),
            "REQUEST_COMPLETION:Anna Statistiker".to_string(),
            format!("SUPPLEMENT:{}", d.orderer_id),
            "DRAFT_QUOTE:Anna Statistiker".to_string(),
            format!("AGREE_CONTENT:{}", d.orderer_id),
            "RELEASE:Bo Granskare".to_string(),
            format!("RECEIVE_POPULATION:{}", d.orderer_id),
            format!("ACCEPT_QUOTE:{}", d.orderer_id),
            "EXTRACT:Anna Statistiker".to_string(),
            "DELIVER:Anna Statistiker".to_string(),
            "EXTEND_RETENTION:Anna Statistiker".to_string(),
            "INVOICE:Anna Statistiker".to_string(),
        ]
    );
    app.stop().await;
}

async fn the_extract_is_reproducible_at_its_sequence_and_reflects_later_corrections(backend: Backend) {
    use pb::advance_order_request::{self as p, Step as P};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    feed_register(&app).await;
    let d = desk(&app).await;
    let id = released_order(&d, "SCB-REPRO").await;
    upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    orderer(&d.orderer, &id, P::AcceptQuote(p::AcceptQuote {}))
        .await
        .unwrap();
    let first = produce(&d.anna, &id, 0).await.unwrap();
    let first_episodes = download_admin(&d.anna, &id, "episodes.csv").await;
    let first_parquet = download_admin(&d.anna, &id, "episodes.parquet").await;

    // A correction: P1's first period was at full extent.
    ingest(
        &app,
        vec![period(
            P1,
            "S1",
            2,
            "FALL-1",
            "SJP",
            ("2024-01-09", "2024-02-15"),
            pb::CompensationExtent::Full,
        )],
    )
    .await;

    // Produced again at the first sequence: the same bytes.
    let again = produce(&d.anna, &id, first.register_sequence).await.unwrap();
    assert_eq!(again.register_sequence, first.register_sequence);
    let hashes = |m: &pb::ExtractManifest| m.files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&again), hashes(&first));
    assert_eq!(download_admin(&d.anna, &id, "episodes.csv").await, first_episodes);
    assert_eq!(
        download_admin(&d.anna, &id, "episodes.parquet").await,
        first_parquet
    );

    // At the head: the correction shows.
    let later = produce(&d.anna, &id, 0).await.unwrap();
    assert!(later.register_sequence > first.register_sequence);
    assert_ne!(hashes(&later)[0], hashes(&first)[0]);
    assert_ne!(hashes(&later)[3], hashes(&first)[3], "episodes.parquet");
    let episodes = csv_rows(&download_admin(&d.anna, &id, "episodes.csv").await);
    let p1_first = episodes.iter().find(|r| r[0] == "L7").unwrap();
    assert_eq!(p1_first[6..], ["1/1", "38", "38"]);

    // A sequence above the head is refused.
    let err = produce(&d.anna, &id, later.register_sequence + 1000)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    app.stop().await;
}

async fn bad_population_files_get_line_answers_and_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let d = desk(&app).await;
    let id = released_order(&d, "SCB-POP").await;
    let order_now = || {
        let mut orderer = d.orderer.clone();
        let id = id.clone();
        async move {
            orderer
                .get_order(pb::GetOrderRequest { order_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let before = order_now().await;
    assert_eq!(
        state(before.order.as_ref().unwrap()),
        pb::StatisticsOrderState::OrderReleased
    );
    let bad_lines = |status: &Status| -> Vec<(String, String)> {
        status
            .get_details_bad_request()
            .map(|b| {
                b.field_violations
                    .into_iter()
                    .map(|v| (v.field, v.description))
                    .collect()
            })
            .unwrap_or_default()
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "wrong check digit",
            format!("{BAD_CHECK_DIGIT};1\n19950113-2386;2\n"),
            vec!["line 1"],
        ),
        (
            "duplicate person and serial",
            "19900704-2386;1\n19950113-2386;2\n19900704-2386;3\n20170101-2393;2\n".to_string(),
            vec!["line 3", "line 4"],
        ),
        (
            "wrong columns",
            "19900704-2386\n19950113-2386;2\n".to_string(),
            vec!["line 1"],
        ),
        ("empty", String::new(), vec![]),
        (
            "huge, one bad line at the end",
            {
                let mut text = String::new();
                for i in 0..100_000u32 {
                    text.push_str(&format!("19900704-2386;{i}\n"));
                }
                text
            },
            vec![],
        ),
    ];
    for (what, text, expected_lines) in cases {
        let err = upload(&d.orderer, &id, text.as_bytes()).await.unwrap_err();
        assert_eq!(
            (err.code(), reason(&err).as_str()),
            (Code::InvalidArgument, "POPULATION_FILE_INVALID"),
            "{what}"
        );
        let lines = bad_lines(&err);
        for expected in &expected_lines {
            assert!(
                lines.iter().any(|(field, _)| field == expected),
                "{what}: {lines:?}"
            );
        }
        for form in identity_forms() {
            assert!(
                !err.message().contains(&form),
                "{what}: the message echoes an identity number"
            );
            assert!(
                lines.iter().all(|(_, reason)| !reason.contains(&form)),
                "{what}: a line reason echoes an identity number"
            );
        }
        if what.starts_with("huge") {
            // The same person 100,000 times: every repeat is reported, capped.
            assert_eq!(lines.len(), 100, "{what}");
            assert_eq!(
                err.get_details_error_info().unwrap().metadata["bad_lines"],
                "99999"
            );
        }
        // Nothing stored, and the order as it was: its state, its history, every field.
        let after = order_now().await;
        assert_eq!(
            after.order.as_ref().unwrap().population_count,
            0,
            "{what}: nothing stored"
        );
        assert_eq!(after, before, "{what}: the order changed");
    }
    // A good file after the bad ones is taken.
    let ok = upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    assert_eq!(ok.persons, 3);
    app.stop().await;
}

async fn only_an_authority_with_the_statistics_basis_orders_and_only_its_own(backend: Backend) {
    use admin_pb::advance_order_request::{self as a, Step as A};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let d = desk(&app).await;
    let order = d
        .orderer
        .clone()
        .submit_order(submission("SCB-OWN"))
        .await
        .unwrap()
        .into_inner();

    // An insurer cannot hold the basis; an authority without it in its agreement is refused.
    let insurer = PartyClient::new(app.party_channel(&app.certs.insurer).await);
    let err = insurer.clone().submit_order(submission("X")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let (cert, _) = authority(&app, "202100-0001", "Annan myndighet", &["AUTH_DUTY_1980_995"]).await;
    let other = PartyClient::new(app.party_channel(&cert).await);
    let err = other
        .clone()
        .list_orders(pb::ListOrdersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::PermissionDenied, "BASIS_NOT_IN_AGREEMENT")
    );

    // Another orderer with the basis does not see the first one's order.
    let (cert, _) = authority(
        &app,
        "202100-5521",
        "Forskningsmyndigheten",
        &["STAT_INDIVIDUAL_DATA"],
    )
    .await;
    let second = PartyClient::new(app.party_channel(&cert).await);
    let err = second
        .clone()
        .get_order(pb::GetOrderRequest {
            order_id: order.order_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::NotFound, "ORDER_NOT_FOUND")
    );
    assert!(
        second
            .clone()
            .list_orders(pb::ListOrdersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .orders
            .is_empty()
    );

    // Roles: an operator reads but takes no step; an auditor reads; statisticians act.
    let operator = AdminClient::new(app.admin_channel(&app.certs.operator).await);
    let err = agency(
        &operator,
        &order.order_id,
        A::ConfirmReceipt(a::ConfirmReceipt {}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::PermissionDenied, "ROLE_NOT_PERMITTED")
    );
    let auditor = AdminClient::new(app.admin_channel(&app.certs.auditor).await);
    let listed = auditor
        .clone()
        .list_orders(admin_pb::ListOrdersRequest {
            party_id: d.orderer_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders.len(), 1);
    let ingest = AdminClient::new(app.admin_channel(&app.certs.ingest).await);
    let err = ingest
        .clone()
        .list_orders(admin_pb::ListOrdersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ROLE_NOT_PERMITTED");

    // Overdue: a receipt due yesterday and not confirmed.
    app.execute_sql(&format!(
        "UPDATE statistics_orders SET receipt_due = '2020-01-01' WHERE order_id = '{}'",
        order.order_id
    ))
    .await;
    let overdue = overdue_orders(&d).await;
    assert_eq!(overdue.len(), 1);
    assert!(overdue[0].overdue);
    agency(&d.anna, &order.order_id, A::ConfirmReceipt(a::ConfirmReceipt {}))
        .await
        .unwrap();
    assert!(overdue_orders(&d).await.is_empty());

    // A step out of turn is refused with the state it met, and changes nothing.
    let err = agency(&d.anna, &order.order_id, A::Deliver(a::Deliver {}))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "ILLEGAL_STATE_TRANSITION")
    );
    assert_eq!(
        err.get_details_error_info().unwrap().metadata["current_state"],
        "IN_REVIEW"
    );
    app.stop().await;
}

/// The on-demand purge (PurgeExpired), alone: the server's scheduled purge, which would race it,
/// is left out here and tested in
/// [`the_running_server_deletes_expired_extracts_when_the_day_changes`].
async fn retention_is_extended_on_approval_and_deletion_keeps_the_manifest(backend: Backend) {
    use admin_pb::advance_order_request::{self as a, Step as A};
    use pb::advance_order_request::{self as p, Step as P};
    let options = SpawnOptions {
        no_scheduled_purge: true,
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(backend, options).await else {
        return;
    };
    feed_register(&app).await;
    let d = desk(&app).await;
    let mut ids = Vec::new();
    for reference in ["SCB-KEEP", "SCB-EXTEND"] {
        let id = released_order(&d, reference).await;
        upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
        orderer(&d.orderer, &id, P::AcceptQuote(p::AcceptQuote {}))
            .await
            .unwrap();
        produce(&d.anna, &id, 0).await.unwrap();
        let delivered = agency(&d.anna, &id, A::Deliver(a::Deliver {})).await.unwrap();
        // Six months after delivery.
        let today = app.clock.today();
        let expected = lefi::grpc::admin_api::statistics::months_after(today, 6);
        assert_eq!(delivered.retain_until, lefi::domain::clock::format_date(expected));
        ids.push(id);
    }
    let (keep, extend) = (&ids[0], &ids[1]);
    let delivered_on = app.clock.today();
    let retain_until = lefi::grpc::admin_api::statistics::months_after(delivered_on, 6);
    let extended_until = lefi::grpc::admin_api::statistics::months_after(delivered_on, 9);
    // The orderer asked for longer and the agency approved for the second order.
    let err = agency(
        &d.anna,
        extend,
        A::ExtendRetention(a::ExtendRetention {
            retain_until: "2020-01-01".into(),
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let extended = agency(
        &d.anna,
        extend,
        A::ExtendRetention(a::ExtendRetention {
            retain_until: lefi::domain::clock::format_date(extended_until),
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        extended.retain_until,
        lefi::domain::clock::format_date(extended_until)
    );
    // The server's clock moves to noon (Swedish time) of `day`.
    let move_clock_to = |day: time::Date| {
        let noon = day
            .with_hms(12, 0, 0)
            .unwrap()
            .assume_offset(time::macros::offset!(+1));
        app.clock.advance(noon - app.clock.now());
        assert_eq!(app.clock.today(), day);
    };
    let purge = |dry_run: bool| {
        let mut anna = d.anna.clone();
        async move {
            anna.purge_expired(admin_pb::PurgeExpiredRequest { dry_run })
                .await
                .unwrap()
                .into_inner()
                .orders
                .into_iter()
                .map(|o| o.order_id)
                .collect::<Vec<_>>()
        }
    };
    // On the retention day itself nothing is deleted: the files are kept through that day.
    move_clock_to(retain_until);
    assert!(purge(true).await.is_empty());
    assert!(purge(false).await.is_empty());
    assert!(download_party(&d.orderer, keep, "episodes.csv", 0).await.is_ok());

    // The day after, the first order is due; the extended one is not.
    move_clock_to(retain_until.next_day().unwrap());
    let dry = d
        .anna
        .clone()
        .purge_expired(admin_pb::PurgeExpiredRequest { dry_run: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        dry.orders.iter().map(|o| o.order_id.as_str()).collect::<Vec<_>>(),
        vec![keep.as_str()]
    );
    assert_eq!(
        dry.orders[0].retain_until,
        lefi::domain::clock::format_date(retain_until)
    );
    // The dry run deleted nothing.
    assert!(download_party(&d.orderer, keep, "episodes.csv", 0).await.is_ok());

    let purged = d
        .anna
        .clone()
        .purge_expired(admin_pb::PurgeExpiredRequest { dry_run: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(purged.orders.len(), 1);
    let order = d
        .orderer
        .clone()
        .get_order(pb::GetOrderRequest {
            order_id: keep.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(order.order.as_ref().unwrap()),
        pb::StatisticsOrderState::OrderDeleted
    );
    assert_eq!(order.history.last().unwrap().step, "DELETE");
    let err = download_party(&d.orderer, keep, "episodes.csv", 0)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "EXTRACT_NOT_AVAILABLE");
    let manifest = d
        .orderer
        .clone()
        .get_manifest(pb::GetManifestRequest {
            order_id: keep.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!manifest.files_available);
    assert_eq!(manifest.files.len(), 6, "the manifest outlives the files");
    // Nothing of the order's files or population remains in the database.
    let left: i64 = app.store.order_population(keep).await.unwrap().len() as i64;
    assert_eq!(left, 0);

    // The extended order is untouched, through the last day of its extension.
    assert!(
        download_party(&d.orderer, extend, "episodes.csv", 0)
            .await
            .is_ok()
    );
    move_clock_to(extended_until);
    assert!(purge(false).await.is_empty());
    assert!(
        download_party(&d.orderer, extend, "episodes.csv", 0)
            .await
            .is_ok()
    );
    // Past the approved extension, it is deleted in turn, and the manifest remains.
    move_clock_to(extended_until.next_day().unwrap());
    assert_eq!(purge(false).await, vec![extend.clone()]);
    let err = download_party(&d.orderer, extend, "episodes.csv", 0)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "EXTRACT_NOT_AVAILABLE");
    assert!(app.store.order_population(extend).await.unwrap().is_empty());
    let history = app.store.order_history(extend).await.unwrap();
    assert_eq!(
        history.last().unwrap().detail,
        format!(
            "retention ended {}",
            lefi::domain::clock::format_date(extended_until)
        )
    );
    assert!(app.store.extract_manifest(extend).await.unwrap().is_some());
    app.stop().await;
}

/// The running server purges by itself: once the clock passes an order's retention, the order is
/// deleted within seconds, with no PurgeExpired call.
async fn the_running_server_deletes_expired_extracts_when_the_day_changes(backend: Backend) {
    use admin_pb::advance_order_request::{self as a, Step as A};
    use pb::advance_order_request::{self as p, Step as P};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    feed_register(&app).await;
    let d = desk(&app).await;
    let id = released_order(&d, "SCB-SCHEDULE").await;
    upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    orderer(&d.orderer, &id, P::AcceptQuote(p::AcceptQuote {}))
        .await
        .unwrap();
    produce(&d.anna, &id, 0).await.unwrap();
    let delivered = agency(&d.anna, &id, A::Deliver(a::Deliver {})).await.unwrap();
    let retain_until = lefi::domain::clock::parse_date(&delivered.retain_until).unwrap();
    let order_now = || {
        let mut orderer = d.orderer.clone();
        let id = id.clone();
        async move {
            orderer
                .get_order(pb::GetOrderRequest { order_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Waits up to ten seconds (the server looks at its clock every second) for the order's state.
    let settles_at = |expected: pb::StatisticsOrderState| {
        let order_now = &order_now;
        async move {
            for _ in 0..100 {
                let order = order_now().await;
                if state(order.order.as_ref().unwrap()) == expected {
                    return order;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the order never became {expected:?}");
        }
    };
    // The server's clock moves to noon (Swedish time) of `day`.
    let move_clock_to = |day: time::Date| {
        let noon = day
            .with_hms(12, 0, 0)
            .unwrap()
            .assume_offset(time::macros::offset!(+2));
        app.clock.advance(noon - app.clock.now());
        assert_eq!(app.clock.today(), day);
    };
    // The last day of retention: kept (two ticks of the server's check pass first).
    move_clock_to(retain_until);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let kept = order_now().await;
    assert_eq!(
        state(kept.order.as_ref().unwrap()),
        pb::StatisticsOrderState::OrderDelivered
    );
    assert!(download_party(&d.orderer, &id, "episodes.csv", 0).await.is_ok());
    // The day after: the server deletes it, as a step of its own.
    move_clock_to(retain_until.next_day().unwrap());
    let deleted = settles_at(pb::StatisticsOrderState::OrderDeleted).await;
    let last = deleted.history.last().unwrap();
    assert_eq!(
        (last.step.as_str(), last.side.as_str(), last.actor.as_str()),
        ("DELETE", "SERVER", "lefi")
    );
    let err = download_party(&d.orderer, &id, "episodes.csv", 0)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "EXTRACT_NOT_AVAILABLE");
    assert!(app.store.order_population(&id).await.unwrap().is_empty());
    assert!(app.store.extract_manifest(&id).await.unwrap().is_some());
    app.stop().await;
}

/// The release entries of `person` (as written in the tests' register) in the disclosure log.
async fn release_entries(app: &TestApp, person: &str) -> Vec<lefi::domain::disclosure::DisclosureEntry> {
    let digits: String = person.chars().filter(char::is_ascii_digit).collect();
    app.disclosures_about(&digits)
        .await
        .into_iter()
        .filter(|e| e.entry.channel == lefi::domain::disclosure::Channel::StatisticsRelease)
        .collect()
}

/// The release is logged once per person, in the Deliver step's own transaction: a Deliver that
/// reuses another step's key, loses the race to a concurrent Deliver, is replayed by its key or
/// sent again with a new key logs nothing more.
async fn a_delivery_is_logged_once_however_it_is_retried(backend: Backend) {
    use admin_pb::advance_order_request::{self as a, Step as A};
    use pb::advance_order_request::{self as p, Step as P};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    feed_register(&app).await;
    let d = desk(&app).await;
    let id = released_order(&d, "SCB-ONCE").await;
    upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    orderer(&d.orderer, &id, P::AcceptQuote(p::AcceptQuote {}))
        .await
        .unwrap();
    let extract_key = idempotency_key();
    d.anna
        .clone()
        .produce_extract(admin_pb::ProduceExtractRequest {
            order_id: id.clone(),
            idempotency_key: extract_key.clone(),
            register_sequence: 0,
        })
        .await
        .unwrap();
    let deliver = |key: &str| admin_pb::AdvanceOrderRequest {
        order_id: id.clone(),
        idempotency_key: key.to_string(),
        step: Some(A::Deliver(a::Deliver {})),
    };
    // The extract's key used for the delivery: refused, and nothing logged.
    let err = d
        .anna
        .clone()
        .advance_order(deliver(&extract_key))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "IDEMPOTENCY_KEY_REUSED", "{err:?}");
    for person in [P1, P2, P3] {
        assert!(
            release_entries(&app, person).await.is_empty(),
            "no delivery, no entry"
        );
    }
    // Two Delivers at once: one delivers, the other is refused (or replays nothing).
    let (first, second) = (idempotency_key(), idempotency_key());
    let (mut anna, mut bo) = (d.anna.clone(), d.bo.clone());
    let (x, y) = tokio::join!(
        anna.advance_order(deliver(&first)),
        bo.advance_order(deliver(&second)),
    );
    assert!(x.is_ok() || y.is_ok(), "{x:?} {y:?}");
    let winner = if x.is_ok() { &first } else { &second };
    // Replayed with the winner's key, and again with a new key.
    let replay = d
        .anna
        .clone()
        .advance_order(deliver(winner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&replay), pb::StatisticsOrderState::OrderDelivered);
    let err = d
        .anna
        .clone()
        .advance_order(deliver(&idempotency_key()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    for person in [P1, P2, P3] {
        let entries = release_entries(&app, person).await;
        assert_eq!(entries.len(), 1, "exactly one release entry per person");
        assert_eq!(entries[0].entry.case_reference.as_deref(), Some(id.as_str()));
    }
    let history = d
        .anna
        .clone()
        .get_order(pb::GetOrderRequest { order_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .history;
    assert_eq!(history.iter().filter(|h| h.step == "DELIVER").count(), 1);
    assert!(matches!(
        app.store.verify_disclosure_chain(0, 0).await.unwrap(),
        lefi::domain::disclosure::ChainVerdict::Intact { .. }
    ));
    app.stop().await;
}

/// The review refuses with its reasons (the population is then refused); the orderer withdraws a
/// released order and its population goes with it; a special duty makes the quote free.
async fn refusal_withdrawal_and_special_duty_through_the_apis(backend: Backend) {
    use admin_pb::advance_order_request::{self as a, Step as A};
    use pb::advance_order_request::{self as p, Step as P};
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let d = desk(&app).await;
    // Refused by Bo, with reasons: final, and no population is taken.
    let id = d
        .orderer
        .clone()
        .submit_order(submission("SCB-REFUSED"))
        .await
        .unwrap()
        .into_inner()
        .order_id;
    agency(&d.anna, &id, A::ConfirmReceipt(a::ConfirmReceipt {}))
        .await
        .unwrap();
    agency(
        &d.anna,
        &id,
        A::DraftQuote(a::DraftQuote {
            specification: "Episoder 2024".into(),
            centihours: 100,
        }),
    )
    .await
    .unwrap();
    orderer(&d.orderer, &id, P::AgreeContent(p::AgreeContent {}))
        .await
        .unwrap();
    let refused = agency(
        &d.bo,
        &id,
        A::Refuse(a::Refuse {
            reasons: "Röjande även med löpnummer".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(state(&refused), pb::StatisticsOrderState::OrderRefused);
    let decision = refused.decision.unwrap();
    assert_eq!(decision.reviewer, "Bo Granskare");
    let err = upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(app.store.order_population(&id).await.unwrap().is_empty());

    // Withdrawn by the orderer after the population arrived: it goes at once.
    let id = released_order(&d, "SCB-WITHDRAWN").await;
    upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    assert_eq!(app.store.order_population(&id).await.unwrap().len(), 3);
    let withdrawn = orderer(
        &d.orderer,
        &id,
        P::Withdraw(p::Withdraw {
            reason: "Projektet avslutat".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(state(&withdrawn), pb::StatisticsOrderState::OrderWithdrawn);
    assert!(app.store.order_population(&id).await.unwrap().is_empty());
    let err = orderer(&d.orderer, &id, P::AcceptQuote(p::AcceptQuote {}))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "ILLEGAL_STATE_TRANSITION");

    // A special duty to provide data: the quote is free of charge.
    let mut duty = submission("SCB-DUTY");
    duty.special_duty = true;
    let id = d
        .orderer
        .clone()
        .submit_order(duty)
        .await
        .unwrap()
        .into_inner()
        .order_id;
    agency(&d.anna, &id, A::ConfirmReceipt(a::ConfirmReceipt {}))
        .await
        .unwrap();
    let quoted = agency(
        &d.anna,
        &id,
        A::DraftQuote(a::DraftQuote {
            specification: "Episoder 2024".into(),
            centihours: 1_250,
        }),
    )
    .await
    .unwrap();
    let quote = quoted.quote.unwrap();
    assert_eq!((quote.net_ore, quote.vat_ore), (0, 0));
    app.stop().await;
}

/// The first day of the month `back` months before `today`'s.
fn month_start(today: time::Date, back: i32) -> time::Date {
    let index = today.year() * 12 + i32::from(u8::from(today.month())) - 1 - back;
    let month = time::Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap()).unwrap();
    time::Date::from_calendar_date(index.div_euclid(12), month, 1).unwrap()
}

async fn coverage_from_known_lags_decides_which_months_may_be_ordered(backend: Backend) {
    use lefi::domain::clock::format_date;
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let d = desk(&app).await;
    // Rehabilitation benefit paid with a known lag: of each month's 20 covered days, 12 are paid
    // the month after, 6 two months after, 1 three and 1 four months after. So a month is 60 %
    // complete after one month, 90 % after two, 95 % after three, whole after four.
    let today = app.clock.today();
    let mut facts = Vec::new();
    for back in 1..=36 {
        let start = month_start(today, back);
        for (i, (first, last, lag)) in [(1u8, 12u8, 1), (13, 18, 2), (19, 19, 3), (20, 20, 4)]
            .into_iter()
            .enumerate()
        {
            if lag > back {
                continue; // not paid yet
            }
            let day = |d: u8| format_date(start.replace_day(d).unwrap());
            let gross = 10_000 * i64::from(last - first + 1);
            facts.push(admin_pb::Fact {
                benefit_type: "RP".into(),
                body: Some(admin_pb::fact::Body::Payment(pb::Payment {
                    case_id: "RP-1".into(),
                    payment_date: format_date(month_start(today, back - lag).replace_day(25).unwrap()),
                    covered: Some(pb::DateRange {
                        from: day(first),
                        to: day(last),
                    }),
                    gross_ore: gross,
                    tax_ore: 0,
                    preliminary: false,
                    lines: vec![pb::AmountLine {
                        amount_type: "GRUND".into(),
                        amount_ore: gross,
                    }],
                    payer: "FK".into(),
                })),
                ..fact(P1, &format!("RP-{back}-{i}"), 1, pb::RecordKind::New)
            });
        }
    }
    for r in ingest(&app, facts).await {
        assert!(r.message.is_empty(), "{r:?}");
    }

    let coverage = d
        .anna
        .clone()
        .get_coverage(admin_pb::GetCoverageRequest {
            benefit_type: "RP".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(coverage.mature_months, 22, "months 15 to 36 back are complete");
    let at = |k: usize| coverage.curve[k];
    assert!((at(1) - 0.60).abs() < 1e-9 && (at(2) - 0.90).abs() < 1e-9 && (at(3) - 0.95).abs() < 1e-9);
    let by_age = |age: u32| {
        coverage
            .months
            .iter()
            .find(|m| m.age_months == age)
            .unwrap()
            .clone()
    };
    assert!(!by_age(2).orderable && by_age(3).orderable && by_age(10).orderable);

    let ending = |back: i32| {
        let mut request = submission(&format!("SCB-COV-{back}"));
        request.benefit_type_codes = vec!["RP".into()];
        let next = month_start(today, back - 1);
        request.period = Some(pb::DateRange {
            from: format_date(month_start(today, 30)),
            to: format_date(next.previous_day().unwrap()),
        });
        request
    };
    // A period ending two months back (90 %) is refused, three months back (95 %) taken.
    let err = d.orderer.clone().submit_order(ending(2)).await.unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "PERIOD_NOT_COVERED")
    );
    let info = err.get_details_error_info().unwrap();
    assert_eq!(info.metadata["month"], by_age(2).month);
    assert_eq!(info.metadata["first_orderable_month"], by_age(3).month);
    // Taken to an extract, whose manifest records the coverage used: each month of the period,
    // complete up to four months back, 95 % three months back, the lowest.
    let id = released(&d, ending(3)).await;
    upload(&d.orderer, &id, POPULATION.as_bytes()).await.unwrap();
    orderer(
        &d.orderer,
        &id,
        pb::advance_order_request::Step::AcceptQuote(pb::advance_order_request::AcceptQuote {}),
    )
    .await
    .unwrap();
    let manifest = produce(&d.anna, &id, 0).await.unwrap();
    assert_eq!(manifest.coverage_used.len(), 1);
    let used = &manifest.coverage_used[0];
    assert_eq!(used.benefit_type_code, "RP");
    assert_eq!(used.months.len(), 28, "30 to 3 months back");
    assert_eq!(used.months[0].month, format_date(month_start(today, 30))[..7]);
    let last = used.months.last().unwrap();
    assert_eq!(last.month, by_age(3).month);
    assert!((last.coverage - 0.95).abs() < 1e-9, "{last:?}");
    assert!((used.lowest_coverage - 0.95).abs() < 1e-9, "{used:?}");
    assert!(
        used.months[..27].iter().all(|m| (m.coverage - 1.0).abs() < 1e-9),
        "{used:?}"
    );
    // The same in the stored manifest the orderer reads.
    let stored = d
        .orderer
        .clone()
        .get_manifest(pb::GetManifestRequest { order_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.coverage_used, manifest.coverage_used);
    // A period ending in the future is never complete.
    let err = d.orderer.clone().submit_order(ending(-2)).await.unwrap_err();
    assert_eq!(reason(&err), "PERIOD_NOT_COVERED");
    app.stop().await;
}

/// Receipt is due two Swedish working days after submission: Good Friday, Easter Monday and
/// Midsummer Eve do not count, nor weekends. The server's clock is moved to each submission day;
/// the order is overdue from the day after its due date, not on it.
async fn receipt_is_due_two_working_days_later_around_easter_and_midsummer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let d = desk(&app).await;
    let noon_utc = |day: &str| {
        let date = time::Date::parse(day, time::macros::format_description!("[year]-[month]-[day]")).unwrap();
        date.with_hms(12, 0, 0).unwrap().assume_utc()
    };
    let move_clock_to = |day: &str| app.clock.advance(noon_utc(day) - app.clock.now());
    let overdue = || overdue_orders(&d);
    for (submitted, due, overdue_on) in [
        // Maundy Thursday 2027: Good Friday (26 March) and Easter Monday (29 March) are off.
        ("2027-03-25", "2027-03-31", "2027-04-01"),
        // The Thursday before Midsummer 2027: Midsummer Eve (Friday 25 June) is off.
        ("2027-06-24", "2027-06-29", "2027-06-30"),
    ] {
        move_clock_to(submitted);
        let order = d
            .orderer
            .clone()
            .submit_order(pb::SubmitOrderRequest {
                wished_delivery: String::new(),
                ..submission(&format!("SCB-{submitted}"))
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (order.receipt_due.as_str(), order.overdue),
            (due, false),
            "submitted {submitted}"
        );

        move_clock_to(due);
        assert!(overdue().await.is_empty(), "due {due}: not overdue yet");
        move_clock_to(overdue_on);
        let late = overdue().await;
        assert_eq!(late.len(), 1, "overdue on {overdue_on}");
        assert_eq!(late[0].order_id, order.order_id);
        assert!(late[0].overdue);
        // Confirming receipt ends it, late as it is.
        agency(
            &d.anna,
            &order.order_id,
            admin_pb::advance_order_request::Step::ConfirmReceipt(
                admin_pb::advance_order_request::ConfirmReceipt {},
            ),
        )
        .await
        .unwrap();
        assert!(overdue().await.is_empty());
    }
}
