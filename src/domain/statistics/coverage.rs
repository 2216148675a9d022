//! Coverage: how complete the register is for a month of a benefit, and so whether that month may
//! be ordered.
//!
//! Compensation days reach the register long after the month they concern (payments are made
//! afterwards, decisions are retroactive). The register keeps both time axes: the month a day
//! concerns (valid) and the month it was recorded. For months old enough to be complete ("mature"),
//! the **completion curve** says what share of their days had been recorded k months after the
//! month; a recent month of age k is then expected to be `curve[k]` complete today. A month may be
//! ordered from when that reaches [`ORDERABLE_FROM`] (95 %), as the agency publishes.

/// The share of a month's days that must be recorded before the month may be ordered.
pub const ORDERABLE_FROM: f64 = 0.95;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct YearMonth {
    pub year: i32,
    /// 1 to 12.
    pub month: u8,
}

impl YearMonth {
    pub fn new(year: i32, month: u8) -> Self {
        Self { year, month }
    }

    /// The month of a date.
    pub fn of(date: time::Date) -> Self {
        Self::new(date.year(), u8::from(date.month()))
    }

    fn index(self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        let i = self.index() + 1;
        Self::new(i.div_euclid(12) as i32, (i.rem_euclid(12) + 1) as u8)
    }

    /// Whole months from `self` to `later` (0 for the same month, negative when `later` is
    /// earlier).
    pub fn months_until(self, later: YearMonth) -> i64 {
        later.index() - self.index()
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Compensation days of a benefit: `days` of month `valid` were recorded in month `recorded`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedDays {
    pub valid: YearMonth,
    pub recorded: YearMonth,
    pub days: f64,
}

/// One month's coverage today.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonthCoverage {
    pub month: YearMonth,
    /// Its age in months today (0 = the current month).
    pub age: u32,
    /// The expected share of its days recorded by now (1.0 for a mature month).
    pub coverage: f64,
    pub orderable: bool,
}

/// A benefit's completion curve and its recent months' coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// `curve[k]`: the share of a mature month's days recorded within k months after it.
    pub curve: Vec<f64>,
    /// How many mature months the curve was drawn from (none: nothing recent is orderable).
    pub mature_months: usize,
    /// The months younger than `mature_after`, oldest first.
    pub recent: Vec<MonthCoverage>,
}

/// How many months a month needs to be complete for the curve (sickness and activity compensation
/// granted for the first time lags about nine months; this leaves room beyond that).
pub const MATURE_AFTER_MONTHS: u32 = 15;

/// The days each payment covers, by the month they concern (valid) and the month the payment was
/// made (recorded). Payments without an end to their covered period are left out.
///
/// The recorded axis is the payment's date, not the instant the log row was written: a register
/// loaded from the agency's history in one go (a migration, the synthetic demo) has every row
/// written on one day, which would show no lag at all, while the payment date is when the
/// compensation days reached the agency's books. In continuous operation the two agree to within
/// the feed's delay.
pub fn recorded_days_from_payments(
    payments: &[(crate::domain::register::DateRange, time::Date)],
) -> Vec<RecordedDays> {
    let mut out = Vec::new();
    for (covered, paid) in payments {
        let Some(to) = covered.to else {
            continue;
        };
        for (valid, days) in super::extract::days_by_month(covered.from, to) {
            out.push(RecordedDays {
                valid,
                recorded: YearMonth::of(*paid),
                days: days as f64,
            });
        }
    }
    out
}

/// Whether a period ending in `last` may be ordered: `Err` with the month's coverage when `last`
/// is a recent month that is not orderable. Months older than the recent window are complete.
pub fn check_period_end(coverage: &Coverage, last: YearMonth) -> Result<(), MonthCoverage> {
    match coverage.recent.iter().find(|m| m.month == last) {
        Some(m) if !m.orderable => Err(*m),
        _ => {
            // A period ending after today's month is never complete.
            match coverage.recent.last() {
                Some(newest) if last > newest.month => Err(MonthCoverage {
                    month: last,
                    age: 0,
                    coverage: 0.0,
                    orderable: false,
                }),
                _ => Ok(()),
            }
        }
    }
}

