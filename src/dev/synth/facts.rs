//! The facts of one synthetic person as they are built, the bodies they carry, and the calendar
//! arithmetic of benefit periods and paydays.

use time::{Date, Duration, Month};

use crate::domain::clock::format_date;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

pub(super) type Body = admin_pb::fact::Body;

/// The facts of one person being built.
pub(super) struct PersonFacts {
    pub(super) source_system: String,
    pub(super) person_id: String,
    /// What every source id of this person starts with, e.g. `P0000042`.
    pub(super) prefix: String,
    pub(super) facts: Vec<admin_pb::Fact>,
}

/// A benefit case of one person. Its id is the person's prefix and the tag (`P0000042-SJP0`), and
/// the source ids of its facts are the prefix, the tag and what the fact is (`…-SJP0-DEC`).
pub(super) struct Case {
    pub(super) benefit: &'static str,
    pub(super) id: String,
    tag: String,
}

impl Case {
    /// The source-id suffix of the case's fact `what`.
    pub(super) fn fact(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }
}

/// One stretch of compensation: days, and the daily amount at its extent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stretch {
    pub(super) from: Date,
    pub(super) to: Date,
    pub(super) daily_ore: i64,
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

    /// The first version of a fact.
    pub(super) fn new_fact(&mut self, benefit: &str, suffix: &str, retro: bool, body: Body) {
        self.push(benefit, suffix, 1, pb::RecordKind::New, retro, Some(body));
    }

    /// A second version of a fact that corrects the first.
    pub(super) fn correct(&mut self, benefit: &str, suffix: &str, body: Body) {
        self.push(benefit, suffix, 2, pb::RecordKind::Correction, false, Some(body));
    }

    /// A second version of a fact that retracts the first.
    pub(super) fn retract(&mut self, benefit: &str, suffix: &str) {
        self.push(benefit, suffix, 2, pb::RecordKind::Retraction, false, None);
    }

    /// Opens a case of `benefit` on `opened` (its `CASE` fact) and returns it.
    pub(super) fn open_case(&mut self, benefit: &'static str, tag: String, opened: Date) -> Case {
        let case = Case {
            benefit,
            id: format!("{}-{tag}", self.prefix),
            tag,
        };
        self.new_fact(
            benefit,
            &case.fact("CASE"),
            false,
            case_body(&case.id, opened, None),
        );
        case
    }

    /// The decision `DEC` that grants the case's benefit from `effective`, made on `decided`.
    pub(super) fn grant(&mut self, case: &Case, effective: Date, decided: Date, retro: bool) {
        let body = decision(&case.id, pb::DecisionKind::Granted, effective, decided);
        self.new_fact(case.benefit, &case.fact("DEC"), retro, body);
    }

    /// A compensation period of the case at `extent` of `full_daily_ore` a day (its fact `what`),
    /// returned as a stretch to pay.
    pub(super) fn compensate(
        &mut self,
        case: &Case,
        what: &str,
        (from, to): (Date, Date),
        extent: pb::CompensationExtent,
        full_daily_ore: i64,
    ) -> Stretch {
        let daily_ore = daily_at(extent, full_daily_ore);
        self.new_fact(
            case.benefit,
            &case.fact(what),
            false,
            Body::CompensationPeriod(pb::CompensationPeriod {
                case_id: case.id.clone(),
                from: format_date(from),
                to: format_date(to),
                extent: extent as i32,
                daily_amount_ore: daily_ore,
            }),
        );
        Stretch { from, to, daily_ore }
    }
}

/// The daily amount at `extent` of a full day's `full_daily_ore`.
pub(super) fn daily_at(extent: pb::CompensationExtent, full_daily_ore: i64) -> i64 {
    let quarters = match extent {
        pb::CompensationExtent::ThreeQuarters => 3,
        pb::CompensationExtent::Half => 2,
        pb::CompensationExtent::OneQuarter => 1,
        _ => 4,
    };
    full_daily_ore * quarters / 4
}

/// A person's own data; `died` sets the date of death.
pub(super) fn person(name: String, protected: bool, died: Option<Date>) -> Body {
    Body::Person(admin_pb::PersonUpdate {
        name,
        protected_identity: protected,
        date_of_death: died.map(format_date).unwrap_or_default(),
    })
}

/// A case, open or (with `closed`) closed.
pub(super) fn case_body(case_id: &str, opened: Date, closed: Option<Date>) -> Body {
    let status = match closed {
        Some(_) => pb::BenefitCaseStatus::Closed,
        None => pb::BenefitCaseStatus::Open,
    };
    Body::Case(pb::BenefitCase {
        case_id: case_id.to_string(),
        parent_case_id: String::new(),
        opened: format_date(opened),
        closed: closed.map(format_date).unwrap_or_default(),
        status: status as i32,
    })
}

pub(super) fn decision(case_id: &str, kind: pb::DecisionKind, effective: Date, decided: Date) -> Body {
    Body::Decision(pb::Decision {
        case_id: case_id.to_string(),
        kind: kind as i32,
        effective_from: format_date(effective),
        decided_on: format_date(decided),
    })
}

pub(super) fn event(kind: pb::PersonEventKind, day: Date) -> Body {
    Body::PersonEvent(pb::PersonEvent {
        kind: kind as i32,
        event_date: format_date(day),
    })
}

/// A payment of `lines` (the gross amount is their sum) on `paid` for the days `covered`, with
/// `tax_percent` of the gross withheld.
pub(super) fn payment(
    case_id: &str,
    paid: Date,
    (from, to): (Date, Date),
    lines: Vec<pb::AmountLine>,
    tax_percent: i64,
    preliminary: bool,
    payer: &str,
) -> Body {
    let gross_ore: i64 = lines.iter().map(|l| l.amount_ore).sum();
    Body::Payment(pb::Payment {
        case_id: case_id.to_string(),
        payment_date: format_date(paid),
        covered: Some(pb::DateRange {
            from: format_date(from),
            to: format_date(to),
        }),
        gross_ore,
        tax_ore: gross_ore * tax_percent / 100,
        preliminary,
        lines,
        payer: payer.to_string(),
    })
}

pub(super) fn line(amount_type: &str, amount_ore: i64) -> pb::AmountLine {
    pb::AmountLine {
        amount_type: amount_type.to_string(),
        amount_ore,
    }
}

pub(super) fn first_of_month(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

pub(super) fn last_of_month(d: Date) -> Date {
    let days = time::util::days_in_month(d.month(), d.year());
    d.replace_day(days).unwrap_or(d)
}

pub(super) fn next_month(d: Date) -> Date {
    last_of_month(d) + Duration::days(1)
}

/// The 25th of the month after `d` (FK's usual payment day).
pub(super) fn payday_after(d: Date) -> Date {
    next_month(d).replace_day(25).unwrap_or(d)
}

pub(super) fn add_years(d: Date, years: i32) -> Date {
    let year = d.year() + years;
    Date::from_calendar_date(year, d.month(), d.day())
        .or_else(|_| Date::from_calendar_date(year, Month::February, 28))
        .unwrap_or(d)
}

pub(super) fn days_between(from: Date, to: Date) -> i64 {
    (to - from).whole_days()
}
