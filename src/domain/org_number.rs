//! Swedish organisation numbers (organisationsnummer).
//!
//! An [`OrgNumber`] can only be built through [`OrgNumber::parse`], so holding one means the
//! format, the range of the third and fourth digits and the check digit have been checked.
//! Organisation numbers are public, so `Debug` and `Display` show them in full.

use std::fmt;

use serde::Deserialize;

use super::personnummer::{luhn_check_digit, split_digits};

/// The prefix of the twelve-digit form, as text.
const TWELVE_DIGIT_PREFIX: &str = "16";

/// The prefix of the twelve-digit form, as digit values.
const TWELVE_DIGIT_PREFIX_DIGITS: [u8; 2] = [1, 6];

/// The smallest number the third and fourth digits may form, which keeps an organisation
/// number from ever reading as a date.
const MIN_MIDDLE_PAIR: u8 = 20;

/// Why a string is not a valid organisation number.
///
/// The messages describe the problem and the accepted forms, but never echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgNumberError {
    /// The input does not have one of the accepted shapes.
    #[error(
        "the organisation number has an invalid format; accepted forms are NNNNNN-NNNN, \
         NNNNNNNNNN, 16NNNNNNNNNN and 16NNNNNN-NNNN"
    )]
    Format,
    /// A twelve-digit form does not start with `16`.
    #[error("a twelve-digit organisation number must start with the prefix 16")]
    Prefix,
    /// The third and fourth digits form a number below 20, as in a personnummer.
    #[error("the third and fourth digits of an organisation number must form a number of at least 20")]
    NotAnOrganisation,
    /// The last digit does not match the Luhn check digit.
    #[error("the organisation number has a wrong check digit")]
    CheckDigit,
}

/// A validated Swedish organisation number, kept as its ten digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct OrgNumber {
    /// The ten ASCII digits; this field comes first so ordering follows it.
    digits: String,
    /// The first digit, which tells the legal-form group.
    legal_form_group: u8,
}

impl OrgNumber {
    /// Parses `NNNNNN-NNNN`, `NNNNNNNNNN`, `16NNNNNNNNNN` or `16NNNNNN-NNNN`.
    ///
    /// Surrounding whitespace is ignored.
    ///
    /// # Errors
    ///
    /// Returns an [`OrgNumberError`] telling which rule the input breaks.
    pub fn parse(input: &str) -> Result<Self, OrgNumberError> {
        let digits = split_input(input.trim().as_bytes()).ok_or(OrgNumberError::Format)?;
        let ten = match digits.split_first_chunk::<2>() {
            Some((prefix, rest)) if rest.len() == 10 => {
                if *prefix != TWELVE_DIGIT_PREFIX_DIGITS {
                    return Err(OrgNumberError::Prefix);
                }
                rest
            }
            _ => digits.as_slice(),
        };
        let ten: [u8; 10] = ten.try_into().map_err(|_| OrgNumberError::Format)?;
        let [g, d2, d3, d4, d5, d6, d7, d8, d9, check] = ten;
        if d3 * 10 + d4 < MIN_MIDDLE_PAIR {
            return Err(OrgNumberError::NotAnOrganisation);
        }
        if luhn_check_digit(&[g, d2, d3, d4, d5, d6, d7, d8, d9]) != check {
            return Err(OrgNumberError::CheckDigit);
        }
        Ok(Self {
            digits: ten.iter().map(|&digit| char::from(b'0' + digit)).collect(),
            legal_form_group: g,
        })
    }

    /// Returns the ten digits, the storage form.
    pub fn as_str(&self) -> &str {
        &self.digits
    }

    /// Returns the twelve-digit form, `16` followed by the ten digits.
    pub fn to_twelve_digit(&self) -> String {
        format!("{TWELVE_DIGIT_PREFIX}{}", self.digits)
    }

    /// Returns the first digit, the legal-form group (2 for the state, regions and
    /// municipalities, 5 for aktiebolag, and so on).
    pub fn legal_form_group(&self) -> u8 {
        self.legal_form_group
    }
}

/// Reads a trimmed input as the values of its ten or twelve digits, dropping a `-` that
/// stands before the last four, or gives `None` for any other shape.
fn split_input(bytes: &[u8]) -> Option<Vec<u8>> {
    match split_digits(bytes)? {
        (digits, None | Some(b'-')) => Some(digits),
        (_, Some(_)) => None,
    }
}

impl fmt::Debug for OrgNumber {
    /// Prints `OrgNumber(NNNNNN-NNNN)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgNumber({self})")
    }
}

impl fmt::Display for OrgNumber {
    /// Prints `NNNNNN-NNNN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, digit) in self.digits.chars().enumerate() {
            if position == 6 {
                f.write_str("-")?;
            }
            write!(f, "{digit}")?;
        }
        Ok(())
    }
}