/// The coverage of every month from `from` to `to` (inclusive) today, by the rule
/// [`check_period_end`] applies: a recent month's from the completion curve; a month older than
/// the recent window complete (1.0); a month after the current one not covered at all (0.0).
/// What an extract's manifest records as the coverage it used.
pub fn period_coverage(coverage: &Coverage, from: YearMonth, to: YearMonth) -> Vec<MonthCoverage> {
    let current = coverage.recent.last().map(|m| m.month);
    let mut out = Vec::new();
    let mut month = from;
    while month <= to {
        let age = current.map_or(0, |c| month.months_until(c));
        let entry = match coverage.recent.iter().find(|m| m.month == month) {
            Some(m) => *m,
            None if age < 0 => MonthCoverage {
                month,
                age: 0,
                coverage: 0.0,
                orderable: false,
            },
            None => MonthCoverage {
                month,
                age: u32::try_from(age).unwrap_or(u32::MAX),
                coverage: 1.0,
                orderable: true,
            },
        };
        out.push(entry);
        month = month.next();
    }
    out
}

/// The latest month that may be ordered today (the newest orderable recent month, or the month
/// before the recent window).
pub fn latest_orderable(coverage: &Coverage) -> Option<YearMonth> {
    if let Some(m) = coverage.recent.iter().rev().find(|m| m.orderable) {
        return Some(m.month);
    }
    let oldest = coverage.recent.first()?;
    let i = oldest.month.index() - 1;
    Some(YearMonth::new(
        i.div_euclid(12) as i32,
        (i.rem_euclid(12) + 1) as u8,
    ))
}

