//! A deterministic synthetic benefit register, in the feed's wire form (`lefi.admin.v1.Fact`):
//! `lefi synth` writes it as NDJSON, and `serve --dev` loads a small one.
//!
//! The same seed, person count and end date always give the same facts. Per person: their own
//! data (a Swedish name; about 1.5 % protected), and by age sickness cases (sjukpenning) with
//! compensation periods of varying extent, a retroactive decision, monthly payments (a few
//! preliminary ones corrected later, a few back payments, a few retracted) and the closing event;
//! parental benefit (föräldrapenning) in blocks of full, half or quarter days; sickness or activity
//! compensation; old-age pension with the occasional missing life certificate (blocked, then
//! reopened with a back payment); and some deaths.
//!
//! Payments lag as the agency publishes (about three months for sickness and parental benefit,
//! about nine for sickness and activity compensation), so that statistics orders' coverage rule
//! has recent months under 95 %. Rehabilitation benefit (rehabiliteringspenning, RP, about three
//! months too) comes during some long sickness cases; it is drawn from a random stream of its own,
//! so every other fact of every person is what it was before RP was generated (the `serve --dev`
//! demo register the sandbox is written against, the benchmarks' registers).
//!
//! **Identity numbers.** Every number has a birth number (digits 9–11) between 980 and 999: the
//! range that Skatteverket's published test numbers use (e.g. 18991223-9812, 930302+9806), set
//! apart so that tests never collide with real people. Synthetic data never uses another range;
//! still, load it only into test or demo databases. The source system is `SYNTH` (`SYNTH-DEMO`
//! for the `serve --dev` demo).

mod benefits;
mod facts;
mod payments;
mod persons;

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, macros::date};

use crate::domain::Personnummer;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;
use facts::{PersonFacts, event, person};

/// The source system of every synthetic fact.
pub const SOURCE_SYSTEM: &str = "SYNTH";
/// The default last day of the synthetic history (fixed, so output does not depend on the day).
pub const DEFAULT_UNTIL: Date = date!(2025 - 12 - 31);
/// The lowest birth number synthetic identity numbers use.
pub const FIRST_BIRTH_NUMBER: u16 = 980;
/// The highest birth number synthetic identity numbers use.
pub const LAST_BIRTH_NUMBER: u16 = 999;

/// Why no more persons can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynthError {
    #[error(
        "the synthetic identity range (birth numbers 980–999) has no free number left; ask for fewer persons"
    )]
    IdentitiesExhausted,
}

/// Mixed into the seed for rehabilitation's own random stream.
const REHABILITATION_STREAM: u64 = 0x5245_4841_4249_4c49;

/// Makes synthetic persons one at a time.
pub struct Synth {
    rng: ChaCha8Rng,
    /// Rehabilitation's own draws (see [`Synth::rehabilitation`]).
    rehab_rng: ChaCha8Rng,
    until: Date,
    used: HashSet<String>,
    next_index: usize,
    source_system: String,
    id_prefix: String,
}

impl Synth {
    /// A generator for `seed` whose history ends on `until`, with source system `SYNTH` and
    /// source ids `P0000000-…`.
    pub fn new(seed: u64, until: Date) -> Self {
        Self::with_source(seed, until, SOURCE_SYSTEM, "P")
    }

