//! The disclosure policy: may this party receive this person's information, now, on this basis?
//!
//! [`decide`] is one pure, deterministic function. It takes everything already loaded (the party and
//! its agreement, the catalogue entry of the invoked basis, the consent and case the request names,
//! the date) and returns a [`Permit`] or a [`Denial`] with a stable reason. Only this module can mint
//! a [`Permit`], so code that discloses must have come through here. The same function is used for
//! subscriptions, queries and every delivery on a stream.
//!
//! Order of the checks (the first failing one is reported):
//! 1. the party is active (connected, not terminated as of today);
//! 2. its agreement is signed by both sides and in force today;
//! 3. the basis exists, is for this kind of party, is granted by the agreement, is in force today;
//! 4. every requested benefit type is covered by both the basis and the agreement;
//! 5. consent: present when the basis requires it; when present, registered by this party, for this
//!    person and basis, given and not expired today, not revoked;
//! 6. case: a reference when the basis requires an open case; a closed reference is refused.

pub mod operator;

use time::Date;

use crate::domain::names::named_enum;

use crate::domain::catalogue::{Agreement, LegalBasis};
use crate::domain::clock::Micros;
use crate::domain::delivery::EndReason;
use crate::domain::lifecycle::{Inactive, Standing};
use crate::domain::{PartyKind, PartyState, Personnummer};

/// The party as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct PartyFacts<'a> {
    pub party_id: &'a str,
    pub kind: PartyKind,
    pub state: PartyState,
    pub termination_effective: Option<Date>,
}

/// A consent as the policy sees it.
#[derive(Debug, Clone)]
pub struct ConsentFacts {
    pub consent_id: String,
    pub party_id: String,
    pub person: Personnummer,
    pub basis_code: String,
    pub given_on: Date,
    pub expires_on: Date,
    pub revoked_at: Option<Micros>,
}

/// Whether a case reference is still usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseFacts {
    /// Never used before, or used and open.
    Open,
    /// Closed with CaseService.CloseCase; final.
    Closed,
}

/// Everything the decision needs, already loaded.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub party: PartyFacts<'a>,
    /// The party's current agreement, if any.
    pub agreement: Option<&'a Agreement>,
    /// The catalogue entry for the invoked basis code; `None` when no such basis exists.
    pub basis: Option<&'a LegalBasis>,
    /// The consent named by the request, looked up by id (whoever registered it); `None` when the
    /// request names none or the id is unknown.
    pub consent: Option<&'a ConsentFacts>,
    /// The state of the case reference named by the request, if it names one.
    pub case: Option<CaseFacts>,
}

/// What the request asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub basis_code: &'a str,
    pub person: &'a Personnummer,
    /// The benefit types asked for; empty means every type the basis and agreement cover.
    pub benefit_codes: &'a [String],
    pub case_reference: Option<&'a str>,
    pub consent_id: Option<&'a str>,
    /// The date the decision is made for.
    pub today: Date,
}

/// Permission to disclose one person's information. Only [`decide`] creates one, and every store
/// read that discloses register data takes one: nothing leaves without a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    person: Personnummer,
    basis_code: String,
    purpose: String,
    benefit_codes: Vec<String>,
    consent_id: Option<String>,
    case_reference: Option<String>,
}

impl Permit {
    /// The person the permit was issued for.
    pub fn person(&self) -> &Personnummer {
        &self.person
    }
    /// The basis the disclosure rests on.
    pub fn basis_code(&self) -> &str {
        &self.basis_code
    }
    /// The basis' purpose, for the disclosure log.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }
    /// The benefit types that may be disclosed (the request's, or all covered when it named none).
    pub fn benefit_codes(&self) -> &[String] {
        &self.benefit_codes
    }
    /// The consent relied on, if any.
    pub fn consent_id(&self) -> Option<&str> {
        self.consent_id.as_deref()
    }
    /// The case reference attested, if any.
    pub fn case_reference(&self) -> Option<&str> {
        self.case_reference.as_deref()
    }
}

named_enum! {
    /// Why a consent does not hold.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum ConsentProblem {
        /// No consent with this id exists for this party.
        Unknown,
        /// The consent's expiry date has passed.
        Expired,
        /// The consent was revoked.
        Revoked,
        /// The consent concerns another person.
        OtherPerson,
        /// The consent covers another basis (purpose).
        OtherBasis,
        /// The consent is dated after today.
        NotYetGiven,
    }
}

