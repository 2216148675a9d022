//! Conversions between domain values and protobuf messages.

use time::Date;

use crate::domain::catalogue::{BenefitType, LegalBasis};
use crate::domain::clock::{format_date, parse_date};
use crate::domain::delivery::{RecordFilter, StateReason, SubscriptionState};
use crate::domain::party::AgreementType;
use crate::domain::personnummer::IdKind;
use crate::domain::register::versions::{DeliveredVersion, StoredRecord};
use crate::domain::register::{
    AmountLine, BenefitCase, CaseStatus, CompensationPeriod, DateRange, Decision, DecisionKind, Extent,
    FactBody, FactError, FactParts, NewFact, Payment, PersonData, PersonEvent, PersonEventKind, RecordKind,
    RejectReason,
};
use crate::domain::{PartyKind, PartyState, Personnummer};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;
use crate::store::consents::{Consent, ConsentFilter};
use crate::store::delivery::Subscription;

/// Declares the conversions between a domain enum and the proto enum with the same variant
/// names: `$to(value) -> proto` and, when named, `$from(number) -> Option<value>` (`None` for the
/// unspecified value and numbers the proto does not define).
macro_rules! wire_enum {
    ($domain:ident => $m:ident::$wire:ident { $($variant:ident),+ $(,)? } as $to:ident, $from:ident) => {
        wire_enum!($domain => $m::$wire { $($variant),+ } as $to);

        pub fn $from(n: i32) -> Option<$domain> {
            match $m::$wire::try_from(n).ok()? {
                $( $m::$wire::$variant => Some($domain::$variant), )+
                #[allow(unreachable_patterns)]
                _ => None,
            }
        }
    };
    ($domain:ident => $m:ident::$wire:ident { $($variant:ident),+ $(,)? } as $to:ident) => {
        pub fn $to(v: $domain) -> $m::$wire {
            match v {
                $( $domain::$variant => $m::$wire::$variant ),+
            }
        }
    };
}

wire_enum!(PartyKind => pb::PartyKind { Insurer, StateAuthority, MunicipalAuthority } as party_kind, party_kind_from);
wire_enum!(
    PartyState => pb::PartyState { Applied, AgreementSent, Signed, Connected, TerminationScheduled, Terminated }
    as party_state, party_state_from
);
wire_enum!(AgreementType => pb::AgreementType { Avtal, Overenskommelse } as agreement_type);
wire_enum!(RecordKind => pb::RecordKind { New, Correction, Retraction } as record_kind, record_kind_from);
wire_enum!(
    SubscriptionState => pb::SubscriptionState { Active, Suspended, Ended }
    as subscription_state, subscription_state_from
);
wire_enum!(CaseStatus => pb::BenefitCaseStatus { Open, Closed } as case_status, case_status_from);
wire_enum!(Extent => pb::CompensationExtent { Full, ThreeQuarters, Half, OneQuarter } as extent, extent_from);
wire_enum!(
    DecisionKind => pb::DecisionKind { Granted, Rejected, Withdrawn, Blocked, Unblocked }
    as decision_kind, decision_kind_from
);
wire_enum!(
    PersonEventKind => pb::PersonEventKind {
        LifeCertificateReceived,
        LifeCertificateMissing,
        DeathRegistered,
        SicknessCaseClosed,
    } as person_event_kind, person_event_kind_from
);

pub(crate) use wire_enum;

pub fn legal_basis(b: &LegalBasis) -> pb::LegalBasis {
    pb::LegalBasis {
        code: b.code.clone(),
        statute_reference: b.statute_reference.clone(),
        disclosure_basis: b.disclosure_basis.clone(),
        automated_medium_basis: b.automated_basis.clone(),
        purpose: b.purpose.clone(),
        purpose_en: b.purpose_en.clone(),
        allowed_party_kinds: b.party_kinds.iter().map(|k| party_kind(*k) as i32).collect(),
        requires_consent: b.requires_consent,
        requires_open_case: b.requires_open_case,
        benefit_type_codes: b.benefit_codes.clone(),
        valid_from: format_date(b.valid_from),
        valid_to: b.valid_to.map(format_date).unwrap_or_default(),
    }
}

