//! The life cycle of a party and the rules of its administrative steps.
//!
//! ```text
//! APPLIED → AGREEMENT_SENT → SIGNED → CONNECTED → (TERMINATION_SCHEDULED) → TERMINATED
//! ```
//!
//! Everything here is a pure function of its arguments: which step is allowed in which state and
//! what state follows ([`check_transition`]), when a scheduled termination has taken effect
//! ([`effective_state`]), what a termination notice must satisfy ([`check_termination`]) and which
//! legal bases and benefit types may be applied for or granted ([`check_codes`]). The store calls
//! these inside the transaction that makes the change, so the rules and the change cannot drift
//! apart.

use crate::domain::names::named_enum;
use std::fmt;

use time::Date;

use super::{OrgNumber, PartyKind, PartyState};

named_enum! {
    /// An administrative action on a party, as recorded in its audit history.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum PartyAction {
        /// The application (anmälan) was registered.
        Apply,
        /// The agreement (avtal or överenskommelse) was sent.
        SendAgreement,
        /// One signature of the agreement was recorded.
        RecordSignature,
        /// A client certificate was registered.
        AddCertificate,
        /// A client certificate was revoked.
        RevokeCertificate,
        /// A termination (uppsägning) was registered.
        ScheduleTermination,
        /// A scheduled termination was withdrawn.
        WithdrawTermination,
        /// A scheduled termination reached its effective date (recorded by the server).
        TerminationTookEffect,
        /// The party's own limits (streams, request rate) were set.
        SetLimits,
        /// The agency suspended subscriptions of the party (follow-up review).
        SuspendSubscriptions,
        /// The agency resumed subscriptions it had suspended.
        ResumeSubscriptions,
        /// The agency ended subscriptions of the party.
        EndSubscriptions,
    }
}

named_enum! {
    /// Which side signed the agreement.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum Signer {
        /// The insurer or authority.
        Party,
        /// The agency (Försäkringskassan).
        Agency,
    }
}

/// Which sides have signed an agreement so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signatures {
    pub party: bool,
    pub agency: bool,
}

/// A step an operator asks for, with what the rules need to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the agreement.
    SendAgreement,
    /// Record `signer`'s signature, given the signatures already recorded.
    RecordSignature { signer: Signer, already: Signatures },
    /// Register a client certificate. `scheduled_from` is the state a scheduled termination was
    /// registered in (`None` when none is scheduled): only a party that was connected may get a
    /// certificate while its termination is pending.
    AddCertificate { scheduled_from: Option<PartyState> },
    /// Revoke a client certificate.
    RevokeCertificate,
    /// Register a termination; `immediate` when its effective date is today or earlier.
    ScheduleTermination { immediate: bool },
    /// Withdraw a scheduled termination, returning to `resume` (the state before it was scheduled).
    WithdrawTermination { resume: PartyState },
}

impl Step {
    /// The audit action this step is recorded as.
    pub fn action(self) -> PartyAction {
        match self {
            Self::SendAgreement => PartyAction::SendAgreement,
            Self::RecordSignature { .. } => PartyAction::RecordSignature,
            Self::AddCertificate { .. } => PartyAction::AddCertificate,
            Self::RevokeCertificate => PartyAction::RevokeCertificate,
            Self::ScheduleTermination { .. } => PartyAction::ScheduleTermination,
            Self::WithdrawTermination { .. } => PartyAction::WithdrawTermination,
        }
    }
}

/// A step that the party's current state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action} is not allowed while the party is {current}: {explanation}")]
pub struct IllegalTransition {
    /// The party's state when the step was asked for.
    pub current: PartyState,
    /// The step that was refused.
    pub action: PartyAction,
    /// Which states allow the step, or why it cannot happen again.
    pub explanation: String,
}

/// The states a scheduled termination can be withdrawn back to: the states it can be scheduled from.
const TERMINABLE: [PartyState; 4] = [
    PartyState::Applied,
    PartyState::AgreementSent,
    PartyState::Signed,
    PartyState::Connected,
];

