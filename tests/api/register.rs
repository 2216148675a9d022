//! The benefit register: ingest over the admin API, the one-off query over the party API, the
//! operator's view of a person as of a sequence, and the roles around them.

use lefi::domain::Personnummer;
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, reason};

backend_tests!(
    every_fact_kind_round_trips_through_the_query,
    reingest_is_idempotent,
    corrections_and_retractions_are_bitemporal,
    a_bad_fact_never_blocks_the_good_ones,
    protected_names_are_never_disclosed,
    query_is_refused_without_the_basis_and_benefits,
    query_field_errors_and_unknown_person,
    roles_are_enforced,
    concurrent_batches_commit_in_sequence_order,
);

pub(crate) const P1: &str = "19900704-2386";
pub(crate) const P2: &str = "19950113-2386";
pub(crate) const P3: &str = "201701012393";

pub(crate) fn fact(person: &str, source_id: &str, version: u64, kind: pb::RecordKind) -> admin_pb::Fact {
    admin_pb::Fact {
        source_system: "MIDAS".into(),
        source_id: source_id.into(),
        source_version: version,
        person_id: person.into(),
        benefit_type: "SJP".into(),
        kind: kind as i32,
        ..Default::default()
    }
}

pub(crate) fn person_update(
    person: &str,
    version: u64,
    name: &str,
    protected: bool,
    death: &str,
) -> admin_pb::Fact {
    admin_pb::Fact {
        source_system: "FOLKBOKF".into(),
        source_version: version,
        person_id: person.into(),
        kind: pb::RecordKind::New as i32,
        body: Some(admin_pb::fact::Body::Person(admin_pb::PersonUpdate {
            name: name.into(),
            protected_identity: protected,
            date_of_death: death.into(),
        })),
        ..Default::default()
    }
}

pub(crate) fn case(person: &str, source_id: &str, version: u64) -> admin_pb::Fact {
    admin_pb::Fact {
        body: Some(admin_pb::fact::Body::Case(pb::BenefitCase {
            case_id: "FALL-1".into(),
            parent_case_id: String::new(),
            opened: "2024-01-08".into(),
            closed: "2024-03-31".into(),
            status: pb::BenefitCaseStatus::Closed as i32,
        })),
        ..fact(person, source_id, version, pb::RecordKind::New)
    }
}

fn period(person: &str, source_id: &str) -> admin_pb::Fact {
    admin_pb::Fact {
        body: Some(admin_pb::fact::Body::CompensationPeriod(pb::CompensationPeriod {
            case_id: "FALL-1".into(),
            from: "2024-01-09".into(),
            to: "2024-02-15".into(),
            extent: pb::CompensationExtent::ThreeQuarters as i32,
            daily_amount_ore: 81_275,
        })),
        ..fact(person, source_id, 1, pb::RecordKind::New)
    }
}

fn decision(person: &str, source_id: &str) -> admin_pb::Fact {
    admin_pb::Fact {
        retroactive: true,
        body: Some(admin_pb::fact::Body::Decision(pb::Decision {
            case_id: "FALL-1".into(),
            kind: pb::DecisionKind::Granted as i32,
            effective_from: "2024-01-09".into(),
            decided_on: "2024-01-20".into(),
        })),
        ..fact(person, source_id, 1, pb::RecordKind::New)
    }
}

pub(crate) fn payment(
    person: &str,
    source_id: &str,
    version: u64,
    kind: pb::RecordKind,
    gross: i64,
) -> admin_pb::Fact {
    admin_pb::Fact {
        body: Some(admin_pb::fact::Body::Payment(pb::Payment {
            case_id: "FALL-1".into(),
            payment_date: "2024-02-25".into(),
            covered: Some(pb::DateRange {
                from: "2024-01-09".into(),
                to: "2024-01-31".into(),
            }),
            gross_ore: gross,
            tax_ore: 30_000,
            preliminary: true,
            lines: vec![
                pb::AmountLine {
                    amount_type: "GRUND".into(),
                    amount_ore: gross + 12_345,
                },
                pb::AmountLine {
                    amount_type: "KARENSAVDRAG".into(),
                    amount_ore: -12_345,
                },
            ],
            payer: "FK".into(),
        })),
        ..fact(person, source_id, version, kind)
    }
}

fn event(
    person: &str,
    source_id: &str,
    benefit: &str,
    kind: pb::PersonEventKind,
    day: &str,
) -> admin_pb::Fact {
    admin_pb::Fact {
        benefit_type: benefit.into(),
        body: Some(admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
            kind: kind as i32,
            event_date: day.into(),
        })),
        ..fact(person, source_id, 1, pb::RecordKind::New)
    }
}

