//! Statistics orders in the store (issue 13), on both backends: every step is checked by the
//! order's rules in the transaction that makes it, audited, and idempotent by key; the population
//! file arrives only after the release and leaves with the deletion.

use lefi::domain::statistics::order::{OrderState, OrderStep, Side, StepRefused};
use lefi::domain::statistics::population;
use lefi::store::statistics::{NewOrder, OrderError, OrderFilter, Quote, Release, StepDetail};
use time::macros::date;

use crate::backend_tests;
use crate::helpers::{Backend, SpawnOptions, TestApp};

/// A server whose scheduled purge is left out: these tests step orders at made-up instants near
/// 1970, which that purge (first run as the server starts, at a moment the test does not control)
/// would find six months past and delete under the test's feet. The purge is tested in
/// `statistics_api`.
async fn spawn(backend: Backend) -> Option<TestApp> {
    let options = SpawnOptions {
        no_scheduled_purge: true,
        ..Default::default()
    };
    TestApp::spawn_with(backend, options).await
}

backend_tests!(
    an_order_runs_from_submission_to_deletion_with_every_step_audited,
    steps_out_of_turn_are_refused_and_change_nothing,
    a_step_replayed_with_its_key_acts_once,
    overdue_orders_are_found_by_their_receipt_deadline,
    an_order_that_ends_undelivered_keeps_no_population,
);

fn new_order(reference: &str) -> NewOrder {
    NewOrder {
        order_reference: reference.to_string(),
        project: "Sjukfrånvaro och arbetsmarknad 2020–2025".to_string(),
        purpose: "Forskning om sjukfrånvaro".to_string(),
        legal_ground: "24 kap. 8 § OSL".to_string(),
        population_description: "Personer födda 1960–1990 med sjukpenning".to_string(),
        benefit_types: vec!["SJP".to_string(), "FP".to_string()],
        variables: "episoder och paneler".to_string(),
        period_from: date!(2020 - 01 - 01),
        period_to: date!(2025 - 12 - 31),
        wished_delivery: Some(date!(2027 - 03 - 01)),
        contact_name: "Eva Forskare".to_string(),
        contact_email: "eva@universitet.example".to_string(),
        special_duty: false,
    }
}

fn quote(by: &str) -> StepDetail {
    StepDetail::Quote(Quote {
        drafted_by: by.to_string(),
        specification: "episoder SJP 2020–2025".to_string(),
        centihours: 1250,
        net_ore: 1_062_500,
        vat_ore: 265_625,
    })
}

fn members(text: &str) -> StepDetail {
    StepDetail::Population(
        population::parse(text.as_bytes(), date!(2026 - 12 - 01))
            .unwrap()
            .members,
    )
}

/// A Deliver step's detail whose release names `persons`, counted from the extract at `sequence`.
fn delivered(sequence: Option<u64>, persons: &[&str]) -> StepDetail {
    use lefi::domain::disclosure::{Channel, Decision, NewDisclosure};
    StepDetail::Delivered {
        on: date!(2027 - 01 - 10),
        retain_until: date!(2027 - 07 - 10),
        release: Release {
            sequence,
            entries: persons
                .iter()
                .map(|p| NewDisclosure {
                    person: Some(lefi::domain::Personnummer::from_storage(p).unwrap()),
                    to_sequence: sequence.unwrap_or(0),
                    ..NewDisclosure::new(Channel::StatisticsRelease, Decision::Allowed, "test")
                })
                .collect(),
        },
    }
}

