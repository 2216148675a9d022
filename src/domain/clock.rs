//! Time as the service sees it: instants in microseconds since the Unix epoch (UTC), business dates
//! as calendar dates in Swedish time (Europe/Stockholm), and a clock that tests can set.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};

use time::{Date, OffsetDateTime, format_description::well_known::Iso8601, macros::format_description};

/// An instant, in microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// Where "now" comes from. Production uses the system clock; tests pin or move it so that rules that
/// compare dates (termination, consent expiry) can be tested without waiting.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Offset in microseconds added to the system time (tests move the clock forward with it).
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The current instant.
    pub fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now + time::Duration::microseconds(self.offset.load(Ordering::Relaxed))
    }

    /// The current instant in microseconds.
    pub fn now_micros(&self) -> Micros {
        to_micros(self.now())
    }

    /// Today's date in Sweden: the date every rule that compares dates judges by (agreements,
    /// terminations, consents, legal bases in force).
    pub fn today(&self) -> Date {
        business_date(self.now())
    }

    /// Moves this clock (and every clone of it) forward or backward.
    pub fn advance(&self, by: time::Duration) {
        let micros = i64::try_from(by.whole_microseconds()).unwrap_or(i64::MAX);
        self.offset.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Swedish time, from the time-zone database bundled into the binary (the same on every machine).
static SWEDEN: LazyLock<Option<jiff::tz::TimeZone>> =
    LazyLock::new(|| jiff::tz::TimeZone::get("Europe/Stockholm").ok());

/// The calendar date in Sweden (Europe/Stockholm: CET, CEST in summer) at instant `t`. A
/// termination "effective 2026-07-01" takes effect at midnight Swedish time, not two hours later.
pub fn business_date(t: OffsetDateTime) -> Date {
    let utc = t.date();
    let Some(sweden) = SWEDEN.as_ref() else {
        return utc;
    };
    let Ok(instant) = jiff::Timestamp::from_second(t.unix_timestamp()) else {
        return utc;
    };
    let local = sweden.to_datetime(instant).date();
    time::Month::try_from(u8::try_from(local.month()).unwrap_or(0))
        .ok()
        .and_then(|month| {
            Date::from_calendar_date(
                i32::from(local.year()),
                month,
                u8::try_from(local.day()).unwrap_or(0),
            )
            .ok()
        })
        .unwrap_or(utc)
}

/// The instant a business date begins: 00:00 Swedish time, in microseconds.
pub fn business_day_start(d: Date) -> Micros {
    let utc_midnight = to_micros(d.midnight().assume_utc());
    let Some(sweden) = SWEDEN.as_ref() else {
        return utc_midnight;
    };
    let civil = jiff::civil::Date::new(
        i16::try_from(d.year()).unwrap_or(i16::MAX),
        i8::try_from(u8::from(d.month())).unwrap_or(1),
        i8::try_from(d.day()).unwrap_or(1),
    );
    match civil.and_then(|c| c.to_zoned(sweden.clone())) {
        Ok(start) => start.timestamp().as_microsecond(),
        Err(_) => utc_midnight,
    }
}

/// The business date (see [`business_date`]) at an instant given in microseconds.
pub fn business_date_at(m: Micros) -> Date {
    business_date(from_micros(m))
}

/// Converts an instant to microseconds since the epoch.
pub fn to_micros(t: OffsetDateTime) -> Micros {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Converts microseconds since the epoch back to an instant (saturating at the representable range).
pub fn from_micros(m: Micros) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Parses a business date `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    // The common case, `YYYY-MM-DD`, read directly: dates are parsed for every stored record a
    // stream delivers. Anything else takes the general parser, which accepts the same format.
    if let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = *s.as_bytes() {
        let digits = [y1, y2, y3, y4, m1, m2, d1, d2];
        if digits.iter().all(u8::is_ascii_digit) {
            let n = |ds: &[u8]| ds.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            let year = i32::try_from(n(&digits[..4])).ok()?;
            let month = time::Month::try_from(u8::try_from(n(&digits[4..6])).ok()?).ok()?;
            let day = u8::try_from(n(&digits[6..])).ok()?;
            return Date::from_calendar_date(year, month, day).ok();
        }
    }
    Date::parse(s, format_description!("[year]-[month]-[day]")).ok()
}

/// Formats a business date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    if (0..=9999).contains(&d.year()) {
        // Written directly (see `parse_date`): this runs for every date a stream delivers.
        let (y, m, day) = (
            d.year() as u32,
            u32::from(u8::from(d.month())),
            u32::from(d.day()),
        );
        let digit = |v: u32| char::from(b'0' + (v % 10) as u8);
        let mut text = String::with_capacity(10);
        text.extend([
            digit(y / 1000),
            digit(y / 100),
            digit(y / 10),
            digit(y),
            '-',
            digit(m / 10),
            digit(m),
            '-',
            digit(day / 10),
            digit(day),
        ]);
        return text;
    }
    d.format(format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Formats an instant as RFC 3339 / ISO 8601, for people.
pub fn format_instant(t: OffsetDateTime) -> String {
    t.format(&Iso8601::DEFAULT).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> OffsetDateTime {
        OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
    }

    #[test]
    fn business_dates_are_swedish() {
        for (instant, date) in [
            // Winter (CET, UTC+1): 23:30 UTC is already the next day in Stockholm.
            ("2026-01-14T23:30:00Z", "2026-01-15"),
            ("2026-01-14T22:59:59Z", "2026-01-14"),
            // Summer (CEST, UTC+2): from 22:00 UTC.
            ("2026-06-30T22:00:00Z", "2026-07-01"),
            ("2026-06-30T21:59:59Z", "2026-06-30"),
            // New Year's Eve: the Swedish year turns an hour before UTC's.
            ("2026-12-31T23:00:00Z", "2027-01-01"),
            // Across the switch to summer time (2026-03-29 01:00 UTC).
            ("2026-03-29T22:00:00Z", "2026-03-30"),
            ("2026-03-28T23:00:00Z", "2026-03-29"),
        ] {
            assert_eq!(format_date(business_date(at(instant))), date, "{instant}");
        }
    }

    #[test]
    fn a_business_day_starts_at_swedish_midnight() {
        let summer = parse_date("2026-07-01").unwrap();
        assert_eq!(business_day_start(summer), to_micros(at("2026-06-30T22:00:00Z")));
        let winter = parse_date("2026-01-15").unwrap();
        assert_eq!(business_day_start(winter), to_micros(at("2026-01-14T23:00:00Z")));
        assert_eq!(business_date_at(business_day_start(summer)), summer);
        assert_eq!(
            business_date_at(business_day_start(summer) - 1),
            parse_date("2026-06-30").unwrap()
        );
    }

    #[test]
    fn dates_round_trip() {
        let d = parse_date("2024-02-29").unwrap();
        assert_eq!(format_date(d), "2024-02-29");
        for not_a_date in [
            "2023-02-29",
            "2023-13-01",
            "yesterday",
            "2023-00-10",
            "2023-01-00",
            "2023-1-10",
            "2023-01-1x",
        ] {
            assert!(parse_date(not_a_date).is_none(), "{not_a_date}");
        }
    }

    #[test]
    fn the_direct_date_reader_and_writer_agree_with_the_general_ones() {
        let general = format_description!("[year]-[month]-[day]");
        let mut d = Date::from_calendar_date(1899, time::Month::December, 25).unwrap();
        while d.year() < 2101 {
            let text = d.format(general).unwrap();
            assert_eq!(format_date(d), text);
            assert_eq!(parse_date(&text), Some(d));
            d = d.next_day().unwrap();
        }
    }

    #[test]
    fn micros_round_trip() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(from_micros(to_micros(t)), t);
    }

    #[test]
    fn clock_advances_all_clones() {
        let c = Clock::system();
        let d = c.clone();
        let before = d.today();
        c.advance(time::Duration::days(3));
        assert!(d.today() >= before + time::Duration::days(3));
    }
}