pub(crate) async fn ingest(app: &TestApp, facts: Vec<admin_pb::Fact>) -> Vec<admin_pb::IngestResponse> {
    let mut client = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(
        app.admin_channel(&app.certs.ingest).await,
    );
    let requests: Vec<admin_pb::IngestRequest> = facts
        .into_iter()
        .map(|f| admin_pb::IngestRequest { fact: Some(f) })
        .collect();
    let count = requests.len();
    let mut stream = client
        .ingest(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        assert_eq!(r.index, out.len() as u64, "responses come in request order");
        out.push(r);
    }
    assert_eq!(out.len(), count, "one response per fact");
    out
}

pub(crate) fn outcome(r: &admin_pb::IngestResponse) -> admin_pb::IngestOutcome {
    admin_pb::IngestOutcome::try_from(r.outcome).unwrap()
}

fn rejection(r: &admin_pb::IngestResponse) -> (String, String) {
    assert_eq!(outcome(r), admin_pb::IngestOutcome::Rejected, "{r:?}");
    (
        pb::ErrorReason::try_from(r.reason)
            .unwrap()
            .as_str_name()
            .to_string(),
        r.field.clone(),
    )
}

pub(crate) fn accepted(responses: &[admin_pb::IngestResponse]) {
    for r in responses {
        assert_eq!(outcome(r), admin_pb::IngestOutcome::Accepted, "{r:?}");
    }
}

fn query_request(person: &str, benefits: &[&str], from: &str, basis: &str) -> pb::QueryPersonRequest {
    pb::QueryPersonRequest {
        person_id: person.into(),
        benefit_type_codes: benefits.iter().map(|b| b.to_string()).collect(),
        period: Some(pb::DateRange {
            from: from.into(),
            to: String::new(),
        }),
        legal_basis: basis.into(),
        ..Default::default()
    }
}

/// Runs a query and collects (header, records), checking the stream's shape.
async fn query(
    app: &TestApp,
    who: &lefi::dev::certs::Issued,
    request: pb::QueryPersonRequest,
) -> Result<(pb::QueryPersonHeader, Vec<pb::BenefitRecord>), tonic::Status> {
    let mut client = pb::query_service_client::QueryServiceClient::new(app.party_channel(who).await);
    let mut stream = client.query_person(request).await?.into_inner();
    let first = stream.message().await?.expect("a header");
    let Some(pb::query_person_response::Content::Header(header)) = first.content else {
        panic!("the first message is not a header");
    };
    let mut records = Vec::new();
    while let Some(m) = stream.message().await? {
        let Some(pb::query_person_response::Content::Records(batch)) = m.content else {
            panic!("a later message is not a batch of records");
        };
        records.extend(batch.records);
    }
    assert_eq!(header.record_count, records.len() as u64);
    Ok((header, records))
}

async fn show(
    app: &TestApp,
    person: &str,
    as_of: u64,
) -> Result<admin_pb::ShowPersonResponse, tonic::Status> {
    admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(
        app.admin_channel(&app.certs.operator).await,
    )
    .show_person(admin_pb::ShowPersonRequest {
        person_id: person.into(),
        as_of_sequence: as_of,
    })
    .await
    .map(|r| r.into_inner())
}

fn payment_of(r: &pb::BenefitRecord) -> &pb::Payment {
    match &r.fact {
        Some(pb::benefit_record::Fact::Payment(p)) => p,
        other => panic!("not a payment: {other:?}"),
    }
}