async fn an_order_runs_from_submission_to_deletion_with_every_step_audited(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let store = &app.store;
    let party = app.insurer_id.as_str();
    let (order, created) = store
        .submit_order(party, &new_order("ref-1"), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(order.state, OrderState::Submitted);
    let (again, created) = store
        .submit_order(party, &new_order("ref-1"), date!(2026 - 12 - 03), 2)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.order_id, order.order_id);

    let id = order.order_id.as_str();
    let step = |step, side, actor: &'static str, detail: StepDetail, at: i64| {
        let store = store.clone();
        let id = id.to_string();
        async move {
            store
                .order_step(&id, None, step, side, actor, &detail, None, at)
                .await
        }
    };
    use OrderStep as T;
    step(T::ConfirmReceipt, Side::Agency, "Anna", StepDetail::None, 10)
        .await
        .unwrap();
    step(T::DraftQuote, Side::Agency, "Anna", quote("Anna"), 11)
        .await
        .unwrap();
    step(T::AgreeContent, Side::Orderer, "party", StepDetail::None, 12)
        .await
        .unwrap();
    // Four eyes: Anna drafted the quote.
    let refused = step(
        T::Release,
        Side::Agency,
        "Anna",
        StepDetail::Decision("ok".into()),
        13,
    )
    .await;
    assert!(
        matches!(refused, Err(OrderError::Refused(StepRefused::SameReviewer))),
        "{refused:?}"
    );
    step(
        T::Release,
        Side::Agency,
        "Bo",
        StepDetail::Decision("aggregera inte under 5".into()),
        14,
    )
    .await
    .unwrap();
    let population = "personnummer;lopnr\n19900704-2386;L1\n19950113-2386;L2\n";
    let order = step(T::ReceivePopulation, Side::Agency, "Bo", members(population), 15)
        .await
        .unwrap();
    assert_eq!(order.population_count, 2);
    step(T::AcceptQuote, Side::Orderer, "party", StepDetail::None, 16)
        .await
        .unwrap();
    step(
        T::Extract,
        Side::Agency,
        "Anna",
        StepDetail::Extracted {
            sequence: 7,
            files: vec![],
            manifest: "{}".to_string(),
        },
        17,
    )
    .await
    .unwrap();
    // A delivery whose release entries do not match the stored extract (another sequence, or not
    // one entry per person) is refused and logs nothing.
    for (sequence, persons) in [(Some(6), 2), (Some(7), 1)] {
        let stale = delivered(sequence, &["199007042386", "199501132386"][..persons]);
        let refused = step(T::Deliver, Side::Agency, "Anna", stale, 18).await;
        assert!(matches!(refused, Err(OrderError::Store(_))), "{refused:?}");
    }
    let person = lefi::domain::Personnummer::from_storage("199007042386").unwrap();
    assert!(app.disclosures_about("199007042386").await.is_empty());
    let order = step(
        T::Deliver,
        Side::Agency,
        "Anna",
        delivered(Some(7), &["199007042386", "199501132386"]),
        18,
    )
    .await
    .unwrap();
    assert_eq!(app.disclosures_about(person.as_storage()).await.len(), 1);
    assert_eq!(order.state, OrderState::Delivered);
    assert_eq!(order.retain_until, Some(date!(2027 - 07 - 10)));
    assert_eq!(order.extracted_sequence, Some(7));
    assert_eq!(
        order.decision,
        Some(("Bo".to_string(), "aggregera inte under 5".to_string()))
    );
    assert_eq!(store.order_population(id).await.unwrap().len(), 2);
    let order = step(T::Delete, Side::Server, "lefi", StepDetail::None, 19)
        .await
        .unwrap();
    assert_eq!(order.state, OrderState::Deleted);
    assert!(order.deleted_at.is_some());
    assert!(
        store.order_population(id).await.unwrap().is_empty(),
        "the population goes with the files"
    );

    let history = store.order_history(id).await.unwrap();
    let steps: Vec<OrderStep> = history.iter().map(|h| h.step).collect();
    assert_eq!(
        steps,
        vec![
            T::Submit,
            T::ConfirmReceipt,
            T::DraftQuote,
            T::AgreeContent,
            T::Release,
            T::ReceivePopulation,
            T::AcceptQuote,
            T::Extract,
            T::Deliver,
            T::Delete
        ]
    );
    let population_entry = &history[5];
    assert_eq!(population_entry.detail, "2 persons");
    for h in &history {
        assert!(
            !h.detail.contains("2386"),
            "no identity number in the audit: {}",
            h.detail
        );
    }
    assert_eq!(history[4].actor, "Bo");
    app.stop().await;
}

async fn steps_out_of_turn_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let store = &app.store;
    let (order, _) = store
        .submit_order(&app.insurer_id, &new_order("ref-2"), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();
    let id = order.order_id.as_str();
    let population = members("19900704-2386;L1\n");
    let before_release = store
        .order_step(
            id,
            None,
            OrderStep::ReceivePopulation,
            Side::Orderer,
            "p",
            &population,
            None,
            2,
        )
        .await;
    assert!(
        matches!(
            before_release,
            Err(OrderError::Refused(StepRefused::PopulationBeforeRelease))
        ),
        "{before_release:?}"
    );
    let extract = store
        .order_step(
            id,
            None,
            OrderStep::Extract,
            Side::Agency,
            "a",
            &StepDetail::None,
            None,
            3,
        )
        .await;
    assert!(matches!(extract, Err(OrderError::Refused(_))), "{extract:?}");
    // Another party's order is not found for it.
    let foreign = store
        .order_step(
            id,
            Some(&app.municipality_id),
            OrderStep::Withdraw,
            Side::Orderer,
            "m",
            &StepDetail::None,
            None,
            4,
        )
        .await;
    assert!(matches!(foreign, Err(OrderError::NotFound)), "{foreign:?}");
    assert!(
        store
            .order(id, Some(&app.municipality_id))
            .await
            .unwrap()
            .is_none()
    );

    let order = store.order(id, None).await.unwrap().unwrap();
    assert_eq!(order.state, OrderState::Submitted);
    assert_eq!(order.population_count, 0);
    assert!(store.order_population(id).await.unwrap().is_empty());
    assert_eq!(
        store.order_history(id).await.unwrap().len(),
        1,
        "only the submission"
    );
    app.stop().await;
}

