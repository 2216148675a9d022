//! What an extract holds for one person of the population: its episodes and its monthly panel
//! rows, keyed by the project's serial number only. Pure: the records come in, the rows go out.
//!
//! - **Episodes**: one row per compensation period (when the benefit was used, not when it was
//!   paid) of a benefit whose periods are quality-assured, with its case and sub-case numbered
//!   within the person (the agency's own case ids never leave), the extent and the gross and net
//!   days inside the order's period.
//! - **Panels**: one row per person × month × benefit with any days or payments: gross and net
//!   days (empty for benefits delivered as payments only) and the amounts paid in the month.
//!
//! Nothing here reads an identity number, a name or an address: the rows are built from benefit
//! records and the serial number alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use time::Date;

use crate::domain::register::versions::StoredRecord;
use crate::domain::register::{BenefitCase, CompensationPeriod, DateRange, Extent, FactBody, Payment};
use crate::domain::statistics::coverage::YearMonth;

/// The benefits whose compensation periods are quality-assured (MiDAS: sickness and rehabilitation
/// benefit, sickness and activity compensation, parental benefit). Others deliver payments only.
pub const PERIOD_BENEFITS: &[&str] = &["SJP", "RP", "SA", "FP"];

/// Whether `benefit`'s episodes come from quality-assured compensation periods.
pub fn has_periods(benefit: &str) -> bool {
    PERIOD_BENEFITS.contains(&benefit)
}

/// One compensation period, inside the order's period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub benefit: String,
    /// The case, numbered 1, 2, … within the person (by first day of use).
    pub case_no: u32,
    /// The sub-case within the case, 1, 2, …; 0 for the case itself.
    pub subcase_no: u32,
    pub from: Date,
    pub to: Date,
    pub extent: Extent,
    /// Calendar days from `from` to `to`.
    pub gross_days: i64,
    /// Days weighted by the extent, in quarter days (a full day at 1/2 is 2).
    pub net_quarter_days: i64,
}

/// One person × month × benefit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRow {
    pub benefit: String,
    pub month: YearMonth,
    /// Days of use in the month (benefits with periods only).
    pub gross_days: Option<i64>,
    pub net_quarter_days: Option<i64>,
    /// Gross amount of the payments made in the month, in öre.
    pub paid_gross_ore: i64,
    /// Tax withheld from them, in öre.
    pub paid_tax_ore: i64,
}

/// The rows of one person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonRows {
    pub episodes: Vec<Episode>,
    pub panels: Vec<PanelRow>,
}

/// The rows of one person from `records` (the latest versions as of the extract's sequence, for
/// the order's benefits), inside `period` (both ends inclusive).
pub fn person_rows(records: &[StoredRecord], benefits: &[String], period: (Date, Date)) -> PersonRows {
    let wanted = |b: &Option<String>| b.as_ref().is_some_and(|b| benefits.contains(b));
    let mut cases: HashMap<&str, &BenefitCase> = HashMap::new();
    let mut periods: Vec<(&str, &CompensationPeriod)> = Vec::new();
    let mut payments: Vec<(&str, &Payment)> = Vec::new();
    for r in records.iter().filter(|r| wanted(&r.benefit_type)) {
        let benefit = r.benefit_type.as_deref().unwrap_or_default();
        match &r.body {
            FactBody::Case(c) => {
                cases.insert(c.case_id.as_str(), c);
            }
            FactBody::Period(p) if has_periods(benefit) => periods.push((benefit, p)),
            FactBody::Payment(p) => payments.push((benefit, p)),
            _ => {}
        }
    }
    let numbers = case_numbers(&periods, &cases);
    let mut episodes = Vec::new();
    let mut panels: BTreeMap<(String, YearMonth), PanelRow> = BTreeMap::new();
    for (benefit, p) in &periods {
        let Some((from, to)) = clip((p.from, p.to), period) else {
            continue;
        };
        let (case_no, subcase_no) = numbers.get(p.case_id.as_str()).copied().unwrap_or((0, 0));
        let gross = days(from, to);
        episodes.push(Episode {
            benefit: (*benefit).to_string(),
            case_no,
            subcase_no,
            from,
            to,
            extent: p.extent,
            gross_days: gross,
            net_quarter_days: gross * p.extent.quarters(),
        });
        for (month, month_days) in days_by_month(from, to) {
            let row = panel(&mut panels, benefit, month);
            *row.gross_days.get_or_insert(0) += month_days;
            *row.net_quarter_days.get_or_insert(0) += month_days * p.extent.quarters();
        }
    }
    for (benefit, p) in &payments {
        if clip((p.payment_date, p.payment_date), period).is_none() {
            continue;
        }
        let row = panel(&mut panels, benefit, YearMonth::of(p.payment_date));
        row.paid_gross_ore += p.gross_ore;
        row.paid_tax_ore += p.tax_ore;
        if has_periods(benefit) {
            row.gross_days.get_or_insert(0);
            row.net_quarter_days.get_or_insert(0);
        }
    }
    episodes.sort_by(|a, b| {
        (&a.benefit, a.case_no, a.subcase_no, a.from, a.to).cmp(&(
            &b.benefit,
            b.case_no,
            b.subcase_no,
            b.from,
            b.to,
        ))
    });
    PersonRows {
        episodes,
        panels: panels.into_values().collect(),
    }
}