async fn every_fact_kind_round_trips_through_the_query(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let responses = ingest(
        &app,
        vec![
            person_update(P1, 1, "Tolvan Tolvansson", false, ""),
            case(P1, "case-1", 1),
            period(P1, "period-1"),
            decision(P1, "decision-1"),
            payment(P1, "payment-1", 1, pb::RecordKind::New, 1_234_567),
            event(
                P1,
                "event-1",
                "SJP",
                pb::PersonEventKind::SicknessCaseClosed,
                "2024-03-31",
            ),
            event(
                P1,
                "event-2",
                "",
                pb::PersonEventKind::DeathRegistered,
                "2024-06-01",
            ),
            // Another benefit and another period: not asked for below.
            admin_pb::Fact {
                benefit_type: "FP".into(),
                ..period(P1, "period-fp")
            },
            admin_pb::Fact {
                body: Some(admin_pb::fact::Body::CompensationPeriod(pb::CompensationPeriod {
                    case_id: "FALL-0".into(),
                    from: "2022-01-01".into(),
                    to: "2022-01-31".into(),
                    extent: pb::CompensationExtent::Full as i32,
                    daily_amount_ore: 100,
                })),
                ..fact(P1, "period-old", 1, pb::RecordKind::New)
            },
        ],
    )
    .await;
    accepted(&responses);
    let seqs: Vec<u64> = responses.iter().map(|r| r.register_sequence).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequences follow each other: {seqs:?}"
    );
    assert!(
        responses[0].record_id.is_empty(),
        "person updates carry no record id"
    );
    assert!(
        responses[1..]
            .iter()
            .all(|r| r.record_id.starts_with("rec_") && r.version == 1)
    );

    let (header, records) = query(
        &app,
        &app.certs.insurer,
        pb::QueryPersonRequest {
            period: Some(pb::DateRange {
                from: "2024-01-01".into(),
                to: "2024-12-31".into(),
            }),
            ..query_request(P1, &["SJP"], "2024-01-01", "INS_COORDINATION")
        },
    )
    .await
    .unwrap();
    let person = header.person.unwrap();
    assert_eq!(person.person_id, "199007042386");
    assert_eq!(person.id_kind, pb::PersonIdKind::Personnummer as i32);
    assert_eq!(person.name, "Tolvan Tolvansson");
    assert!(!person.protected_identity);
    assert_eq!(header.as_of_sequence, *seqs.last().unwrap());
    // The death event concerns no benefit and is included; the FP period and the 2022 period are not.
    assert_eq!(records.len(), 6, "{records:#?}");
    assert!(
        records
            .iter()
            .all(|r| r.kind == pb::RecordKind::New as i32 && r.version == 1)
    );
    // Ordered by benefit type, then valid.from: the benefit-less death event first.
    assert_eq!(records[0].benefit_type, "");
    assert!(matches!(
        records[0].fact,
        Some(pb::benefit_record::Fact::PersonEvent(ref e)) if e.kind == pb::PersonEventKind::DeathRegistered as i32
    ));
    let by_id = |id: &str| {
        records
            .iter()
            .find(|r| r.record_id == id)
            .unwrap_or_else(|| panic!("record {id} missing"))
    };
    let case_record = by_id(&responses[1].record_id);
    assert_eq!(case_record.valid.as_ref().unwrap().from, "2024-01-08");
    assert_eq!(case_record.valid.as_ref().unwrap().to, "2024-03-31");
    assert!(matches!(&case_record.fact,
        Some(pb::benefit_record::Fact::Case(c)) if c.case_id == "FALL-1" && c.status == pb::BenefitCaseStatus::Closed as i32));
    let period_record = by_id(&responses[2].record_id);
    assert!(matches!(&period_record.fact,
        Some(pb::benefit_record::Fact::CompensationPeriod(p))
            if p.extent == pb::CompensationExtent::ThreeQuarters as i32 && p.daily_amount_ore == 81_275 && p.to == "2024-02-15"));
    let decision_record = by_id(&responses[3].record_id);
    assert!(decision_record.retroactive);
    assert_eq!(
        decision_record.valid.as_ref().unwrap().to,
        "",
        "a decision is open-ended"
    );
    assert!(matches!(&decision_record.fact,
        Some(pb::benefit_record::Fact::Decision(d)) if d.kind == pb::DecisionKind::Granted as i32 && d.decided_on == "2024-01-20"));
    let payment_record = by_id(&responses[4].record_id);
    let p = payment_of(payment_record);
    // Money is exact to the öre.
    assert_eq!(p.gross_ore, 1_234_567);
    assert_eq!(p.tax_ore, 30_000);
    assert_eq!(
        p.lines.iter().map(|l| l.amount_ore).collect::<Vec<_>>(),
        [1_246_912, -12_345]
    );
    assert_eq!(p.covered.as_ref().unwrap().to, "2024-01-31");
    assert!(p.preliminary);
    assert_eq!(payment_record.register_sequence, seqs[4]);
    assert!(payment_record.recorded_at.is_some());
    assert!(matches!(&by_id(&responses[5].record_id).fact,
        Some(pb::benefit_record::Fact::PersonEvent(e)) if e.kind == pb::PersonEventKind::SicknessCaseClosed as i32));

    // A benefit fact for an unknown person creates the person, without a name.
    accepted(&ingest(&app, vec![payment(P2, "p2-pay", 1, pb::RecordKind::New, 500_000)]).await);
    let (header, records) = query(
        &app,
        &app.certs.insurer,
        query_request(P2, &["SJP", "FP"], "2024-01-01", "INS_COORDINATION"),
    )
    .await
    .unwrap();
    assert_eq!(header.person.unwrap().name, "");
    assert_eq!(records.len(), 1);

    // The log reads back in commit order, person updates included.
    let log = app.store.log_after(0, 100).await.unwrap();
    assert_eq!(log.len(), 10);
    assert!(log.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(log[0].fact_type, lefi::domain::register::FactType::Person);
    assert_eq!(app.store.log_after(9, 100).await.unwrap().len(), 1);
    app.stop().await;
}