    /// Like [`Synth::new`] with another source system and source-id prefix, so that two synthetic
    /// registers (e.g. the `serve --dev` demo and a `lefi synth` file) can share a database.
    pub fn with_source(seed: u64, until: Date, source_system: &str, id_prefix: &str) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            rehab_rng: ChaCha8Rng::seed_from_u64(seed ^ REHABILITATION_STREAM),
            until,
            used: HashSet::new(),
            next_index: 0,
            source_system: source_system.to_string(),
            id_prefix: id_prefix.to_string(),
        }
    }

    /// The facts of the next person, in the order a source would send them.
    pub fn next_person(&mut self) -> Result<Vec<admin_pb::Fact>, SynthError> {
        let index = self.next_index;
        self.next_index += 1;
        let (person_id, birth, female) = self.identity()?;
        let until = self.until;
        let age = until.year() - birth.year();
        let mut p = PersonFacts {
            source_system: self.source_system.clone(),
            person_id,
            prefix: format!("{}{index:07}", self.id_prefix),
            facts: Vec::new(),
        };
        let name = self.name(female);
        let protected = self.rng.random_bool(0.015);
        p.new_fact("", "PERSON", false, person(name.clone(), protected, None));

        let death_probability = match age {
            80.. => 0.06,
            65..=79 => 0.02,
            _ => 0.004,
        };
        let death = (age >= 18 && self.rng.random_bool(death_probability))
            .then(|| until - Duration::days(self.rng.random_range(10..365)));
        let alive_until = death.unwrap_or(until);

        if (18..67).contains(&age) && self.rng.random_bool(0.45) {
            let cases = self.rng.random_range(1..=3);
            for c in 0..cases {
                if let Some(sick) = self.sick_case(&mut p, c, alive_until) {
                    self.rehabilitation(&mut p, c, sick);
                }
            }
        }
        if (22..=45).contains(&age) && self.rng.random_bool(0.25) {
            self.parental(&mut p, alive_until);
        }
        if (19..=64).contains(&age) && self.rng.random_bool(0.04) {
            self.activity_compensation(&mut p, alive_until);
        }
        if age >= 66 && self.rng.random_bool(0.9) {
            self.pension(&mut p, birth, alive_until);
        }
        if let Some(death) = death {
            p.correct("", "PERSON", person(name, protected, Some(death)));
            p.new_fact(
                "",
                "DEATH",
                false,
                event(pb::PersonEventKind::DeathRegistered, death),
            );
        }
        Ok(p.facts)
    }
}

impl Synth {
    /// A sickness case (opened, decided, compensated, paid) for `person`, a number from the test
    /// range, for a tour or a demo: a subscription to the person sees it arrive. Its source ids
    /// (`{prefix}TOUR-SJP0-…`) are apart from every synthetic person's. `None` when the number is
    /// not from the test range (birth numbers 980–999): synthetic facts are never made for
    /// anyone who could be real.
    pub fn sick_leave_for(&mut self, person: &Personnummer) -> Option<Vec<admin_pb::Fact>> {
        let digits = person.as_storage();
        let birth_number: u16 = digits.get(8..11)?.parse().ok()?;
        if !(FIRST_BIRTH_NUMBER..=LAST_BIRTH_NUMBER).contains(&birth_number) {
            return None;
        }
        let mut p = PersonFacts {
            source_system: self.source_system.clone(),
            person_id: digits.to_string(),
            prefix: format!("{}TOUR", self.id_prefix),
            facts: Vec::new(),
        };
        self.sick_case(&mut p, 0, self.until);
        Some(p.facts)
    }
}

#[cfg(test)]
mod tests {
    use super::facts::Body;
    use super::*;
    use crate::grpc::convert::new_fact;