super::names::parsed_text!(
    OrgNumber, OrgNumberError,
    /// Parses like [`OrgNumber::parse`].
    |text| Self::parse(text),
    /// Serializes as the ten-digit storage form.
    as_str
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::personnummer::oracle::check_digit as oracle_check_digit;
    use proptest::prelude::*;

    #[test]
    fn public_organisation_numbers_parse() {
        let fk = OrgNumber::parse("202100-5521").unwrap();
        assert_eq!(fk.as_str(), "2021005521");
        assert_eq!(fk.to_twelve_digit(), "162021005521");
        assert_eq!(fk.legal_form_group(), 2);
        assert_eq!(fk.to_string(), "202100-5521");
        assert_eq!(format!("{fk:?}"), "OrgNumber(202100-5521)");

        let stockholm = OrgNumber::parse("212000-0142").unwrap();
        assert_eq!(stockholm.as_str(), "2120000142");
        assert_eq!(stockholm.legal_form_group(), 2);
    }

    #[test]
    fn every_accepted_form_gives_the_same_number() {
        let expected = OrgNumber::parse("202100-5521").unwrap();
        for form in ["2021005521", "162021005521", "16202100-5521", " 202100-5521\n"] {
            assert_eq!(OrgNumber::parse(form).unwrap(), expected, "{form:?}");
        }
    }

    #[test]
    fn wrong_check_digit_is_rejected() {
        assert_eq!(OrgNumber::parse("202100-5522"), Err(OrgNumberError::CheckDigit));
        assert_eq!(OrgNumber::parse("16212000-0143"), Err(OrgNumberError::CheckDigit));
    }

    #[test]
    fn a_personnummer_is_not_an_organisation_number() {
        // These have a valid Luhn digit, but their third and fourth digits are a month.
        assert_eq!(
            OrgNumber::parse("900704-2386"),
            Err(OrgNumberError::NotAnOrganisation)
        );
        assert_eq!(
            OrgNumber::parse("5519000003"),
            Err(OrgNumberError::NotAnOrganisation)
        );
        assert!(OrgNumber::parse("5520000000").is_ok());
    }

    #[test]
    fn twelve_digit_forms_need_the_prefix_16() {
        assert_eq!(OrgNumber::parse("192021005521"), Err(OrgNumberError::Prefix));
        assert_eq!(OrgNumber::parse("20202100-5521"), Err(OrgNumberError::Prefix));
        assert_eq!(OrgNumber::parse("199007042386"), Err(OrgNumberError::Prefix));
    }

    #[test]
    fn malformed_inputs_are_format_errors() {
        for input in [
            "",
            "202100-552",
            "20210055211",
            "202100+5521",
            "2021-005521",
            "202100 5521",
            "20210O-5521",
            "1620210055211",
            "16-202100-5521",
            "162021-005521",
            "２０２１００５５２１",
            "202100\u{2013}5521",
        ] {
            assert_eq!(OrgNumber::parse(input), Err(OrgNumberError::Format), "{input:?}");
        }
    }

    #[test]
    fn error_messages_do_not_echo_the_input() {
        for input in ["202100-5522", "900704-2386", "192021005521", "2021005x21"] {
            let message = OrgNumber::parse(input).unwrap_err().to_string();
            assert!(!message.contains(input), "{message}");
            assert!(!message.contains(&input[..4]), "{message}");
        }
    }

    #[test]
    fn traits_follow_the_ten_digits() {
        let fk: OrgNumber = "202100-5521".parse().unwrap();
        let stockholm = OrgNumber::try_from(String::from("2120000142")).unwrap();
        assert!(fk < stockholm);
        let json = serde_json::to_string(&fk).unwrap();
        assert_eq!(json, "\"2021005521\"");
        assert_eq!(serde_json::from_str::<OrgNumber>(&json).unwrap(), fk);
        assert_eq!(
            serde_json::from_str::<OrgNumber>("\"162120000142\"").unwrap(),
            stockholm
        );
        assert!(serde_json::from_str::<OrgNumber>("\"202100-5522\"").is_err());
    }

    /// A valid organisation number as ten digits.
    fn valid_number() -> impl Strategy<Value = String> {
        (0u8..=9, 0u8..=9, 20u8..=99, 0u32..=99_999).prop_map(|(group, second, middle, tail)| {
            let nine = format!("{group}{second}{middle}{tail:05}");
            let check = oracle_check_digit(&nine);
            format!("{nine}{check}")
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = OrgNumber::parse(&input);
        }

        #[test]
        fn parse_never_panics_on_near_misses(input in "[0-9+\\- ]{0,15}") {
            let _ = OrgNumber::parse(&input);
        }

        #[test]
        fn valid_numbers_round_trip(ten in valid_number()) {
            let (head, tail) = ten.split_at(6);
            let number = OrgNumber::parse(&ten).unwrap();
            prop_assert_eq!(number.as_str(), ten.as_str());
            prop_assert_eq!(number.to_twelve_digit(), format!("16{ten}"));
            prop_assert_eq!(u32::from(number.legal_form_group()), ten[..1].parse::<u32>().unwrap());
            prop_assert_eq!(number.to_string(), format!("{head}-{tail}"));
            for form in [
                format!("{head}-{tail}"),
                format!("16{ten}"),
                format!("16{head}-{tail}"),
                number.to_string(),
                number.to_twelve_digit(),
            ] {
                prop_assert_eq!(&OrgNumber::parse(&form).unwrap(), &number);
            }
            let json = serde_json::to_string(&number).unwrap();
            prop_assert_eq!(serde_json::from_str::<OrgNumber>(&json).unwrap(), number);
        }

        #[test]
        fn a_changed_check_digit_always_fails(ten in valid_number(), shift in 1u32..=9) {
            let (nine, check) = ten.split_at(9);
            let wrong = (check.parse::<u32>().unwrap() + shift) % 10;
            prop_assert_eq!(
                OrgNumber::parse(&format!("{nine}{wrong}")),
                Err(OrgNumberError::CheckDigit)
            );
        }
    }
}