async fn reingest_is_idempotent(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let batch = vec![
        person_update(P1, 1, "Tolvan Tolvansson", false, ""),
        case(P1, "case-1", 1),
        payment(P1, "payment-1", 1, pb::RecordKind::New, 100_000),
    ];
    let first = ingest(&app, batch.clone()).await;
    accepted(&first);
    let stats = |app: &TestApp| {
        let store = app.store.clone();
        async move { store.stats(i64::MAX / 2).await.unwrap() }
    };
    let before = stats(&app).await;
    let again = ingest(&app, batch).await;
    for (a, b) in first.iter().zip(&again) {
        assert_eq!(outcome(b), admin_pb::IngestOutcome::Unchanged);
        assert_eq!(a.register_sequence, b.register_sequence);
        assert_eq!(a.record_id, b.record_id);
        assert_eq!(a.version, b.version);
    }
    let after = stats(&app).await;
    assert_eq!(before.latest_seq, after.latest_seq);
    assert_eq!(after.person_count, 1);
    assert_eq!(after.fact_count, 2);
    assert_eq!(after.fact_version_count, 2);

    // The same version with other content is a conflict; a version below the latest that was never
    // accepted is out of order; within one stream, a re-sent version is unchanged too.
    let responses = ingest(
        &app,
        vec![
            payment(P1, "payment-1", 1, pb::RecordKind::New, 100_001),
            payment(P1, "payment-1", 3, pb::RecordKind::Correction, 90_000),
            payment(P1, "payment-1", 2, pb::RecordKind::Correction, 95_000),
            payment(P1, "payment-1", 3, pb::RecordKind::Correction, 90_000),
            person_update(P1, 1, "Someone Else", false, ""),
            person_update(P1, 2, "Tolvan Tolvansson-Ek", false, ""),
        ],
    )
    .await;
    assert_eq!(
        rejection(&responses[0]),
        ("SOURCE_VERSION_CONFLICT".into(), "source_version".into())
    );
    assert_eq!(outcome(&responses[1]), admin_pb::IngestOutcome::Accepted);
    assert_eq!(responses[1].version, 2);
    assert_eq!(
        rejection(&responses[2]),
        ("SOURCE_VERSION_OUT_OF_ORDER".into(), "source_version".into())
    );
    assert_eq!(outcome(&responses[3]), admin_pb::IngestOutcome::Unchanged);
    assert_eq!(responses[3].register_sequence, responses[1].register_sequence);
    assert_eq!(rejection(&responses[4]).0, "SOURCE_VERSION_CONFLICT");
    assert_eq!(outcome(&responses[5]), admin_pb::IngestOutcome::Accepted);
    let view = show(&app, P1, 0).await.unwrap();
    assert_eq!(view.person.unwrap().name, "Tolvan Tolvansson-Ek");
    assert_eq!(view.person_versions.len(), 2);
    app.stop().await;
}