    fn facts(seed: u64, persons: usize) -> Vec<admin_pb::Fact> {
        let mut synth = Synth::new(seed, DEFAULT_UNTIL);
        (0..persons).flat_map(|_| synth.next_person().unwrap()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_register() {
        assert_eq!(facts(7, 50), facts(7, 50));
        assert_ne!(facts(7, 50), facts(8, 50));
    }

    #[test]
    fn every_fact_is_valid_and_every_number_synthetic() {
        let all = facts(42, 400);
        assert!(all.len() > 2_000, "{} facts", all.len());
        let today = date!(2026 - 01 - 01);
        let mut benefits = HashSet::new();
        for f in &all {
            let checked = new_fact(f.clone(), today).unwrap_or_else(|e| panic!("{e}: {f:?}"));
            let digits = checked.person().as_storage();
            let birth_number: u16 = digits[8..11].parse().unwrap();
            assert!((FIRST_BIRTH_NUMBER..=LAST_BIRTH_NUMBER).contains(&birth_number));
            assert_eq!(f.source_system, SOURCE_SYSTEM);
            assert!(f.source_id.starts_with('P'));
            benefits.insert(f.benefit_type.clone());
        }
        for benefit in ["SJP", "FP", "SA", "AP", ""] {
            assert!(benefits.contains(benefit), "no {benefit} facts");
        }
        assert!(all.iter().any(|f| f.kind == pb::RecordKind::Retraction as i32));
        assert!(
            all.iter()
                .any(|f| f.kind == pb::RecordKind::Correction as i32 && !f.retroactive)
        );
        assert!(all.iter().any(|f| f.retroactive));
        assert!(
            all.iter()
                .any(|f| matches!(&f.body, Some(Body::Person(p)) if p.protected_identity))
        );
        assert!(
            all.iter()
                .any(|f| matches!(&f.body, Some(Body::Person(p)) if !p.date_of_death.is_empty()))
        );
    }

    #[test]
    fn a_million_persons_get_numbers_of_their_own_in_the_test_range() {
        // The scale benchmark's register (`lefi bench delivery --persons 1000000`): the draw
        // widens once the 1935–2004 numbers fill up, and never repeats a number.
        let mut synth = Synth::new(7, DEFAULT_UNTIL);
        let mut before_1935 = 0;
        for _ in 0..1_000_000 {
            let (id, birth, _) = synth.identity().unwrap();
            let birth_number: u16 = id[9..12].parse().unwrap();
            assert!(
                (FIRST_BIRTH_NUMBER..=LAST_BIRTH_NUMBER).contains(&birth_number),
                "{id}"
            );
            if birth < date!(1935 - 01 - 01) {
                before_1935 += 1;
            }
        }
        assert_eq!(synth.used.len(), 1_000_000);
        assert!(before_1935 > 0, "the wider range was drawn from");
    }

    #[test]
    fn rehabilitation_leaves_every_other_fact_as_it_was() {
        // The facts other than RP's are the same whatever rehabilitation draws: RP's draws come
        // from their own stream (here replaced by another one).
        let all = facts(7, 300);
        let rp = all.iter().filter(|f| f.benefit_type == "RP").count();
        assert!(rp > 0, "some long sickness cases have rehabilitation");
        let mut without = Synth::new(7, DEFAULT_UNTIL);
        without.rehab_rng = ChaCha8Rng::seed_from_u64(0);
        let others = |facts: Vec<admin_pb::Fact>| -> Vec<admin_pb::Fact> {
            facts.into_iter().filter(|f| f.benefit_type != "RP").collect()
        };
        let mut other_stream = Vec::new();
        for _ in 0..300 {
            other_stream.extend(without.next_person().unwrap());
        }
        assert_eq!(others(all), others(other_stream));
    }

    #[test]
    fn payments_lag_as_the_agency_publishes() {
        use crate::domain::clock::parse_date;
        use crate::domain::register::DateRange;
        use crate::domain::statistics::coverage::{YearMonth, coverage, recorded_days_from_payments};
        let all = facts(42, 1_500);
        let curve = |benefit: &str| {
            let payments: Vec<(DateRange, Date)> = all
                .iter()
                .filter(|f| f.benefit_type == benefit && f.kind == pb::RecordKind::New as i32)
                .filter_map(|f| match &f.body {
                    Some(Body::Payment(p)) => {
                        let covered = p.covered.as_ref()?;
                        Some((
                            DateRange {
                                from: parse_date(&covered.from)?,
                                to: parse_date(&covered.to),
                            },
                            parse_date(&p.payment_date)?,
                        ))
                    }
                    _ => None,
                })
                .collect();
            coverage(
                &recorded_days_from_payments(&payments),
                YearMonth::of(DEFAULT_UNTIL),
                15,
            )
            .curve
        };
        // About three months for sickness and parental benefit, about nine for sickness
        // compensation.
        let sickness = curve("SJP");
        assert!(sickness[1] < 0.95 && sickness[4] >= 0.95, "{sickness:?}");
        let parental = curve("FP");
        assert!(
            parental[1] < 0.95 && parental[2] < 0.95 && parental[4] >= 0.95,
            "{parental:?}"
        );
        let rehabilitation = curve("RP");
        assert!(
            rehabilitation[1] < 0.95 && rehabilitation[4] >= 0.95,
            "{rehabilitation:?}"
        );
        let compensation = curve("SA");
        assert!(
            compensation[4] < 0.95 && compensation[10] >= 0.95,
            "{compensation:?}"
        );
    }
}
