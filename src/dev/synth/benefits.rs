//! The benefits a synthetic person may have: sickness cases, parental benefit, sickness or activity
//! compensation and old-age pension, each a case with its decisions, periods and payments.

use rand::Rng;
use time::{Date, Duration, Month};

use super::Synth;
use super::facts::{
    Body, Case, PersonFacts, Stretch, add_years, case_body, daily_at, days_between, decision, event,
    first_of_month, last_of_month, line, next_month, payday_after, payment,
};
use crate::domain::clock::format_date;
use crate::grpc::pb::lefi::v1 as pb;

/// Tax withheld from a synthetic pension payment, in percent of the gross amount.
const PENSION_TAX_PERCENT: i64 = 25;

impl Synth {
    /// A random day in the last three years of the history that lies more than `margin` days
    /// before `alive_until`, or `None` when there is no such day.
    fn start_in_last_three_years(&mut self, alive_until: Date, margin: i64) -> Option<Date> {
        let earliest = self.until - Duration::days(3 * 365);
        let span = days_between(earliest, alive_until) - margin;
        (span > 0).then(|| earliest + Duration::days(self.rng.random_range(0..span)))
    }

    /// A sickness case: opened, compensated in stretches of varying extent, decided retroactively,
    /// paid monthly, and closed with its event when it ended. Returns its first and last day.
    pub(super) fn sick_case(
        &mut self,
        p: &mut PersonFacts,
        n: u32,
        alive_until: Date,
    ) -> Option<(Date, Date)> {
        let start = self.start_in_last_three_years(alive_until, 20)?;
        let length = if self.rng.random_bool(0.7) {
            self.rng.random_range(8..=45)
        } else {
            self.rng.random_range(46..=300)
        };
        let end = (start + Duration::days(length)).min(alive_until);
        let closed = end < alive_until || alive_until < self.until;
        let case = p.open_case("SJP", format!("SJP{n}"), start);
        let effective = start + Duration::days(1);
        let decided = start + Duration::days(self.rng.random_range(5..25));
        if decided <= self.until {
            p.grant(&case, effective, decided, decided > effective);
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
            stretches.push(p.compensate(&case, &format!("PER{k}"), (from, to), extent, full_daily));
            from = to + Duration::days(1);
            k += 1;
        }
        self.monthly_payments(p, &case, &stretches, full_daily * 8 / 10);
        if closed {
            p.correct(
                case.benefit,
                &case.fact("CASE"),
                case_body(&case.id, start, Some(end)),
            );
            p.new_fact(
                case.benefit,
                &case.fact("CLOSED"),
                false,
                event(pb::PersonEventKind::SicknessCaseClosed, end),
            );
        }
        Some((start, end))
    }

    /// Rehabilitation benefit (rehabiliteringspenning) during half of the sickness cases of 60 days
    /// or more: a few weeks to three months of work-oriented rehabilitation, decided, compensated in
    /// full and paid with its lag. Drawn from its own random stream (the two streams are swapped
    /// for it), so that every other draw, of this person and of every later one, is as before.
    pub(super) fn rehabilitation(&mut self, p: &mut PersonFacts, n: u32, (start, end): (Date, Date)) {
        std::mem::swap(&mut self.rng, &mut self.rehab_rng);
        let length = days_between(start, end);
        if length >= 60 && self.rng.random_bool(0.5) {
            let from = start + Duration::days(self.rng.random_range(30..length - 14));
            let to = (from + Duration::days(self.rng.random_range(14..=90))).min(end);
            let case = p.open_case("RP", format!("RP{n}"), from);
            let decided = from + Duration::days(self.rng.random_range(3..20));
            if decided <= self.until {
                p.grant(&case, from, decided, decided > from);
            }
            let full_daily = self.rng.random_range(40_000..=116_000);
            let stretch = p.compensate(
                &case,
                "PER0",
                (from, to),
                pb::CompensationExtent::Full,
                full_daily,
            );
            self.monthly_payments(p, &case, &[stretch], 0);
            if to < self.until {
                p.correct(
                    case.benefit,
                    &case.fact("CASE"),
                    case_body(&case.id, from, Some(to)),
                );
            }
        }
        std::mem::swap(&mut self.rng, &mut self.rehab_rng);
    }

