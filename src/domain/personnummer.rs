//! Swedish personal identity numbers: personnummer and samordningsnummer.
//!
//! A [`Personnummer`] can only be built through [`Personnummer::parse`],
//! [`Personnummer::parse_now`] or [`Personnummer::from_storage`], so holding one means the
//! format, the date, the birth number and the check digit have all been checked. Its `Debug`
//! and `Display` output is masked, which keeps identity numbers out of logs; the digits are
//! only reachable through [`Personnummer::as_storage`] and
//! [`Personnummer::to_display_unmasked`].

use std::fmt;

use serde::Deserialize;
use time::{Date, Month, OffsetDateTime};

/// The masked form shown by `Display` and inside `Debug`.
const MASKED: &str = "********-****";

/// What a samordningsnummer adds to the day of birth.
const SAMORDNING_DAY_OFFSET: u8 = 60;

/// Which kind of identity number a [`Personnummer`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    /// A personnummer, given to people who are or have been registered in Sweden.
    Personnummer,
    /// A samordningsnummer (coordination number), whose day of birth is increased by 60.
    Samordningsnummer,
}

/// Why a string is not a valid personnummer or samordningsnummer.
///
/// The messages describe the problem and the accepted forms, but never contain the input or
/// any of its digits, so they are safe to log and to return to a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonnummerError {
    /// The input does not have one of the accepted shapes.
    #[error(
        "the identity number has an invalid format; accepted forms are YYMMDD-NNNC, \
         YYMMDD+NNNC, YYMMDDNNNC, YYYYMMDDNNNC and YYYYMMDD-NNNC"
    )]
    Format,
    /// The stored form is not exactly twelve digits.
    #[error("the stored identity number must be exactly twelve digits in the form YYYYMMDDNNNC")]
    StorageFormat,
    /// The birth date does not exist, also after removing a samordningsnummer's day offset.
    #[error("the identity number contains a birth date that does not exist")]
    Date,
    /// The birth number is all zeros, which is never assigned.
    #[error("the identity number has a birth number of all zeros, which is never assigned")]
    BirthNumber,
    /// The last digit does not match the Luhn check digit.
    #[error("the identity number has a wrong check digit")]
    CheckDigit,
    /// The birth date lies after the reference date.
    #[error("the identity number has a birth date in the future")]
    FutureDate,
}

/// A validated Swedish personnummer or samordningsnummer.
///
/// It is kept in the twelve-digit storage form `YYYYMMDDNNNC`, so a ten-digit and a
/// twelve-digit input for the same person compare equal.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Personnummer {
    /// The twelve ASCII digits `YYYYMMDDNNNC`; this field comes first so ordering follows it.
    digits: String,
    /// Whether the number is a samordningsnummer, derived from the day digits.
    kind: IdKind,
    /// The real birth date, with a samordningsnummer's day offset removed.
    birth_date: Date,
}

/// The separator of a ten-digit form, which tells the century.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Separator {
    /// `-` or no separator: the person is younger than 100.
    Minus,
    /// `+`: the person is 100 or older.
    Plus,
}

/// The digits of an input, before the century is settled.
enum Digits {
    /// A ten-digit form `YYMMDDNNNC` and its separator.
    Ten([u8; 10], Separator),
    /// A twelve-digit form `YYYYMMDDNNNC`; any separator has been dropped.
    Twelve([u8; 12]),
}

impl Personnummer {
    /// Parses any accepted form; `today` is the reference date used for century inference with
    /// 10-digit forms and to reject birth dates in the future.
    ///
    /// Surrounding whitespace is ignored. The accepted forms are `YYMMDD-NNNC`, `YYMMDD+NNNC`,
    /// `YYMMDDNNNC` (read as `-`), `YYYYMMDDNNNC` and `YYYYMMDD-NNNC`; a `+` in a twelve-digit
    /// form is accepted and ignored because the century is explicit. A ten-digit form with `-`
    /// belongs to someone younger than 100, so the year is the most recent one ending in `YY`
    /// that puts the birth date on or before `today`; with `+` it is that year minus 100.
    ///
    /// # Errors
    ///
    /// Returns a [`PersonnummerError`] telling which rule the input breaks.
    pub fn parse(input: &str, today: Date) -> Result<Self, PersonnummerError> {
        match split_input(input.trim().as_bytes()).ok_or(PersonnummerError::Format)? {
            Digits::Ten(ten, separator) => {
                let year = infer_year(&ten, separator, today);
                build(year, &ten)
            }
            Digits::Twelve(twelve) => {
                let number = from_twelve(&twelve)?;
                if number.birth_date > today {
                    return Err(PersonnummerError::FutureDate);
                }
                Ok(number)
            }
        }
    }