/// Decides whether `step` is allowed for a party in state `current` (its effective state, see
/// [`effective_state`]), and which state follows.
pub fn check_transition(current: PartyState, step: Step) -> Result<PartyState, IllegalTransition> {
    use PartyState::{AgreementSent, Applied, Connected, Signed, Terminated, TerminationScheduled};
    let refuse = |explanation: &str| IllegalTransition {
        current,
        action: step.action(),
        explanation: explanation.to_string(),
    };
    match step {
        Step::SendAgreement => match current {
            Applied => Ok(AgreementSent),
            _ => Err(refuse("the agreement is sent once, to a party in state APPLIED")),
        },
        Step::RecordSignature { signer, already } => {
            if current != AgreementSent {
                return Err(refuse(
                    "signatures are recorded while the agreement is out for signing (state AGREEMENT_SENT)",
                ));
            }
            let (this_side, other_side) = match signer {
                Signer::Party => (already.party, already.agency),
                Signer::Agency => (already.agency, already.party),
            };
            if this_side {
                return Err(refuse(match signer {
                    Signer::Party => "the PARTY has already signed; record the AGENCY's signature",
                    Signer::Agency => "the AGENCY has already signed; record the PARTY's signature",
                }));
            }
            Ok(if other_side { Signed } else { AgreementSent })
        }
        Step::AddCertificate { scheduled_from } => match current {
            Signed | Connected => Ok(Connected),
            TerminationScheduled if scheduled_from == Some(Connected) => Ok(TerminationScheduled),
            TerminationScheduled => Err(refuse(
                "the termination was registered before the party was connected, so it cannot be connected now; \
                 withdraw the termination first",
            )),
            _ => Err(refuse(
                "certificates are registered once both sides have signed (SIGNED, CONNECTED or TERMINATION_SCHEDULED)",
            )),
        },
        Step::RevokeCertificate => Ok(current),
        Step::ScheduleTermination { immediate } => {
            if TERMINABLE.contains(&current) {
                Ok(if immediate {
                    Terminated
                } else {
                    TerminationScheduled
                })
            } else {
                Err(refuse(
                    "a termination is registered for a party that is neither terminated nor already scheduled to be; \
                     withdraw the scheduled termination first to register a different one",
                ))
            }
        }
        Step::WithdrawTermination { resume } => match current {
            TerminationScheduled => Ok(if TERMINABLE.contains(&resume) {
                resume
            } else {
                Connected
            }),
            _ => Err(refuse(
                "only a scheduled termination (TERMINATION_SCHEDULED) can be withdrawn, before its effective date",
            )),
        },
    }
}

/// The state a party is in today: a scheduled termination whose effective date has come is
/// TERMINATED, whether or not that has been written down yet. No background job is needed.
pub fn effective_state(stored: PartyState, termination_effective: Option<Date>, today: Date) -> PartyState {
    match (stored, termination_effective) {
        (PartyState::TerminationScheduled, Some(effective)) if effective <= today => PartyState::Terminated,
        _ => stored,
    }
}

/// Where a party stands: its state as stored and the effective date of a registered termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub state: PartyState,
    /// `None` unless a termination is registered.
    pub termination_effective: Option<Date>,
}

/// Why a party may not use the party API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inactive {
    /// Terminated: stored so, or its termination's effective date has come.
    Terminated,
    /// Not connected yet (still onboarding), in this state.
    NotConnected(PartyState),
}

impl Standing {
    /// Whether the party may use the party API on `today`: connected (also while a termination is
    /// pending) and not terminated. The certificate check and the policy both ask this.
    pub fn check_active(self, today: Date) -> Result<(), Inactive> {
        if self.state == PartyState::Terminated || self.termination_effective.is_some_and(|d| d <= today) {
            return Err(Inactive::Terminated);
        }
        match self.state {
            PartyState::Connected | PartyState::TerminationScheduled => Ok(()),
            other => Err(Inactive::NotConnected(other)),
        }
    }
}

/// The longest notice period an avtal may have, in days (ten years).
pub const MAX_NOTICE_PERIOD_DAYS: u32 = 3650;

