//! Monthly payments for stretches of compensation.

use rand::Rng;
use time::{Date, Duration};

use super::Synth;
use super::facts::{
    Case, PersonFacts, Stretch, days_between, first_of_month, last_of_month, line, next_month, payday_after,
    payment,
};
use crate::domain::clock::format_date;

/// Tax withheld from a synthetic benefit payment, in percent of the gross amount.
const TAX_PERCENT: i64 = 30;

/// How many months late a month's payment comes, beyond the usual payday, by weight: the register
/// fills backwards in time as the agency publishes (about three months for sickness,
/// rehabilitation and parental benefit; about nine for sickness and activity compensation, granted
/// late and back-paid). Other benefits are paid on time. Statistics orders' coverage reads this.
fn lag_weights(benefit: &str) -> &'static [u32] {
    match benefit {
        "SJP" | "RP" | "FP" => &[60, 25, 10, 5],
        "SA" => &[30, 10, 10, 10, 8, 8, 8, 6, 5, 5],
        _ => &[1],
    }
}

impl Synth {
    /// Monthly payments for `stretches` (one per calendar month they touch, paid on the 25th of
    /// the next month or some months later by the benefit's [`lag_weights`], up to `until`), some
    /// preliminary then corrected, some back-paid, a few retracted. `karens_ore` is deducted from
    /// the first payment.
    pub(super) fn monthly_payments(
        &mut self,
        p: &mut PersonFacts,
        case: &Case,
        stretches: &[Stretch],
        karens_ore: i64,
    ) {
        let until = self.until;
        let (Some(first), Some(last)) = (stretches.first(), stretches.last()) else {
            return;
        };
        let payer = if case.benefit == "AP" { "PM" } else { "FK" };
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
            let payday = self.late(payday_after(cov_to), case.benefit);
            if payday > until {
                // Not paid yet as of `until`.
                continue;
            }
            let mut lines = vec![line("GRUND", base)];
            if first_payment && karens_ore > 0 {
                lines.push(line("KARENSAVDRAG", -karens_ore.min(base)));
            }
            first_payment = false;
            let gross: i64 = lines.iter().map(|l| l.amount_ore).sum();
            let what = format!("PAY-{}", format_date(ms));
            let preliminary = self.rng.random_bool(0.05);
            let pay = |lines, preliminary, paid| {
                payment(
                    &case.id,
                    paid,
                    (cov_from, cov_to),
                    lines,
                    TAX_PERCENT,
                    preliminary,
                    payer,
                )
            };
            p.new_fact(
                case.benefit,
                &case.fact(&what),
                false,
                pay(lines.clone(), preliminary, payday),
            );
            if preliminary {
                // The final figures follow as a correction of the same payment.
                let adjust = self.rng.random_range(-5_000..=5_000);
                let mut final_lines = lines;
                final_lines.push(line("JUSTERING", adjust));
                let final_gross = (gross + adjust).max(0);
                if let Some(line) = final_lines.last_mut() {
                    line.amount_ore = final_gross - gross;
                }
                p.correct(case.benefit, &case.fact(&what), pay(final_lines, false, payday));
            } else if self.rng.random_bool(0.01) {
                // Paid in error and withdrawn.
                p.retract(case.benefit, &case.fact(&what));
            }
            if self.rng.random_bool(0.03) {
                // A back payment (efterbetalning) for this month, paid later.
                let later = payday + Duration::days(self.rng.random_range(20..90));
                if later <= until {
                    let amount = first.daily_ore * self.rng.random_range(1..=5);
                    p.new_fact(
                        case.benefit,
                        &case.fact(&format!("{what}-EFTER")),
                        true,
                        pay(vec![line("EFTERBETALNING", amount)], false, later),
                    );
                }
            }
        }
    }

    /// `payday` moved by a lag drawn from the benefit's [`lag_weights`] (whole months).
    fn late(&mut self, payday: Date, benefit: &str) -> Date {
        let weights = lag_weights(benefit);
        let total: u32 = weights.iter().sum();
        let mut draw = self.rng.random_range(0..total);
        let mut months = 0;
        for (lag, w) in weights.iter().enumerate() {
            if draw < *w {
                months = lag;
                break;
            }
            draw -= w;
        }
        let mut day = payday;
        for _ in 0..months {
            day = next_month(day).replace_day(25).unwrap_or(day);
        }
        day
    }
}