    /// Parental benefit after a birth: blocks of days at full, half, three-quarter or quarter extent.
    pub(super) fn parental(&mut self, p: &mut PersonFacts, alive_until: Date) {
        let Some(birth) = self.start_in_last_three_years(alive_until, 60) else {
            return;
        };
        let case = p.open_case("FP", "FP".to_string(), birth);
        let decided = birth + Duration::days(self.rng.random_range(0..20));
        p.grant(&case, birth, decided, false);
        let full_daily = self.rng.random_range(25_000..=104_000);
        let mut from = birth + Duration::days(self.rng.random_range(0..120));
        let mut stretches = Vec::new();
        let mut used = 0;
        let mut k = 0;
        while from < alive_until && used < 390 && k < 12 {
            let len = self.rng.random_range(7..=60);
            let to = (from + Duration::days(len - 1)).min(alive_until);
            let extent = match self.rng.random_range(0..20) {
                0..=11 => pb::CompensationExtent::Full,
                12..=16 => pb::CompensationExtent::Half,
                17 => pb::CompensationExtent::ThreeQuarters,
                _ => pb::CompensationExtent::OneQuarter,
            };
            stretches.push(p.compensate(&case, &format!("PER{k}"), (from, to), extent, full_daily));
            used += len;
            from = to + Duration::days(1 + self.rng.random_range(0..60));
            k += 1;
        }
        self.monthly_payments(p, &case, &stretches, 0);
    }

    /// Sickness or activity compensation: a long case, a decision, yearly periods, monthly payments
    /// for the last two years.
    pub(super) fn activity_compensation(&mut self, p: &mut PersonFacts, alive_until: Date) {
        let opened = self.until - Duration::days(self.rng.random_range(365..3000));
        if opened >= alive_until {
            return;
        }
        let case = p.open_case("SA", "SA".to_string(), opened);
        let decided = opened + Duration::days(self.rng.random_range(30..200));
        p.grant(&case, opened, decided.min(self.until), true);
        let extent = if self.rng.random_bool(0.3) {
            pb::CompensationExtent::Half
        } else {
            pb::CompensationExtent::Full
        };
        let full_daily = self.rng.random_range(28_000..=60_000);
        let mut from = opened;
        while from <= alive_until {
            let to = Date::from_calendar_date(from.year(), Month::December, 31)
                .unwrap_or(from)
                .min(alive_until);
            p.compensate(
                &case,
                &format!("PER{}", from.year()),
                (from, to),
                extent,
                full_daily,
            );
            from = to + Duration::days(1);
        }
        let window = first_of_month(self.until - Duration::days(730)).max(opened);
        let stretches = [Stretch {
            from: window,
            to: alive_until,
            daily_ore: daily_at(extent, full_daily),
        }];
        self.monthly_payments(p, &case, &stretches, 0);
    }

    /// Old-age pension from 65: a decision, monthly payments for the last two years, and now and
    /// then a missing life certificate (blocked, then reopened with a back payment).
    pub(super) fn pension(&mut self, p: &mut PersonFacts, birth: Date, alive_until: Date) {
        let effective = next_month(add_years(birth, 65));
        let case = p.open_case("AP", "AP".to_string(), effective - Duration::days(60));
        p.grant(&case, effective, effective - Duration::days(30), false);
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
            let payday = month.replace_day(19).unwrap_or(month);
            let in_block = blocked.is_some_and(|(f, t)| month >= f && month <= t);
            if payday <= self.until && !in_block {
                let guarantee = monthly / 5;
                let lines = vec![
                    line("INKOMSTPENSION", monthly - guarantee),
                    line("GARANTIPENSION", guarantee),
                ];
                p.new_fact(
                    case.benefit,
                    &case.fact(&format!("PAY-{}", format_date(month))),
                    false,
                    pension_payment(&case, payday, (month, last_of_month(month)), lines),
                );
            }
            month = next_month(month);
        }
        if let Some((from, to)) = blocked {
            let received = to + Duration::days(1);
            for (what, body) in [
                (
                    "LIV-MISSING",
                    event(pb::PersonEventKind::LifeCertificateMissing, from),
                ),
                ("BLOCK", decision(&case.id, pb::DecisionKind::Blocked, from, from)),
                (
                    "LIV-RECEIVED",
                    event(pb::PersonEventKind::LifeCertificateReceived, received),
                ),
                (
                    "UNBLOCK",
                    decision(&case.id, pb::DecisionKind::Unblocked, received, received),
                ),
            ] {
                p.new_fact(case.benefit, &case.fact(what), false, body);
            }
            let months = i64::from(u8::from(to.month())) - i64::from(u8::from(from.month())) + 1;
            let back = monthly * months.max(1);
            let payday = payday_after(received);
            if payday <= self.until {
                p.new_fact(
                    case.benefit,
                    &case.fact("EFTER"),
                    true,
                    pension_payment(&case, payday, (from, to), vec![line("EFTERBETALNING", back)]),
                );
            }
        }
    }
}

/// A pension payment, paid by the Pensionsmyndigheten (PM).
fn pension_payment(case: &Case, paid: Date, covered: (Date, Date), lines: Vec<pb::AmountLine>) -> Body {
    payment(&case.id, paid, covered, lines, PENSION_TAX_PERCENT, false, "PM")
}