/// Checks an agreement's notice period: an insurer's avtal has one of 1 to
/// [`MAX_NOTICE_PERIOD_DAYS`] days; an authority's överenskommelse has none (0).
pub fn check_notice_period_days(kind: PartyKind, days: u32) -> Result<(), &'static str> {
    match (kind, days) {
        (PartyKind::Insurer, 0) => Err("an insurer's avtal needs a notice period of at least 1 day"),
        (PartyKind::Insurer, d) if d > MAX_NOTICE_PERIOD_DAYS => {
            Err("a notice period longer than 3650 days (ten years) is not accepted")
        }
        (PartyKind::Insurer, _) | (_, 0) => Ok(()),
        _ => Err("an authority's överenskommelse has no notice period; send notice_period_days = 0"),
    }
}

/// A termination notice (uppsägning) as the operator registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationNotice {
    /// The organisation number the notice states.
    pub org_number: OrgNumber,
    /// The organisation name the notice states.
    pub organisation_name: String,
    /// The date from which the termination applies.
    pub effective_date: Date,
    /// The date the notice was received.
    pub received_on: Date,
    /// Why an insurer's notice period is overridden, when it is.
    pub override_reason: Option<String>,
}

/// What the registry knows about the party a notice is for.
#[derive(Debug, Clone, Copy)]
pub struct Registered<'a> {
    pub org_number: &'a OrgNumber,
    pub name: &'a str,
    pub kind: PartyKind,
    /// The notice period of a signed avtal, in days; `None` when no signed agreement binds the
    /// party (authorities, and insurers before both sides have signed).
    pub notice_period_days: Option<u32>,
}

/// Why a termination notice is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminationRefused {
    /// The notice states a different organisation number or name than the registry holds.
    #[error(
        "the {field} stated in the notice does not match the party's registration; verify the notice with its sender"
    )]
    Mismatch { field: &'static str },
    /// The effective date is within the insurer's notice period.
    #[error(
        "the agreement's notice period means the termination can take effect on {earliest} at the earliest"
    )]
    NoticePeriodNotMet { earliest: Date },
    /// An override reason was given for an authority, which has no notice period.
    #[error(
        "override_reason applies to insurers' notice periods only; an authority's termination needs none"
    )]
    OverrideNotApplicable,
    /// The notice is said to have been received after today.
    #[error("notice_received_on lies in the future; give the date the notice actually arrived")]
    ReceivedInFuture,
}

/// The outcome of an accepted termination notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminationAccepted {
    /// True when the effective date is today or earlier: the party is terminated at once.
    pub immediate: bool,
    /// True when the notice period was not met and the override reason let it through.
    pub overridden: bool,
}

/// Checks a termination notice against the registered party.
///
/// The notice must name the party by its registered organisation number and name (names compare
/// case-insensitively with runs of white space collapsed). For an insurer bound by a signed avtal
/// the effective date may not be earlier than the notice's arrival plus the notice period, unless
/// an override reason is given. An effective date today or in the past takes effect at once.
pub fn check_termination(
    party: Registered<'_>,
    notice: &TerminationNotice,
    today: Date,
) -> Result<TerminationAccepted, TerminationRefused> {
    if notice.received_on > today {
        return Err(TerminationRefused::ReceivedInFuture);
    }
    if notice.org_number != *party.org_number {
        return Err(TerminationRefused::Mismatch { field: "org_number" });
    }
    if !same_organisation_name(&notice.organisation_name, party.name) {
        return Err(TerminationRefused::Mismatch {
            field: "organisation_name",
        });
    }
    if party.kind.is_authority() && notice.override_reason.is_some() {
        return Err(TerminationRefused::OverrideNotApplicable);
    }
    let mut overridden = false;
    if let (PartyKind::Insurer, Some(days)) = (party.kind, party.notice_period_days) {
        let earliest = earliest_effective_date(notice.received_on, days);
        if notice.effective_date < earliest {
            if notice.override_reason.is_none() {
                return Err(TerminationRefused::NoticePeriodNotMet { earliest });
            }
            overridden = true;
        }
    }
    Ok(TerminationAccepted {
        immediate: notice.effective_date <= today,
        overridden,
    })
}

/// The earliest effective date a notice received on `received_on` allows under a notice period of
/// `days` days.
pub fn earliest_effective_date(received_on: Date, days: u32) -> Date {
    received_on
        .checked_add(time::Duration::days(i64::from(days)))
        .unwrap_or(Date::MAX)
}

