//! Running the disclosure policy for a gRPC call: load the facts, decide, log the decision.
//!
//! Every party-facing request that could disclose personal data goes through [`authorize`]. A
//! denial is written to the disclosure log before the caller is told; an allowed request returns a
//! [`Permit`] and the caller logs what it then discloses with [`log_disclosure`] *before* sending it.
//! If the log cannot be written, nothing is disclosed.

use tonic::{Code, Status};

use crate::app::AppState;
use crate::domain::Personnummer;
use crate::domain::clock::format_date;
use crate::grpc::pb::ErrorReason;
use crate::grpc::status::{error, error_with, store_error};
use crate::identity::PartyPrincipal;
use crate::policy::{Ask, CaseFacts, ConsentFacts, Denial, Facts, PartyFacts, Permit, check_basis, decide};
use crate::store::policy::{Channel, Decision, NewDisclosure};

/// Where a call came from, for the disclosure log.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The full gRPC method, e.g. `/lefi.v1.QueryService/QueryPerson`.
    pub rpc: &'static str,
    /// The request's `x-request-id`.
    pub request_id: String,
    pub channel: Channel,
}

impl CallContext {
    /// Reads the request id from the call's metadata.
    pub fn new<T>(request: &tonic::Request<T>, rpc: &'static str, channel: Channel) -> Self {
        let request_id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Self {
            rpc,
            request_id,
            channel,
        }
    }
}

/// What a request asks for, owned (see [`crate::policy::Ask`]).
#[derive(Debug, Clone)]
pub struct Request {
    pub basis_code: String,
    pub person: Personnummer,
    pub benefit_codes: Vec<String>,
    pub case_reference: Option<String>,
    pub consent_id: Option<String>,
    /// The business period asked for, for the log (`from`, `to`; empty = open).
    pub period: (String, String),
    pub subscription_id: String,
}

/// The facts that are the same for every item of one call: the party's agreement and the
/// catalogue. Loaded once per call (or per delivered page), so a batch does not reload them.
#[derive(Debug, Clone)]
pub struct Gate {
    agreement: Option<crate::store::Agreement>,
    bases: Vec<crate::store::LegalBasis>,
}

/// A refusal: the status for the caller and the disclosure-log entry that records it.
#[derive(Debug)]
pub struct Refusal {
    pub status: Status,
    pub entry: NewDisclosure,
}

impl Gate {
    /// Loads the agreement and catalogue for `party`.
    pub async fn load(state: &AppState, party: &PartyPrincipal) -> Result<Gate, Status> {
        let agreement = state
            .store
            .agreement_for_party(&party.party_id)
            .await
            .map_err(store_error)?;
        let bases = state.store.legal_bases().await.map_err(store_error)?;
        Ok(Gate { agreement, bases })
    }

    /// Decides one request (loading its consent and case). Nothing is logged here: a refusal
    /// carries its log entry, which the caller must append before answering.
    pub async fn check(
        &self,
        state: &AppState,
        party: &PartyPrincipal,
        call: &CallContext,
        request: &Request,
    ) -> Result<Result<Permit, Refusal>, Status> {
        let today = state.clock.today();
        let basis = self.bases.iter().find(|b| b.code == request.basis_code);
        let consent = match &request.consent_id {
            Some(id) => state
                .store
                .consent(id)
                .await
                .map_err(store_error)?
                .map(|c| ConsentFacts {
                    consent_id: c.consent_id,
                    party_id: c.party_id,
                    person: c.person,
                    basis_code: c.basis_code,
                    given_on: c.given_on,
                    expires_on: c.expires_on,
                    revoked_at: c.revoked_at,
                }),
            None => None,
        };
        let case = match &request.case_reference {
            Some(reference) => Some(
                match state
                    .store
                    .case(&party.party_id, reference)
                    .await
                    .map_err(store_error)?
                {
                    Some(c) if c.closed => CaseFacts::Closed,
                    _ => CaseFacts::Open,
                },
            ),
            None => None,
        };
        let facts = Facts {
            party: party_facts(party),
            agreement: self.agreement.as_ref(),
            basis,
            consent: consent.as_ref(),
            case,
        };
        let ask = Ask {
            basis_code: &request.basis_code,
            person: &request.person,
            benefit_codes: &request.benefit_codes,
            case_reference: request.case_reference.as_deref(),
            consent_id: request.consent_id.as_deref(),
            today,
        };
        Ok(match decide(&facts, &ask) {
            Ok(permit) => Ok(permit),
            Err(denial) => Err(Refusal {
                status: denial_status(&denial, &request.basis_code, request.consent_id.as_deref()),
                entry: NewDisclosure {
                    decision: Decision::Denied.as_str().to_string(),
                    denial_reason: denial.reason().to_string(),
                    purpose: basis.map(|b| b.purpose.clone()).unwrap_or_default(),
                    ..base_entry(party, call, request)
                },
            }),
        })
    }
}

