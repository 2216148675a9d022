//! The cost of one policy decision, with the agreement and catalogue already loaded.
//! Target (issue 4): p99 ≤ 10 µs. `cargo bench --bench policy`; results go to docs/BENCHMARKS.md.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use lefi::domain::catalogue::{Agreement, LegalBasis, Signature};
use lefi::domain::party::AgreementType;
use lefi::domain::{PartyKind, PartyState, Personnummer};
use lefi::policy::{Ask, CaseFacts, ConsentFacts, Facts, PartyFacts, decide};
use time::macros::date;

fn basis(code: &str, consent: bool, case: bool, kinds: Vec<PartyKind>) -> LegalBasis {
    LegalBasis {
        code: code.to_string(),
        purpose: "purpose".to_string(),
        purpose_en: String::new(),
        statute_reference: String::new(),
        disclosure_basis: String::new(),
        automated_basis: String::new(),
        requires_consent: consent,
        requires_open_case: case,
        valid_from: date!(2011 - 01 - 01),
        valid_to: None,
        party_kinds: kinds,
        benefit_codes: [
            "SJP", "RP", "SA", "FP", "TFP", "GP", "NP", "SMB", "ASL", "AKS", "BB", "BOB", "UHS", "AP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

fn agreement(bases: &[&str]) -> Agreement {
    let signature = Some(Signature {
        signed_by: "x".to_string(),
        signed_on: date!(2024 - 01 - 01),
        recorded_at: None,
        recorded_by: None,
    });
    Agreement {
        agreement_id: "A".to_string(),
        agreement_type: AgreementType::Avtal,
        valid_from: date!(2024 - 01 - 01),
        notice_period_days: 90,
        sent_at: 0,
        party_signed: signature.clone(),
        agency_signed: signature,
        basis_codes: bases.iter().map(|s| s.to_string()).collect(),
        benefit_codes: vec![
            "SJP".to_string(),
            "FP".to_string(),
            "SA".to_string(),
            "AP".to_string(),
        ],
    }
}

fn bench(c: &mut Criterion) {
    let today = date!(2026 - 11 - 26);
    let person = Personnummer::parse("19900704-2386", today).unwrap();
    let benefits = vec!["SJP".to_string(), "FP".to_string()];

    let coordination = basis("INS_COORDINATION", false, false, vec![PartyKind::Insurer]);
    let insurer_agreement = agreement(&["INS_COORDINATION", "INS_RISK_ASSESSMENT"]);
    let insurer = PartyFacts {
        party_id: "p1",
        kind: PartyKind::Insurer,
        state: PartyState::Connected,
        termination_effective: None,
    };
    c.bench_function("decide/insurer_coordination_allowed", |b| {
        let facts = Facts {
            party: insurer,
            agreement: Some(&insurer_agreement),
            basis: Some(&coordination),
            consent: None,
            case: None,
        };
        let ask = Ask {
            basis_code: "INS_COORDINATION",
            person: &person,
            benefit_codes: &benefits,
            case_reference: None,
            consent_id: None,
            today,
        };
        b.iter(|| black_box(decide(black_box(&facts), black_box(&ask))))
    });

    let risk = basis("INS_RISK_ASSESSMENT", true, false, vec![PartyKind::Insurer]);
    let consent = ConsentFacts {
        consent_id: "c1".to_string(),
        party_id: "p1".to_string(),
        person: person.clone(),
        basis_code: "INS_RISK_ASSESSMENT".to_string(),
        given_on: date!(2026 - 01 - 01),
        expires_on: date!(2027 - 01 - 01),
        revoked_at: None,
    };
    c.bench_function("decide/insurer_consent_allowed", |b| {
        let facts = Facts {
            party: insurer,
            agreement: Some(&insurer_agreement),
            basis: Some(&risk),
            consent: Some(&consent),
            case: None,
        };
        let ask = Ask {
            basis_code: "INS_RISK_ASSESSMENT",
            person: &person,
            benefit_codes: &benefits,
            case_reference: None,
            consent_id: Some("c1"),
            today,
        };
        b.iter(|| black_box(decide(black_box(&facts), black_box(&ask))))
    });

    let social = basis(
        "AUTH_SOCIAL_SERVICES",
        false,
        true,
        vec![PartyKind::MunicipalAuthority],
    );
    let municipal_agreement = agreement(&["AUTH_SOCIAL_SERVICES"]);
    let municipality = PartyFacts {
        party_id: "p2",
        kind: PartyKind::MunicipalAuthority,
        state: PartyState::Connected,
        termination_effective: None,
    };
    c.bench_function("decide/municipality_case_allowed", |b| {
        let facts = Facts {
            party: municipality,
            agreement: Some(&municipal_agreement),
            basis: Some(&social),
            consent: None,
            case: Some(CaseFacts::Open),
        };
        let ask = Ask {
            basis_code: "AUTH_SOCIAL_SERVICES",
            person: &person,
            benefit_codes: &[],
            case_reference: Some("SN-1"),
            consent_id: None,
            today,
        };
        b.iter(|| black_box(decide(black_box(&facts), black_box(&ask))))
    });

    c.bench_function("decide/denied_benefit_not_covered", |b| {
        let not_granted = vec!["BB".to_string()];
        let facts = Facts {
            party: insurer,
            agreement: Some(&insurer_agreement),
            basis: Some(&coordination),
            consent: None,
            case: None,
        };
        let ask = Ask {
            basis_code: "INS_COORDINATION",
            person: &person,
            benefit_codes: &not_granted,
            case_reference: None,
            consent_id: None,
            today,
        };
        b.iter(|| black_box(decide(black_box(&facts), black_box(&ask))))
    });
}

/// Per-decision latency percentiles (criterion reports means of batches; the target is a p99).
fn percentiles() {
    let today = date!(2026 - 11 - 26);
    let person = Personnummer::parse("19900704-2386", today).unwrap();
    let social = basis(
        "AUTH_SOCIAL_SERVICES",
        false,
        true,
        vec![PartyKind::MunicipalAuthority],
    );
    let municipal_agreement = agreement(&["AUTH_SOCIAL_SERVICES"]);
    let facts = Facts {
        party: PartyFacts {
            party_id: "p2",
            kind: PartyKind::MunicipalAuthority,
            state: PartyState::Connected,
            termination_effective: None,
        },
        agreement: Some(&municipal_agreement),
        basis: Some(&social),
        consent: None,
        case: Some(CaseFacts::Open),
    };
    let ask = Ask {
        basis_code: "AUTH_SOCIAL_SERVICES",
        person: &person,
        benefit_codes: &[],
        case_reference: Some("SN-1"),
        consent_id: None,
        today,
    };
    let mut samples: Vec<u128> = (0..200_000)
        .map(|_| {
            let start = std::time::Instant::now();
            black_box(decide(black_box(&facts), black_box(&ask))).ok();
            start.elapsed().as_nanos()
        })
        .collect();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "decide (slowest case, municipality with open case), 200000 single calls incl. timer overhead: \
         p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1]
    );
}

criterion_group!(benches, bench);

fn main() {
    percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