/// Whether two organisation names are the same, ignoring case and differences in white space.
pub fn same_organisation_name(a: &str, b: &str) -> bool {
    let normal = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    normal(a) == normal(b)
}

/// A legal basis as the catalogue describes it, for [`check_codes`].
#[derive(Debug, Clone, Copy)]
pub struct CatalogueBasis<'a> {
    pub code: &'a str,
    /// The party kinds the basis may be invoked by.
    pub party_kinds: &'a [PartyKind],
    /// Whether the basis is in force today.
    pub in_force: bool,
    /// The benefit types the basis may cover.
    pub benefit_codes: &'a [String],
}

/// Which list of codes a [`CodeProblem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeList {
    /// Legal-basis codes.
    Bases,
    /// Benefit-type codes.
    Benefits,
}

/// What is wrong with one code of an application or an agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeProblemKind {
    /// No legal basis with this code exists.
    UnknownBasis,
    /// The basis exists but may not be invoked by this kind of party.
    BasisNotForKind(PartyKind),
    /// The basis is not in force today.
    BasisNotInForce,
    /// No benefit type with this code exists.
    UnknownBenefit,
    /// None of the granted bases covers this benefit type.
    BenefitNotCovered,
}

/// One code of an application or agreement that the catalogue does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeProblem {
    pub list: CodeList,
    /// The position of the code in its list, as sent.
    pub index: usize,
    pub code: String,
    pub kind: CodeProblemKind,
}

impl fmt::Display for CodeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = &self.code;
        match &self.kind {
            CodeProblemKind::UnknownBasis => write!(
                f,
                "no legal basis '{code}' exists; use a code from PartyService.ListLegalBases"
            ),
            CodeProblemKind::BasisNotForKind(kind) => write!(
                f,
                "the legal basis {code} may not be used by a party of kind {kind}; choose a basis whose \
                 allowed_party_kinds include {kind}"
            ),
            CodeProblemKind::BasisNotInForce => write!(
                f,
                "the legal basis {code} is not in force today and cannot be applied for or granted"
            ),
            CodeProblemKind::UnknownBenefit => write!(
                f,
                "no benefit type '{code}' exists; use a code from PartyService.ListBenefitTypes"
            ),
            CodeProblemKind::BenefitNotCovered => write!(
                f,
                "the benefit type {code} is not covered by any of the granted legal bases; grant a basis \
                 that covers it or leave it out"
            ),
        }
    }
}

