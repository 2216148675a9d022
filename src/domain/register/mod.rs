//! The benefit register's facts: cases, compensation periods, decisions, payments, person events
//! and a person's own data, with the rules every fact must satisfy before it is stored.
//!
//! A fact arrives from a source system as a [`NewFact`]; the store gives every accepted version a
//! register sequence. Bodies are kept as JSON (through serde) in the log, so the types here are the
//! storage format too: renaming a field needs a migration of stored bodies.
//!
//! Money is integer öre (`i64`) everywhere. Business dates are [`time::Date`], written
//! `YYYY-MM-DD`.

use crate::domain::names::named_enum;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::Date;

use crate::domain::Personnummer;

pub mod versions;

/// Longest accepted source system name.
pub const MAX_SOURCE_SYSTEM_LEN: usize = 32;
/// Longest accepted source id.
pub const MAX_SOURCE_ID_LEN: usize = 128;
/// Longest accepted case id (of the agency's case system).
pub const MAX_CASE_ID_LEN: usize = 128;
/// Longest accepted name of a person.
pub const MAX_NAME_LEN: usize = 200;
/// Longest accepted amount type or payer code.
pub const MAX_CODE_LEN: usize = 32;
/// Most amount lines on one payment.
pub const MAX_AMOUNT_LINES: usize = 100;

/// Why a fact was refused. Each value has one `lefi.v1.ErrorReason` of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    InvalidArgument,
    PersonIdInvalid,
    UnknownBenefitType,
    InvalidDate,
    SourceVersionConflict,
    SourceVersionOutOfOrder,
    RecordNotFound,
}

/// A refused fact: why, which field, and what to do. The message never contains an identity number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactError {
    pub reason: RejectReason,
    /// The field at fault, as a path in `lefi.admin.v1.Fact` (e.g. `payment.lines`); may be empty.
    pub field: String,
    pub message: String,
}

impl FactError {
    pub fn new(reason: RejectReason, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(RejectReason::InvalidArgument, field, message)
    }

    fn date(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(RejectReason::InvalidDate, field, message)
    }

    /// Prefixes the field with `prefix.` (used when a body is validated inside a fact).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

impl std::fmt::Display for FactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

named_enum! {
    /// What a version does to its fact.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum RecordKind {
        /// The first version.
        New,
        /// A later version that replaces the fact completely.
        Correction,
        /// The fact is withdrawn; the version carries the last content for reference.
        Retraction,
    }
}

named_enum! {
    /// Which kind of body a fact has.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum FactType {
        Case,
        Period,
        Decision,
        Payment,
        Event,
        /// A person's own data (name, protection, death).
        Person,
    }
}

impl FactType {
    /// The name of the body field in `lefi.admin.v1.Fact`, for error messages.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Case => "case",
            Self::Period => "compensation_period",
            Self::Decision => "decision",
            Self::Payment => "payment",
            Self::Event => "person_event",
            Self::Person => "person",
        }
    }
}

/// An inclusive range of business dates; `to = None` is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateRange {
    #[serde(with = "ymd")]
    pub from: Date,
    #[serde(with = "ymd_opt", default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Date>,
}

impl DateRange {
    /// A range, refused when it ends before it starts.
    pub fn new(from: Date, to: Option<Date>) -> Result<Self, FactError> {
        if to.is_some_and(|to| to < from) {
            return Err(FactError::date("", "the period ends before it starts"));
        }
        Ok(Self { from, to })
    }

    /// Whether the two ranges share at least one day.
    pub fn overlaps(&self, other: &DateRange) -> bool {
        let starts_before_other_ends = other.to.is_none_or(|to| self.from <= to);
        let ends_after_other_starts = self.to.is_none_or(|to| to >= other.from);
        starts_before_other_ends && ends_after_other_starts
    }
}

/// Whether a benefit case is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseStatus {
    Open,
    Closed,
}

/// A benefit case (fall) or sub-case (delfall).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenefitCase {
    pub case_id: String,
    /// The parent case of a sub-case; `None` for a top-level case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_case_id: Option<String>,
    #[serde(with = "ymd")]
    pub opened: Date,
    #[serde(with = "ymd_opt", default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Date>,
    pub status: CaseStatus,
}