async fn a_step_replayed_with_its_key_acts_once(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let store = &app.store;
    let (order, _) = store
        .submit_order(&app.insurer_id, &new_order("ref-3"), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();
    let id = order.order_id.as_str();
    let ask = StepDetail::Text("Vilka variabler?".to_string());
    for at in [2, 3] {
        store
            .order_step(
                id,
                None,
                OrderStep::ConfirmReceipt,
                Side::Agency,
                "a",
                &StepDetail::None,
                Some("k1"),
                at,
            )
            .await
            .unwrap();
    }
    store
        .order_step(
            id,
            None,
            OrderStep::RequestCompletion,
            Side::Agency,
            "a",
            &ask,
            Some("k2"),
            4,
        )
        .await
        .unwrap();
    let replay = store
        .order_step(
            id,
            None,
            OrderStep::RequestCompletion,
            Side::Agency,
            "a",
            &ask,
            Some("k2"),
            5,
        )
        .await
        .unwrap();
    assert_eq!(replay.state, OrderState::AwaitingCompletion);
    let reused = store
        .order_step(
            id,
            None,
            OrderStep::DraftQuote,
            Side::Agency,
            "a",
            &quote("a"),
            Some("k1"),
            6,
        )
        .await;
    assert!(matches!(reused, Err(OrderError::KeyReused)), "{reused:?}");
    let steps: Vec<OrderStep> = store
        .order_history(id)
        .await
        .unwrap()
        .iter()
        .map(|h| h.step)
        .collect();
    assert_eq!(
        steps,
        vec![
            OrderStep::Submit,
            OrderStep::ConfirmReceipt,
            OrderStep::RequestCompletion
        ]
    );
    app.stop().await;
}

async fn overdue_orders_are_found_by_their_receipt_deadline(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let store = &app.store;
    let (late, _) = store
        .submit_order(&app.insurer_id, &new_order("late"), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();
    let (confirmed, _) = store
        .submit_order(&app.insurer_id, &new_order("confirmed"), date!(2026 - 12 - 03), 2)
        .await
        .unwrap();
    store
        .order_step(
            &confirmed.order_id,
            None,
            OrderStep::ConfirmReceipt,
            Side::Agency,
            "a",
            &StepDetail::None,
            None,
            3,
        )
        .await
        .unwrap();
    let overdue = |day| OrderFilter {
        overdue_on: Some(day),
        ..OrderFilter::default()
    };
    let on_due_day = store.orders(&overdue(date!(2026 - 12 - 03))).await.unwrap();
    assert!(on_due_day.is_empty(), "due that day is not yet overdue");
    let after = store.orders(&overdue(date!(2026 - 12 - 04))).await.unwrap();
    assert_eq!(
        after.iter().map(|o| o.order_id.clone()).collect::<Vec<_>>(),
        vec![late.order_id]
    );
    let in_review = store
        .orders(&OrderFilter {
            states: vec![OrderState::InReview],
            ..OrderFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(in_review.len(), 1);
    app.stop().await;
}

/// Takes a new order to RELEASED with a population of two (steps at 10..=15); its id.
async fn released_with_population(app: &TestApp, reference: &str) -> String {
    let store = &app.store;
    let (order, _) = store
        .submit_order(&app.insurer_id, &new_order(reference), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();
    let id = order.order_id;
    use OrderStep as T;
    for (n, (step, side, actor, detail)) in [
        (T::ConfirmReceipt, Side::Agency, "Anna", StepDetail::None),
        (T::DraftQuote, Side::Agency, "Anna", quote("Anna")),
        (T::AgreeContent, Side::Orderer, "party", StepDetail::None),
        (T::Release, Side::Agency, "Bo", StepDetail::Decision("ok".into())),
        (
            T::ReceivePopulation,
            Side::Orderer,
            "party",
            members("personnummer;lopnr\n19900704-2386;L1\n19950113-2386;L2\n"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .order_step(&id, None, step, side, actor, &detail, None, 10 + n as i64)
            .await
            .unwrap();
    }
    id
}

/// The rule for what an order that is never delivered holds: withdrawn (or refused), its
/// population and files are deleted at once; released, accepted or extracted and left undelivered,
/// they are deleted six months after the order's last step. Each deletion is in the order's
/// history; the manifest remains.
async fn an_order_that_ends_undelivered_keeps_no_population(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let store = &app.store;
    use OrderStep as T;
    // Withdrawn after the population arrived: deleted in the same step.
    let withdrawn = released_with_population(&app, "ref-w").await;
    assert_eq!(store.order_population(&withdrawn).await.unwrap().len(), 2);
    let order = store
        .order_step(
            &withdrawn,
            None,
            T::Withdraw,
            Side::Orderer,
            "party",
            &StepDetail::Text("projektet lades ned".into()),
            None,
            20,
        )
        .await
        .unwrap();
    assert_eq!(order.state, OrderState::Withdrawn);
    assert!(store.order_population(&withdrawn).await.unwrap().is_empty());
    let last = store.order_history(&withdrawn).await.unwrap().pop().unwrap();
    assert_eq!(last.step, T::Withdraw);
    assert_eq!(last.detail, "projektet lades ned; population and files deleted");

    // Refused: nothing was held (no population before the release), nothing is kept.
    let (refused, _) = store
        .submit_order(&app.insurer_id, &new_order("ref-r"), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();
    for (step, side, actor, detail) in [
        (T::ConfirmReceipt, Side::Agency, "Anna", StepDetail::None),
        (T::DraftQuote, Side::Agency, "Anna", quote("Anna")),
        (T::AgreeContent, Side::Orderer, "party", StepDetail::None),
        (
            T::Refuse,
            Side::Agency,
            "Bo",
            StepDetail::Decision("röjande".into()),
        ),
    ] {
        store
            .order_step(&refused.order_id, None, step, side, actor, &detail, None, 17)
            .await
            .unwrap();
    }
    assert_eq!(
        store.order(&refused.order_id, None).await.unwrap().unwrap().state,
        OrderState::Refused
    );
    assert!(
        store
            .order_population(&refused.order_id)
            .await
            .unwrap()
            .is_empty()
    );

    // Extracted (with a file) and never delivered; and released with a population and left.
    let extracted = released_with_population(&app, "ref-x").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("episodes.csv");
    std::fs::write(&path, b"serial\nL1\n").unwrap();
    let file = lefi::store::statistics::ExtractFile {
        facts: lefi::store::statistics::FileFacts {
            name: "episodes.csv".into(),
            media_type: "text/csv".into(),
            size_bytes: 10,
            rows: 1,
            sha256: "x".into(),
        },
        path,
    };
    for (step, side, detail) in [
        (T::AcceptQuote, Side::Orderer, StepDetail::None),
        (
            T::Extract,
            Side::Agency,
            StepDetail::Extracted {
                sequence: 3,
                files: vec![file],
                manifest: "{}".into(),
            },
        ),
    ] {
        store
            .order_step(&extracted, None, step, side, "Anna", &detail, None, 30)
            .await
            .unwrap();
    }
    let idle = released_with_population(&app, "ref-idle").await;
    // Released without a population holds nothing and is left alone.
    let (empty, _) = store
        .submit_order(&app.insurer_id, &new_order("ref-empty"), date!(2026 - 12 - 03), 1)
        .await
        .unwrap();

    // The last steps were on 1970-01-01 (Swedish time): kept through 1970-07-01.
    let last_day = date!(1970 - 07 - 01);
    let due = store.orders_past_retention(last_day).await.unwrap();
    assert!(due.is_empty(), "{due:?}");
    assert!(
        store
            .purge_expired_orders(last_day, Side::Server, "lefi", 40)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .extract_chunk(&extracted, "episodes.csv", 0)
            .await
            .unwrap()
            .is_some()
    );
    let mut purged: Vec<String> = store
        .purge_expired_orders(date!(1970 - 07 - 02), Side::Server, "lefi", 41)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.order_id)
        .collect();
    purged.sort();
    let mut expected = vec![extracted.clone(), idle.clone()];
    expected.sort();
    assert_eq!(purged, expected);
    for id in [&extracted, &idle] {
        let order = store.order(id, None).await.unwrap().unwrap();
        assert_eq!(order.state, OrderState::Deleted);
        assert!(store.order_population(id).await.unwrap().is_empty());
        let last = store.order_history(id).await.unwrap().pop().unwrap();
        assert_eq!(last.step, T::Delete);
        assert_eq!(
            last.detail,
            "not delivered; kept until 1970-07-01 after its last step"
        );
    }
    assert!(
        store
            .extract_chunk(&extracted, "episodes.csv", 0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .extract_file(&extracted, "episodes.csv")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.extract_manifest(&extracted).await.unwrap().as_deref(),
        Some("{}"),
        "the manifest remains"
    );
    assert_eq!(
        store.order(&empty.order_id, None).await.unwrap().unwrap().state,
        OrderState::Submitted
    );
    app.stop().await;
}