    /// Same as [`Personnummer::parse`] with today's Swedish date as the reference date.
    ///
    /// # Errors
    ///
    /// Returns a [`PersonnummerError`] telling which rule the input breaks.
    pub fn parse_now(input: &str) -> Result<Self, PersonnummerError> {
        Self::parse(
            input,
            crate::domain::clock::business_date(OffsetDateTime::now_utc()),
        )
    }

    /// Rebuilds from the 12-digit storage form (as read back from the database); still
    /// validates fully (century is explicit).
    ///
    /// Only exactly twelve digits are accepted, with no separator and no whitespace. The date,
    /// birth number and check digit are checked; a birth date in the future is not rejected
    /// here, because a stored value was checked against the clock when it was first parsed.
    ///
    /// # Errors
    ///
    /// Returns [`PersonnummerError::StorageFormat`] when the input is not twelve digits, and
    /// another [`PersonnummerError`] when the digits break a rule.
    pub fn from_storage(twelve_digits: &str) -> Result<Self, PersonnummerError> {
        let twelve = to_digits::<12>(twelve_digits.as_bytes()).ok_or(PersonnummerError::StorageFormat)?;
        from_twelve(&twelve)
    }

    /// Returns the twelve-digit storage form `YYYYMMDDNNNC`.
    ///
    /// This reveals the number; use it for storage and for callers entitled to see it, never
    /// for logs.
    pub fn as_storage(&self) -> &str {
        &self.digits
    }

    /// Returns whether this is a personnummer or a samordningsnummer.
    pub fn kind(&self) -> IdKind {
        self.kind
    }

    /// Returns the birth date; for a samordningsnummer the day has 60 taken off.
    pub fn birth_date(&self) -> Date {
        self.birth_date
    }

    /// Returns whether the birth number marks a woman, that is whether its last digit is even.
    pub fn is_female(&self) -> bool {
        // The birth number's last digit is the eleventh of the twelve digits.
        self.digits
            .as_bytes()
            .get(10)
            .is_some_and(|digit| digit.wrapping_sub(b'0') % 2 == 0)
    }

    /// Formatted for showing to a person who is entitled to see it: "YYYYMMDD-NNNC".
    pub fn to_display_unmasked(&self) -> String {
        let mut out = String::with_capacity(13);
        for (position, digit) in self.digits.chars().enumerate() {
            if position == 8 {
                out.push('-');
            }
            out.push(digit);
        }
        out
    }
}

/// Computes the Luhn check digit over `nine`, whose elements are digit values 0–9.
///
/// The weights are 2, 1, 2, 1, … from the first element; the digits of each product are added,
/// and the check digit is `(10 − sum mod 10) mod 10`. Personnummer and organisationsnummer both
/// use it over their first nine digits.
pub(crate) fn luhn_check_digit(nine: &[u8]) -> u8 {
    let sum: u32 = nine
        .iter()
        .enumerate()
        .map(|(position, &digit)| {
            let weight = if position % 2 == 0 { 2 } else { 1 };
            digit_sum(u32::from(digit) * weight)
        })
        .sum();
    // The result is below 10, so the narrowing cannot lose anything.
    ((10 - sum % 10) % 10) as u8
}

/// Adds the decimal digits of `value`.
fn digit_sum(mut value: u32) -> u32 {
    let mut sum = 0;
    while value > 0 {
        sum += value % 10;
        value /= 10;
    }
    sum
}

/// Converts exactly `N` ASCII digits to their values, or gives `None`.
fn to_digits<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    if bytes.len() != N {
        return None;
    }
    let mut out = [0; N];
    for (value, byte) in out.iter_mut().zip(bytes) {
        if !byte.is_ascii_digit() {
            return None;
        }
        *value = byte - b'0';
    }
    Some(out)
}