/// Why a request is refused. Each variant maps to one `ErrorReason` (see `grpc::status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    PartyNotActive { state: PartyState },
    PartyTerminated,
    AgreementNotInForce { valid_from: Option<Date> },
    UnknownBasis,
    BasisNotForPartyKind,
    BasisNotInAgreement,
    BasisNotInForce,
    BenefitNotCovered { benefit_code: String },
    ConsentRequired,
    ConsentNotValid { problem: ConsentProblem },
    CaseReferenceRequired,
    CaseClosed,
}

impl Denial {
    /// The `ErrorReason` name of this denial.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::PartyNotActive { .. } => "PARTY_NOT_ACTIVE",
            Self::PartyTerminated => "PARTY_TERMINATED",
            Self::AgreementNotInForce { .. } => "AGREEMENT_NOT_IN_FORCE",
            Self::UnknownBasis => "UNKNOWN_BASIS",
            Self::BasisNotForPartyKind => "BASIS_NOT_FOR_PARTY_KIND",
            Self::BasisNotInAgreement => "BASIS_NOT_IN_AGREEMENT",
            Self::BasisNotInForce => "BASIS_NOT_IN_FORCE",
            Self::BenefitNotCovered { .. } => "BENEFIT_NOT_COVERED",
            Self::ConsentRequired => "CONSENT_REQUIRED",
            Self::ConsentNotValid { .. } => "CONSENT_NOT_VALID",
            Self::CaseReferenceRequired => "CASE_REFERENCE_REQUIRED",
            Self::CaseClosed => "CASE_CLOSED",
        }
    }

    /// How a subscription ends when this denial comes up at a delivery: a consent that no longer
    /// holds suspends it, a closed case, a basis out of force and a termination end it for that
    /// reason, anything else ends it as by the agency.
    pub fn ends_subscription(&self) -> EndReason {
        match self {
            Self::ConsentRequired | Self::ConsentNotValid { .. } => EndReason::ConsentEnded,
            Self::CaseClosed => EndReason::CaseClosed,
            Self::BasisNotInForce => EndReason::BasisNoLongerInForce,
            Self::PartyTerminated => EndReason::PartyTerminated,
            Self::PartyNotActive { .. }
            | Self::AgreementNotInForce { .. }
            | Self::UnknownBasis
            | Self::BasisNotForPartyKind
            | Self::BasisNotInAgreement
            | Self::BenefitNotCovered { .. }
            | Self::CaseReferenceRequired => EndReason::EndedByAgency,
        }
    }
}

/// Checks steps 1–2 (the party is active, its agreement in force) and returns the agreement: what
/// a whole call is refused for before any item of it is looked at.
pub fn check_party<'a>(facts: &Facts<'a>, today: Date) -> Result<&'a Agreement, Denial> {
    // 1. The party.
    let party = facts.party;
    let standing = Standing {
        state: party.state,
        termination_effective: party.termination_effective,
    };
    standing.check_active(today).map_err(|inactive| match inactive {
        Inactive::Terminated => Denial::PartyTerminated,
        Inactive::NotConnected(state) => Denial::PartyNotActive { state },
    })?;

    // 2. The agreement.
    let Some(agreement) = facts.agreement else {
        return Err(Denial::AgreementNotInForce { valid_from: None });
    };
    if !agreement.fully_signed() || agreement.valid_from > today {
        return Err(Denial::AgreementNotInForce {
            valid_from: Some(agreement.valid_from),
        });
    }
    Ok(agreement)
}

/// Checks steps 1–3 (party, agreement, basis) and returns the basis. Used on its own where no
/// person is involved yet, e.g. when a consent is registered.
pub fn check_basis<'a>(
    facts: &Facts<'a>,
    basis_code: &str,
    today: Date,
) -> Result<(&'a LegalBasis, &'a Agreement), Denial> {
    let agreement = check_party(facts, today)?;
    let party = facts.party;

    // 3. The basis.
    let Some(basis) = facts.basis.filter(|b| b.code == basis_code) else {
        return Err(Denial::UnknownBasis);
    };
    if !basis.party_kinds.contains(&party.kind) {
        return Err(Denial::BasisNotForPartyKind);
    }
    if !agreement.basis_codes.iter().any(|c| c == &basis.code) {
        return Err(Denial::BasisNotInAgreement);
    }
    if !basis.in_force_on(today) {
        return Err(Denial::BasisNotInForce);
    }
    Ok((basis, agreement))
}