/// Loads the facts for `request`, decides, and logs a denial. On success the case reference (if
/// any) is recorded as used.
pub async fn authorize(
    state: &AppState,
    party: &PartyPrincipal,
    call: &CallContext,
    request: &Request,
) -> Result<Permit, Status> {
    let gate = Gate::load(state, party).await?;
    match gate.check(state, party, call, request).await? {
        Ok(permit) => {
            if let Some(reference) = permit.case_reference() {
                state
                    .store
                    .touch_case(&party.party_id, reference, state.clock.now_micros())
                    .await
                    .map_err(store_error)?;
            }
            Ok(permit)
        }
        Err(refusal) => {
            state
                .store
                .append_disclosures(&[refusal.entry], state.clock.now_micros())
                .await
                .map_err(store_error)?;
            Err(refusal.status)
        }
    }
}

/// Checks party, agreement and basis only (no person involved), e.g. to register a consent.
pub async fn authorize_basis(
    state: &AppState,
    party: &PartyPrincipal,
    basis_code: &str,
) -> Result<crate::store::LegalBasis, Status> {
    let agreement = state
        .store
        .agreement_for_party(&party.party_id)
        .await
        .map_err(store_error)?;
    let bases = state.store.legal_bases().await.map_err(store_error)?;
    let facts = Facts {
        party: party_facts(party),
        agreement: agreement.as_ref(),
        basis: bases.iter().find(|b| b.code == basis_code),
        consent: None,
        case: None,
    };
    match check_basis(&facts, basis_code, state.clock.today()) {
        Ok((basis, _)) => Ok(basis.clone()),
        Err(denial) => Err(denial_status(&denial, basis_code, None)),
    }
}

/// Writes the entry for an allowed disclosure of `record_count` records covering register
/// sequences `(from_sequence, to_sequence]`. Call it before sending; on error, send nothing.
pub async fn log_disclosure(
    state: &AppState,
    party: &PartyPrincipal,
    call: &CallContext,
    request: &Request,
    permit: &Permit,
    record_count: usize,
    sequences: (u64, u64),
) -> Result<(), Status> {
    let entry = allowed_entry(party, call, request, permit, record_count, sequences);
    state
        .store
        .append_disclosures(&[entry], state.clock.now_micros())
        .await
        .map_err(store_error)
}

/// The log entry for an allowed disclosure (for callers that batch several into one append).
pub fn allowed_entry(
    party: &PartyPrincipal,
    call: &CallContext,
    request: &Request,
    permit: &Permit,
    record_count: usize,
    (from_sequence, to_sequence): (u64, u64),
) -> NewDisclosure {
    NewDisclosure {
        decision: Decision::Allowed.as_str().to_string(),
        legal_basis: permit.basis_code().to_string(),
        purpose: permit.purpose().to_string(),
        benefit_types: permit.benefit_codes().to_vec(),
        record_count: i64::try_from(record_count).unwrap_or(i64::MAX),
        from_sequence: i64::try_from(from_sequence).unwrap_or(i64::MAX),
        to_sequence: i64::try_from(to_sequence).unwrap_or(i64::MAX),
        ..base_entry(party, call, request)
    }
}