/// Reads a trimmed input of ten or twelve digits, with or without one separator before the
/// last four, as the values of its digits and the separator; `None` for any other shape.
/// Personnummer and organisationsnummer are both written this way.
pub(crate) fn split_digits(bytes: &[u8]) -> Option<(Vec<u8>, Option<u8>)> {
    let (body, separator) = match bytes.len() {
        10 | 12 => (bytes.to_vec(), None),
        11 | 13 => {
            let (head, tail) = bytes.split_at_checked(bytes.len() - 5)?;
            let (&separator, tail) = tail.split_first()?;
            (head.iter().chain(tail).copied().collect(), Some(separator))
        }
        _ => return None,
    };
    let values = body
        .iter()
        .map(|byte| byte.is_ascii_digit().then(|| byte - b'0'))
        .collect::<Option<Vec<u8>>>()?;
    Some((values, separator))
}

/// Splits a trimmed input into its digits and separator, or gives `None` for any other shape.
fn split_input(bytes: &[u8]) -> Option<Digits> {
    let (values, separator) = split_digits(bytes)?;
    let separator = match separator {
        None | Some(b'-') => Separator::Minus,
        Some(b'+') => Separator::Plus,
        Some(_) => return None,
    };
    match values.len() {
        10 => Some(Digits::Ten(values.try_into().ok()?, separator)),
        _ => Some(Digits::Twelve(values.try_into().ok()?)),
    }
}

/// Reads two digit values as a number.
fn pair(tens: u8, ones: u8) -> u8 {
    tens * 10 + ones
}

/// Settles the year of a ten-digit form from its separator and the reference date.
fn infer_year(ten: &[u8; 10], separator: Separator, today: Date) -> i32 {
    let [y1, y2, m1, m2, d1, d2, ..] = *ten;
    let yy = i32::from(pair(y1, y2));
    let month = pair(m1, m2);
    let day = real_day(pair(d1, d2));
    // The most recent year ending in YY that is not after this year.
    let mut year = today.year() - (today.year() - yy).rem_euclid(100);
    // In this year, the birthday must not have come after today. Comparing month and day as
    // plain numbers keeps dates that do not exist for the later check.
    if year == today.year() && (month, day) > (u8::from(today.month()), today.day()) {
        year -= 100;
    }
    if separator == Separator::Plus {
        year -= 100;
    }
    year
}

/// Removes a samordningsnummer's day offset, leaving other days as they are.
fn real_day(day: u8) -> u8 {
    if day > SAMORDNING_DAY_OFFSET {
        day - SAMORDNING_DAY_OFFSET
    } else {
        day
    }
}

/// Validates a twelve-digit form without looking at the clock.
fn from_twelve(twelve: &[u8; 12]) -> Result<Personnummer, PersonnummerError> {
    let [c1, c2, ten @ ..] = *twelve;
    let [y1, y2, ..] = ten;
    let year = i32::from(pair(c1, c2)) * 100 + i32::from(pair(y1, y2));
    build(year, &ten)
}

/// Validates the ten digits `YYMMDDNNNC` against the settled `year` and builds the number.
fn build(year: i32, ten: &[u8; 10]) -> Result<Personnummer, PersonnummerError> {
    let [y1, y2, m1, m2, d1, d2, n1, n2, n3, check] = *ten;
    // The storage form has room for four year digits only.
    if !(0..=9999).contains(&year) {
        return Err(PersonnummerError::Date);
    }
    let written_day = pair(d1, d2);
    let kind = if written_day > SAMORDNING_DAY_OFFSET {
        IdKind::Samordningsnummer
    } else {
        IdKind::Personnummer
    };
    let month = Month::try_from(pair(m1, m2)).map_err(|_| PersonnummerError::Date)?;
    let birth_date =
        Date::from_calendar_date(year, month, real_day(written_day)).map_err(|_| PersonnummerError::Date)?;
    if (n1, n2, n3) == (0, 0, 0) {
        return Err(PersonnummerError::BirthNumber);
    }
    // The check digit covers YYMMDDNNN, without the century.
    if luhn_check_digit(&[y1, y2, m1, m2, d1, d2, n1, n2, n3]) != check {
        return Err(PersonnummerError::CheckDigit);
    }
    let mut digits = format!("{year:04}");
    digits.extend(ten.iter().skip(2).map(|&digit| char::from(b'0' + digit)));
    Ok(Personnummer {
        digits,
        kind,
        birth_date,
    })
}