/// The completion curve from the months at least `mature_after` months old on `today`'s month,
/// and the coverage of the younger months.
pub fn coverage(days: &[RecordedDays], today: YearMonth, mature_after: u32) -> Coverage {
    let horizon = mature_after as usize;
    let mut within = vec![0.0; horizon + 1];
    let mut total = 0.0;
    let mut mature = std::collections::BTreeSet::new();
    for d in days {
        let age = d.valid.months_until(today);
        if age < i64::from(mature_after) || d.days <= 0.0 {
            continue;
        }
        mature.insert(d.valid);
        total += d.days;
        let lag = d.valid.months_until(d.recorded).max(0) as usize;
        for slot in within.iter_mut().skip(lag.min(horizon + 1)) {
            *slot += d.days;
        }
    }
    let curve: Vec<f64> = if total > 0.0 {
        within.iter().map(|w| w / total).collect()
    } else {
        vec![0.0; horizon + 1]
    };
    let recent = (0..mature_after)
        .rev()
        .map(|age| {
            let month_index = today.index() - i64::from(age);
            let month = YearMonth::new(
                month_index.div_euclid(12) as i32,
                (month_index.rem_euclid(12) + 1) as u8,
            );
            let coverage = curve[age as usize];
            MonthCoverage {
                month,
                age,
                coverage,
                orderable: !mature.is_empty() && coverage >= ORDERABLE_FROM,
            }
        })
        .collect();
    Coverage {
        curve,
        mature_months: mature.len(),
        recent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A benefit whose days arrive 60 % in the month after, 30 % two months after, 6 % three and
    /// 4 % four months after: 96 % after three months, complete after four.
    fn three_month_lag(today: YearMonth, months: i64) -> Vec<RecordedDays> {
        let shares = [(1, 0.60), (2, 0.30), (3, 0.06), (4, 0.04)];
        let mut out = Vec::new();
        for back in 1..=months {
            let i = today.index() - back;
            let valid = YearMonth::new(i.div_euclid(12) as i32, (i.rem_euclid(12) + 1) as u8);
            for (lag, share) in shares {
                if back >= lag {
                    let j = i + lag;
                    out.push(RecordedDays {
                        valid,
                        recorded: YearMonth::new(j.div_euclid(12) as i32, (j.rem_euclid(12) + 1) as u8),
                        days: 1_000.0 * share,
                    });
                }
            }
        }
        out
    }

    #[test]
    fn the_curve_is_drawn_from_mature_months_and_recent_ones_follow_it() {
        let today = YearMonth::new(2026, 12);
        let c = coverage(&three_month_lag(today, 36), today, 12);
        assert_eq!(c.mature_months, 25);
        let near = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(near(c.curve[0], 0.0) && near(c.curve[1], 0.60) && near(c.curve[2], 0.90));
        assert!(near(c.curve[3], 0.96) && near(c.curve[4], 1.0) && near(c.curve[12], 1.0));
        let by_age = |age: u32| {
            c.recent
                .iter()
                .find(|m| m.age == age)
                .copied()
                .unwrap_or_else(|| panic!("{age}"))
        };
        // Two months old: 90 %, not orderable; three months old: 96 %, orderable.
        assert_eq!(by_age(2).month, YearMonth::new(2026, 10));
        assert!(!by_age(2).orderable);
        assert_eq!(by_age(3).month, YearMonth::new(2026, 9));
        assert!(by_age(3).orderable);
        assert_eq!(c.recent.first().map(|m| m.age), Some(11));
        assert_eq!(c.recent.last().map(|m| m.month), Some(today));
    }

    #[test]
    fn exactly_95_percent_is_orderable_and_just_under_is_not() {
        let today = YearMonth::new(2026, 6);
        let mut days = Vec::new();
        for back in 13..=24 {
            let i = today.index() - back;
            let valid = YearMonth::new(i.div_euclid(12) as i32, (i.rem_euclid(12) + 1) as u8);
            let at = |lag: i64| {
                let j = i + lag;
                YearMonth::new(j.div_euclid(12) as i32, (j.rem_euclid(12) + 1) as u8)
            };
            days.push(RecordedDays {
                valid,
                recorded: at(1),
                days: 940.0,
            });
            days.push(RecordedDays {
                valid,
                recorded: at(2),
                days: 10.0,
            });
            days.push(RecordedDays {
                valid,
                recorded: at(5),
                days: 50.0,
            });
        }
        let c = coverage(&days, today, 12);
        assert!((c.curve[1] - 0.94).abs() < 1e-9 && (c.curve[2] - 0.95).abs() < 1e-9);
        let age = |a: u32| c.recent.iter().find(|m| m.age == a).map(|m| m.orderable);
        assert_eq!(age(1), Some(false));
        assert_eq!(age(2), Some(true));
    }

    #[test]
    fn a_period_s_months_take_the_curve_when_recent_and_are_complete_when_older() {
        let today = YearMonth::new(2026, 12);
        let c = coverage(&three_month_lag(today, 36), today, 12);
        let months = period_coverage(&c, YearMonth::new(2025, 11), YearMonth::new(2027, 1));
        let at = |y: i32, m: u8| {
            months
                .iter()
                .find(|c| c.month == YearMonth::new(y, m))
                .copied()
                .unwrap_or_else(|| panic!("{y}-{m}"))
        };
        assert_eq!(months.len(), 15);
        assert_eq!(months.first().map(|m| m.month), Some(YearMonth::new(2025, 11)));
        // Older than the recent window: complete.
        let old = at(2025, 12);
        assert_eq!((old.age, old.coverage, old.orderable), (12, 1.0, true));
        // Recent: from the curve (three months old: 96 %; two: 90 %).
        assert!((at(2026, 9).coverage - 0.96).abs() < 1e-9 && at(2026, 9).orderable);
        assert!((at(2026, 10).coverage - 0.90).abs() < 1e-9 && !at(2026, 10).orderable);
        // After the current month: nothing.
        let future = at(2027, 1);
        assert_eq!((future.coverage, future.orderable), (0.0, false));
        assert_eq!(YearMonth::new(2026, 12).next(), YearMonth::new(2027, 1));
    }

    #[test]
    fn without_mature_months_nothing_recent_is_orderable() {
        let today = YearMonth::new(2026, 12);
        let c = coverage(&three_month_lag(today, 6), today, 12);
        assert_eq!(c.mature_months, 0);
        assert!(c.recent.iter().all(|m| !m.orderable));
    }
}