/// Checks the legal bases and benefit types a party of `kind` applies for or is granted: every
/// basis must exist, be in force and allow the kind; every benefit type must exist; with
/// `require_coverage` (agreements), every benefit type must be covered by at least one of the
/// bases. Reports the first problem, in the order the codes were sent.
pub fn check_codes(
    kind: PartyKind,
    basis_codes: &[String],
    benefit_codes: &[String],
    catalogue: &[CatalogueBasis<'_>],
    known_benefits: &[&str],
    require_coverage: bool,
) -> Result<(), CodeProblem> {
    let problem = |list, index, code: &str, kind| CodeProblem {
        list,
        index,
        code: code.to_string(),
        kind,
    };
    let mut granted = Vec::new();
    for (index, code) in basis_codes.iter().enumerate() {
        let Some(basis) = catalogue.iter().find(|b| b.code == code) else {
            return Err(problem(
                CodeList::Bases,
                index,
                code,
                CodeProblemKind::UnknownBasis,
            ));
        };
        if !basis.party_kinds.contains(&kind) {
            return Err(problem(
                CodeList::Bases,
                index,
                code,
                CodeProblemKind::BasisNotForKind(kind),
            ));
        }
        if !basis.in_force {
            return Err(problem(
                CodeList::Bases,
                index,
                code,
                CodeProblemKind::BasisNotInForce,
            ));
        }
        granted.push(basis);
    }
    for (index, code) in benefit_codes.iter().enumerate() {
        if !known_benefits.contains(&code.as_str()) {
            return Err(problem(
                CodeList::Benefits,
                index,
                code,
                CodeProblemKind::UnknownBenefit,
            ));
        }
        if require_coverage && !granted.iter().any(|b| b.benefit_codes.contains(code)) {
            return Err(problem(
                CodeList::Benefits,
                index,
                code,
                CodeProblemKind::BenefitNotCovered,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::domain::names::assert_names_round_trip;
    use time::macros::date;

    use super::*;
    use PartyState::*;

    const ADD_CERTIFICATE: Step = Step::AddCertificate { scheduled_from: None };

    #[test]
    fn only_connected_parties_are_active_until_their_termination_takes_effect() {
        let today = date!(2025 - 06 - 10);
        for (state, termination_effective, expected) in [
            (Connected, None, Ok(())),
            (TerminationScheduled, Some(date!(2025 - 06 - 11)), Ok(())),
            (TerminationScheduled, Some(today), Err(Inactive::Terminated)),
            (Connected, Some(date!(2025 - 06 - 01)), Err(Inactive::Terminated)),
            (Terminated, None, Err(Inactive::Terminated)),
            (Signed, None, Err(Inactive::NotConnected(Signed))),
            (Applied, None, Err(Inactive::NotConnected(Applied))),
        ] {
            let standing = Standing {
                state,
                termination_effective,
            };
            assert_eq!(standing.check_active(today), expected, "{standing:?}");
        }
    }

    #[test]
    fn action_names_round_trip() {
        assert_names_round_trip(&PartyAction::ALL, PartyAction::as_str, PartyAction::parse);
        assert_eq!(PartyAction::parse("apply"), None);
    }

    #[test]
    fn onboarding_follows_the_documented_path() {
        let mut state = Applied;
        state = check_transition(state, Step::SendAgreement).unwrap();
        assert_eq!(state, AgreementSent);
        let none = Signatures::default();
        state = check_transition(
            state,
            Step::RecordSignature {
                signer: Signer::Agency,
                already: none,
            },
        )
        .unwrap();
        assert_eq!(state, AgreementSent, "one signature is not enough");
        state = check_transition(
            state,
            Step::RecordSignature {
                signer: Signer::Party,
                already: Signatures {
                    party: false,
                    agency: true,
                },
            },
        )
        .unwrap();
        assert_eq!(state, Signed);
        state = check_transition(state, ADD_CERTIFICATE).unwrap();
        assert_eq!(state, Connected);
        assert_eq!(check_transition(state, ADD_CERTIFICATE), Ok(Connected));
        state = check_transition(state, Step::ScheduleTermination { immediate: false }).unwrap();
        assert_eq!(state, TerminationScheduled);
        assert_eq!(
            check_transition(
                state,
                Step::AddCertificate {
                    scheduled_from: Some(Connected)
                }
            ),
            Ok(TerminationScheduled),
            "rotation stays possible until the end"
        );
        assert!(
            check_transition(
                state,
                Step::AddCertificate {
                    scheduled_from: Some(Signed)
                }
            )
            .is_err(),
            "a party terminated before it was connected is never connected"
        );
        assert_eq!(
            check_transition(state, Step::WithdrawTermination { resume: Connected }),
            Ok(Connected)
        );
    }

    #[test]
    fn every_step_is_refused_outside_its_states() {
        let allowed: [(Step, &[PartyState]); 5] = [
            (Step::SendAgreement, &[Applied]),
            (
                Step::RecordSignature {
                    signer: Signer::Party,
                    already: Signatures::default(),
                },
                &[AgreementSent],
            ),
            (
                Step::AddCertificate {
                    scheduled_from: Some(Connected),
                },
                &[Signed, Connected, TerminationScheduled],
            ),
            (
                Step::ScheduleTermination { immediate: false },
                &[Applied, AgreementSent, Signed, Connected],
            ),
            (
                Step::WithdrawTermination { resume: Connected },
                &[TerminationScheduled],
            ),
        ];
        for (step, states) in allowed {
            for current in PartyState::ALL {
                let result = check_transition(current, step);
                if states.contains(&current) {
                    assert!(result.is_ok(), "{step:?} in {current}: {result:?}");
                } else {
                    let refused = result.unwrap_err();
                    assert_eq!(refused.current, current);
                    assert_eq!(refused.action, step.action());
                }
            }
        }
    }

    #[test]
    fn revocation_never_changes_the_state() {
        for current in PartyState::ALL {
            assert_eq!(check_transition(current, Step::RevokeCertificate), Ok(current));
        }
    }

    #[test]
    fn the_same_side_cannot_sign_twice() {
        let refused = check_transition(
            AgreementSent,
            Step::RecordSignature {
                signer: Signer::Party,
                already: Signatures {
                    party: true,
                    agency: false,
                },
            },
        )
        .unwrap_err();
        assert_eq!(refused.current, AgreementSent);
        assert!(refused.explanation.contains("already signed"));
    }

    #[test]
    fn termination_today_or_earlier_is_immediate() {
        assert_eq!(
            check_transition(Signed, Step::ScheduleTermination { immediate: true }),
            Ok(Terminated)
        );
    }

    #[test]
    fn withdrawal_returns_to_the_earlier_state() {
        for resume in [Applied, AgreementSent, Signed, Connected] {
            assert_eq!(
                check_transition(TerminationScheduled, Step::WithdrawTermination { resume }),
                Ok(resume)
            );
        }
    }

    #[test]
    fn scheduled_termination_takes_effect_on_its_date() {
        let effective = date!(2025 - 06 - 01);
        let state = |today| effective_state(TerminationScheduled, Some(effective), today);
        assert_eq!(state(date!(2025 - 05 - 31)), TerminationScheduled);
        assert_eq!(state(effective), Terminated);
        assert_eq!(state(date!(2026 - 01 - 01)), Terminated);
        assert_eq!(effective_state(Connected, None, effective), Connected);
    }

    fn org(s: &str) -> OrgNumber {
        OrgNumber::parse(s).unwrap()
    }

    fn notice(effective: Date, received: Date, override_reason: Option<&str>) -> TerminationNotice {
        TerminationNotice {
            org_number: org("556000-0019"),
            organisation_name: "Exempel  försäkring ab".to_string(),
            effective_date: effective,
            received_on: received,
            override_reason: override_reason.map(str::to_string),
        }
    }

    /// The party the test notices are for, registered as `kind`.
    fn registered(
        org_number: &OrgNumber,
        kind: PartyKind,
        notice_period_days: Option<u32>,
    ) -> Registered<'_> {
        Registered {
            org_number,
            name: "Exempel Försäkring AB",
            kind,
            notice_period_days,
        }
    }

    #[test]
    fn termination_notice_must_name_the_registered_party() {
        let registered_org = org("556000-0019");
        let party = registered(&registered_org, PartyKind::StateAuthority, None);
        let today = date!(2025 - 05 - 01);
        let ok = notice(date!(2025 - 06 - 01), today, None);
        assert_eq!(
            check_termination(party, &ok, today),
            Ok(TerminationAccepted {
                immediate: false,
                overridden: false
            })
        );
        let wrong_number = TerminationNotice {
            org_number: org("556000-0027"),
            ..ok.clone()
        };
        assert_eq!(
            check_termination(party, &wrong_number, today),
            Err(TerminationRefused::Mismatch { field: "org_number" })
        );
        let wrong_name = TerminationNotice {
            organisation_name: "Exempel Försäkring".to_string(),
            ..ok.clone()
        };
        assert_eq!(
            check_termination(party, &wrong_name, today),
            Err(TerminationRefused::Mismatch {
                field: "organisation_name"
            })
        );
        let with_override = TerminationNotice {
            override_reason: Some("agreed".to_string()),
            ..ok
        };
        assert_eq!(
            check_termination(party, &with_override, today),
            Err(TerminationRefused::OverrideNotApplicable)
        );
    }

    #[test]
    fn insurer_notice_period_holds_unless_overridden() {
        let registered_org = org("556000-0019");
        let party = registered(&registered_org, PartyKind::Insurer, Some(90));
        let today = date!(2025 - 05 - 01);
        let received = date!(2025 - 04 - 01);
        let earliest = date!(2025 - 06 - 30);
        assert_eq!(
            check_termination(party, &notice(date!(2025 - 06 - 29), received, None), today),
            Err(TerminationRefused::NoticePeriodNotMet { earliest })
        );
        assert_eq!(
            check_termination(party, &notice(earliest, received, None), today),
            Ok(TerminationAccepted {
                immediate: false,
                overridden: false
            })
        );
        assert_eq!(
            check_termination(party, &notice(today, received, Some("agreed in writing")), today),
            Ok(TerminationAccepted {
                immediate: true,
                overridden: true
            })
        );
        assert_eq!(
            check_termination(party, &notice(earliest, date!(2025 - 05 - 02), None), today),
            Err(TerminationRefused::ReceivedInFuture)
        );
        // Before both sides have signed, no notice period binds.
        let unsigned = Registered {
            notice_period_days: None,
            ..party
        };
        assert!(check_termination(unsigned, &notice(today, today, None), today).is_ok());
    }

    #[test]
    fn only_insurers_have_a_notice_period() {
        assert!(check_notice_period_days(PartyKind::Insurer, 90).is_ok());
        assert!(check_notice_period_days(PartyKind::Insurer, 0).is_err());
        assert!(check_notice_period_days(PartyKind::Insurer, MAX_NOTICE_PERIOD_DAYS + 1).is_err());
        assert!(check_notice_period_days(PartyKind::StateAuthority, 0).is_ok());
        assert!(check_notice_period_days(PartyKind::MunicipalAuthority, 30).is_err());
    }

    #[test]
    fn names_compare_without_case_or_spacing() {
        assert!(same_organisation_name(
            " Åkerby  Kommun\tSocialnämnden",
            "åkerby kommun socialnämnden"
        ));
        assert!(!same_organisation_name("Åkerby kommun", "Åkerby kommun AB"));
    }

    #[test]
    fn codes_are_checked_against_the_catalogue() {
        let all = ["SJP".to_string(), "FP".to_string()];
        let sjp_only = ["SJP".to_string()];
        let catalogue = [
            CatalogueBasis {
                code: "INS",
                party_kinds: &[PartyKind::Insurer],
                in_force: true,
                benefit_codes: &all,
            },
            CatalogueBasis {
                code: "MUN",
                party_kinds: &[PartyKind::MunicipalAuthority],
                in_force: true,
                benefit_codes: &sjp_only,
            },
            CatalogueBasis {
                code: "OLD",
                party_kinds: &[PartyKind::MunicipalAuthority],
                in_force: false,
                benefit_codes: &all,
            },
        ];
        let known = ["SJP", "FP"];
        let codes = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let check = |kind, bases: &[&str], benefits: &[&str], coverage| {
            check_codes(
                kind,
                &codes(bases),
                &codes(benefits),
                &catalogue,
                &known,
                coverage,
            )
        };
        assert_eq!(check(PartyKind::Insurer, &["INS"], &["SJP", "FP"], true), Ok(()));
        let refused = check(PartyKind::Insurer, &["INS", "MUN"], &[], true).unwrap_err();
        assert_eq!(
            (refused.list, refused.index, refused.code.as_str()),
            (CodeList::Bases, 1, "MUN")
        );
        assert_eq!(refused.kind, CodeProblemKind::BasisNotForKind(PartyKind::Insurer));
        assert!(refused.to_string().contains("MUN"));
        assert_eq!(
            check(PartyKind::Insurer, &["NOPE"], &[], true).unwrap_err().kind,
            CodeProblemKind::UnknownBasis
        );
        assert_eq!(
            check(PartyKind::MunicipalAuthority, &["OLD"], &[], true)
                .unwrap_err()
                .kind,
            CodeProblemKind::BasisNotInForce
        );
        assert_eq!(
            check(PartyKind::Insurer, &["INS"], &["XX"], true)
                .unwrap_err()
                .kind,
            CodeProblemKind::UnknownBenefit
        );
        let uncovered = check(PartyKind::MunicipalAuthority, &["MUN"], &["SJP", "FP"], true).unwrap_err();
        assert_eq!(
            (uncovered.list, uncovered.index, uncovered.kind),
            (CodeList::Benefits, 1, CodeProblemKind::BenefitNotCovered)
        );
        // An application is not narrowed by coverage.
        assert_eq!(check(PartyKind::MunicipalAuthority, &[], &["FP"], false), Ok(()));
    }
}