async fn corrections_and_retractions_are_bitemporal(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let q = || query_request(P1, &["SJP"], "2024-01-01", "INS_COORDINATION");
    let first = ingest(&app, vec![payment(P1, "pay", 1, pb::RecordKind::New, 100_000)]).await;
    accepted(&first);
    let s1 = first[0].register_sequence;
    // A NEW for a known source id is stored as a correction.
    let second = ingest(&app, vec![payment(P1, "pay", 2, pb::RecordKind::New, 150_000)]).await;
    accepted(&second);
    let s2 = second[0].register_sequence;
    assert_eq!(second[0].record_id, first[0].record_id);
    assert_eq!(second[0].version, 2);

    let (header, records) = query(&app, &app.certs.insurer, q()).await.unwrap();
    assert_eq!(header.as_of_sequence, s2);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].kind, pb::RecordKind::Correction as i32);
    assert_eq!(records[0].version, 2);
    assert_eq!(payment_of(&records[0]).gross_ore, 150_000);

    // As of s1 the register held only the first version.
    let view = show(&app, P1, s1).await.unwrap();
    assert_eq!(view.as_of_sequence, s1);
    assert_eq!(view.facts.len(), 1);
    assert_eq!(
        payment_of(view.facts[0].record.as_ref().unwrap()).gross_ore,
        100_000
    );
    assert_eq!(view.facts[0].source_id, "pay");
    assert_eq!(view.facts[0].source_version, 1);

    // A retraction without a body keeps the last content; the query no longer shows the fact.
    let retracted = ingest(
        &app,
        vec![admin_pb::Fact {
            benefit_type: String::new(),
            ..fact(P1, "pay", 3, pb::RecordKind::Retraction)
        }],
    )
    .await;
    accepted(&retracted);
    let s3 = retracted[0].register_sequence;
    let (header, records) = query(&app, &app.certs.insurer, q()).await.unwrap();
    assert_eq!(header.as_of_sequence, s3);
    assert!(records.is_empty(), "{records:?}");
    let view = show(&app, P1, 0).await.unwrap();
    assert_eq!(view.as_of_sequence, s3);
    assert_eq!(view.facts.len(), 3);
    let last = view.facts[2].record.as_ref().unwrap();
    assert_eq!(last.kind, pb::RecordKind::Retraction as i32);
    assert_eq!(last.benefit_type, "SJP");
    assert_eq!(payment_of(last).gross_ore, 150_000);
    // Still visible as of s2.
    let view = show(&app, P1, s2).await.unwrap();
    assert_eq!(view.facts.len(), 2);
    let as_of_s2 = app
        .store
        .person_history(&Personnummer::parse_now(P1).unwrap(), Some(s2))
        .await
        .unwrap();
    let latest = as_of_s2
        .iter()
        .filter(|r| !r.is_person_update())
        .map(|r| r.version)
        .max();
    assert_eq!(latest, Some(2));

    // Retracting twice, and correcting or retracting an unknown fact, are refused.
    let responses = ingest(
        &app,
        vec![
            fact(P1, "pay", 4, pb::RecordKind::Retraction),
            payment(P1, "nope", 2, pb::RecordKind::Correction, 100_000),
            fact(P1, "nope", 2, pb::RecordKind::Retraction),
            // A correction that changes the kind of fact or the person.
            admin_pb::Fact {
                body: Some(admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                    kind: pb::PersonEventKind::SicknessCaseClosed as i32,
                    event_date: "2024-01-01".into(),
                })),
                ..fact(P1, "pay", 5, pb::RecordKind::Correction)
            },
            payment(P2, "pay", 6, pb::RecordKind::Correction, 100_000),
            // A correction restores a retracted fact.
            payment(P1, "pay", 7, pb::RecordKind::Correction, 170_000),
        ],
    )
    .await;
    assert_eq!(
        rejection(&responses[0]),
        ("INVALID_ARGUMENT".into(), "kind".into())
    );
    assert_eq!(
        rejection(&responses[1]),
        ("RECORD_NOT_FOUND".into(), "source_id".into())
    );
    assert_eq!(
        rejection(&responses[2]),
        ("RECORD_NOT_FOUND".into(), "source_id".into())
    );
    assert_eq!(
        rejection(&responses[3]),
        ("INVALID_ARGUMENT".into(), "person_event".into())
    );
    assert_eq!(
        rejection(&responses[4]),
        ("INVALID_ARGUMENT".into(), "person_id".into())
    );
    assert!(
        !responses[4].message.contains("2386"),
        "messages never echo the number"
    );
    assert_eq!(outcome(&responses[5]), admin_pb::IngestOutcome::Accepted);
    assert_eq!(responses[5].version, 4);
    let (_, records) = query(&app, &app.certs.insurer, q()).await.unwrap();
    assert_eq!(payment_of(&records[0]).gross_ore, 170_000);

    // An as-of beyond the head, and a person unknown at an earlier sequence.
    let beyond = show(&app, P1, 1_000).await.unwrap_err();
    assert_eq!(beyond.code(), Code::InvalidArgument);
    assert_eq!(reason(&beyond), "INVALID_ARGUMENT");
    accepted(&ingest(&app, vec![case(P3, "p3-case", 1)]).await);
    let early = show(&app, P3, s1).await.unwrap_err();
    assert_eq!(early.code(), Code::NotFound);
    assert_eq!(reason(&early), "PERSON_NOT_FOUND");
    app.stop().await;
}