fn panel<'a>(
    panels: &'a mut BTreeMap<(String, YearMonth), PanelRow>,
    benefit: &str,
    month: YearMonth,
) -> &'a mut PanelRow {
    panels
        .entry((benefit.to_string(), month))
        .or_insert_with(|| PanelRow {
            benefit: benefit.to_string(),
            month,
            gross_days: None,
            net_quarter_days: None,
            paid_gross_ore: 0,
            paid_tax_ore: 0,
        })
}

/// Numbers the cases of one person's periods: a case is a period's case or, for a sub-case, the
/// parent it names; cases are numbered by their first day of use (then their id, so the numbering
/// is stable), sub-cases likewise within their case.
fn case_numbers<'a>(
    periods: &[(&str, &'a CompensationPeriod)],
    cases: &HashMap<&str, &'a BenefitCase>,
) -> HashMap<&'a str, (u32, u32)> {
    let parent = |id: &'a str| -> Option<&'a str> {
        cases
            .get(id)
            .and_then(|c| c.parent_case_id.as_deref())
            .filter(|p| *p != id)
    };
    // First day of use per case id and per root.
    let mut first: HashMap<&'a str, Date> = HashMap::new();
    for (_, p) in periods {
        let id = p.case_id.as_str();
        for key in [Some(id), parent(id)].into_iter().flatten() {
            let day = first.entry(key).or_insert(p.from);
            *day = (*day).min(p.from);
        }
    }
    let mut roots: Vec<&str> = first.keys().copied().filter(|id| parent(id).is_none()).collect();
    roots.sort_by_key(|id| (first[id], *id));
    let mut numbers = HashMap::new();
    for (i, root) in roots.iter().enumerate() {
        let case_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        numbers.insert(*root, (case_no, 0));
        let mut subs: Vec<&str> = first
            .keys()
            .copied()
            .filter(|id| parent(id) == Some(root))
            .collect();
        subs.sort_by_key(|id| (first[id], *id));
        for (j, sub) in subs.iter().enumerate() {
            numbers.insert(*sub, (case_no, u32::try_from(j + 1).unwrap_or(u32::MAX)));
        }
    }
    numbers
}

/// `range` cut to `period`, or `None` if they do not meet.
fn clip(range: (Date, Date), period: (Date, Date)) -> Option<(Date, Date)> {
    let from = range.0.max(period.0);
    let to = range.1.min(period.1);
    (from <= to).then_some((from, to))
}

/// Calendar days from `from` to `to`, both included.
fn days(from: Date, to: Date) -> i64 {
    (to - from).whole_days() + 1
}

/// The days of `from..=to` in each month it touches.
pub fn days_by_month(from: Date, to: Date) -> Vec<(YearMonth, i64)> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let month_end = last_day_of_month(start);
        let end = month_end.min(to);
        out.push((YearMonth::of(start), days(start, end)));
        match end.next_day() {
            Some(next) => start = next,
            None => break,
        }
    }
    out
}

fn last_day_of_month(day: Date) -> Date {
    let length = day.month().length(day.year());
    day.replace_day(length).unwrap_or(day)
}

/// An extent as MiDAS writes it.
pub fn extent_name(e: Extent) -> &'static str {
    match e {
        Extent::Full => "1/1",
        Extent::ThreeQuarters => "3/4",
        Extent::Half => "1/2",
        Extent::OneQuarter => "1/4",
    }
}

/// What a variable holds: how its CSV text is written and which Parquet column type carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (UTF-8).
    Text,
    /// A code from a published list (UTF-8).
    Code,
    /// A whole number.
    Integer,
    /// A calendar day, `YYYY-MM-DD`.
    Date,
    /// A calendar month, `YYYY-MM`.
    Month,
    /// A decimal number with at most two decimals (quarter days: `12.75`).
    Decimal,
}

