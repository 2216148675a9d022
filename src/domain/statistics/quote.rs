//! What a statistics order costs: estimated (the quote) or actual (the invoice) hours at the hourly
//! rate in force on the day, VAT shown separately, or nothing where a special duty to provide data
//! applies. Amounts are in öre.

use time::Date;
use time::macros::date;

/// An hourly rate and the day it applies from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyRate {
    pub from: Date,
    /// Öre per hour, excluding VAT.
    pub ore_per_hour: i64,
}

/// The rates the agency has published, oldest first: 850 SEK per hour excluding VAT today.
pub const RATES: &[HourlyRate] = &[HourlyRate {
    from: date!(2020 - 01 - 01),
    ore_per_hour: 85_000,
}];

/// Swedish VAT on the service, in percent.
pub const VAT_PERCENT: i64 = 25;

/// The rate in force on `day`, if any.
pub fn rate_on(day: Date) -> Option<HourlyRate> {
    RATES.iter().rev().find(|r| r.from <= day).copied()
}

/// A priced amount of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Hours in hundredths (e.g. 1250 = 12.5 hours).
    pub centihours: i64,
    pub ore_per_hour: i64,
    /// Excluding VAT.
    pub net_ore: i64,
    pub vat_ore: i64,
    /// No charge: a special duty to provide data applies (the hours are still stated).
    pub free_of_charge: bool,
}

impl Price {
    pub fn total_ore(&self) -> i64 {
        self.net_ore + self.vat_ore
    }
}

/// `centihours` at the rate in force on `day`, rounded to whole öre; nothing to pay when
/// `special_duty`. `None` when no rate applies on that day.
pub fn price(centihours: i64, day: Date, special_duty: bool) -> Option<Price> {
    let rate = rate_on(day)?;
    let (net_ore, vat_ore) = if special_duty {
        (0, 0)
    } else {
        let net = (centihours * rate.ore_per_hour + 50) / 100;
        (net, (net * VAT_PERCENT + 50) / 100)
    };
    Some(Price {
        centihours,
        ore_per_hour: rate.ore_per_hour,
        net_ore,
        vat_ore,
        free_of_charge: special_duty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_at_850_kronor_with_vat_apart() {
        let p = price(1250, date!(2026 - 12 - 01), false).unwrap();
        assert_eq!(
            (p.net_ore, p.vat_ore, p.total_ore()),
            (1_062_500, 265_625, 1_328_125)
        );
        assert_eq!(p.ore_per_hour, 85_000);
        let free = price(1250, date!(2026 - 12 - 01), true).unwrap();
        assert_eq!((free.net_ore, free.vat_ore, free.centihours), (0, 0, 1250));
        assert!(free.free_of_charge);
        assert_eq!(price(100, date!(2019 - 12 - 31), false), None);
    }
}
