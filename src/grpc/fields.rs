//! Request fields: what is wrong with one ([`FieldError`], reported by `grpc::status`), and the
//! checks both APIs share.
//!
//! A check says which field is wrong, what kind of wrong it is ([`FieldProblem`]) and what to do
//! about it; the code and reason the client sees are chosen in `grpc::status` alone. Messages never
//! repeat an identity number.

use std::time::Duration;

use time::Date;

use crate::domain::clock::parse_date;
use crate::domain::{OrgNumber, Personnummer};

/// What kind of problem a field has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldProblem {
    /// Missing, too long, malformed or out of range.
    Invalid,
    /// Not a date `YYYY-MM-DD`, or a date that is not allowed here.
    Date,
    /// Not a valid personnummer or samordningsnummer.
    PersonId,
    /// Not a valid organisationsnummer.
    OrgNumber,
    /// A page token this listing did not issue.
    PageToken,
    /// A cursor this service did not issue to the caller.
    Cursor,
    /// Too many (or no) items in one call.
    BatchTooLarge,
    /// A benefit type code the catalogue does not hold.
    UnknownBenefitType { code: String },
    /// A legal-basis code the catalogue does not hold.
    UnknownBasis { code: String },
    /// A consent that runs longer than the longest allowed period.
    ConsentPeriodTooLong { max_days: u32 },
    /// A certificate that cannot be registered.
    Certificate,
}

/// One request field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path in the request, e.g. `items[3].person_id`.
    pub field: String,
    pub problem: FieldProblem,
    /// What is wrong and what to do, for people.
    pub message: String,
}

impl FieldError {
    pub fn new(problem: FieldProblem, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem,
            message: message.into(),
        }
    }

    /// A field that is missing, too long, malformed or out of range.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FieldProblem::Invalid, field, message)
    }

    /// A date field that does not hold an allowed date.
    pub fn date(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(FieldProblem::Date, field, message)
    }

    /// The same problem under a field path one level down (e.g. in an item of a list).
    pub fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

/// A personnummer or samordningsnummer field; the error never echoes the input.
pub fn person(field: &str, value: &str, today: Date) -> Result<Personnummer, FieldError> {
    Personnummer::parse(value, today).map_err(|e| {
        FieldError::new(
            FieldProblem::PersonId,
            field,
            format!("{field} is not a valid personnummer or samordningsnummer: {e}"),
        )
    })
}

/// An optional personnummer field (empty = none).
pub fn optional_person(field: &str, value: &str, today: Date) -> Result<Option<Personnummer>, FieldError> {
    if value.is_empty() {
        Ok(None)
    } else {
        person(field, value, today).map(Some)
    }
}

/// An organisationsnummer field.
pub fn org_number(field: &str, value: &str) -> Result<OrgNumber, FieldError> {
    OrgNumber::parse(value)
        .map_err(|e| FieldError::new(FieldProblem::OrgNumber, field, format!("{field}: {e}")))
}

/// A required date field written `YYYY-MM-DD`.
pub fn date(field: &str, value: &str) -> Result<Date, FieldError> {
    parse_date(value)
        .ok_or_else(|| FieldError::date(field, format!("{field} must be a date written YYYY-MM-DD")))
}

/// A required free-text field, trimmed, at most `max` characters; `what` says what belongs in it.
pub fn required_text(field: &str, value: &str, max: usize, what: &str) -> Result<String, FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::invalid(field, format!("{field} is required: {what}")));
    }
    at_most(field, value, max)?;
    Ok(value.to_string())
}

/// An optional free-text field, trimmed, at most `max` characters (empty = none).
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<Option<String>, FieldError> {
    let value = value.trim();
    at_most(field, value, max)?;
    Ok((!value.is_empty()).then(|| value.to_string()))
}

/// Refuses a batch of `count` items (in the request's `field`) that is empty or holds more than
/// `max` (BATCH_TOO_LARGE).
pub fn batch_size(field: &str, count: usize, max: usize) -> Result<(), FieldError> {
    if count == 0 || count > max {
        return Err(FieldError::new(
            FieldProblem::BatchTooLarge,
            field,
            format!("send 1 to {max} {field} per call"),
        ));
    }
    Ok(())
}

/// Refuses text longer than `max` characters.
pub fn at_most(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::invalid(
            field,
            format!("{field} is longer than {max} characters; shorten it"),
        ));
    }
    Ok(())
}

/// The interval a client asks for between idle heartbeats: 1 s to 300 s, or the server default
/// when unset.
pub fn heartbeat_interval(
    requested: Option<&prost_types::Duration>,
    default: Duration,
) -> Result<Duration, FieldError> {
    let bounds = Duration::from_secs(1)..=Duration::from_secs(300);
    let hint = "heartbeat_interval must be between 1 s and 300 s (or unset for the server default)";
    bounded_duration("heartbeat_interval", requested, bounds, hint).map(|d| d.unwrap_or(default))
}

/// How long a pull may wait for something to arrive (FetchEvents.wait): unset or 0 = not at all,
/// at most [`MAX_LONG_POLL`].
pub fn long_poll_wait(requested: Option<&prost_types::Duration>) -> Result<Duration, FieldError> {
    let hint = "wait must be between 0 and 60 s (keep it below your proxy's idle timeout)";
    bounded_duration("wait", requested, Duration::ZERO..=MAX_LONG_POLL, hint).map(Option::unwrap_or_default)
}