/// The legal bases a listing shows: those in force on `today`, or all.
pub fn legal_bases(bases: &[LegalBasis], include_not_in_force: bool, today: Date) -> Vec<pb::LegalBasis> {
    bases
        .iter()
        .filter(|b| include_not_in_force || b.in_force_on(today))
        .map(legal_basis)
        .collect()
}

pub fn benefit_type(b: &BenefitType) -> pb::BenefitType {
    pb::BenefitType {
        code: b.code.clone(),
        name_sv: b.name_sv.clone(),
        name_en: b.name_en.clone(),
        paying_agency: b.agency.clone(),
    }
}

/// An instant (microseconds since the epoch) as a protobuf timestamp.
pub fn timestamp(micros: crate::domain::clock::Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------------------------
// The register: facts in, records and persons out.
// ---------------------------------------------------------------------------------------------

/// A required business date field.
fn fact_date(field: &str, s: &str) -> Result<Date, FactError> {
    if s.trim().is_empty() {
        return Err(FactError::new(
            RejectReason::InvalidDate,
            field,
            format!("{field} is required, as YYYY-MM-DD"),
        ));
    }
    parse_date(s).ok_or_else(|| {
        FactError::new(
            RejectReason::InvalidDate,
            field,
            format!("{field} is not a date YYYY-MM-DD"),
        )
    })
}

/// An optional business date field (empty = none).
fn fact_date_opt(field: &str, s: &str) -> Result<Option<Date>, FactError> {
    if s.trim().is_empty() {
        Ok(None)
    } else {
        fact_date(field, s).map(Some)
    }
}

/// A required enum field: unspecified or unknown values are refused.
fn required_enum<T>(field: &str, value: Option<T>) -> Result<T, FactError> {
    value.ok_or_else(|| {
        FactError::new(
            RejectReason::InvalidArgument,
            field,
            format!("{field} is required: give one of its named values"),
        )
    })
}

/// A date range from the wire: `from` required (as `field.from`), `to` optional, not before `from`.
pub fn date_range(field: &str, r: &pb::DateRange) -> Result<DateRange, FactError> {
    let from = fact_date(&format!("{field}.from"), &r.from)?;
    let to = fact_date_opt(&format!("{field}.to"), &r.to)?;
    DateRange::new(from, to).map_err(|e| e.within(field))
}

/// Reads a `lefi.admin.v1.Fact` into a checked [`NewFact`]. `today` is the reference date for
/// identity numbers in the ten-digit form.
pub fn new_fact(fact: admin_pb::Fact, today: Date) -> Result<NewFact, FactError> {
    let person = Personnummer::parse(&fact.person_id, today)
        .map_err(|e| FactError::new(RejectReason::PersonIdInvalid, "person_id", e.to_string()))?;
    let kind = required_enum("kind", record_kind_from(fact.kind))?;
    let valid = match &fact.valid {
        Some(v) if !(v.from.is_empty() && v.to.is_empty()) => Some(date_range("valid", v)?),
        _ => None,
    };
    let body = fact.body.map(fact_body).transpose()?;
    NewFact::new(FactParts {
        source_system: fact.source_system,
        source_id: fact.source_id,
        source_version: fact.source_version,
        person,
        benefit_type: fact.benefit_type.trim().to_string(),
        kind,
        valid,
        retroactive: fact.retroactive,
        body,
    })
}

fn fact_body(body: admin_pb::fact::Body) -> Result<FactBody, FactError> {
    use admin_pb::fact::Body;
    Ok(match body {
        Body::Case(c) => FactBody::Case(BenefitCase {
            case_id: c.case_id,
            parent_case_id: (!c.parent_case_id.is_empty()).then_some(c.parent_case_id),
            opened: fact_date("case.opened", &c.opened)?,
            closed: fact_date_opt("case.closed", &c.closed)?,
            status: required_enum("case.status", case_status_from(c.status))?,
        }),
        Body::CompensationPeriod(p) => FactBody::Period(CompensationPeriod {
            case_id: p.case_id,
            from: fact_date("compensation_period.from", &p.from)?,
            to: fact_date("compensation_period.to", &p.to)?,
            extent: required_enum("compensation_period.extent", extent_from(p.extent))?,
            daily_amount_ore: p.daily_amount_ore,
        }),
        Body::Decision(d) => FactBody::Decision(Decision {
            case_id: d.case_id,
            kind: required_enum("decision.kind", decision_kind_from(d.kind))?,
            effective_from: fact_date("decision.effective_from", &d.effective_from)?,
            decided_on: fact_date("decision.decided_on", &d.decided_on)?,
        }),
        Body::Payment(p) => {
            let covered = p.covered.unwrap_or_default();
            FactBody::Payment(Payment {
                case_id: p.case_id,
                payment_date: fact_date("payment.payment_date", &p.payment_date)?,
                covered: DateRange {
                    from: fact_date("payment.covered.from", &covered.from)?,
                    to: fact_date_opt("payment.covered.to", &covered.to)?,
                },
                gross_ore: p.gross_ore,
                tax_ore: p.tax_ore,
                preliminary: p.preliminary,
                lines: p.lines.into_iter().map(AmountLine::from).collect(),
                payer: p.payer,
            })
        }
        Body::PersonEvent(e) => FactBody::Event(PersonEvent {
            kind: required_enum("person_event.kind", person_event_kind_from(e.kind))?,
            event_date: fact_date("person_event.event_date", &e.event_date)?,
        }),
        Body::Person(p) => FactBody::Person(PersonData {
            name: p.name.trim().to_string(),
            protected_identity: p.protected_identity,
            date_of_death: fact_date_opt("person.date_of_death", &p.date_of_death)?,
        }),
    })
}

impl From<pb::AmountLine> for AmountLine {
    fn from(l: pb::AmountLine) -> Self {
        AmountLine {
            amount_type: l.amount_type,
            amount_ore: l.amount_ore,
        }
    }
}

impl From<AmountLine> for pb::AmountLine {
    fn from(l: AmountLine) -> Self {
        pb::AmountLine {
            amount_type: l.amount_type,
            amount_ore: l.amount_ore,
        }
    }
}

fn wire_range(r: &DateRange) -> pb::DateRange {
    pb::DateRange {
        from: format_date(r.from),
        to: r.to.map(format_date).unwrap_or_default(),
    }
}

/// The wire form of a benefit fact's body; `None` for a person's own data (not a benefit record).
fn record_fact(body: FactBody) -> Option<pb::benefit_record::Fact> {
    use pb::benefit_record::Fact;
    Some(match body {
        FactBody::Case(c) => Fact::Case(pb::BenefitCase {
            case_id: c.case_id,
            parent_case_id: c.parent_case_id.unwrap_or_default(),
            opened: format_date(c.opened),
            closed: c.closed.map(format_date).unwrap_or_default(),
            status: case_status(c.status) as i32,
        }),
        FactBody::Period(p) => Fact::CompensationPeriod(pb::CompensationPeriod {
            case_id: p.case_id,
            from: format_date(p.from),
            to: format_date(p.to),
            extent: extent(p.extent) as i32,
            daily_amount_ore: p.daily_amount_ore,
        }),
        FactBody::Decision(d) => Fact::Decision(pb::Decision {
            case_id: d.case_id,
            kind: decision_kind(d.kind) as i32,
            effective_from: format_date(d.effective_from),
            decided_on: format_date(d.decided_on),
        }),
        FactBody::Payment(p) => Fact::Payment(pb::Payment {
            case_id: p.case_id,
            payment_date: format_date(p.payment_date),
            covered: Some(wire_range(&p.covered)),
            gross_ore: p.gross_ore,
            tax_ore: p.tax_ore,
            preliminary: p.preliminary,
            lines: p.lines.into_iter().map(pb::AmountLine::from).collect(),
            payer: p.payer,
        }),
        FactBody::Event(e) => Fact::PersonEvent(pb::PersonEvent {
            kind: person_event_kind(e.kind) as i32,
            event_date: format_date(e.event_date),
        }),
        FactBody::Person(_) => return None,
    })
}

/// A stored version as parties receive it.
pub fn benefit_record(r: StoredRecord) -> pb::BenefitRecord {
    benefit_record_fields(r).into()
}

impl From<StoredRecord> for pb::BenefitRecord {
    fn from(r: StoredRecord) -> Self {
        benefit_record(r)
    }
}

impl From<DeliveredVersion> for pb::BenefitRecord {
    /// A version with a stored encoding is sent as stored; one without is converted.
    fn from(v: DeliveredVersion) -> Self {
        match v {
            DeliveredVersion::Encoded(e) => Self::stored(e.seq, timestamp(e.recorded_at), e.encoded),
            DeliveredVersion::Parsed(r) => benefit_record(r),
        }
    }
}

/// A stored version's fields as parties receive them.
pub fn benefit_record_fields(r: StoredRecord) -> pb::BenefitRecordFields {
    pb::BenefitRecordFields {
        register_sequence: r.seq,
        recorded_at: Some(timestamp(r.recorded_at)),
        record_id: r.record_id,
        version: r.version,
        kind: record_kind(r.kind) as i32,
        retroactive: r.retroactive,
        benefit_type: r.benefit_type.unwrap_or_default(),
        valid: r.valid.as_ref().map(wire_range),
        fact: record_fact(r.body),
    }
}

/// Records as parties receive them, in messages of at most `size` records each (none for no
/// records). Takes the records by value: a snapshot converts hundreds of thousands a second, and
/// moving their text costs nothing where copying it cost a tenth of the stream's time.
pub fn record_batches<R: Into<pb::BenefitRecord>>(
    records: Vec<R>,
    size: usize,
) -> Vec<Vec<pb::BenefitRecord>> {
    let size = size.max(1);
    let mut batches = Vec::with_capacity(records.len().div_ceil(size));
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        batches.push(records.by_ref().take(size).map(Into::into).collect());
    }
    batches
}