async fn a_bad_fact_never_blocks_the_good_ones(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut lines_off = payment(P1, "bad-lines", 1, pb::RecordKind::New, 1000);
    if let Some(admin_pb::fact::Body::Payment(p)) = &mut lines_off.body {
        p.lines[0].amount_ore += 1;
    }
    let mut backwards = period(P1, "bad-period");
    if let Some(admin_pb::fact::Body::CompensationPeriod(p)) = &mut backwards.body {
        p.to = "2023-12-31".into();
    }
    let mut bad_date = case(P1, "bad-date", 1);
    if let Some(admin_pb::fact::Body::Case(c)) = &mut bad_date.body {
        c.opened = "2024-02-30".into();
    }
    let responses = ingest(
        &app,
        vec![
            case(P1, "good-1", 1),
            case("19541011-3606", "bad-pnr", 1),
            case(P1, "good-2", 1),
            admin_pb::Fact {
                benefit_type: "NOPE".into(),
                ..case(P1, "bad-type", 1)
            },
            lines_off,
            backwards,
            bad_date,
            admin_pb::Fact {
                body: None,
                ..fact(P1, "no-body", 1, pb::RecordKind::New)
            },
            admin_pb::Fact {
                kind: 0,
                ..case(P1, "no-kind", 1)
            },
            admin_pb::Fact {
                source_system: "lower case".into(),
                ..case(P1, "bad-source", 1)
            },
            case(P1, "good-3", 1),
        ],
    )
    .await;
    let good = [0usize, 2, 10];
    for i in good {
        assert_eq!(outcome(&responses[i]), admin_pb::IngestOutcome::Accepted, "{i}");
    }
    assert_eq!(responses[2].register_sequence, responses[0].register_sequence + 1);
    assert_eq!(
        responses[10].register_sequence,
        responses[2].register_sequence + 1
    );
    assert_eq!(
        rejection(&responses[1]),
        ("PERSON_ID_INVALID".into(), "person_id".into())
    );
    assert!(!responses[1].message.contains("3606"));
    assert_eq!(
        rejection(&responses[3]),
        ("UNKNOWN_BENEFIT_TYPE".into(), "benefit_type".into())
    );
    assert_eq!(
        rejection(&responses[4]),
        ("INVALID_ARGUMENT".into(), "payment.lines".into())
    );
    assert_eq!(
        rejection(&responses[5]),
        ("INVALID_DATE".into(), "compensation_period.to".into())
    );
    assert_eq!(
        rejection(&responses[6]),
        ("INVALID_DATE".into(), "case.opened".into())
    );
    assert_eq!(
        rejection(&responses[7]),
        ("INVALID_ARGUMENT".into(), "body".into())
    );
    assert_eq!(
        rejection(&responses[8]),
        ("INVALID_ARGUMENT".into(), "kind".into())
    );
    assert_eq!(
        rejection(&responses[9]),
        ("INVALID_ARGUMENT".into(), "source_system".into())
    );
    for r in &responses {
        if outcome(r) == admin_pb::IngestOutcome::Rejected {
            assert!(!r.message.is_empty());
        }
    }
    let stats = app.store.stats(0).await.unwrap();
    assert_eq!(stats.fact_count, 3);
    app.stop().await;
}

async fn protected_names_are_never_disclosed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(
        &ingest(
            &app,
            vec![
                person_update(P1, 1, "Hemlig Person", true, ""),
                case(P1, "case-1", 1),
            ],
        )
        .await,
    );
    let (header, records) = query(
        &app,
        &app.certs.insurer,
        query_request(P1, &["SJP"], "2020-01-01", "INS_COORDINATION"),
    )
    .await
    .unwrap();
    let person = header.person.unwrap();
    assert_eq!(person.name, "");
    assert!(person.protected_identity);
    assert_eq!(person.person_id, "199007042386");
    assert_eq!(records.len(), 1);
    // Operators see the name (their view is logged).
    let view = show(&app, P1, 0).await.unwrap();
    assert_eq!(view.person.unwrap().name, "Hemlig Person");
    assert_eq!(
        view.person_versions[0].person.as_ref().unwrap().name,
        "Hemlig Person"
    );

    // Lifting the protection shows the name again, and the earlier view is still reproducible.
    let lifted = ingest(&app, vec![person_update(P1, 2, "Hemlig Person", false, "")]).await;
    accepted(&lifted);
    let (header, _) = query(
        &app,
        &app.certs.insurer,
        query_request(P1, &["SJP"], "2020-01-01", "INS_COORDINATION"),
    )
    .await
    .unwrap();
    assert_eq!(header.person.unwrap().name, "Hemlig Person");
    let earlier = app
        .store
        .person(
            &Personnummer::parse_now(P1).unwrap(),
            Some(lifted[0].register_sequence - 1),
        )
        .await
        .unwrap()
        .unwrap();
    assert!(earlier.data.protected_identity);
    app.stop().await;
}