/// The longest long poll of FetchEvents.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(60);

/// A duration field within `bounds` (`None` when unset); `hint` says what is allowed.
fn bounded_duration(
    field: &str,
    requested: Option<&prost_types::Duration>,
    bounds: std::ops::RangeInclusive<Duration>,
    hint: &str,
) -> Result<Option<Duration>, FieldError> {
    let Some(d) = requested else {
        return Ok(None);
    };
    // Negative parts and nanos of a second or more are not a duration (and would overflow).
    let duration = match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(s), Ok(n)) if n < 1_000_000_000 => Some(Duration::new(s, n)),
        _ => None,
    };
    match duration {
        Some(d) if bounds.contains(&d) => Ok(Some(d)),
        _ => Err(FieldError::invalid(field, hint)),
    }
}

/// The longest idempotency key accepted.
pub const MAX_KEY_CHARS: usize = 128;

/// The request's idempotency key, checked: 1 to [`MAX_KEY_CHARS`] printable characters (every
/// mutating call of both APIs).
pub fn idempotency_key(key: &str) -> Result<&str, FieldError> {
    let key = key.trim();
    if key.is_empty() {
        return Err(FieldError::invalid(
            "idempotency_key",
            "idempotency_key is required: send a new unique value (e.g. a UUID) per intended change, \
             and the same value when you retry that change",
        ));
    }
    if key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            "idempotency_key",
            "idempotency_key must be at most 128 printable characters (a UUID is a good choice)",
        ));
    }
    Ok(key)
}

/// A list of proto enum numbers as domain values, each checked: an unknown or unspecified number
/// is refused naming its index, rather than silently matching everything or nothing.
pub fn enum_list<T>(
    field: &str,
    values: &[i32],
    convert: impl Fn(i32) -> Option<T>,
    allowed: &str,
) -> Result<Vec<T>, FieldError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            convert(*v).ok_or_else(|| {
                FieldError::invalid(format!("{field}[{i}]"), format!("{field} may hold {allowed}"))
            })
        })
        .collect()
}

/// Checks that `code` names a benefit type of the catalogue (`is_known`).
pub fn benefit_code(field: &str, code: &str, is_known: impl Fn(&str) -> bool) -> Result<(), FieldError> {
    if is_known(code) {
        return Ok(());
    }
    Err(FieldError::new(
        FieldProblem::UnknownBenefitType {
            code: code.to_string(),
        },
        field,
        "unknown benefit type; use codes from PartyService.ListBenefitTypes",
    ))
}

/// Checks that every code names a benefit type of the catalogue; a refusal names `field[i]`.
pub fn benefit_codes(
    field: &str,
    codes: &[String],
    is_known: impl Fn(&str) -> bool,
) -> Result<(), FieldError> {
    for (i, code) in codes.iter().enumerate() {
        benefit_code(&format!("{field}[{i}]"), code, &is_known)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(required_text("f", "  x ", 3, "x").unwrap(), "x");
        assert_eq!(
            required_text("f", "  ", 3, "x").unwrap_err().problem,
            FieldProblem::Invalid
        );
        assert!(required_text("f", "abcd", 3, "x").is_err());
        assert_eq!(optional_text("f", " ", 3).unwrap(), None);
    }

    #[test]
    fn heartbeat_intervals_are_bounded() {
        let d = |seconds| prost_types::Duration { seconds, nanos: 0 };
        let default = Duration::from_secs(15);
        assert_eq!(heartbeat_interval(None, default).unwrap(), default);
        assert_eq!(
            heartbeat_interval(Some(&d(2)), default).unwrap(),
            Duration::from_secs(2)
        );
        assert!(heartbeat_interval(Some(&d(0)), default).is_err());
        assert!(heartbeat_interval(Some(&d(301)), default).is_err());
        assert!(heartbeat_interval(Some(&d(-1)), default).is_err());
    }

    #[test]
    fn long_poll_waits_are_bounded() {
        let d = |seconds| prost_types::Duration { seconds, nanos: 0 };
        assert_eq!(long_poll_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(long_poll_wait(Some(&d(0))).unwrap(), Duration::ZERO);
        assert_eq!(long_poll_wait(Some(&d(60))).unwrap(), MAX_LONG_POLL);
        assert_eq!(long_poll_wait(Some(&d(61))).unwrap_err().field, "wait");
        assert!(long_poll_wait(Some(&d(-1))).is_err());
        let huge = prost_types::Duration {
            seconds: i64::MAX,
            nanos: i32::MAX,
        };
        assert!(long_poll_wait(Some(&huge)).is_err());
        assert!(heartbeat_interval(Some(&huge), Duration::from_secs(15)).is_err());
    }

    #[test]
    fn enum_lists_name_the_bad_index() {
        let even = |v: i32| (v % 2 == 0).then_some(v);
        assert_eq!(enum_list("states", &[2, 4], even, "even").unwrap(), vec![2, 4]);
        assert_eq!(
            enum_list("states", &[2, 3], even, "even").unwrap_err().field,
            "states[1]"
        );
    }

    #[test]
    fn person_errors_do_not_echo_the_number() {
        let today = time::macros::date!(2026 - 12 - 01);
        let err = person("person_id", "19541011-3606", today).unwrap_err();
        assert_eq!(err.problem, FieldProblem::PersonId);
        assert!(!err.message.contains("3606"), "{}", err.message);
    }
}