impl Kind {
    /// The name the data dictionary gives the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Code => "code",
            Kind::Integer => "integer",
            Kind::Date => "date",
            Kind::Month => "YYYY-MM",
            Kind::Decimal => "decimal",
        }
    }
}

/// One variable of the data dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// The table it is in (`episodes`, `panels`): one CSV and one Parquet file each.
    pub table: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    /// Whether it may be empty (an empty CSV field, a null in Parquet).
    pub optional: bool,
    pub meaning: &'static str,
    pub source: &'static str,
}

const SERIAL: &str = "The project's serial number (löpnummer) from the population file; the only key";

/// The columns of the episodes table, in order, with their meaning.
pub const EPISODE_VARIABLES: &[Variable] = &[
    var("episodes", "serial", Kind::Text, SERIAL, "population file"),
    var(
        "episodes",
        "benefit_type",
        Kind::Code,
        "Benefit type code (see ListBenefitTypes)",
        "register: fact benefit type",
    ),
    var(
        "episodes",
        "case_no",
        Kind::Integer,
        "The case (fall), numbered 1, 2, … within the person by first day of use",
        "register: compensation period case, case parent",
    ),
    var(
        "episodes",
        "subcase_no",
        Kind::Integer,
        "The sub-case (delfall) within the case, 1, 2, …; 0 for the case itself",
        "register: case parent",
    ),
    var(
        "episodes",
        "period_from",
        Kind::Date,
        "First day of the compensation period inside the order's period",
        "register: compensation period",
    ),
    var(
        "episodes",
        "period_to",
        Kind::Date,
        "Last day of the compensation period inside the order's period",
        "register: compensation period",
    ),
    var(
        "episodes",
        "extent",
        Kind::Text,
        "Extent of compensation: 1/1, 3/4, 1/2 or 1/4",
        "register: compensation period",
    ),
    var(
        "episodes",
        "gross_days",
        Kind::Integer,
        "Calendar days of the period (bruttodagar)",
        "derived",
    ),
    var(
        "episodes",
        "net_days",
        Kind::Decimal,
        "Days weighted by the extent (nettodagar)",
        "derived",
    ),
];

/// The columns of the panels table, in order, with their meaning.
pub const PANEL_VARIABLES: &[Variable] = &[
    var("panels", "serial", Kind::Text, SERIAL, "population file"),
    var("panels", "month", Kind::Month, "Calendar month", "derived"),
    var(
        "panels",
        "benefit_type",
        Kind::Code,
        "Benefit type code (see ListBenefitTypes)",
        "register: fact benefit type",
    ),
    var(
        "panels",
        "gross_days",
        Kind::Integer,
        "Days of use in the month; empty for benefits delivered as payments only",
        "register: compensation periods",
    )
    .optional(),
    var(
        "panels",
        "net_days",
        Kind::Decimal,
        "Days of use weighted by the extent; empty for benefits delivered as payments only",
        "register: compensation periods",
    )
    .optional(),
    var(
        "panels",
        "paid_gross_ore",
        Kind::Integer,
        "Gross amount of the payments made in the month, in öre (1/100 SEK)",
        "register: payments (payment date)",
    ),
    var(
        "panels",
        "paid_tax_ore",
        Kind::Integer,
        "Preliminary tax withheld from those payments, in öre",
        "register: payments",
    ),
];

const fn var(
    table: &'static str,
    name: &'static str,
    kind: Kind,
    meaning: &'static str,
    source: &'static str,
) -> Variable {
    Variable {
        table,
        name,
        kind,
        optional: false,
        meaning,
        source,
    }
}

impl Variable {
    const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// One field of a row, typed as its variable says ([`Kind`]); the CSV writes its text
/// ([`fmt::Display`]), the Parquet file its typed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Text or a code.
    Text(&'a str),
    Integer(i64),
    Date(Date),
    Month(YearMonth),
    /// A decimal number of quarter days.
    QuarterDays(i64),
    /// An optional variable without a value.
    Empty,
}

impl Value<'_> {
    /// Whether the value is one that `variable` can hold.
    pub fn fits(&self, variable: &Variable) -> bool {
        match self {
            Value::Text(_) => matches!(variable.kind, Kind::Text | Kind::Code),
            Value::Integer(_) => variable.kind == Kind::Integer,
            Value::Date(_) => variable.kind == Kind::Date,
            Value::Month(_) => variable.kind == Kind::Month,
            Value::QuarterDays(_) => variable.kind == Kind::Decimal,
            Value::Empty => variable.optional,
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Integer(n) => write!(f, "{n}"),
            Value::Date(d) => write!(f, "{d}"),
            Value::Month(m) => write!(f, "{:04}-{:02}", m.year, m.month),
            Value::QuarterDays(q) => {
                let whole = q.div_euclid(4);
                match q.rem_euclid(4) {
                    0 => write!(f, "{whole}"),
                    1 => write!(f, "{whole}.25"),
                    2 => write!(f, "{whole}.5"),
                    _ => write!(f, "{whole}.75"),
                }
            }
            Value::Empty => Ok(()),
        }
    }
}