async fn query_is_refused_without_the_basis_and_benefits(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(&ingest(&app, vec![case(P1, "case-1", 1)]).await);
    let denied = |r: Result<_, tonic::Status>| {
        let status = r.unwrap_err();
        (status.code(), reason(&status))
    };
    // A basis for insurers that the agreement does not grant.
    assert_eq!(
        denied(
            query(
                &app,
                &app.certs.insurer,
                query_request(P1, &["SJP"], "2024-01-01", "INS_CLAIMS")
            )
            .await
        ),
        (Code::PermissionDenied, "BASIS_NOT_IN_AGREEMENT".to_string())
    );
    // A basis for another kind of party.
    assert_eq!(
        denied(
            query(
                &app,
                &app.certs.insurer,
                query_request(P1, &["SJP"], "2024-01-01", "AUTH_SOCIAL_SERVICES")
            )
            .await
        ),
        (Code::PermissionDenied, "BASIS_NOT_FOR_PARTY_KIND".to_string())
    );
    // A benefit type the agreement does not grant.
    assert_eq!(
        denied(
            query(
                &app,
                &app.certs.insurer,
                query_request(P1, &["SJP", "AP"], "2024-01-01", "INS_COORDINATION")
            )
            .await
        ),
        (Code::PermissionDenied, "BENEFIT_NOT_COVERED".to_string())
    );
    // A basis that needs consent.
    assert_eq!(
        denied(
            query(
                &app,
                &app.certs.insurer,
                query_request(P1, &["SJP"], "2024-01-01", "INS_RISK_ASSESSMENT")
            )
            .await
        ),
        (Code::InvalidArgument, "CONSENT_REQUIRED".to_string())
    );
    assert_eq!(
        denied(
            query(
                &app,
                &app.certs.insurer,
                pb::QueryPersonRequest {
                    consent_id: "cns_unknown".into(),
                    ..query_request(P1, &["SJP"], "2024-01-01", "INS_RISK_ASSESSMENT")
                }
            )
            .await
        ),
        (Code::PermissionDenied, "CONSENT_NOT_VALID".to_string())
    );
    // An authority needs its case reference.
    assert_eq!(
        denied(
            query(
                &app,
                &app.certs.municipality,
                query_request(P1, &["SJP"], "2024-01-01", "AUTH_SOCIAL_SERVICES")
            )
            .await
        ),
        (Code::InvalidArgument, "CASE_REFERENCE_REQUIRED".to_string())
    );
    let (_, records) = query(
        &app,
        &app.certs.municipality,
        pb::QueryPersonRequest {
            case_reference: "SOC-2024-0042".into(),
            ..query_request(P1, &["SJP"], "2024-01-01", "AUTH_SOCIAL_SERVICES")
        },
    )
    .await
    .unwrap();
    assert_eq!(records.len(), 1);
    app.stop().await;
}

async fn query_field_errors_and_unknown_person(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    accepted(&ingest(&app, vec![case(P1, "case-1", 1)]).await);
    let refused = |r: Result<_, tonic::Status>| {
        let status = r.unwrap_err();
        assert!(!status.message().contains("2386"), "{}", status.message());
        (status.code(), reason(&status))
    };
    let insurer = &app.certs.insurer;
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                query_request(P2, &["SJP"], "2024-01-01", "INS_COORDINATION")
            )
            .await
        ),
        (Code::NotFound, "PERSON_NOT_FOUND".to_string())
    );
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                query_request("19541011-3606", &["SJP"], "2024-01-01", "INS_COORDINATION")
            )
            .await
        ),
        (Code::InvalidArgument, "PERSON_ID_INVALID".to_string())
    );
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                query_request(P1, &["XYZ"], "2024-01-01", "INS_COORDINATION")
            )
            .await
        ),
        (Code::InvalidArgument, "UNKNOWN_BENEFIT_TYPE".to_string())
    );
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                query_request(P1, &[], "2024-01-01", "INS_COORDINATION")
            )
            .await
        ),
        (Code::InvalidArgument, "INVALID_ARGUMENT".to_string())
    );
    assert_eq!(
        refused(query(&app, insurer, query_request(P1, &["SJP"], "", "INS_COORDINATION")).await),
        (Code::InvalidArgument, "INVALID_ARGUMENT".to_string())
    );
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                query_request(P1, &["SJP"], "2024-13-01", "INS_COORDINATION")
            )
            .await
        ),
        (Code::InvalidArgument, "INVALID_DATE".to_string())
    );
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                pb::QueryPersonRequest {
                    period: Some(pb::DateRange {
                        from: "2024-02-01".into(),
                        to: "2024-01-01".into()
                    }),
                    ..query_request(P1, &["SJP"], "", "INS_COORDINATION")
                }
            )
            .await
        ),
        (Code::InvalidArgument, "INVALID_DATE".to_string())
    );
    assert_eq!(
        refused(
            query(
                &app,
                insurer,
                query_request(P1, &["SJP"], "2024-01-01", "NO_SUCH_BASIS")
            )
            .await
        ),
        (Code::InvalidArgument, "UNKNOWN_BASIS".to_string())
    );
    app.stop().await;
}

