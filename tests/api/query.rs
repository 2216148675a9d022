//! Reproducible and bulk queries: an earlier answer given again exactly (after later corrections),
//! refused when it was never given; many persons in one call, each decided and logged on its own.

use lefi::domain::disclosure::{Channel as LogChannel, Decision};
use lefi::grpc::pb::lefi::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::backend_tests;
use crate::delivery::pay;
use crate::helpers::{Backend, TestApp, reason};
use crate::register::{P1, P2, P3, accepted, ingest};

backend_tests!(
    an_answer_is_reproduced_exactly_after_later_corrections,
    only_an_answer_that_was_given_can_be_reproduced,
    a_bulk_query_answers_and_refuses_each_person_on_its_own,
    a_bulk_query_with_a_bad_shared_field_refuses_every_person,
);

fn query(person: &str) -> pb::QueryPersonRequest {
    pb::QueryPersonRequest {
        person_id: person.to_string(),
        benefit_type_codes: vec!["SJP".to_string()],
        period: Some(pb::DateRange {
            from: "2020-01-01".to_string(),
            to: String::new(),
        }),
        legal_basis: "INS_COORDINATION".to_string(),
        ..Default::default()
    }
}

/// A whole answer: its header and records.
async fn ask(
    channel: &Channel,
    request: pb::QueryPersonRequest,
) -> Result<(pb::QueryPersonHeader, Vec<pb::BenefitRecord>), tonic::Status> {
    let mut stream = pb::query_service_client::QueryServiceClient::new(channel.clone())
        .query_person(request)
        .await?
        .into_inner();
    let mut header = None;
    let mut records = Vec::new();
    while let Some(message) = stream.message().await? {
        match message.content {
            Some(pb::query_person_response::Content::Header(h)) => header = Some(h),
            Some(pb::query_person_response::Content::Records(r)) => records.extend(r.records),
            None => panic!("empty message"),
        }
    }
    Ok((header.expect("no header"), records))
}

async fn an_answer_is_reproduced_exactly_after_later_corrections(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let (first, told) = ask(&channel, query(P1)).await.unwrap();
    assert_eq!(told.len(), 1);
    assert!(first.reproduces_answer_at.is_none());
    // Later: the payment is corrected, another is added, and the person's name changes.
    accepted(
        &ingest(
            &app,
            vec![
                pay(P1, "PAY1", 2, pb::RecordKind::Correction, 900),
                pay(P1, "PAY2", 1, pb::RecordKind::New, 200),
                crate::register::person_update(P1, 2, "Ny Namnsson", false, ""),
            ],
        )
        .await,
    );
    let (now, current) = ask(&channel, query(P1)).await.unwrap();
    assert_eq!(current.len(), 2);
    assert_ne!(now.person, first.person);
    // Asked again as of the first answer's sequence: exactly what was told then.
    let again = pb::QueryPersonRequest {
        as_of_sequence: first.as_of_sequence,
        ..query(P1)
    };
    let (header, records) = ask(&channel, again).await.unwrap();
    assert_eq!(records, told, "the reproduced records are the original ones");
    assert_eq!(header.person, first.person);
    assert_eq!(header.as_of_sequence, first.as_of_sequence);
    assert_eq!(header.record_count, first.record_count);
    let given_at = header
        .reproduces_answer_at
        .expect("the answer says it reproduces one");
    // The reproduction is itself logged: allowed, as of the earlier sequence.
    let logged = app.disclosures_by(&app.insurer_id).await;
    let last = &logged.last().unwrap().entry;
    assert_eq!(last.channel, LogChannel::Query);
    assert_eq!(last.decision, Decision::Allowed);
    assert_eq!(last.to_sequence, first.as_of_sequence);
    assert_eq!(last.record_count, 1);
    // ... and it names when the original answer was logged.
    let original = logged
        .iter()
        .find(|e| e.entry.to_sequence == first.as_of_sequence)
        .unwrap();
    assert_eq!(given_at.seconds, original.at / 1_000_000);
    app.stop().await;
}