/// The extent of compensation in a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Extent {
    Full,
    ThreeQuarters,
    Half,
    OneQuarter,
}

impl Extent {
    /// The extent in quarters (4 = full).
    pub fn quarters(self) -> i64 {
        match self {
            Self::Full => 4,
            Self::ThreeQuarters => 3,
            Self::Half => 2,
            Self::OneQuarter => 1,
        }
    }
}

/// A compensation period (ersättningsperiod): the days a benefit was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensationPeriod {
    pub case_id: String,
    #[serde(with = "ymd")]
    pub from: Date,
    #[serde(with = "ymd")]
    pub to: Date,
    pub extent: Extent,
    /// Before tax, at this extent.
    pub daily_amount_ore: i64,
}

/// What a decision decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DecisionKind {
    Granted,
    Rejected,
    Withdrawn,
    Blocked,
    Unblocked,
}

/// A decision (beslut) in a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub case_id: String,
    pub kind: DecisionKind,
    #[serde(with = "ymd")]
    pub effective_from: Date,
    #[serde(with = "ymd")]
    pub decided_on: Date,
}

/// One typed line of a payment (beloppstyp).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmountLine {
    pub amount_type: String,
    /// Negative for deductions and reclaims.
    pub amount_ore: i64,
}

/// A payment (utbetalning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub case_id: String,
    #[serde(with = "ymd")]
    pub payment_date: Date,
    /// The period the payment covers; always closed (`to` set).
    pub covered: DateRange,
    pub gross_ore: i64,
    pub tax_ore: i64,
    pub preliminary: bool,
    /// Sum to `gross_ore`.
    pub lines: Vec<AmountLine>,
    /// "FK" or "PM".
    pub payer: String,
}

/// What happened to the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PersonEventKind {
    LifeCertificateReceived,
    LifeCertificateMissing,
    DeathRegistered,
    SicknessCaseClosed,
}

/// An event concerning the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonEvent {
    pub kind: PersonEventKind,
    #[serde(with = "ymd")]
    pub event_date: Date,
}

/// A person's own data. The name is stored but never disclosed to parties while
/// `protected_identity` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PersonData {
    pub name: String,
    pub protected_identity: bool,
    #[serde(with = "ymd_opt", default, skip_serializing_if = "Option::is_none")]
    pub date_of_death: Option<Date>,
}

/// The content of a fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactBody {
    Case(BenefitCase),
    Period(CompensationPeriod),
    Decision(Decision),
    Payment(Payment),
    Event(PersonEvent),
    Person(PersonData),
}