async fn roles_are_enforced(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    // Ingest is for the ingest role only.
    for who in [&app.certs.operator, &app.certs.auditor] {
        let mut client = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(
            app.admin_channel(who).await,
        );
        let status = client
            .ingest(tokio_stream::iter(vec![admin_pb::IngestRequest {
                fact: Some(case(P1, "case-1", 1)),
            }]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(reason(&status), "ROLE_NOT_PERMITTED");
    }
    accepted(&ingest(&app, vec![case(P1, "case-1", 1)]).await);
    // ShowPerson is for operators and auditors.
    let mut as_ingest = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(
        app.admin_channel(&app.certs.ingest).await,
    );
    let status = as_ingest
        .show_person(admin_pb::ShowPersonRequest {
            person_id: P1.into(),
            as_of_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "ROLE_NOT_PERMITTED");
    let mut as_auditor = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(
        app.admin_channel(&app.certs.auditor).await,
    );
    let view = as_auditor
        .show_person(admin_pb::ShowPersonRequest {
            person_id: P1.into(),
            as_of_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.facts.len(), 1);
    // GetStats is for all three.
    for who in [&app.certs.operator, &app.certs.auditor, &app.certs.ingest] {
        let stats = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(
            app.admin_channel(who).await,
        )
        .get_stats(admin_pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
        assert_eq!(stats.person_count, 1);
        assert_eq!(stats.fact_count, 1);
        assert_eq!(stats.fact_version_count, 1);
        assert_eq!(stats.latest_sequence, 1);
        assert!(stats.latest_recorded_at.is_some());
        assert_eq!(stats.accepted_last_minute, 1);
        assert_eq!(stats.accepted_last_hour, 1);
    }
    // Parties cannot reach the admin API at all; the register's query is on the party API.
    let status =
        pb::query_service_client::QueryServiceClient::new(app.party_channel(&app.certs.insurer).await)
            .query_person(query_request(P1, &["SJP"], "2024-01-01", "INS_COORDINATION"))
            .await;
    assert!(status.is_ok());
    app.stop().await;
}

async fn concurrent_batches_commit_in_sequence_order(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let people = [P1, P2, P3];
    let mut tasks = Vec::new();
    for (w, person) in people.iter().enumerate() {
        let store = app.store.clone();
        let person = Personnummer::parse_now(person).unwrap();
        tasks.push(tokio::spawn(async move {
            for b in 0..5 {
                let facts = (0..200)
                    .map(|i| {
                        lefi::domain::register::NewFact::new(lefi::domain::register::FactParts {
                            source_system: "LOAD".into(),
                            source_id: format!("w{w}-b{b}-f{i}"),
                            source_version: 1,
                            person: person.clone(),
                            benefit_type: "SJP".into(),
                            kind: lefi::domain::register::RecordKind::New,
                            valid: None,
                            retroactive: false,
                            body: Some(lefi::domain::register::FactBody::Event(
                                lefi::domain::register::PersonEvent {
                                    kind: lefi::domain::register::PersonEventKind::SicknessCaseClosed,
                                    event_date: time::macros::date!(2024 - 01 - 01),
                                },
                            )),
                        })
                        .unwrap()
                    })
                    .collect();
                let results = store.ingest(facts, 0).await.unwrap();
                assert!(
                    results
                        .iter()
                        .all(|r| matches!(r, lefi::domain::register::versions::IngestResult::Accepted(_)))
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = app.store.log_after(0, 10_000).await.unwrap();
    assert_eq!(log.len(), 3_000);
    assert!(log.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    assert_eq!(app.store.head_seq().await.unwrap(), 3_000);
    assert_eq!(app.store.stats(0).await.unwrap().person_count, 3);
    app.stop().await;
}