/// Decides one request. Pure: the same facts and ask always give the same answer.
pub fn decide(facts: &Facts<'_>, ask: &Ask<'_>) -> Result<Permit, Denial> {
    let (basis, agreement) = check_basis(facts, ask.basis_code, ask.today)?;
    let party = facts.party;

    // 4. The benefit types.
    let covered =
        |code: &String| basis.benefit_codes.contains(code) && agreement.benefit_codes.contains(code);
    let benefit_codes: Vec<String> = if ask.benefit_codes.is_empty() {
        basis
            .benefit_codes
            .iter()
            .filter(|c| covered(c))
            .cloned()
            .collect()
    } else {
        if let Some(missing) = ask.benefit_codes.iter().find(|c| !covered(c)) {
            return Err(Denial::BenefitNotCovered {
                benefit_code: missing.clone(),
            });
        }
        ask.benefit_codes.to_vec()
    };

    // 5. Consent.
    match (ask.consent_id, basis.requires_consent) {
        (None, true) => return Err(Denial::ConsentRequired),
        (None, false) => {}
        (Some(id), _) => check_consent(id, facts.consent, party.party_id, ask, basis)?,
    }

    // 6. Case.
    match (ask.case_reference, basis.requires_open_case) {
        (None, true) => return Err(Denial::CaseReferenceRequired),
        (None, false) => {}
        (Some(_), _) => {
            if facts.case == Some(CaseFacts::Closed) {
                return Err(Denial::CaseClosed);
            }
        }
    }

    Ok(Permit {
        person: ask.person.clone(),
        basis_code: basis.code.clone(),
        purpose: basis.purpose.clone(),
        benefit_codes,
        consent_id: ask.consent_id.map(str::to_string),
        case_reference: ask.case_reference.map(str::to_string),
    })
}

fn check_consent(
    id: &str,
    consent: Option<&ConsentFacts>,
    party_id: &str,
    ask: &Ask<'_>,
    basis: &LegalBasis,
) -> Result<(), Denial> {
    let invalid = |problem| Err(Denial::ConsentNotValid { problem });
    // Another party's consent is reported exactly like an unknown one: its existence is not ours
    // to reveal.
    let Some(consent) = consent.filter(|c| c.consent_id == id && c.party_id == party_id) else {
        return invalid(ConsentProblem::Unknown);
    };
    if &consent.person != ask.person {
        return invalid(ConsentProblem::OtherPerson);
    }
    if consent.basis_code != basis.code {
        return invalid(ConsentProblem::OtherBasis);
    }
    if consent.revoked_at.is_some() {
        return invalid(ConsentProblem::Revoked);
    }
    if consent.given_on > ask.today {
        return invalid(ConsentProblem::NotYetGiven);
    }
    if consent.expires_on < ask.today {
        return invalid(ConsentProblem::Expired);
    }
    Ok(())
}

/// Benchmark-only: a stand-in for the policy check, so `lefi bench delivery --compare-policy-stub`
/// can measure what the check costs a stream (issue 4: policy on ≥ 95 % of the stubbed rate).
///
/// Compiled only with the `bench-policy-stub` cargo feature, which no released build enables:
/// the product always decides through [`decide`].
#[cfg(feature = "bench-policy-stub")]
pub mod bench_stub {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::Permit;
    use crate::domain::Personnummer;

    static ENABLED: AtomicBool = AtomicBool::new(false);

    /// Turns the stub on or off for the whole process.
    pub fn set(enabled: bool) {
        ENABLED.store(enabled, Ordering::SeqCst);
    }