async fn only_an_answer_that_was_given_can_be_reproduced(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    accepted(&ingest(&app, vec![pay(P1, "PAY1", 1, pb::RecordKind::New, 100)]).await);
    let (first, _) = ask(&channel, query(P1)).await.unwrap();
    accepted(&ingest(&app, vec![pay(P1, "PAY2", 1, pb::RecordKind::New, 200)]).await);
    let before = app.disclosures_by(&app.insurer_id).await.len();
    let refused = |request| {
        let channel = channel.clone();
        async move {
            let status = ask(&channel, request).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
            assert_eq!(reason(&status), "ANSWER_NOT_FOUND");
            assert!(!status.message().contains("19900704"), "{status:?}");
        }
    };
    // Another period than the one answered.
    let mut other_period = query(P1);
    other_period.as_of_sequence = first.as_of_sequence;
    other_period.period = Some(pb::DateRange {
        from: "2021-01-01".to_string(),
        to: String::new(),
    });
    refused(other_period).await;
    // A sequence the party was never answered at.
    refused(pb::QueryPersonRequest {
        as_of_sequence: first.as_of_sequence + 1,
        ..query(P1)
    })
    .await;
    // Another person.
    refused(pb::QueryPersonRequest {
        as_of_sequence: first.as_of_sequence,
        ..query(P2)
    })
    .await;
    // Each refusal is a decision about a person, logged as denied.
    let logged = app.disclosures_by(&app.insurer_id).await;
    let denials: Vec<_> = logged[before..].iter().map(|e| &e.entry).collect();
    assert_eq!(denials.len(), 3, "{denials:#?}");
    assert!(
        denials
            .iter()
            .all(|e| e.decision == Decision::Denied && e.denial_reason.as_deref() == Some("ANSWER_NOT_FOUND"))
    );
    // Another insurer, allowed the same query, cannot reproduce this insurer's answer.
    let other = crate::policy::extra_party(
        &app,
        "556000-0001",
        "Annat Försäkrings AB",
        lefi::domain::PartyKind::Insurer,
        &["INS_COORDINATION"],
        app.clock.today() - time::Duration::days(400),
    )
    .await;
    let other = app.party_channel(&other).await;
    assert!(ask(&other, query(P1)).await.is_ok(), "the other insurer may ask");
    let status = ask(
        &other,
        pb::QueryPersonRequest {
            as_of_sequence: first.as_of_sequence,
            ..query(P1)
        },
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&status), "ANSWER_NOT_FOUND");
    // The original answer can be reproduced with its benefit types in any order and repeated.
    let (header, _) = ask(
        &channel,
        pb::QueryPersonRequest {
            as_of_sequence: first.as_of_sequence,
            benefit_type_codes: vec!["SJP".to_string(), " SJP ".to_string()],
            ..query(P1)
        },
    )
    .await
    .unwrap();
    assert!(header.reproduces_answer_at.is_some());
    app.stop().await;
}

/// The messages of a bulk answer, per request index, in the order received.
async fn ask_many(
    channel: &Channel,
    request: pb::QueryPersonsRequest,
) -> Result<Vec<pb::QueryPersonsResponse>, tonic::Status> {
    let mut stream = pb::query_service_client::QueryServiceClient::new(channel.clone())
        .query_persons(request)
        .await?
        .into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await? {
        messages.push(message);
    }
    Ok(messages)
}

fn bulk(persons: &[&str]) -> pb::QueryPersonsRequest {
    let one = query(P1);
    pb::QueryPersonsRequest {
        persons: persons
            .iter()
            .map(|p| pb::PersonToQuery {
                person_id: p.to_string(),
                ..Default::default()
            })
            .collect(),
        benefit_type_codes: one.benefit_type_codes,
        period: one.period,
        legal_basis: one.legal_basis,
    }
}