fn base_entry(party: &PartyPrincipal, call: &CallContext, request: &Request) -> NewDisclosure {
    NewDisclosure {
        party_id: party.party_id.clone(),
        party_org_number: party.org_number.to_string(),
        system_identity: party.fingerprint.clone(),
        channel: call.channel.as_str().to_string(),
        rpc: call.rpc.to_string(),
        request_id: call.request_id.clone(),
        legal_basis: request.basis_code.clone(),
        case_reference: request.case_reference.clone().unwrap_or_default(),
        consent_id: request.consent_id.clone().unwrap_or_default(),
        subscription_id: request.subscription_id.clone(),
        person: request.person.as_storage().to_string(),
        benefit_types: request.benefit_codes.clone(),
        period_from: request.period.0.clone(),
        period_to: request.period.1.clone(),
        ..NewDisclosure::default()
    }
}

fn party_facts(party: &PartyPrincipal) -> PartyFacts<'_> {
    PartyFacts {
        party_id: &party.party_id,
        kind: party.kind,
        state: party.state,
        termination_effective: party.termination_effective,
    }
}

/// The status a denial is reported with: PERMISSION_DENIED for what the law or the agreement does
/// not allow, INVALID_ARGUMENT for what the request lacks or names wrongly.
pub fn denial_status(denial: &Denial, basis_code: &str, consent_id: Option<&str>) -> Status {
    let basis = ("legal_basis", basis_code.to_string());
    match denial {
        Denial::PartyNotActive { state } => error(
            Code::PermissionDenied,
            ErrorReason::PartyNotActive,
            format!(
                "the party is in state {state}; onboarding must be completed before data can be disclosed"
            ),
        ),
        Denial::PartyTerminated => error(
            Code::PermissionDenied,
            ErrorReason::PartyTerminated,
            "the party's agreement has been terminated; nothing more is disclosed",
        ),
        Denial::AgreementNotInForce { valid_from } => error_with(
            Code::PermissionDenied,
            ErrorReason::AgreementNotInForce,
            "the party's agreement is not in force today (not signed by both sides, or not yet valid)",
            vec![("valid_from", valid_from.map(format_date).unwrap_or_default())],
        ),
        Denial::UnknownBasis => error_with(
            Code::InvalidArgument,
            ErrorReason::UnknownBasis,
            "no legal basis with this code exists; use a code from PartyService.ListLegalBases",
            vec![basis, ("field", "legal_basis".to_string())],
        ),
        Denial::BasisNotForPartyKind => error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotForPartyKind,
            "this legal basis does not allow disclosure to your kind of party",
            vec![basis],
        ),
        Denial::BasisNotInAgreement => error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotInAgreement,
            "your agreement does not grant this legal basis; use a granted one (WhoAmI) or ask the agency",
            vec![basis],
        ),
        Denial::BasisNotInForce => error_with(
            Code::PermissionDenied,
            ErrorReason::BasisNotInForce,
            "this legal basis is not in force today",
            vec![basis],
        ),
        Denial::BenefitNotCovered { benefit_code } => error_with(
            Code::PermissionDenied,
            ErrorReason::BenefitNotCovered,
            format!(
                "benefit type {benefit_code} is not covered by the legal basis and your agreement; nothing was released"
            ),
            vec![basis, ("benefit_type", benefit_code.clone())],
        ),
        Denial::ConsentRequired => error_with(
            Code::InvalidArgument,
            ErrorReason::ConsentRequired,
            "this legal basis requires the individual's consent: register it with ConsentService.RegisterConsent and pass its consent_id",
            vec![basis, ("field", "consent_id".to_string())],
        ),
        Denial::ConsentNotValid { problem } => error_with(
            Code::PermissionDenied,
            ErrorReason::ConsentNotValid,
            format!(
                "the consent does not hold today for this person and legal basis ({}); obtain and register a new consent",
                problem.as_str()
            ),
            vec![
                ("consent_id", consent_id.unwrap_or_default().to_string()),
                ("consent_problem", problem.as_str().to_string()),
            ],
        ),
        Denial::CaseReferenceRequired => error_with(
            Code::InvalidArgument,
            ErrorReason::CaseReferenceRequired,
            "this legal basis requires an open case: pass your case reference (e.g. diarienummer) as case_reference",
            vec![basis, ("field", "case_reference".to_string())],
        ),
        Denial::CaseClosed => error(
            Code::PermissionDenied,
            ErrorReason::CaseClosed,
            "this case reference has been closed and cannot be used again",
        ),
    }
}