    /// Whether streams should skip the check.
    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// A permit for exactly what was asked, without checking anything.
    pub fn permit(
        person: &Personnummer,
        basis_code: &str,
        benefit_codes: &[String],
        consent_id: Option<&str>,
        case_reference: Option<&str>,
    ) -> Permit {
        Permit {
            person: person.clone(),
            basis_code: basis_code.to_string(),
            purpose: String::new(),
            benefit_codes: benefit_codes.to_vec(),
            consent_id: consent_id.map(str::to_string),
            case_reference: case_reference.map(str::to_string),
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::domain::catalogue::Signature;
    use crate::domain::party::AgreementType;

    const TODAY: Date = date!(2026 - 11 - 26);

    fn basis(code: &str, kinds: &[PartyKind], consent: bool, case: bool) -> LegalBasis {
        LegalBasis {
            code: code.to_string(),
            purpose: format!("purpose of {code}"),
            purpose_en: String::new(),
            statute_reference: String::new(),
            disclosure_basis: String::new(),
            automated_basis: String::new(),
            requires_consent: consent,
            requires_open_case: case,
            valid_from: date!(2011 - 01 - 01),
            valid_to: None,
            party_kinds: kinds.to_vec(),
            benefit_codes: vec!["SJP".into(), "FP".into(), "AP".into()],
        }
    }

    fn agreement(bases: &[&str]) -> Agreement {
        let sig = Some(Signature {
            signed_by: "x".into(),
            signed_on: date!(2024 - 01 - 01),
            recorded_at: None,
            recorded_by: None,
        });
        Agreement {
            agreement_id: "A".into(),
            agreement_type: AgreementType::Avtal,
            valid_from: date!(2024 - 01 - 01),
            notice_period_days: 90,
            sent_at: 0,
            party_signed: sig.clone(),
            agency_signed: sig,
            basis_codes: bases.iter().map(|b| b.to_string()).collect(),
            benefit_codes: vec!["SJP".into(), "FP".into()],
        }
    }

    fn person() -> Personnummer {
        Personnummer::parse("19900704-2386", TODAY).unwrap()
    }

    fn consent(person: &str, basis: &str) -> ConsentFacts {
        ConsentFacts {
            consent_id: "c1".into(),
            party_id: "p1".into(),
            person: Personnummer::from_storage(person).unwrap(),
            basis_code: basis.into(),
            given_on: date!(2026 - 01 - 01),
            expires_on: date!(2027 - 01 - 01),
            revoked_at: None,
        }
    }

    fn party(kind: PartyKind) -> PartyFacts<'static> {
        PartyFacts {
            party_id: "p1",
            kind,
            state: PartyState::Connected,
            termination_effective: None,
        }
    }

    fn ask<'a>(basis: &'a str, person: &'a Personnummer, benefits: &'a [String]) -> Ask<'a> {
        Ask {
            basis_code: basis,
            person,
            benefit_codes: benefits,
            case_reference: None,
            consent_id: None,
            today: TODAY,
        }
    }

    #[test]
    fn coordination_is_allowed_and_narrows_to_the_agreement() {
        let b = basis("INS_COORDINATION", &[PartyKind::Insurer], false, false);
        let a = agreement(&["INS_COORDINATION"]);
        let p = person();
        let facts = Facts {
            party: party(PartyKind::Insurer),
            agreement: Some(&a),
            basis: Some(&b),
            consent: None,
            case: None,
        };
        let permit = decide(&facts, &ask("INS_COORDINATION", &p, &[])).unwrap();
        assert_eq!(permit.benefit_codes(), ["SJP", "FP"]);
        assert_eq!(permit.person(), &p);
        let ap = ["AP".to_string()];
        assert_eq!(
            decide(&facts, &ask("INS_COORDINATION", &p, &ap)),
            Err(Denial::BenefitNotCovered {
                benefit_code: "AP".into()
            })
        );
    }

    #[test]
    fn checks_come_in_the_documented_order() {
        let b = basis(
            "AUTH_SOCIAL_SERVICES",
            &[PartyKind::MunicipalAuthority],
            false,
            true,
        );
        let a = agreement(&["INS_COORDINATION"]);
        let p = person();
        let mut facts = Facts {
            party: party(PartyKind::Insurer),
            agreement: Some(&a),
            basis: Some(&b),
            consent: None,
            case: None,
        };
        let request = ask("AUTH_SOCIAL_SERVICES", &p, &[]);
        assert_eq!(decide(&facts, &request), Err(Denial::BasisNotForPartyKind));
        facts.party.kind = PartyKind::MunicipalAuthority;
        assert_eq!(decide(&facts, &request), Err(Denial::BasisNotInAgreement));
        let a2 = agreement(&["AUTH_SOCIAL_SERVICES"]);
        facts.agreement = Some(&a2);
        assert_eq!(decide(&facts, &request), Err(Denial::CaseReferenceRequired));
        let with_case = Ask {
            case_reference: Some("DNR-1"),
            ..request
        };
        assert!(decide(&facts, &with_case).is_ok());
        facts.case = Some(CaseFacts::Closed);
        assert_eq!(decide(&facts, &with_case), Err(Denial::CaseClosed));
        facts.party.termination_effective = Some(TODAY);
        assert_eq!(decide(&facts, &with_case), Err(Denial::PartyTerminated));
    }

    #[test]
    fn consent_problem_names_stay_as_reported() {
        assert_eq!(
            ConsentProblem::ALL.map(ConsentProblem::as_str),
            [
                "UNKNOWN",
                "EXPIRED",
                "REVOKED",
                "OTHER_PERSON",
                "OTHER_BASIS",
                "NOT_YET_GIVEN"
            ]
        );
    }

    #[test]
    fn consent_problems_are_told_apart() {
        let b = basis("INS_RISK_ASSESSMENT", &[PartyKind::Insurer], true, false);
        let a = agreement(&["INS_RISK_ASSESSMENT"]);
        let p = person();
        let decide_with = |c: Option<&ConsentFacts>, consent_id: Option<&str>| {
            decide(
                &Facts {
                    party: party(PartyKind::Insurer),
                    agreement: Some(&a),
                    basis: Some(&b),
                    consent: c,
                    case: None,
                },
                &Ask {
                    consent_id,
                    ..ask("INS_RISK_ASSESSMENT", &p, &[])
                },
            )
        };
        let facts_with = |c: Option<&ConsentFacts>| decide_with(c, Some("c1"));
        let good = consent(p.as_storage(), "INS_RISK_ASSESSMENT");
        assert!(facts_with(Some(&good)).is_ok());
        let problem = |c: ConsentFacts| match facts_with(Some(&c)) {
            Err(Denial::ConsentNotValid { problem }) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(consent("199501132386", "INS_RISK_ASSESSMENT")),
            ConsentProblem::OtherPerson
        );
        assert_eq!(
            problem(consent(p.as_storage(), "INS_CLAIMS")),
            ConsentProblem::OtherBasis
        );
        assert_eq!(
            problem(ConsentFacts {
                revoked_at: Some(1),
                ..good.clone()
            }),
            ConsentProblem::Revoked
        );
        assert_eq!(
            problem(ConsentFacts {
                expires_on: date!(2026 - 11 - 25),
                ..good.clone()
            }),
            ConsentProblem::Expired
        );
        assert_eq!(
            problem(ConsentFacts {
                given_on: date!(2026 - 11 - 27),
                ..good.clone()
            }),
            ConsentProblem::NotYetGiven
        );
        assert_eq!(
            problem(ConsentFacts {
                party_id: "other".into(),
                ..good.clone()
            }),
            ConsentProblem::Unknown
        );
        assert_eq!(decide_with(None, None), Err(Denial::ConsentRequired));
    }

    #[test]
    fn a_denial_at_delivery_says_how_the_subscription_ends() {
        let ends = |d: Denial| d.ends_subscription();
        assert_eq!(ends(Denial::ConsentRequired), EndReason::ConsentEnded);
        assert_eq!(
            ends(Denial::ConsentNotValid {
                problem: ConsentProblem::Revoked
            }),
            EndReason::ConsentEnded
        );
        assert_eq!(ends(Denial::CaseClosed), EndReason::CaseClosed);
        assert_eq!(ends(Denial::BasisNotInForce), EndReason::BasisNoLongerInForce);
        assert_eq!(ends(Denial::PartyTerminated), EndReason::PartyTerminated);
        assert_eq!(ends(Denial::BasisNotInAgreement), EndReason::EndedByAgency);
    }

    #[test]
    fn agreement_and_basis_must_be_in_force() {
        let mut b = basis("INS_COORDINATION", &[PartyKind::Insurer], false, false);
        let mut a = agreement(&["INS_COORDINATION"]);
        let p = person();
        a.valid_from = date!(2027 - 01 - 01);
        let check = |a: &Agreement, b: &LegalBasis| {
            decide(
                &Facts {
                    party: party(PartyKind::Insurer),
                    agreement: Some(a),
                    basis: Some(b),
                    consent: None,
                    case: None,
                },
                &ask("INS_COORDINATION", &p, &[]),
            )
        };
        assert!(matches!(check(&a, &b), Err(Denial::AgreementNotInForce { .. })));
        a.valid_from = date!(2024 - 01 - 01);
        a.agency_signed = None;
        assert!(matches!(check(&a, &b), Err(Denial::AgreementNotInForce { .. })));
        a = agreement(&["INS_COORDINATION"]);
        b.valid_to = Some(date!(2015 - 12 - 31));
        assert_eq!(check(&a, &b), Err(Denial::BasisNotInForce));
    }
}