impl FactBody {
    /// The fact's topic within its type: the kind of a decision or of a person event, empty for
    /// the others (stored beside each version for filtered subscriptions: `RecordFilter`).
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Decision(d) => match d.kind {
                DecisionKind::Granted => "GRANTED",
                DecisionKind::Rejected => "REJECTED",
                DecisionKind::Withdrawn => "WITHDRAWN",
                DecisionKind::Blocked => "BLOCKED",
                DecisionKind::Unblocked => "UNBLOCKED",
            },
            Self::Event(e) => match e.kind {
                PersonEventKind::LifeCertificateReceived => "LIFE_CERTIFICATE_RECEIVED",
                PersonEventKind::LifeCertificateMissing => "LIFE_CERTIFICATE_MISSING",
                PersonEventKind::DeathRegistered => "DEATH_REGISTERED",
                PersonEventKind::SicknessCaseClosed => "SICKNESS_CASE_CLOSED",
            },
            Self::Case(_) | Self::Period(_) | Self::Payment(_) | Self::Person(_) => "",
        }
    }

    pub fn fact_type(&self) -> FactType {
        match self {
            Self::Case(_) => FactType::Case,
            Self::Period(_) => FactType::Period,
            Self::Decision(_) => FactType::Decision,
            Self::Payment(_) => FactType::Payment,
            Self::Event(_) => FactType::Event,
            Self::Person(_) => FactType::Person,
        }
    }

    /// Checks the rules of the body; the error's field is relative to the body.
    pub fn validate(&self) -> Result<(), FactError> {
        match self {
            Self::Case(c) => c.validate(),
            Self::Period(p) => p.validate(),
            Self::Decision(d) => d.validate(),
            Self::Payment(p) => p.validate(),
            Self::Event(_) => Ok(()),
            Self::Person(p) => p.validate(),
        }
        .map_err(|e| e.within(self.fact_type().field_name()))
    }

    /// The business period the body concerns when the fact gives none: case opened..closed,
    /// compensation period from..to, decision effective_from..(open), payment covered, person event
    /// event_date..event_date. `None` for a person's own data.
    pub fn derived_valid(&self) -> Option<DateRange> {
        match self {
            Self::Case(c) => Some(DateRange {
                from: c.opened,
                to: c.closed,
            }),
            Self::Period(p) => Some(DateRange {
                from: p.from,
                to: Some(p.to),
            }),
            Self::Decision(d) => Some(DateRange {
                from: d.effective_from,
                to: None,
            }),
            Self::Payment(p) => Some(p.covered),
            Self::Event(e) => Some(DateRange {
                from: e.event_date,
                to: Some(e.event_date),
            }),
            Self::Person(_) => None,
        }
    }

    /// The storage form (JSON of the inner value; the fact type is stored beside it).
    pub fn to_json(&self) -> String {
        let json = match self {
            Self::Case(v) => serde_json::to_string(v),
            Self::Period(v) => serde_json::to_string(v),
            Self::Decision(v) => serde_json::to_string(v),
            Self::Payment(v) => serde_json::to_string(v),
            Self::Event(v) => serde_json::to_string(v),
            Self::Person(v) => serde_json::to_string(v),
        };
        // Serializing these plain structs cannot fail: every field is a string, number, bool or
        // a date formatted by `ymd`.
        json.unwrap_or_default()
    }

    /// Reads the storage form back.
    pub fn from_json(fact_type: FactType, json: &str) -> Result<Self, serde_json::Error> {
        Ok(match fact_type {
            FactType::Case => Self::Case(serde_json::from_str(json)?),
            FactType::Period => Self::Period(serde_json::from_str(json)?),
            FactType::Decision => Self::Decision(serde_json::from_str(json)?),
            FactType::Payment => Self::Payment(serde_json::from_str(json)?),
            FactType::Event => Self::Event(serde_json::from_str(json)?),
            FactType::Person => Self::Person(serde_json::from_str(json)?),
        })
    }
}

fn check_id(field: &str, value: &str, max: usize) -> Result<(), FactError> {
    if value.trim().is_empty() {
        return Err(FactError::invalid(field, format!("{field} is required")));
    }
    if value.chars().count() > max {
        return Err(FactError::invalid(
            field,
            format!("{field} is longer than {max} characters"),
        ));
    }
    Ok(())
}

impl BenefitCase {
    /// A case must have an id; a closed case has a closing date not before its opening, an open one
    /// has none.
    pub fn validate(&self) -> Result<(), FactError> {
        check_id("case_id", &self.case_id, MAX_CASE_ID_LEN)?;
        if let Some(parent) = &self.parent_case_id {
            check_id("parent_case_id", parent, MAX_CASE_ID_LEN)?;
            if *parent == self.case_id {
                return Err(FactError::invalid(
                    "parent_case_id",
                    "a case cannot be its own parent; leave parent_case_id empty for a top-level case",
                ));
            }
        }
        match (self.status, self.closed) {
            (CaseStatus::Open, Some(_)) => Err(FactError::invalid(
                "closed",
                "an OPEN case has no closing date; set status CLOSED or leave closed empty",
            )),
            (CaseStatus::Closed, None) => Err(FactError::invalid(
                "closed",
                "a CLOSED case needs its closing date",
            )),
            (CaseStatus::Closed, Some(closed)) if closed < self.opened => Err(FactError::date(
                "closed",
                "the case is closed before it was opened",
            )),
            _ => Ok(()),
        }
    }
}