/// Who a person's data is shown to: parties never see the name of a protected person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Party,
    Operator,
}

/// A person as disclosed to `audience`.
pub fn person(id: &Personnummer, data: &PersonData, audience: Audience) -> pb::Person {
    let show_name = audience == Audience::Operator || !data.protected_identity;
    pb::Person {
        person_id: id.as_storage().to_string(),
        id_kind: match id.kind() {
            IdKind::Personnummer => pb::PersonIdKind::Personnummer,
            IdKind::Samordningsnummer => pb::PersonIdKind::Samordningsnummer,
        } as i32,
        name: if show_name {
            data.name.clone()
        } else {
            String::new()
        },
        protected_identity: data.protected_identity,
        date_of_death: data.date_of_death.map(format_date).unwrap_or_default(),
    }
}

/// Why a subscription is in its state, as the proto shows it.
pub fn state_reason(reason: Option<StateReason>) -> pb::SubscriptionStateReason {
    use crate::domain::delivery::EndReason as E;
    use pb::SubscriptionStateReason as P;
    match reason {
        None => P::Unspecified,
        Some(StateReason::Resumed) => P::Resumed,
        Some(StateReason::StartedFromNow) => P::StartedFromNow,
        Some(StateReason::Withdrawn(reason)) => match reason {
            E::Cancelled => P::Cancelled,
            E::ConsentEnded => P::ConsentEnded,
            E::CaseClosed => P::CaseClosed,
            E::PartyTerminated => P::PartyTerminated,
            E::BasisNoLongerInForce => P::BasisNoLongerInForce,
            E::EndedByAgency => P::EndedByAgency,
            E::SuspendedByAgency => P::SuspendedByAgency,
            E::EndDateReached => P::EndDateReached,
        },
    }
}

