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
//! **Identity numbers.** Every number has a birth number (digits 9–11) between 980 and 999: the
//! range that Skatteverket's published test numbers use (e.g. 18991223-9812, 930302+9806), set
//! apart so that tests never collide with real people. Synthetic data never uses another range;
//! still, load it only into test or demo databases. The source system is `SYNTH` (`SYNTH-DEMO`
//! for the `serve --dev` demo).

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, Month, macros::date};

use crate::domain::Personnummer;
use crate::domain::clock::format_date;
use crate::domain::personnummer::luhn_check_digit;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

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

/// Makes synthetic persons one at a time.
pub struct Synth {
    rng: ChaCha8Rng,
    until: Date,
    used: HashSet<String>,
    next_index: usize,
    source_system: String,
    id_prefix: String,
}

type Body = admin_pb::fact::Body;

/// The facts of one person being built.
struct PersonFacts {
    source_system: String,
    person_id: String,
    prefix: String,
    facts: Vec<admin_pb::Fact>,
}

impl PersonFacts {
    fn push(
        &mut self,
        benefit: &str,
        suffix: &str,
        version: u64,
        kind: pb::RecordKind,
        retro: bool,
        body: Option<Body>,
    ) {
        self.facts.push(admin_pb::Fact {
            source_system: self.source_system.clone(),
            source_id: format!("{}-{suffix}", self.prefix),
            source_version: version,
            person_id: self.person_id.clone(),
            benefit_type: benefit.to_string(),
            kind: kind as i32,
            valid: None,
            retroactive: retro,
            body,
        });
    }

    fn new_fact(&mut self, benefit: &str, suffix: &str, retro: bool, body: Body) {
        self.push(benefit, suffix, 1, pb::RecordKind::New, retro, Some(body));
    }
}

/// One stretch of compensation: days, and the daily amount at its extent.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    from: Date,
    to: Date,
    daily_ore: i64,
}

const FEMALE: &[&str] = &[
    "Anna",
    "Eva",
    "Maria",
    "Karin",
    "Sara",
    "Lena",
    "Emma",
    "Kerstin",
    "Ingrid",
    "Sofia",
    "Marie",
    "Malin",
    "Elin",
    "Ida",
    "Linnea",
    "Johanna",
    "Birgitta",
    "Ulla",
    "Hanna",
    "Astrid",
    "Maja",
    "Elsa",
    "Ebba",
    "Saga",
    "Alva",
    "Agnes",
    "Wilma",
    "Inger",
    "Margareta",
    "Camilla",
];
const MALE: &[&str] = &[
    "Lars", "Anders", "Johan", "Per", "Erik", "Karl", "Mikael", "Peter", "Jan", "Thomas", "Daniel",
    "Fredrik", "Hans", "Bengt", "Magnus", "Nils", "Oskar", "Lucas", "William", "Hugo", "Axel", "Elias",
    "Liam", "Gustav", "Olof", "Sven", "Stefan", "Mats", "Göran", "Björn",
];
const SURNAMES: &[&str] = &[
    "Andersson",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Persson",
    "Svensson",
    "Gustafsson",
    "Pettersson",
    "Jonsson",
    "Jansson",
    "Hansson",
    "Bengtsson",
    "Jönsson",
    "Lindberg",
    "Jakobsson",
    "Magnusson",
    "Olofsson",
    "Lindström",
    "Lindqvist",
    "Lindgren",
    "Berg",
    "Axelsson",
    "Bergström",
    "Lundberg",
    "Lind",
    "Lundgren",
    "Lundqvist",
    "Mattsson",
    "Berglund",
    "Fredriksson",
    "Sandberg",
    "Henriksson",
    "Forsberg",
    "Sjöberg",
    "Wallin",
    "Engström",
    "Ali",
];

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.get(rng.random_range(0..list.len()))
        .copied()
        .unwrap_or("Test")
}

fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

fn last_of_month(d: Date) -> Date {
    let days = time::util::days_in_month(d.month(), d.year());
    d.replace_day(days).unwrap_or(d)
}

fn next_month(d: Date) -> Date {
    last_of_month(d) + Duration::days(1)
}

