//! Time as the service sees it: instants in microseconds since the Unix epoch (UTC), business dates
//! as calendar dates, and a clock that tests can set.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

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

    /// Today's date in UTC.
    pub fn today(&self) -> Date {
        self.now().date()
    }

    /// Moves this clock (and every clone of it) forward or backward.
    pub fn advance(&self, by: time::Duration) {
        let micros = i64::try_from(by.whole_microseconds()).unwrap_or(i64::MAX);
        self.offset.fetch_add(micros, Ordering::Relaxed);
    }
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
    Date::parse(s.trim(), format_description!("[year]-[month]-[day]")).ok()
}

/// Formats a business date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
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

    #[test]
    fn dates_round_trip() {
        let d = parse_date("2024-02-29").unwrap();
        assert_eq!(format_date(d), "2024-02-29");
        assert!(parse_date("2023-02-29").is_none());
        assert!(parse_date("2023-13-01").is_none());
        assert!(parse_date("yesterday").is_none());
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