impl fmt::Display for Personnummer {
    /// Prints the masked form `********-****`, never the number.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASKED)
    }
}

impl fmt::Debug for Personnummer {
    /// Prints `Personnummer(********-****)`, never the number or the birth date.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Personnummer({MASKED})")
    }
}

super::names::parsed_text!(
    Personnummer, PersonnummerError,
    /// Parses with today's Swedish date as the reference date, like [`Personnummer::parse_now`].
    |text| Self::parse_now(text),
    /// Serializes as the twelve-digit storage form.
    as_storage
);

/// The test oracle of the Luhn check digit, shared by the tests of personnummer and
/// organisationsnummer.
#[cfg(test)]
pub(super) mod oracle {
    /// An independent Luhn implementation over a string of digits.
    pub(in crate::domain) fn check_digit(nine: &str) -> char {
        let sum: u32 = nine
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let product = c.to_digit(10).unwrap() * if i % 2 == 0 { 2 } else { 1 };
                product / 10 + product % 10
            })
            .sum();
        char::from_digit((10 - sum % 10) % 10, 10).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::personnummer::oracle::check_digit as oracle_check_digit;
    use proptest::prelude::*;
    use time::macros::date;

    /// The fixed reference date of these tests.
    const TODAY: Date = date!(2026 - 11 - 26);

    /// Skatteverket's valid test personnummer and samordningsnummer from DOMAIN.md.
    const VALID: [&str; 10] = [
        "19900704-2386",
        "19950113-2386",
        "20131112-2384",
        "18991223-9812",
        "930302+9806",
        "091224+9828",
        "201701012393",
        "900477-2381",
        "197203702399",
        "110482-2398",
    ];

    fn parse(input: &str) -> Result<Personnummer, PersonnummerError> {
        Personnummer::parse(input, TODAY)
    }

    /// Appends the right check digit to `YYYYMMDDNNN`.
    fn with_check(eleven: &str) -> String {
        format!("{eleven}{}", oracle_check_digit(&eleven[2..]))
    }

    /// Asserts that each `YYYYMMDDNNN`, with its right check digit, is refused for its date.
    fn assert_date_errors(elevens: &[&str]) {
        for eleven in elevens {
            assert_eq!(
                parse(&with_check(eleven)),
                Err(PersonnummerError::Date),
                "{eleven}"
            );
        }
    }

    /// Whether `text` holds four or more digits in a row.
    fn has_digit_run(text: &str) -> bool {
        let mut run = 0;
        for c in text.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            if run >= 4 {
                return true;
            }
        }
        false
    }

    #[test]
    fn luhn_matches_known_numbers() {
        assert_eq!(luhn_check_digit(&[8, 1, 1, 2, 1, 8, 9, 8, 7]), 6);
        assert_eq!(luhn_check_digit(&[9, 0, 0, 7, 0, 4, 2, 3, 8]), 6);
        assert_eq!(luhn_check_digit(&[2, 0, 2, 1, 0, 0, 5, 5, 2]), 1);
        assert_eq!(luhn_check_digit(&[0; 9]), 0);
    }

    #[test]
    fn every_published_test_number_parses() {
        for input in VALID {
            let number = parse(input);
            assert!(number.is_ok(), "{input} should parse: {number:?}");
        }
    }

    #[test]
    fn storage_kind_and_birth_date_of_published_numbers() {
        use IdKind::{Personnummer as Pn, Samordningsnummer as Sn};
        let cases = [
            ("19900704-2386", "199007042386", Pn, date!(1990 - 07 - 04)),
            ("930302+9806", "189303029806", Pn, date!(1893 - 03 - 02)),
            ("091224+9828", "190912249828", Pn, date!(1909 - 12 - 24)),
            ("18991223-9812", "189912239812", Pn, date!(1899 - 12 - 23)),
            ("201701012393", "201701012393", Pn, date!(2017 - 01 - 01)),
            ("900477-2381", "199004772381", Sn, date!(1990 - 04 - 17)),
            ("197203702399", "197203702399", Sn, date!(1972 - 03 - 10)),
            ("110482-2398", "201104822398", Sn, date!(2011 - 04 - 22)),
        ];
        for (input, storage, kind, birth_date) in cases {
            let number = parse(input).unwrap();
            assert_eq!(number.as_storage(), storage, "{input}");
            assert_eq!(number.kind(), kind, "{input}");
            assert_eq!(number.birth_date(), birth_date, "{input}");
        }
    }

    #[test]
    fn sex_follows_the_last_digit_of_the_birth_number() {
        assert!(parse("19900704-2386").unwrap().is_female());
        assert!(parse("20131112-2384").unwrap().is_female());
        assert!(!parse("18991223-9812").unwrap().is_female());
        assert!(!parse("201701012393").unwrap().is_female());
        assert!(!parse("197203702399").unwrap().is_female());
    }

    #[test]
    fn unmasked_display_has_a_dash_before_the_last_four() {
        assert_eq!(
            parse("930302+9806").unwrap().to_display_unmasked(),
            "18930302-9806"
        );
        assert_eq!(
            parse("201701012393").unwrap().to_display_unmasked(),
            "20170101-2393"
        );
    }

    #[test]
    fn must_reject_numbers_fail_with_the_right_error() {
        for (input, error) in [
            ("19541011-3606", PersonnummerError::CheckDigit),
            ("198413320428", PersonnummerError::Date),
        ] {
            assert_eq!(parse(input), Err(error.clone()), "{input}");
            let storage = input.replace('-', "");
            assert_eq!(Personnummer::from_storage(&storage), Err(error), "{storage}");
        }
    }

    #[test]
    fn february_29_needs_a_leap_year() {
        assert_date_errors(&["20230229123", "19000229123"]);
        assert!(parse(&with_check("20000229123")).is_ok());
        assert!(parse(&with_check("20240229123")).is_ok());
        // With `+`, 000229 means 1900, which has no 29 February.
        let ten = &with_check("20000229123")[2..];
        let plus = format!("{}+{}", &ten[..6], &ten[6..]);
        assert_eq!(parse(&plus), Err(PersonnummerError::Date));
        assert_eq!(parse(ten).unwrap().as_storage(), with_check("20000229123"));
    }

    #[test]
    fn samordningsnummer_days_run_from_61_to_91() {
        // The 31st of April does not exist, even written as day 91.
        assert_date_errors(&["19900160123", "19900192123", "19900432123", "19900491123"]);
        let first = parse(&with_check("19900161123")).unwrap();
        assert_eq!(first.kind(), IdKind::Samordningsnummer);
        assert_eq!(first.birth_date(), date!(1990 - 01 - 01));
        let last = parse(&with_check("19900191123")).unwrap();
        assert_eq!(last.birth_date(), date!(1990 - 01 - 31));
    }

    #[test]
    fn day_and_month_zero_are_rejected() {
        assert_date_errors(&["19900100123", "19900001123"]);
    }

    #[test]
    fn birth_number_000_is_rejected() {
        assert_eq!(
            parse(&with_check("19900704000")),
            Err(PersonnummerError::BirthNumber)
        );
    }

    #[test]
    fn future_birth_dates_are_rejected() {
        let tomorrow = with_check("20261127123");
        assert_eq!(parse(&tomorrow), Err(PersonnummerError::FutureDate));
        assert_eq!(
            parse(&format!("{}-{}", &tomorrow[..8], &tomorrow[8..])),
            Err(PersonnummerError::FutureDate)
        );
        assert!(parse(&with_check("20261126123")).is_ok());
        // The storage form was checked against the clock when first parsed.
        assert!(Personnummer::from_storage(&tomorrow).is_ok());
    }

    #[test]
    fn ten_digit_forms_never_land_in_the_future() {
        // 27 November 2026 is tomorrow, so `-` means 1926.
        let tomorrow = &with_check("20261127123")[2..];
        assert_eq!(&parse(tomorrow).unwrap().as_storage()[..4], "1926");
        let today = &with_check("20261126123")[2..];
        assert_eq!(&parse(today).unwrap().as_storage()[..4], "2026");
        let plus = format!("{}+{}", &today[..6], &today[6..]);
        assert_eq!(&parse(&plus).unwrap().as_storage()[..4], "1926");
    }

    #[test]
    fn forms_of_the_same_person_are_equal() {
        let forms = [
            "900704-2386",
            "9007042386",
            "199007042386",
            "19900704-2386",
            "19900704+2386",
            "  900704-2386\t",
            "\n199007042386 ",
        ];
        let expected = parse("199007042386").unwrap();
        for form in forms {
            assert_eq!(parse(form).unwrap(), expected, "{form:?}");
        }
        assert_ne!(parse("900704+2386").unwrap(), expected);
    }

    #[test]
    fn malformed_inputs_are_format_errors() {
        let inputs = [
            "",
            "   ",
            "900704238",
            "90070423866",
            "1990070423866",
            "19900704--2386",
            "900704-238",
            "9007-042386",
            "90070-42386",
            "1990070-42386",
            "900704 2386",
            "19900704 2386",
            "900704*2386",
            "9OO704-2386",
            "abcdefghij",
            "19900704-238a",
            "９００７０４２３８６",
            "900704\u{2013}2386",
            "90070423８6",
            "900704-2386x",
            "+9007042386",
        ];
        for input in inputs {
            assert_eq!(parse(input), Err(PersonnummerError::Format), "{input:?}");
        }
    }

    #[test]
    fn storage_form_must_be_exactly_twelve_digits() {
        for input in ["19900704-2386", "9007042386", " 199007042386", "19900704238x", ""] {
            assert_eq!(
                Personnummer::from_storage(input),
                Err(PersonnummerError::StorageFormat),
                "{input:?}"
            );
        }
        let number = Personnummer::from_storage("199004772381").unwrap();
        assert_eq!(number.kind(), IdKind::Samordningsnummer);
        assert_eq!(number, parse("900477-2381").unwrap());
    }

    #[test]
    fn display_and_debug_are_masked() {
        let number = parse("19900704-2386").unwrap();
        assert_eq!(number.to_string(), "********-****");
        assert_eq!(format!("{number:?}"), "Personnummer(********-****)");
        assert_eq!(format!("{number:#?}"), "Personnummer(********-****)");
        assert_eq!(
            format!("{:?}", Some(&number)),
            "Some(Personnummer(********-****))"
        );
    }

    #[test]
    fn nothing_printed_reveals_digits() {
        for input in VALID {
            let number = parse(input).unwrap();
            assert!(!has_digit_run(&number.to_string()));
            assert!(!has_digit_run(&format!("{number:?}")));
            assert!(!has_digit_run(&format!("{:?}", parse(input))));
        }
        let failing = [
            "19541011-3606",
            "198413320428",
            "19900704-000",
            "1990070400000",
            "19900704x2386",
        ];
        for input in failing {
            let error = parse(input).unwrap_err();
            assert!(!has_digit_run(&error.to_string()), "{error}");
            assert!(!has_digit_run(&format!("{error:?}")), "{error:?}");
        }
        let all = [
            PersonnummerError::Format,
            PersonnummerError::StorageFormat,
            PersonnummerError::Date,
            PersonnummerError::BirthNumber,
            PersonnummerError::CheckDigit,
            PersonnummerError::FutureDate,
        ];
        for error in all {
            let message = error.to_string();
            assert!(!message.chars().any(|c| c.is_ascii_digit()), "{message}");
        }
    }

    #[test]
    fn from_str_parses() {
        let number: Personnummer = "19900704-2386".parse().unwrap();
        assert_eq!(number.as_storage(), "199007042386");
        assert!("19541011-3606".parse::<Personnummer>().is_err());
    }

    #[test]
    fn serde_goes_through_parse() {
        let number = parse("900704-2386").unwrap();
        let json = serde_json::to_string(&number).unwrap();
        assert_eq!(json, "\"199007042386\"");
        let back: Personnummer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, number);
        let ten: Personnummer = serde_json::from_str("\"900704-2386\"").unwrap();
        assert_eq!(ten, number);
        let error = serde_json::from_str::<Personnummer>("\"19541011-3606\"").unwrap_err();
        assert!(!has_digit_run(&error.to_string()), "{error}");
        assert!(serde_json::from_str::<Personnummer>("199007042386").is_err());
    }

    #[test]
    fn ordering_follows_the_storage_form() {
        let older = parse("18991223-9812").unwrap();
        let younger = parse("201701012393").unwrap();
        assert!(older < younger);
    }

    /// Any date the `time` crate can represent, as a reference date.
    fn any_today() -> impl Strategy<Value = Date> {
        (Date::MIN.to_julian_day()..=Date::MAX.to_julian_day())
            .prop_map(|day| Date::from_julian_day(day).unwrap())
    }

    /// A birth date between 1800 and the reference date.
    fn birth_date() -> impl Strategy<Value = Date> {
        (date!(1800 - 01 - 01).to_julian_day()..=TODAY.to_julian_day())
            .prop_map(|day| Date::from_julian_day(day).unwrap())
    }

    /// A valid number as (storage form, birth date, kind).
    fn valid_number() -> impl Strategy<Value = (String, Date, IdKind)> {
        (birth_date(), 1u16..=999, any::<bool>()).prop_map(|(born, birth_number, coordination)| {
            let day = born.day() + if coordination { 60 } else { 0 };
            let eleven = format!(
                "{:04}{:02}{day:02}{birth_number:03}",
                born.year(),
                u8::from(born.month()),
            );
            let kind = if coordination {
                IdKind::Samordningsnummer
            } else {
                IdKind::Personnummer
            };
            (with_check(&eleven), born, kind)
        })
    }

    /// Whole years between `born` and the reference date.
    fn age(born: Date) -> i32 {
        let had_birthday = (u8::from(TODAY.month()), TODAY.day()) >= (u8::from(born.month()), born.day());
        TODAY.year() - born.year() - if had_birthday { 0 } else { 1 }
    }

    /// Every accepted input form of a storage form, with whether it should give the same
    /// person under the reference date.
    fn forms(storage: &str, born: Date) -> Vec<(String, bool)> {
        let (century, ten) = storage.split_at(2);
        let (date, tail) = ten.split_at(6);
        let age = age(born);
        vec![
            (storage.to_owned(), true),
            (format!("{century}{date}-{tail}"), true),
            (format!("{century}{date}+{tail}"), true),
            (ten.to_owned(), age < 100),
            (format!("{date}-{tail}"), age < 100),
            (format!("{date}+{tail}"), (100..200).contains(&age)),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_string(input in any::<String>(), today in any_today()) {
            let _ = Personnummer::parse(&input, today);
            let _ = Personnummer::from_storage(&input);
        }

        #[test]
        fn parse_never_panics_on_digit_strings(
            input in "[ \t]?([0-9]{6}|[0-9]{8})[-+ /]?[0-9]{4}[ \n]?",
            today in any_today(),
        ) {
            let result = Personnummer::parse(&input, today);
            if let Err(error) = result {
                prop_assert!(!has_digit_run(&error.to_string()));
            }
        }

        #[test]
        fn parse_never_panics_on_near_misses(input in "[0-9+\\-]{0,16}") {
            let _ = parse(&input);
            let _ = Personnummer::from_storage(&input);
        }

        #[test]
        fn every_form_of_a_valid_number_parses_to_it((storage, born, kind) in valid_number()) {
            let stored = Personnummer::from_storage(&storage).unwrap();
            prop_assert_eq!(stored.as_storage(), storage.as_str());
            prop_assert_eq!(stored.birth_date(), born);
            prop_assert_eq!(stored.kind(), kind);
            for (form, same_person) in forms(&storage, born) {
                let parsed = parse(&form);
                if same_person {
                    let parsed = parsed.unwrap();
                    prop_assert_eq!(&parsed, &stored, "{}", form);
                    let again = Personnummer::from_storage(parsed.as_storage()).unwrap();
                    prop_assert_eq!(again, parsed);
                } else if let Ok(other) = parsed {
                    prop_assert_ne!(other.as_storage(), storage.as_str(), "{}", form);
                }
            }
        }

        #[test]
        fn a_changed_check_digit_always_fails(
            (storage, born, _kind) in valid_number(),
            shift in 1u8..=9,
        ) {
            let (body, check) = storage.split_at(11);
            let check = check.parse::<u8>().unwrap();
            let wrong = format!("{body}{}", (check + shift) % 10);
            prop_assert_eq!(
                Personnummer::from_storage(&wrong),
                Err(PersonnummerError::CheckDigit)
            );
            for (form, same_person) in forms(&wrong, born) {
                if same_person {
                    prop_assert_eq!(parse(&form), Err(PersonnummerError::CheckDigit), "{}", form);
                } else {
                    prop_assert!(parse(&form).is_err(), "{}", form);
                }
            }
        }
    }
}