impl CompensationPeriod {
    /// A period must name its case, end on or after its first day, and pay a non-negative amount.
    pub fn validate(&self) -> Result<(), FactError> {
        check_id("case_id", &self.case_id, MAX_CASE_ID_LEN)?;
        if self.to < self.from {
            return Err(FactError::date("to", "the period ends before it starts"));
        }
        if self.daily_amount_ore < 0 {
            return Err(FactError::invalid(
                "daily_amount_ore",
                "the daily amount cannot be negative",
            ));
        }
        Ok(())
    }
}

impl Decision {
    /// A decision must name its case.
    pub fn validate(&self) -> Result<(), FactError> {
        check_id("case_id", &self.case_id, MAX_CASE_ID_LEN)
    }
}

impl Payment {
    /// A payment must name its case and payer, cover a closed period, have amount lines that sum
    /// exactly to the gross amount, and withhold tax of the gross amount's sign, not above it.
    pub fn validate(&self) -> Result<(), FactError> {
        check_id("case_id", &self.case_id, MAX_CASE_ID_LEN)?;
        check_id("payer", &self.payer, MAX_CODE_LEN)?;
        let Some(to) = self.covered.to else {
            return Err(FactError::date(
                "covered.to",
                "a payment covers a closed period: give covered.to",
            ));
        };
        if to < self.covered.from {
            return Err(FactError::date(
                "covered",
                "the covered period ends before it starts",
            ));
        }
        if self.lines.is_empty() || self.lines.len() > MAX_AMOUNT_LINES {
            return Err(FactError::invalid(
                "lines",
                format!("a payment has 1 to {MAX_AMOUNT_LINES} amount lines, which sum to gross_ore"),
            ));
        }
        let mut sum: i64 = 0;
        for (i, line) in self.lines.iter().enumerate() {
            check_id(
                &format!("lines[{i}].amount_type"),
                &line.amount_type,
                MAX_CODE_LEN,
            )?;
            sum = sum.checked_add(line.amount_ore).ok_or_else(|| {
                FactError::invalid("lines", "the amount lines overflow; amounts are in öre")
            })?;
        }
        if sum != self.gross_ore {
            return Err(FactError::invalid(
                "lines",
                format!(
                    "the amount lines sum to {sum} öre but gross_ore is {} öre; they must be equal",
                    self.gross_ore
                ),
            ));
        }
        let tax_fits = if self.gross_ore >= 0 {
            (0..=self.gross_ore).contains(&self.tax_ore)
        } else {
            (self.gross_ore..=0).contains(&self.tax_ore)
        };
        if !tax_fits {
            return Err(FactError::invalid(
                "tax_ore",
                "tax_ore must have the sign of gross_ore and not exceed it",
            ));
        }
        Ok(())
    }
}