/// The episode row's fields, in [`EPISODE_VARIABLES`] order.
pub fn episode_values<'a>(serial: &'a str, e: &'a Episode) -> [Value<'a>; 9] {
    [
        Value::Text(serial),
        Value::Text(&e.benefit),
        Value::Integer(i64::from(e.case_no)),
        Value::Integer(i64::from(e.subcase_no)),
        Value::Date(e.from),
        Value::Date(e.to),
        Value::Text(extent_name(e.extent)),
        Value::Integer(e.gross_days),
        Value::QuarterDays(e.net_quarter_days),
    ]
}

/// The panel row's fields, in [`PANEL_VARIABLES`] order.
pub fn panel_values<'a>(serial: &'a str, p: &'a PanelRow) -> [Value<'a>; 7] {
    [
        Value::Text(serial),
        Value::Month(p.month),
        Value::Text(&p.benefit),
        p.gross_days.map_or(Value::Empty, Value::Integer),
        p.net_quarter_days.map_or(Value::Empty, Value::QuarterDays),
        Value::Integer(p.paid_gross_ore),
        Value::Integer(p.paid_tax_ore),
    ]
}

/// Whether two date ranges of the order overlap a record's valid range (for reading the register).
pub fn order_range(period: (Date, Date)) -> DateRange {
    DateRange {
        from: period.0,
        to: Some(period.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn days_are_split_by_month_and_weighted_by_extent() {
        assert_eq!(
            days_by_month(date!(2026 - 01 - 30), date!(2026 - 03 - 02)),
            vec![
                (YearMonth::new(2026, 1), 2),
                (YearMonth::new(2026, 2), 28),
                (YearMonth::new(2026, 3), 2)
            ]
        );
        let text = |v: Value<'_>| v.to_string();
        assert_eq!(text(Value::QuarterDays(2 * 3)), "1.5");
        assert_eq!(text(Value::QuarterDays(9)), "2.25");
        assert_eq!(text(Value::QuarterDays(8)), "2");
        assert_eq!(text(Value::QuarterDays(3)), "0.75");
        assert_eq!(text(Value::Date(date!(2024 - 01 - 09))), "2024-01-09");
        assert_eq!(text(Value::Month(YearMonth::new(2024, 2))), "2024-02");
        assert_eq!(text(Value::Empty), "");
        assert_eq!(
            clip(
                (date!(2026 - 01 - 01), date!(2026 - 01 - 31)),
                (date!(2026 - 01 - 10), date!(2026 - 12 - 31))
            ),
            Some((date!(2026 - 01 - 10), date!(2026 - 01 - 31)))
        );
        assert_eq!(
            clip(
                (date!(2025 - 01 - 01), date!(2025 - 01 - 31)),
                (date!(2026 - 01 - 10), date!(2026 - 12 - 31))
            ),
            None
        );
    }

    /// One value per variable, each fitting its variable's type.
    fn assert_each_fits(values: &[Value<'_>], variables: &[Variable]) {
        assert_eq!(values.len(), variables.len());
        for (value, variable) in values.iter().zip(variables) {
            assert!(value.fits(variable), "{} holds {value:?}", variable.name);
        }
    }

    #[test]
    fn the_dictionary_names_every_column_once_and_every_value_fits_its_variable() {
        for vars in [EPISODE_VARIABLES, PANEL_VARIABLES] {
            let mut names: Vec<&str> = vars.iter().map(|v| v.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), vars.len());
        }
        let episode = Episode {
            benefit: "SJP".into(),
            case_no: 1,
            subcase_no: 0,
            from: date!(2026 - 01 - 01),
            to: date!(2026 - 01 - 01),
            extent: Extent::Full,
            gross_days: 1,
            net_quarter_days: 4,
        };
        assert_each_fits(&episode_values("1", &episode), EPISODE_VARIABLES);
        for days in [None, Some(3)] {
            let panel = PanelRow {
                benefit: "BB".into(),
                month: YearMonth::new(2026, 1),
                gross_days: days,
                net_quarter_days: days.map(|d| d * 4),
                paid_gross_ore: 1,
                paid_tax_ore: 0,
            };
            assert_each_fits(&panel_values("1", &panel), PANEL_VARIABLES);
        }
    }
}