/// The 25th of the month after `d` (FK's usual payment day).
fn payday_after(d: Date) -> Date {
    next_month(d).replace_day(25).unwrap_or(d)
}

fn add_years(d: Date, years: i32) -> Date {
    let year = d.year() + years;
    Date::from_calendar_date(year, d.month(), d.day())
        .or_else(|_| Date::from_calendar_date(year, Month::February, 28))
        .unwrap_or(d)
}

fn days_between(from: Date, to: Date) -> i64 {
    (to - from).whole_days()
}

fn range(from: Date, to: Date) -> pb::DateRange {
    pb::DateRange {
        from: format_date(from),
        to: format_date(to),
    }
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
            until,
            used: HashSet::new(),
            next_index: 0,
            source_system: source_system.to_string(),
            id_prefix: id_prefix.to_string(),
        }
    }

    /// A synthetic identity number (12 digits with a dash before the last four), its birth date
    /// and whether the birth number marks a woman.
    fn identity(&mut self) -> Result<(String, Date, bool), SynthError> {
        for _ in 0..10_000 {
            let birth = date!(1935 - 01 - 01) + Duration::days(self.rng.random_range(0..25_550));
            if birth > self.until - Duration::days(365 * 18) && self.rng.random_bool(0.7) {
                // Fewer children than adults in the register.
                continue;
            }
            let number = self.rng.random_range(FIRST_BIRTH_NUMBER..=LAST_BIRTH_NUMBER);
            let coordination = self.rng.random_bool(0.02);
            let day = u16::from(birth.day()) + if coordination { 60 } else { 0 };
            let yymmdd = format!(
                "{:02}{:02}{:02}",
                birth.year().rem_euclid(100),
                u8::from(birth.month()),
                day
            );
            let nine: Vec<u8> = format!("{yymmdd}{number:03}").bytes().map(|b| b - b'0').collect();
            let check = luhn_check_digit(&nine);
            let digits = format!("{}{}{number:03}{check}", birth.year() / 100, yymmdd);
            if self.used.contains(&digits) || Personnummer::from_storage(&digits).is_err() {
                continue;
            }
            self.used.insert(digits.clone());
            let display = format!("{}-{}", &digits[..8], &digits[8..]);
            return Ok((display, birth, number % 2 == 0));
        }
        Err(SynthError::IdentitiesExhausted)
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
        let first = if female {
            pick(&mut self.rng, FEMALE)
        } else {
            pick(&mut self.rng, MALE)
        };
        let name = format!("{first} {}", pick(&mut self.rng, SURNAMES));
        let protected = self.rng.random_bool(0.015);
        p.push(
            "",
            "PERSON",
            1,
            pb::RecordKind::New,
            false,
            Some(Body::Person(admin_pb::PersonUpdate {
                name: name.clone(),
                protected_identity: protected,
                date_of_death: String::new(),
            })),
        );

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
                self.sick_case(&mut p, c, alive_until);
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
            p.push(
                "",
                "PERSON",
                2,
                pb::RecordKind::Correction,
                false,
                Some(Body::Person(admin_pb::PersonUpdate {
                    name,
                    protected_identity: protected,
                    date_of_death: format_date(death),
                })),
            );
            p.new_fact(
                "",
                "DEATH",
                false,
                Body::PersonEvent(pb::PersonEvent {
                    kind: pb::PersonEventKind::DeathRegistered as i32,
                    event_date: format_date(death),
                }),
            );
        }
        Ok(p.facts)
    }

    /// Monthly payments for `stretches` (one per calendar month they touch, paid on the 25th of
    /// the next month, up to `until`), some preliminary then corrected, some back-paid, a few
    /// retracted. `karens_ore` is deducted from the first payment.
    fn monthly_payments(
        &mut self,
        p: &mut PersonFacts,
        benefit: &str,
        case_id: &str,
        tag: &str,
        stretches: &[Stretch],
        karens_ore: i64,
    ) {
        let until = self.until;
        let (Some(first), Some(last)) = (stretches.first(), stretches.last()) else {
            return;
        };
        let mut month = first_of_month(first.from);
        let mut first_payment = true;
        while month <= last.to {
            let (ms, me) = (month, last_of_month(month));
            month = next_month(month);
            let mut base = 0i64;
            let (mut cov_from, mut cov_to) = (None, None);
            for s in stretches {
                let from = s.from.max(ms);
                let to = s.to.min(me);
                if from > to {
                    continue;
                }
                base += (days_between(from, to) + 1) * s.daily_ore;
                cov_from = Some(cov_from.map_or(from, |f: Date| f.min(from)));
                cov_to = Some(cov_to.map_or(to, |t: Date| t.max(to)));
            }
            let (Some(cov_from), Some(cov_to)) = (cov_from, cov_to) else {
                continue;
            };
            let payday = payday_after(cov_to);
            if payday > until {
                break;
            }
            let mut lines = vec![pb::AmountLine {
                amount_type: "GRUND".into(),
                amount_ore: base,
            }];
            if first_payment && karens_ore > 0 {
                lines.push(pb::AmountLine {
                    amount_type: "KARENSAVDRAG".into(),
                    amount_ore: -karens_ore.min(base),
                });
            }
            first_payment = false;
            let gross: i64 = lines.iter().map(|l| l.amount_ore).sum();
            let suffix = format!("{tag}-PAY-{}", format_date(ms));
            let preliminary = self.rng.random_bool(0.05);
            let payment = |gross: i64, lines: Vec<pb::AmountLine>, preliminary: bool, payday: Date| {
                Body::Payment(pb::Payment {
                    case_id: case_id.to_string(),
                    payment_date: format_date(payday),
                    covered: Some(range(cov_from, cov_to)),
                    gross_ore: gross,
                    tax_ore: gross * 30 / 100,
                    preliminary,
                    lines,
                    payer: if benefit == "AP" { "PM" } else { "FK" }.to_string(),
                })
            };
            p.new_fact(
                benefit,
                &suffix,
                false,
                payment(gross, lines.clone(), preliminary, payday),
            );
            if preliminary {
                // The final figures follow as a correction of the same payment.
                let adjust = self.rng.random_range(-5_000..=5_000);
                let mut final_lines = lines.clone();
                final_lines.push(pb::AmountLine {
                    amount_type: "JUSTERING".into(),
                    amount_ore: adjust,
                });
                let final_gross = (gross + adjust).max(0);
                if let Some(line) = final_lines.last_mut() {
                    line.amount_ore = final_gross - gross;
                }
                p.push(
                    benefit,
                    &suffix,
                    2,
                    pb::RecordKind::Correction,
                    false,
                    Some(payment(final_gross, final_lines, false, payday)),
                );
            } else if self.rng.random_bool(0.01) {
                // Paid in error and withdrawn.
                p.push(benefit, &suffix, 2, pb::RecordKind::Retraction, false, None);
            }
            if self.rng.random_bool(0.03) {
                // A back payment (efterbetalning) for this month, paid later.
                let later = payday + Duration::days(self.rng.random_range(20..90));
                if later <= until {
                    let amount = stretches[0].daily_ore * self.rng.random_range(1..=5);
                    p.new_fact(
                        benefit,
                        &format!("{suffix}-EFTER"),
                        true,
                        payment(
                            amount,
                            vec![pb::AmountLine {
                                amount_type: "EFTERBETALNING".into(),
                                amount_ore: amount,
                            }],
                            false,
                            later,
                        ),
                    );
                }
            }
        }
    }

    /// A sickness case: opened, compensated in stretches of varying extent, decided retroactively,
    /// paid monthly, and closed with its event when it ended.
    fn sick_case(&mut self, p: &mut PersonFacts, n: u32, alive_until: Date) {
        let earliest = self.until - Duration::days(3 * 365);
        let span = days_between(earliest, alive_until) - 20;
        if span <= 0 {
            return;
        }
        let start = earliest + Duration::days(self.rng.random_range(0..span));
        let length = if self.rng.random_bool(0.7) {
            self.rng.random_range(8..=45)
        } else {
            self.rng.random_range(46..=300)
        };
        let end = (start + Duration::days(length)).min(alive_until);
        let closed = end < alive_until || alive_until < self.until;
        let case_id = format!("{}-SJP{n}", p.prefix);
        let tag = format!("SJP{n}");
        p.new_fact(
            "SJP",
            &format!("{tag}-CASE"),
            false,
            Body::Case(pb::BenefitCase {
                case_id: case_id.clone(),
                parent_case_id: String::new(),
                opened: format_date(start),
                closed: String::new(),
                status: pb::BenefitCaseStatus::Open as i32,
            }),
        );
        let effective = start + Duration::days(1);
        let decided = start + Duration::days(self.rng.random_range(5..25));
        if decided <= self.until {
            p.new_fact(
                "SJP",
                &format!("{tag}-DEC"),
                decided > effective,
                Body::Decision(pb::Decision {
                    case_id: case_id.clone(),
                    kind: pb::DecisionKind::Granted as i32,
                    effective_from: format_date(effective),
                    decided_on: format_date(decided),
                }),
            );
        }
        let full_daily = self.rng.random_range(40_000..=116_000);
        let mut stretches = Vec::new();
        let mut from = effective;
        let mut k = 0;
        while from <= end {
            let to = if k == 0 && end > from + Duration::days(14) && self.rng.random_bool(0.5) {
                from + Duration::days(self.rng.random_range(14..=30)).min(end - from)
            } else {
                end
            };
            let extent = if k == 0 {
                pb::CompensationExtent::Full
            } else {
                match self.rng.random_range(0..3) {
                    0 => pb::CompensationExtent::ThreeQuarters,
                    1 => pb::CompensationExtent::Half,
                    _ => pb::CompensationExtent::OneQuarter,
                }
            };
            let quarters = match extent {
                pb::CompensationExtent::ThreeQuarters => 3,
                pb::CompensationExtent::Half => 2,
                pb::CompensationExtent::OneQuarter => 1,
                _ => 4,
            };
            let daily = full_daily * quarters / 4;
            p.new_fact(
                "SJP",
                &format!("{tag}-PER{k}"),
                false,
                Body::CompensationPeriod(pb::CompensationPeriod {
                    case_id: case_id.clone(),
                    from: format_date(from),
                    to: format_date(to),
                    extent: extent as i32,
                    daily_amount_ore: daily,
                }),
            );
            stretches.push(Stretch {
                from,
                to,
                daily_ore: daily,
            });
            from = to + Duration::days(1);
            k += 1;
        }
        self.monthly_payments(p, "SJP", &case_id, &tag, &stretches, full_daily * 8 / 10);
        if closed {
            p.push(
                "SJP",
                &format!("{tag}-CASE"),
                2,
                pb::RecordKind::Correction,
                false,
                Some(Body::Case(pb::BenefitCase {
                    case_id,
                    parent_case_id: String::new(),
                    opened: format_date(start),
                    closed: format_date(end),
                    status: pb::BenefitCaseStatus::Closed as i32,
                })),
            );
            p.new_fact(
                "SJP",
                &format!("{tag}-CLOSED"),
                false,
                Body::PersonEvent(pb::PersonEvent {
                    kind: pb::PersonEventKind::SicknessCaseClosed as i32,
                    event_date: format_date(end),
                }),
            );
        }
    }

    /// Parental benefit after a birth: blocks of days at full, half, three-quarter or quarter extent.
    fn parental(&mut self, p: &mut PersonFacts, alive_until: Date) {
        let earliest = self.until - Duration::days(3 * 365);
        let span = days_between(earliest, alive_until) - 60;
        if span <= 0 {
            return;
        }
        let birth = earliest + Duration::days(self.rng.random_range(0..span));
        let case_id = format!("{}-FP", p.prefix);
        p.new_fact(
            "FP",
            "FP-CASE",
            false,
            Body::Case(pb::BenefitCase {
                case_id: case_id.clone(),
                parent_case_id: String::new(),
                opened: format_date(birth),
                closed: String::new(),
                status: pb::BenefitCaseStatus::Open as i32,
            }),
        );
        p.new_fact(
            "FP",
            "FP-DEC",
            false,
            Body::Decision(pb::Decision {
                case_id: case_id.clone(),
                kind: pb::DecisionKind::Granted as i32,
                effective_from: format_date(birth),
                decided_on: format_date(birth + Duration::days(self.rng.random_range(0..20))),
            }),
        );
        let full_daily = self.rng.random_range(25_000..=104_000);
        let mut from = birth + Duration::days(self.rng.random_range(0..120));
        let mut stretches = Vec::new();
        let mut used = 0;
        let mut k = 0;
        while from < alive_until && used < 390 && k < 12 {
            let len = self.rng.random_range(7..=60);
            let to = (from + Duration::days(len - 1)).min(alive_until);
            let (extent, quarters) = match self.rng.random_range(0..20) {
                0..=11 => (pb::CompensationExtent::Full, 4),
                12..=16 => (pb::CompensationExtent::Half, 2),
                17 => (pb::CompensationExtent::ThreeQuarters, 3),
                _ => (pb::CompensationExtent::OneQuarter, 1),
            };
            let daily = full_daily * quarters / 4;
            p.new_fact(
                "FP",
                &format!("FP-PER{k}"),
                false,
                Body::CompensationPeriod(pb::CompensationPeriod {
                    case_id: case_id.clone(),
                    from: format_date(from),
                    to: format_date(to),
                    extent: extent as i32,
                    daily_amount_ore: daily,
                }),
            );
            stretches.push(Stretch {
                from,
                to,
                daily_ore: daily,
            });
            used += len;
            from = to + Duration::days(1 + self.rng.random_range(0..60));
            k += 1;
        }
        self.monthly_payments(p, "FP", &case_id, "FP", &stretches, 0);
    }

    /// Sickness or activity compensation: a long case, a decision, yearly periods, monthly payments
    /// for the last two years.
    fn activity_compensation(&mut self, p: &mut PersonFacts, alive_until: Date) {
        let opened = self.until - Duration::days(self.rng.random_range(365..3000));
        if opened >= alive_until {
            return;
        }
        let case_id = format!("{}-SA", p.prefix);
        p.new_fact(
            "SA",
            "SA-CASE",
            false,
            Body::Case(pb::BenefitCase {
                case_id: case_id.clone(),
                parent_case_id: String::new(),
                opened: format_date(opened),
                closed: String::new(),
                status: pb::BenefitCaseStatus::Open as i32,
            }),
        );
        let decided = opened + Duration::days(self.rng.random_range(30..200));
        p.new_fact(
            "SA",
            "SA-DEC",
            true,
            Body::Decision(pb::Decision {
                case_id: case_id.clone(),
                kind: pb::DecisionKind::Granted as i32,
                effective_from: format_date(opened),
                decided_on: format_date(decided.min(self.until)),
            }),
        );
        let half = self.rng.random_bool(0.3);
        let (extent, quarters) = if half {
            (pb::CompensationExtent::Half, 2)
        } else {
            (pb::CompensationExtent::Full, 4)
        };
        let daily = self.rng.random_range(28_000..=60_000) * quarters / 4;
        let mut from = opened;
        while from <= alive_until {
            let to = Date::from_calendar_date(from.year(), Month::December, 31)
                .unwrap_or(from)
                .min(alive_until);
            p.new_fact(
                "SA",
                &format!("SA-PER{}", from.year()),
                false,
                Body::CompensationPeriod(pb::CompensationPeriod {
                    case_id: case_id.clone(),
                    from: format_date(from),
                    to: format_date(to),
                    extent: extent as i32,
                    daily_amount_ore: daily,
                }),
            );
            from = to + Duration::days(1);
        }
        let window = first_of_month(self.until - Duration::days(730)).max(opened);
        let stretches = [Stretch {
            from: window,
            to: alive_until,
            daily_ore: daily,
        }];
        self.monthly_payments(p, "SA", &case_id, "SA", &stretches, 0);
    }

    /// Old-age pension from 65: a decision, monthly payments for the last two years, and now and
    /// then a missing life certificate (blocked, then reopened with a back payment).
    fn pension(&mut self, p: &mut PersonFacts, birth: Date, alive_until: Date) {
        let effective = next_month(add_years(birth, 65));
        let case_id = format!("{}-AP", p.prefix);
        p.new_fact(
            "AP",
            "AP-CASE",
            false,
            Body::Case(pb::BenefitCase {
                case_id: case_id.clone(),
                parent_case_id: String::new(),
                opened: format_date(effective - Duration::days(60)),
                closed: String::new(),
                status: pb::BenefitCaseStatus::Open as i32,
            }),
        );
        p.new_fact(
            "AP",
            "AP-DEC",
            false,
            Body::Decision(pb::Decision {
                case_id: case_id.clone(),
                kind: pb::DecisionKind::Granted as i32,
                effective_from: format_date(effective),
                decided_on: format_date(effective - Duration::days(30)),
            }),
        );
        let monthly = self.rng.random_range(900_000..=2_600_000);
        let mut blocked: Option<(Date, Date)> = None;
        if self.rng.random_bool(0.03) {
            let from = first_of_month(self.until - Duration::days(self.rng.random_range(90..360)));
            let to = last_of_month(from + Duration::days(self.rng.random_range(20..50)));
            if to < alive_until {
                blocked = Some((from, to));
            }
        }
        let mut month = first_of_month(self.until - Duration::days(730)).max(effective);
        while month <= alive_until {
            let me = last_of_month(month);
            let payday = month.replace_day(19).unwrap_or(month);
            let in_block = blocked.is_some_and(|(f, t)| month >= f && month <= t);
            if payday <= self.until && !in_block {
                let guarantee = monthly / 5;
                p.new_fact(
                    "AP",
                    &format!("AP-PAY-{}", format_date(month)),
                    false,
                    Body::Payment(pb::Payment {
                        case_id: case_id.clone(),
                        payment_date: format_date(payday),
                        covered: Some(range(month, me)),
                        gross_ore: monthly,
                        tax_ore: monthly / 4,
                        preliminary: false,
                        lines: vec![
                            pb::AmountLine {
                                amount_type: "INKOMSTPENSION".into(),
                                amount_ore: monthly - guarantee,
                            },
                            pb::AmountLine {
                                amount_type: "GARANTIPENSION".into(),
                                amount_ore: guarantee,
                            },
                        ],
                        payer: "PM".into(),
                    }),
                );
            }
            month = next_month(month);
        }
        if let Some((from, to)) = blocked {
            let event = |kind: pb::PersonEventKind, day: Date| {
                Body::PersonEvent(pb::PersonEvent {
                    kind: kind as i32,
                    event_date: format_date(day),
                })
            };
            let decision = |kind: pb::DecisionKind, day: Date| {
                Body::Decision(pb::Decision {
                    case_id: case_id.clone(),
                    kind: kind as i32,
                    effective_from: format_date(day),
                    decided_on: format_date(day),
                })
            };
            let received = to + Duration::days(1);
            p.new_fact(
                "AP",
                "AP-LIV-MISSING",
                false,
                event(pb::PersonEventKind::LifeCertificateMissing, from),
            );
            p.new_fact("AP", "AP-BLOCK", false, decision(pb::DecisionKind::Blocked, from));
            p.new_fact(
                "AP",
                "AP-LIV-RECEIVED",
                false,
                event(pb::PersonEventKind::LifeCertificateReceived, received),
            );
            p.new_fact(
                "AP",
                "AP-UNBLOCK",
                false,
                decision(pb::DecisionKind::Unblocked, received),
            );
            let months = i64::from(u8::from(to.month())) - i64::from(u8::from(from.month())) + 1;
            let back = monthly * months.max(1);
            let payday = payday_after(received);
            if payday <= self.until {
                p.new_fact(
                    "AP",
                    "AP-EFTER",
                    true,
                    Body::Payment(pb::Payment {
                        case_id,
                        payment_date: format_date(payday),
                        covered: Some(range(from, to)),
                        gross_ore: back,
                        tax_ore: back / 4,
                        preliminary: false,
                        lines: vec![pb::AmountLine {
                            amount_type: "EFTERBETALNING".into(),
                            amount_ore: back,
                        }],
                        payer: "PM".into(),
                    }),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
