//! Swedish working days, for the deadlines of statistics orders ("receipt confirmed within two
//! working days").
//!
//! A working day is a weekday that is neither a public holiday (allmän helgdag, lag (1989:253) om
//! allmänna helgdagar) nor one of the eves that Swedish employers and agencies treat as days off:
//! Midsummer Eve, Christmas Eve and New Year's Eve. The weekday holidays are New Year's Day,
//! Epiphany, Good Friday, Easter Monday, 1 May, Ascension Day, the National Day (6 June), Christmas
//! Day and Boxing Day; Easter Day, Whitsunday, Midsummer Day and All Saints' Day always fall on a
//! Sunday or Saturday. Dates are calendar dates in Swedish time (see [`crate::domain::clock`]).

use time::{Date, Duration, Month, Weekday};

/// Easter Day of `year` (Gregorian calendar), by the anonymous Gregorian algorithm (Meeus/Jones/
/// Butcher).
pub fn easter_day(year: i32) -> Date {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    let month = if month == 3 { Month::March } else { Month::April };
    // The algorithm yields 22 March to 25 April: always a valid date.
    Date::from_calendar_date(year, month, day as u8).unwrap_or(Date::MIN)
}

/// Midsummer Eve of `year`: the Friday from 19 to 25 June.
pub fn midsummer_eve(year: i32) -> Date {
    let mut day = Date::from_calendar_date(year, Month::June, 19).unwrap_or(Date::MIN);
    while day.weekday() != Weekday::Friday {
        day = day.next_day().unwrap_or(day);
    }
    day
}

/// Why `date` is not a working day, or `None` when it is one.
pub fn day_off(date: Date) -> Option<&'static str> {
    match date.weekday() {
        Weekday::Saturday => return Some("Saturday"),
        Weekday::Sunday => return Some("Sunday"),
        _ => {}
    }
    let year = date.year();
    let easter = easter_day(year);
    let fixed = match (date.month(), date.day()) {
        (Month::January, 1) => Some("New Year's Day"),
        (Month::January, 6) => Some("Epiphany"),
        (Month::May, 1) => Some("1 May"),
        (Month::June, 6) => Some("National Day"),
        (Month::December, 24) => Some("Christmas Eve"),
        (Month::December, 25) => Some("Christmas Day"),
        (Month::December, 26) => Some("Boxing Day"),
        (Month::December, 31) => Some("New Year's Eve"),
        _ => None,
    };
    fixed.or(if date == easter - Duration::days(2) {
        Some("Good Friday")
    } else if date == easter + Duration::days(1) {
        Some("Easter Monday")
    } else if date == easter + Duration::days(39) {
        Some("Ascension Day")
    } else if date == midsummer_eve(year) {
        Some("Midsummer Eve")
    } else {
        None
    })
}

/// Whether `date` is a Swedish working day.
pub fn is_working_day(date: Date) -> bool {
    day_off(date).is_none()
}

/// The `n`th working day after `date` (`date` itself never counts): the deadline of something
/// due "within `n` working days" of `date`. A request made on a Saturday and due within two working
/// days is due on Tuesday.
pub fn working_days_after(date: Date, n: u32) -> Date {
    let mut day = date;
    let mut left = n;
    while left > 0 {
        day = day.next_day().unwrap_or(day);
        if is_working_day(day) {
            left -= 1;
        }
    }
    day
}

/// `day` plus `months` calendar months (the last day of a shorter month when the day is missing).
pub fn months_after(day: Date, months: u8) -> Date {
    let total = day.year() * 12 + i32::from(u8::from(day.month())) - 1 + i32::from(months);
    let (year, month0) = (total.div_euclid(12), total.rem_euclid(12));
    let month = time::Month::try_from(u8::try_from(month0 + 1).unwrap_or(1)).unwrap_or(time::Month::January);
    let last = month.length(year);
    Date::from_calendar_date(year, month, day.day().min(last)).unwrap_or(day)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn easter_falls_where_the_almanac_has_it() {
        for (year, day) in [
            (2024, date!(2024 - 03 - 31)),
            (2025, date!(2025 - 04 - 20)),
            (2026, date!(2026 - 04 - 05)),
            (2027, date!(2027 - 03 - 28)),
            (2038, date!(2038 - 04 - 25)),
            (2285, date!(2285 - 03 - 22)),
        ] {
            assert_eq!(easter_day(year), day, "{year}");
        }
    }

    #[test]
    fn midsummer_eve_is_the_friday_from_19_to_25_june() {
        assert_eq!(midsummer_eve(2025), date!(2025 - 06 - 20));
        assert_eq!(midsummer_eve(2026), date!(2026 - 06 - 19));
        assert_eq!(midsummer_eve(2027), date!(2027 - 06 - 25));
    }

    #[test]
    fn the_days_off_of_2026() {
        for (day, why) in [
            (date!(2026 - 01 - 01), "New Year's Day"),
            (date!(2026 - 01 - 06), "Epiphany"),
            (date!(2026 - 04 - 03), "Good Friday"),
            (date!(2026 - 04 - 06), "Easter Monday"),
            (date!(2026 - 05 - 01), "1 May"),
            (date!(2026 - 05 - 14), "Ascension Day"),
            (date!(2026 - 06 - 19), "Midsummer Eve"),
            (date!(2026 - 12 - 24), "Christmas Eve"),
            (date!(2026 - 12 - 25), "Christmas Day"),
            (date!(2026 - 12 - 31), "New Year's Eve"),
            (date!(2026 - 06 - 20), "Saturday"),
        ] {
            assert_eq!(day_off(day), Some(why), "{day}");
        }
        // 6 June 2026 is a Saturday; the Thursday before Easter is a working day.
        assert_eq!(day_off(date!(2026 - 06 - 06)), Some("Saturday"));
        assert!(is_working_day(date!(2026 - 04 - 02)));
        assert!(is_working_day(date!(2026 - 06 - 22)));
    }

    #[test]
    fn two_working_days_around_easter_and_midsummer() {
        let cases = [
            // Submitted on Maundy Thursday 2026: Good Friday and Easter Monday are off.
            (date!(2026 - 04 - 02), date!(2026 - 04 - 08)),
            // Submitted on the Thursday before Midsummer 2026: Midsummer Eve is off.
            (date!(2026 - 06 - 18), date!(2026 - 06 - 23)),
            // Submitted on a Saturday: Monday and Tuesday.
            (date!(2026 - 11 - 28), date!(2026 - 12 - 01)),
            // Submitted on 23 December 2026 (Wednesday): 24, 25, 26, 27 off; 28 and 29 count.
            (date!(2026 - 12 - 23), date!(2026 - 12 - 29)),
        ];
        for (submitted, due) in cases {
            assert_eq!(working_days_after(submitted, 2), due, "submitted {submitted}");
        }
    }

    #[test]
    fn six_months_after_lands_on_the_same_day_or_the_months_last() {
        assert_eq!(months_after(date!(2026 - 12 - 01), 6), date!(2027 - 06 - 01));
        assert_eq!(months_after(date!(2026 - 08 - 31), 6), date!(2027 - 02 - 28));
        assert_eq!(months_after(date!(2027 - 08 - 31), 6), date!(2028 - 02 - 29));
        assert_eq!(months_after(date!(2026 - 01 - 15), 0), date!(2026 - 01 - 15));
    }
}