/// A record filter from its proto form: whole record types, and decisions and person events of
/// some kinds (see `lefi.v1.RecordFilter`). An unspecified or unknown value is refused, naming it.
pub fn record_filter(filter: &pb::RecordFilter) -> Result<RecordFilter, crate::grpc::fields::FieldError> {
    use crate::domain::register::FactType;
    use crate::grpc::fields::enum_list;
    let types = enum_list(
        "filter.record_types",
        &filter.record_types,
        |v| match pb::RecordType::try_from(v).ok()? {
            pb::RecordType::Unspecified => None,
            pb::RecordType::Case => Some(FactType::Case),
            pb::RecordType::CompensationPeriod => Some(FactType::Period),
            pb::RecordType::Decision => Some(FactType::Decision),
            pb::RecordType::Payment => Some(FactType::Payment),
            pb::RecordType::PersonEvent => Some(FactType::Event),
        },
        "RECORD_TYPE_CASE, _COMPENSATION_PERIOD, _DECISION, _PAYMENT or _PERSON_EVENT",
    )?;
    // Decisions and person events may be narrowed to kinds, given by number and kept by their proto
    // names: a number that names no kind, or the unspecified 0, is refused, naming its index.
    fn named<E: TryFrom<i32>>(v: i32, name: fn(&E) -> &'static str) -> Option<&'static str> {
        E::try_from(v).ok().filter(|_| v != 0).map(|kind| name(&kind))
    }
    type Name = fn(i32) -> Option<&'static str>;
    let decision: Name = |v| named(v, pb::DecisionKind::as_str_name);
    let event: Name = |v| named(v, pb::PersonEventKind::as_str_name);
    let [decisions, events] = [
        ("decision_kinds", &filter.decision_kinds, decision),
        ("person_event_kinds", &filter.person_event_kinds, event),
    ]
    .map(|(list, values, name)| enum_list(&format!("filter.{list}"), values, name, &list.replace('_', " ")));
    let (decisions, events) = (decisions?, events?);
    // Kinds named narrow their type: the type is then not taken whole.
    let narrowed = |t: &FactType| {
        (*t == FactType::Decision && !decisions.is_empty()) || (*t == FactType::Event && !events.is_empty())
    };
    let whole = types
        .iter()
        .filter(|t| !narrowed(t))
        .map(|t| RecordFilter::whole(*t));
    let kinds = decisions
        .iter()
        .map(|k| RecordFilter::kind(FactType::Decision, k))
        .chain(events.iter().map(|k| RecordFilter::kind(FactType::Event, k)));
    Ok(RecordFilter::of(whole.chain(kinds)))
}

/// A record filter in its proto form (`None` for "everything").
pub fn record_filter_message(filter: &RecordFilter) -> Option<pb::RecordFilter> {
    use crate::domain::register::FactType;
    if filter.is_everything() {
        return None;
    }
    let mut message = pb::RecordFilter::default();
    for topic in filter.topics() {
        let (ty, kind) = match topic.split_once(':') {
            Some((ty, kind)) => (ty, Some(kind)),
            None => (topic.as_str(), None),
        };
        match (FactType::parse(ty), kind) {
            (Some(FactType::Decision), Some(kind)) => {
                message
                    .decision_kinds
                    .extend(pb::DecisionKind::from_str_name(kind).map(|k| k as i32));
            }
            (Some(FactType::Event), Some(kind)) => {
                message
                    .person_event_kinds
                    .extend(pb::PersonEventKind::from_str_name(kind).map(|k| k as i32));
            }
            (Some(fact_type), None) => {
                let record_type = match fact_type {
                    FactType::Case => pb::RecordType::Case,
                    FactType::Period => pb::RecordType::CompensationPeriod,
                    FactType::Decision => pb::RecordType::Decision,
                    FactType::Payment => pb::RecordType::Payment,
                    FactType::Event => pb::RecordType::PersonEvent,
                    FactType::Person => continue,
                };
                message.record_types.push(record_type as i32);
            }
            _ => {}
        }
    }
    Some(message)
}

/// A subscription as the proto shows it.
pub fn subscription(s: &Subscription) -> pb::Subscription {
    pb::Subscription {
        subscription_id: s.subscription_id.clone(),
        client_reference: s.asked.client_reference.clone(),
        person_id: s.asked.person.as_storage().to_string(),
        benefit_type_codes: s.asked.benefit_types.clone(),
        from_date: format_date(s.asked.from_date),
        legal_basis: s.asked.legal_basis.clone(),
        case_reference: s.asked.case_reference.clone().unwrap_or_default(),
        consent_id: s.asked.consent_id.clone().unwrap_or_default(),
        state: subscription_state(s.state) as i32,
        state_reason: state_reason(s.state_reason) as i32,
        created_at: Some(timestamp(s.created_at)),
        ended_at: s.ended_at.map(timestamp),
        start_from_now: s.asked.start == crate::domain::delivery::SubscriptionStart::Now,
        end_date: s.asked.end_date.map(format_date).unwrap_or_default(),
        filter: record_filter_message(&s.asked.filter),
    }
}

/// A consent's state on `today`.
pub fn consent_state(c: &Consent, today: Date) -> pb::ConsentState {
    if c.revocation.is_some() {
        pb::ConsentState::Revoked
    } else if c.registered.expires_on < today {
        pb::ConsentState::Expired
    } else {
        pb::ConsentState::Valid
    }
}

/// A proto consent state as a filter value (`None` for unspecified or unknown numbers).
pub fn consent_state_from(n: i32) -> Option<pb::ConsentState> {
    pb::ConsentState::try_from(n)
        .ok()
        .filter(|s| *s != pb::ConsentState::Unspecified)
}

/// What a listing of consents asks for: those of one party (or every party), of the person named
/// (or anyone) and under the legal basis named (or any).
pub fn consent_filter(
    party_id: Option<String>,
    person_id: &str,
    legal_basis: &str,
    today: Date,
) -> Result<ConsentFilter, crate::grpc::fields::FieldError> {
    Ok(ConsentFilter {
        party_id,
        person: crate::grpc::fields::optional_person("person_id", person_id, today)?,
        basis_code: (!legal_basis.is_empty()).then(|| legal_basis.to_string()),
    })
}

/// The consents a listing shows, each with its message in its state on `today`: those whose state
/// is one of `states` (proto numbers, checked), or all when `states` is empty.
pub fn consent_listing<'a>(
    consents: &'a [Consent],
    states: &[i32],
    today: Date,
) -> Result<Vec<(&'a Consent, pb::Consent)>, crate::grpc::fields::FieldError> {
    let states =
        crate::grpc::fields::enum_list("states", states, consent_state_from, "VALID, EXPIRED and REVOKED")?;
    Ok(consents
        .iter()
        .map(|c| (c, consent(c, today)))
        .filter(|(_, m)| states.is_empty() || states.iter().any(|s| *s as i32 == m.state))
        .collect())
}