impl PersonData {
    /// A name, when given, is at most [`MAX_NAME_LEN`] characters.
    pub fn validate(&self) -> Result<(), FactError> {
        if self.name.chars().count() > MAX_NAME_LEN {
            return Err(FactError::invalid(
                "name",
                format!("the name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        Ok(())
    }
}

/// Checks a source system name: upper-case letters, digits, `-` and `_`, at most 32 characters.
pub fn validate_source_system(s: &str) -> Result<(), FactError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SOURCE_SYSTEM_LEN
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(FactError::invalid(
            "source_system",
            "source_system is required: upper-case letters, digits, '-' and '_', at most 32 characters",
        ))
    }
}

/// A fact as a source system sends it, checked for everything that needs no stored state.
/// Build it with [`NewFact::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFact {
    source_system: String,
    /// Empty for person updates (identified by source system and person).
    source_id: String,
    source_version: u64,
    person: Personnummer,
    /// Empty for person updates and for person events that concern no single benefit.
    benefit_type: String,
    kind: RecordKind,
    /// Given explicitly by the source; `None` = derived from the body.
    valid: Option<DateRange>,
    retroactive: bool,
    /// `None` only for a retraction (the last content is kept).
    body: Option<FactBody>,
    /// The body's storage form (empty without a body), made once.
    body_json: String,
    /// See [`NewFact::content_hash`].
    content_hash: String,
}

/// The parts of a [`NewFact`] before validation.
#[derive(Debug, Clone)]
pub struct FactParts {
    pub source_system: String,
    pub source_id: String,
    pub source_version: u64,
    pub person: Personnummer,
    pub benefit_type: String,
    pub kind: RecordKind,
    pub valid: Option<DateRange>,
    pub retroactive: bool,
    pub body: Option<FactBody>,
}

impl NewFact {
    /// Checks the rules that need no stored state: source fields, kind, the body's own rules, and
    /// what a person update may carry.
    pub fn new(p: FactParts) -> Result<Self, FactError> {
        validate_source_system(&p.source_system)?;
        if p.source_version == 0 || i64::try_from(p.source_version).is_err() {
            return Err(FactError::invalid(
                "source_version",
                "source_version is required, at least 1 and at most 2^63 - 1",
            ));
        }
        let is_person = matches!(p.body, Some(FactBody::Person(_)));
        let mut source_id = p.source_id.clone();
        if is_person {
            // Person updates are identified by source system and person.
            source_id.clear();
            if !p.benefit_type.is_empty() {
                return Err(FactError::invalid(
                    "benefit_type",
                    "a person update concerns no benefit: leave benefit_type empty",
                ));
            }
            if p.valid.is_some() {
                return Err(FactError::invalid(
                    "valid",
                    "a person update has no business period: leave valid empty",
                ));
            }
            if p.kind == RecordKind::Retraction {
                return Err(FactError::invalid(
                    "kind",
                    "a person update is NEW or CORRECTION (both mean upsert); it cannot be retracted",
                ));
            }
        } else {
            check_id("source_id", &source_id, MAX_SOURCE_ID_LEN)?;
        }
        match &p.body {
            Some(body) => body.validate()?,
            None if p.kind == RecordKind::Retraction => {}
            None => {
                return Err(FactError::invalid(
                    "body",
                    "the fact has no content: set one of case, compensation_period, decision, payment, \
                     person_event or person (only a RETRACTION may omit it)",
                ));
            }
        }
        let needs_benefit = matches!(
            p.body,
            Some(FactBody::Case(_) | FactBody::Period(_) | FactBody::Decision(_) | FactBody::Payment(_))
        );
        if needs_benefit && p.benefit_type.is_empty() {
            return Err(FactError::invalid(
                "benefit_type",
                "benefit_type is required for cases, compensation periods, decisions and payments",
            ));
        }
        let body_json = p.body.as_ref().map(FactBody::to_json).unwrap_or_default();
        let content_hash = content_hash(&p, &body_json);
        Ok(Self {
            source_system: p.source_system,
            source_id,
            source_version: p.source_version,
            person: p.person,
            benefit_type: p.benefit_type,
            kind: p.kind,
            valid: p.valid,
            retroactive: p.retroactive,
            body: p.body,
            body_json,
            content_hash,
        })
    }

    pub fn source_system(&self) -> &str {
        &self.source_system
    }
    pub fn source_id(&self) -> &str {
        &self.source_id
    }
    pub fn source_version(&self) -> u64 {
        self.source_version
    }
    pub fn person(&self) -> &Personnummer {
        &self.person
    }
    pub fn benefit_type(&self) -> &str {
        &self.benefit_type
    }
    pub fn kind(&self) -> RecordKind {
        self.kind
    }
    pub fn valid(&self) -> Option<DateRange> {
        self.valid
    }
    pub fn retroactive(&self) -> bool {
        self.retroactive
    }
    pub fn body(&self) -> Option<&FactBody> {
        self.body.as_ref()
    }

    /// Whether this is an update of the person's own data.
    pub fn is_person_update(&self) -> bool {
        matches!(self.body, Some(FactBody::Person(_)))
    }

    /// The body's storage form (JSON; empty for a retraction without body).
    pub fn body_json(&self) -> &str {
        &self.body_json
    }