async fn a_bulk_query_answers_and_refuses_each_person_on_its_own(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    accepted(
        &ingest(
            &app,
            vec![
                pay(P1, "PAY1", 1, pb::RecordKind::New, 100),
                pay(P1, "PAY2", 1, pb::RecordKind::New, 200),
                pay(P2, "PAY3", 1, pb::RecordKind::New, 300),
            ],
        )
        .await,
    );
    let before = app.disclosures_by(&app.insurer_id).await.len();
    // P1, a number with a wrong check digit, P2, a person the register does not hold, P1 under
    // a consent that does not exist, and P2 with a case reference too long (a person's own field,
    // checked per person).
    let mut request = bulk(&[P1, "19900704-2387", P2, P3, P1, P2]);
    request.persons[4].consent_id = "no-such-consent".to_string();
    request.persons[5].case_reference = "x".repeat(65);
    let messages = ask_many(&channel, request).await.unwrap();
    // In request order, each message tagged with its person's index.
    let indexes: Vec<u32> = messages.iter().map(|m| m.index).collect();
    let mut sorted = indexes.clone();
    sorted.sort();
    assert_eq!(indexes, sorted, "answers come in request order");
    let of = |i: u32| messages.iter().filter(move |m| m.index == i).collect::<Vec<_>>();
    let answer = |i: u32| {
        let mut header = None;
        let mut records = Vec::new();
        for m in of(i) {
            match &m.content {
                Some(pb::query_persons_response::Content::Header(h)) => header = Some(h.clone()),
                Some(pb::query_persons_response::Content::Records(r)) => records.extend(r.records.clone()),
                other => panic!("person {i}: {other:?}"),
            }
        }
        (header.expect("a header"), records)
    };
    let error = |i: u32| match &of(i)[..] {
        [one] => match &one.content {
            Some(pb::query_persons_response::Content::Error(e)) => {
                pb::ErrorReason::try_from(e.reason).unwrap()
            }
            other => panic!("person {i}: {other:?}"),
        },
        many => panic!("person {i}: {many:?}"),
    };
    let (h1, r1) = answer(0);
    let (h2, r2) = answer(2);
    assert_eq!((r1.len(), r2.len()), (2, 1));
    assert_eq!(
        h1.as_of_sequence, h2.as_of_sequence,
        "one sequence for every answer"
    );
    assert_eq!(error(1), pb::ErrorReason::PersonIdInvalid);
    assert_eq!(error(3), pb::ErrorReason::PersonNotFound);
    assert!(
        matches!(
            error(4),
            pb::ErrorReason::ConsentNotFound | pb::ErrorReason::ConsentNotValid
        ),
        "{:?}",
        error(4)
    );
    assert_eq!(error(5), pb::ErrorReason::InvalidArgument);
    // Each answer equals the one-person query's.
    let (single, single_records) = ask(&channel, query(P1)).await.unwrap();
    assert_eq!((single.person, single_records), (h1.person, r1));
    // Logged per person: two allowed, P3, the bad consent and the long case reference denied, the
    // bad number not at all.
    let logged = app.disclosures_by(&app.insurer_id).await;
    let entries: Vec<_> = logged[before..]
        .iter()
        .map(|e| &e.entry)
        .filter(|e| e.rpc == "/lefi.v1.QueryService/QueryPersons")
        .collect();
    assert_eq!(entries.len(), 5, "{entries:#?}");
    let allowed: Vec<u64> = entries
        .iter()
        .filter(|e| e.decision == Decision::Allowed)
        .map(|e| e.record_count)
        .collect();
    assert_eq!(allowed, [2, 1]);
    assert_eq!(
        entries.iter().filter(|e| e.decision == Decision::Denied).count(),
        3
    );
    // Too many or none: refused as a whole.
    for n in [0, 1_001] {
        let many = vec![P1; n];
        let status = ask_many(&channel, bulk(&many)).await.unwrap_err();
        assert_eq!(reason(&status), "BATCH_TOO_LARGE", "{n} persons");
    }
    app.stop().await;
}

async fn a_bulk_query_with_a_bad_shared_field_refuses_every_person(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let channel = app.party_channel(&app.certs.insurer).await;
    let before = app.disclosures_by(&app.insurer_id).await.len();
    let mut request = bulk(&[P1, P2, "not-a-number"]);
    request.legal_basis = "NO_SUCH_BASIS".to_string();
    let status = ask_many(&channel, request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason(&status), "UNKNOWN_BASIS");
    let logged = app.disclosures_by(&app.insurer_id).await;
    let denied: Vec<_> = logged[before..].iter().map(|e| &e.entry).collect();
    assert_eq!(
        denied.len(),
        2,
        "each valid identity number is logged as denied: {denied:#?}"
    );
    assert!(
        denied
            .iter()
            .all(|e| e.decision == Decision::Denied && e.denial_reason.as_deref() == Some("UNKNOWN_BASIS"))
    );
    app.stop().await;
}