/// A consent as the proto shows it, in its state on `today`.
pub fn consent(c: &Consent, today: Date) -> pb::Consent {
    pb::Consent {
        consent_id: c.consent_id.clone(),
        person_id: c.registered.person.as_storage().to_string(),
        legal_basis: c.registered.basis_code.clone(),
        given_on: format_date(c.registered.given_on),
        expires_on: format_date(c.registered.expires_on),
        evidence_reference: c.registered.evidence_reference.clone(),
        state: consent_state(c, today) as i32,
        registered_at: Some(timestamp(c.registered_at)),
        revoked_at: c.revocation.as_ref().map(|r| timestamp(r.at)),
        revocation_reason: c
            .revocation
            .as_ref()
            .and_then(|r| r.reason.clone())
            .unwrap_or_default(),
        revoked_by_agency: c.revocation.as_ref().is_some_and(|r| r.by_agency),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::register::FactType;
    use time::macros::date;

    fn record(seq: u64) -> StoredRecord {
        StoredRecord {
            seq,
            recorded_at: 0,
            person: Personnummer::from_storage("199007042386").unwrap(),
            record_id: format!("rec-{seq}"),
            version: 1,
            kind: RecordKind::New,
            retroactive: false,
            benefit_type: None,
            fact_type: FactType::Event,
            valid: Some(DateRange {
                from: date!(2024 - 01 - 01),
                to: None,
            }),
            body: FactBody::Event(PersonEvent {
                kind: PersonEventKind::DeathRegistered,
                event_date: date!(2024 - 01 - 01),
            }),
            source_system: "S".to_string(),
            source_id: Some(format!("src-{seq}")),
            source_version: 1,
        }
    }

    #[test]
    fn record_batches_keep_order_and_size() {
        let records: Vec<StoredRecord> = (1..=5).map(record).collect();
        let batches = record_batches(records, 2);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        let ids: Vec<&str> = batches.iter().flatten().map(|r| r.record_id.as_str()).collect();
        assert_eq!(ids, vec!["rec-1", "rec-2", "rec-3", "rec-4", "rec-5"]);
        assert_eq!(batches[2][0].valid.as_ref().unwrap().from, "2024-01-01");
    }

    #[test]
    fn record_batches_of_nothing_are_none_and_size_zero_means_one() {
        assert!(record_batches(Vec::<StoredRecord>::new(), 100).is_empty());
        assert_eq!(record_batches(vec![record(1), record(2)], 0).len(), 2);
    }
}