    /// A digest of everything the source sent except its identity and version: the same version
    /// re-sent with the same content has the same hash (idempotent re-send), any change differs.
    /// Lowercase hex of SHA-256; it reveals nothing about the person.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }
}

/// SHA-256 over the content fields, each prefixed with its length so that no two different
/// contents run together into the same bytes.
fn content_hash(p: &FactParts, body_json: &str) -> String {
    let valid_from = p.valid.map(|v| crate::domain::clock::format_date(v.from));
    let valid_to = p.valid.and_then(|v| v.to).map(crate::domain::clock::format_date);
    let fact_type = p.body.as_ref().map(|b| b.fact_type().as_str());
    let parts: [&str; 8] = [
        p.person.as_storage(),
        &p.benefit_type,
        p.kind.as_str(),
        valid_from.as_deref().unwrap_or("-"),
        valid_to.as_deref().unwrap_or("-"),
        if p.retroactive { "1" } else { "0" },
        fact_type.unwrap_or("-"),
        body_json,
    ];
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Serde for a `YYYY-MM-DD` date.
mod ymd {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    use crate::domain::clock::{format_date, parse_date};

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_date(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        parse_date(&s).ok_or_else(|| serde::de::Error::custom("expected a date YYYY-MM-DD"))
    }
}

/// Serde for an optional `YYYY-MM-DD` date.
mod ymd_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    use crate::domain::clock::{format_date, parse_date};

    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_date(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_date(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("expected a date YYYY-MM-DD")),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn payment(gross: i64, tax: i64, lines: &[i64]) -> Payment {
        Payment {
            case_id: "C1".into(),
            payment_date: date!(2024 - 02 - 25),
            covered: DateRange {
                from: date!(2024 - 01 - 01),
                to: Some(date!(2024 - 01 - 31)),
            },
            gross_ore: gross,
            tax_ore: tax,
            preliminary: false,
            lines: lines
                .iter()
                .map(|&a| AmountLine {
                    amount_type: "GRUND".into(),
                    amount_ore: a,
                })
                .collect(),
            payer: "FK".into(),
        }
    }

    fn person() -> Personnummer {
        Personnummer::from_storage("189912239812").unwrap()
    }

    fn parts(body: Option<FactBody>) -> FactParts {
        FactParts {
            source_system: "MIDAS".into(),
            source_id: "x-1".into(),
            source_version: 1,
            person: person(),
            benefit_type: "SJP".into(),
            kind: RecordKind::New,
            valid: None,
            retroactive: false,
            body,
        }
    }

    #[test]
    fn payment_lines_must_sum_to_gross() {
        assert!(payment(1000, 300, &[700, 300]).validate().is_ok());
        let e = payment(1000, 300, &[700, 200]).validate().unwrap_err();
        assert_eq!(e.field, "lines");
        assert_eq!(e.reason, RejectReason::InvalidArgument);
        assert!(payment(1000, 0, &[]).validate().is_err());
        assert!(payment(i64::MAX, 0, &[i64::MAX, 1]).validate().is_err());
    }

    #[test]
    fn payment_tax_follows_gross() {
        assert!(payment(1000, 1001, &[1000]).validate().is_err());
        assert!(payment(1000, -1, &[1000]).validate().is_err());
        assert!(payment(-500, -100, &[-500]).validate().is_ok());
        assert!(payment(-500, 100, &[-500]).validate().is_err());
    }

    #[test]
    fn payment_covers_a_closed_forward_period() {
        let mut p = payment(1000, 0, &[1000]);
        p.covered.to = None;
        assert_eq!(p.validate().unwrap_err().field, "covered.to");
        p.covered.to = Some(date!(2023 - 12 - 31));
        let e = p.validate().unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidDate);
    }

    #[test]
    fn period_ending_before_it_starts_is_refused() {
        let p = CompensationPeriod {
            case_id: "C1".into(),
            from: date!(2024 - 03 - 10),
            to: date!(2024 - 03 - 09),
            extent: Extent::Half,
            daily_amount_ore: 50_000,
        };
        let e = FactBody::Period(p).validate().unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidDate);
        assert_eq!(e.field, "compensation_period.to");
    }

    #[test]
    fn case_status_and_closing_date_agree() {
        let mut c = BenefitCase {
            case_id: "C1".into(),
            parent_case_id: None,
            opened: date!(2024 - 01 - 10),
            closed: None,
            status: CaseStatus::Open,
        };
        assert!(c.validate().is_ok());
        c.status = CaseStatus::Closed;
        assert!(c.validate().is_err());
        c.closed = Some(date!(2024 - 01 - 09));
        assert_eq!(c.validate().unwrap_err().reason, RejectReason::InvalidDate);
        c.closed = Some(date!(2024 - 01 - 10));
        assert!(c.validate().is_ok());
        c.parent_case_id = Some("C1".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn ranges_overlap_inclusively() {
        let r = |from, to| DateRange { from, to };
        let jan = r(date!(2024 - 01 - 01), Some(date!(2024 - 01 - 31)));
        assert!(jan.overlaps(&r(date!(2024 - 01 - 31), None)));
        assert!(!jan.overlaps(&r(date!(2024 - 02 - 01), None)));
        assert!(r(date!(2020 - 01 - 01), None).overlaps(&jan));
        assert!(!r(date!(2024 - 02 - 01), None).overlaps(&jan));
        assert!(DateRange::new(date!(2024 - 02 - 01), Some(date!(2024 - 01 - 01))).is_err());
    }

    #[test]
    fn bodies_round_trip_through_json() {
        let bodies = [
            FactBody::Payment(payment(123_456, 40_000, &[100_000, 23_456])),
            FactBody::Case(BenefitCase {
                case_id: "C".into(),
                parent_case_id: Some("P".into()),
                opened: date!(2024 - 01 - 01),
                closed: Some(date!(2024 - 02 - 01)),
                status: CaseStatus::Closed,
            }),
            FactBody::Person(PersonData {
                name: "Tolvan Tolvansson".into(),
                protected_identity: true,
                date_of_death: Some(date!(2024 - 05 - 05)),
            }),
            FactBody::Event(PersonEvent {
                kind: PersonEventKind::DeathRegistered,
                event_date: date!(2024 - 05 - 05),
            }),
        ];
        for b in bodies {
            let back = FactBody::from_json(b.fact_type(), &b.to_json()).unwrap();
            assert_eq!(back, b);
        }
        assert!(FactBody::from_json(FactType::Payment, "{}").is_err());
    }

    #[test]
    fn new_fact_rules() {
        let event = FactBody::Event(PersonEvent {
            kind: PersonEventKind::DeathRegistered,
            event_date: date!(2024 - 05 - 05),
        });
        let mut p = parts(Some(event.clone()));
        p.benefit_type.clear();
        assert!(NewFact::new(p).is_ok());

        let mut p = parts(None);
        assert_eq!(NewFact::new(p.clone()).unwrap_err().field, "body");
        p.kind = RecordKind::Retraction;
        assert!(NewFact::new(p).is_ok());

        let mut p = parts(Some(FactBody::Payment(payment(1, 0, &[1]))));
        p.benefit_type.clear();
        assert_eq!(NewFact::new(p).unwrap_err().field, "benefit_type");

        let mut p = parts(Some(FactBody::Person(PersonData::default())));
        assert_eq!(NewFact::new(p.clone()).unwrap_err().field, "benefit_type");
        p.benefit_type.clear();
        let f = NewFact::new(p.clone()).unwrap();
        assert!(f.is_person_update());
        assert_eq!(f.source_id(), "");
        p.kind = RecordKind::Retraction;
        assert_eq!(NewFact::new(p).unwrap_err().field, "kind");

        let mut p = parts(Some(event));
        p.source_system = "midas".into();
        assert_eq!(NewFact::new(p.clone()).unwrap_err().field, "source_system");
        p.source_system = "MIDAS".into();
        p.source_version = 0;
        assert_eq!(NewFact::new(p).unwrap_err().field, "source_version");
    }

    #[test]
    fn content_hash_tracks_content_not_version() {
        let body = FactBody::Payment(payment(1000, 0, &[1000]));
        let a = NewFact::new(parts(Some(body.clone()))).unwrap();
        let mut p = parts(Some(body));
        p.source_version = 7;
        let b = NewFact::new(p.clone()).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        p.retroactive = true;
        assert_ne!(a.content_hash(), NewFact::new(p).unwrap().content_hash());
        // The hash is hex of SHA-256 and holds no identity number.
        assert_eq!(a.content_hash().len(), 64);
        assert!(!a.content_hash().contains("189912239812"));
    }
}
